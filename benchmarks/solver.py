"""Exact mean-field solver (``omd``, ``fp``): time per iteration, time to exploitability 1e-4,
peak memory; and per-iteration speed-ups over the figures the issue quotes for OpenSpiel
and MFGLib.

Run through ``benchmarks/run.py``; ``python benchmarks/solver.py --case JSON`` is the
worker that measures one ``(game, method, temperature)`` in a fresh process.
"""

from __future__ import annotations

import common

common.pin_threads()

import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402

from crowdsteer.games.crowd import CrowdConfig, build  # noqa: E402
from crowdsteer.learners.exact import ExactConfig, ExactSolver  # noqa: E402

TOLERANCE = 1e-4
THRESHOLDS = (1e-2, 1e-3, 1e-4)
SOLVERS = (("auto", 0.0), ("auto", 0.1), ("omd", 0.0), ("omd", 0.1), ("fp", 0.0))

# The grids. Every game: kernel congestion (strength 1, radius 1) and two bumps.
GRIDS = (
    {"id": "10x10 T10 local", "n": 10, "T": 10, "moves": "local"},
    {"id": "20x20 T3 local", "n": 20, "T": 3, "moves": "local"},
    {"id": "50x50 T10 local", "n": 50, "T": 10, "moves": "local"},
    {"id": "100x100 T10 local", "n": 100, "T": 10, "moves": "local"},
    {"id": "10x10 T1 any", "n": 10, "T": 1, "moves": "any"},
    {"id": "20x20 T1 any", "n": 20, "T": 1, "moves": "any"},
)
# Games shaped like the peers' (fp, time per iteration only). OpenSpiel's crowd_modelling_2d
# and MFGLib's crowd_motion use log congestion and noisy 5-way moves (5 successors per
# (s, a): our most expensive transition); MFGLib's T=3 has 4 decision steps (t = 0..3).
PEER_GRIDS = (
    {"id": "20x20 T10 local", "n": 20, "T": 10, "moves": "local"},
    {"id": "10x10 T10 local noise log", "n": 10, "T": 10, "moves": "local", "noise": 0.1,
     "kind": "log"},
    {"id": "20x20 T10 local noise log", "n": 20, "T": 10, "moves": "local", "noise": 0.1,
     "kind": "log"},
    {"id": "20x20 T4 local noise log", "n": 20, "T": 4, "moves": "local", "noise": 0.1,
     "kind": "log"},
)
# Reference figures quoted by the issue (single thread, this kind of machine); NOT measured here.
PEERS = (
    {"peer": "OpenSpiel Python fictitious play", "their_game": "crowd_modelling_2d 10x10, T=10",
     "s_per_iter": 1.1, "ours": ("10x10 T10 local", "10x10 T10 local noise log"), "aim": 100},
    {"peer": "OpenSpiel Python fictitious play", "their_game": "crowd_modelling_2d 20x20, T=10",
     "s_per_iter": 12.0, "ours": ("20x20 T10 local", "20x20 T10 local noise log"), "aim": 100},
    {"peer": "MFGLib fictitious play", "their_game": "crowd_motion 20x20, T=3",
     "s_per_iter": 0.09, "ours": ("20x20 T3 local", "20x20 T4 local noise log"), "aim": 10},
    {"peer": "MFGLib fictitious play + opt_einsum", "their_game": "crowd_motion 20x20, T=3",
     "s_per_iter": 0.008, "ours": ("20x20 T3 local", "20x20 T4 local noise log"), "aim": 10},
)


def make_game(grid: dict):
    n = grid["n"]
    bumps = [  # a tall narrow bump and a lower wide one, scaled with the grid
        {"center": [0.25 * (n - 1), 0.25 * (n - 1)], "height": 1.0, "width": max(1.0, n / 8)},
        {"center": [0.7 * (n - 1), 0.6 * (n - 1)], "height": 0.6, "width": max(1.0, n / 6)},
    ]
    cfg = CrowdConfig(height=n, width=n, horizon=grid["T"], moves=grid["moves"],
                      noise=grid.get("noise", 0.0), desirability={"bumps": bumps},
                      congestion={"kind": grid.get("kind", "kernel"), "strength": 1.0,
                                  "radius": 1.0})
    return build(cfg)


class _TimeCap(Exception):
    pass


def _per_iteration(game, method: str, tau: float, budget: float, repeats: int) -> dict:
    """Seconds per iteration of a run of fixed length (about ``budget`` seconds), repeated.

    Wall time is what a user waits; CPU time of this (single-threaded) process is kept too,
    because it is much less sensitive to other work competing for the 2 cores.
    """
    def run(k: int) -> tuple[float, float, int]:
        cfg = ExactConfig(method=method, temperature=tau, tolerance=1e-300, max_iterations=k)
        c0 = time.process_time()
        sol = ExactSolver(cfg).solve(game)
        return sol.seconds, time.process_time() - c0, sol.iterations

    s, _, k = run(5)  # warm-up and a first estimate
    iters = int(np.clip(budget / max(s / k, 1e-7), 5, 5000))
    cpu = []

    def once() -> float:
        sec, c, n = run(iters)
        cpu.append(c / n)
        return sec / n

    out = common.summary(common.repeat_timing(once, repeats))
    out["cpu_min"] = min(cpu)
    out["iterations"] = iters
    return out


def _to_tolerance(game, method: str, tau: float, cap_s: float, max_iterations: int) -> dict:
    """One solve to ``TOLERANCE``; records when each threshold was first met; stops at ``cap_s``."""
    first: dict[float, tuple[int, float]] = {}
    state = {"k": 0, "gap": float("nan")}
    start = time.perf_counter()

    def progress(k: int, gap: float) -> None:
        now = time.perf_counter() - start
        state["k"], state["gap"] = k, gap
        for th in THRESHOLDS:
            if gap <= th and th not in first:
                first[th] = (k, now)
        if now > cap_s and gap > TOLERANCE:
            raise _TimeCap

    cfg = ExactConfig(method=method, temperature=tau, tolerance=TOLERANCE,
                      max_iterations=max_iterations)
    try:
        sol = ExactSolver(cfg).solve(game, progress=progress)
        seconds, iterations, gap, converged = sol.seconds, sol.iterations, sol.exploitability, \
            sol.converged
        stop = "converged" if converged else "max_iterations"
    except _TimeCap:
        seconds, iterations, gap, converged = (time.perf_counter() - start, state["k"],
                                               state["gap"], False)
        stop = "time cap"
    return {"seconds": seconds, "iterations": iterations, "exploitability": gap,
            "converged": converged, "stop": stop,
            "first": {f"{th:g}": first.get(th) for th in THRESHOLDS}}


def _solve_memory(game, method: str, tau: float, iterations: int) -> float:
    """tracemalloc peak (MiB) of a short solve: the solver's working arrays, not the game's."""
    cfg = ExactConfig(method=method, temperature=tau, tolerance=1e-300, max_iterations=iterations)
    tracemalloc.start()
    try:
        ExactSolver(cfg).solve(game)
        return tracemalloc.get_traced_memory()[1] / common.MIB
    finally:
        tracemalloc.stop()


def run_case(case: dict) -> dict:
    game = make_game(case["grid"])
    rss_base = common.peak_rss_mib()
    method, tau = case["method"], case["tau"]
    out: dict = {"S": game.S, "A": game.A, "T": game.T, "rss_base_mib": rss_base}
    out["per_iter"] = _per_iteration(game, method, tau, case["budget_s"], case["repeats"])
    if case["to_tol"]:
        runs = [_to_tolerance(game, method, tau, case["cap_s"], case["max_iterations"])]
        # repeat only runs that converged and are cheap enough to repeat within the budget
        while (runs[0]["converged"] and len(runs) < case["tol_repeats"]
               and runs[0]["seconds"] * (len(runs) + 1) <= case["tol_budget_s"]):
            runs.append(_to_tolerance(game, method, tau, case["cap_s"], case["max_iterations"]))
        out["to_tol"] = runs[0] | {"seconds_all": [r["seconds"] for r in runs]}
    out["rss_solve_mib"] = common.peak_rss_mib()
    out["tracemalloc_mib"] = _solve_memory(game, method, tau, 20)
    return out


# --------------------------------------------------------------------------- the suite


def plan(quick: bool) -> list[dict]:
    """The worker cases: every (grid, method, tau), then fp per-iteration on the peer shapes."""
    if quick:
        grids = [g for g in GRIDS if g["id"] in ("10x10 T10 local", "20x20 T3 local",
                                                 "100x100 T10 local", "10x10 T1 any")]
        to_tol = {"10x10 T10 local", "20x20 T3 local", "10x10 T1 any"}
        knobs = {"budget_s": 0.15, "repeats": 2, "tol_repeats": 2, "cap_s": 2.0,
                 "max_iterations": 5000, "tol_budget_s": 1.0}
    else:
        grids, to_tol = list(GRIDS), {g["id"] for g in GRIDS}
        knobs = {"budget_s": 0.8, "repeats": 5, "tol_repeats": 3, "cap_s": 60.0,
                 "max_iterations": 5000, "tol_budget_s": 35.0}
    cases = [{"grid": g, "method": m, "tau": tau, "to_tol": g["id"] in to_tol, **knobs}
             for g in grids for m, tau in SOLVERS]
    peers = [g for g in PEER_GRIDS if not quick or g["id"] in ("10x10 T10 local noise log",
                                                                "20x20 T4 local noise log")]
    cases += [{"grid": g, "method": "fp", "tau": 0.0, "to_tol": False, "peer": True, **knobs}
              for g in peers]
    return cases


def run_suite(opts) -> str:
    started = time.perf_counter()
    info = common.machine_info()
    results = []
    for case in plan(opts.quick):
        label = f"{case['grid']['id']} {case['method']} tau={case['tau']:g}"
        print(f"[solver] {label} ...", flush=True)
        res = common.run_worker("solver.py", case)
        results.append((case, res))
        pi = res["per_iter"]
        msg = f"  {common.fmt_time(pi['min'])}/iter"
        if "to_tol" in res:
            tt = res["to_tol"]
            msg += (f"; {tt['stop']} after {tt['iterations']} it, {common.fmt_time(tt['seconds'])}"
                    f", expl {tt['exploitability']:.1e}")
        print(msg + f"; peak RSS {res['peak_rss_mib']:.0f} MiB ({res['wall_s']:.1f} s)", flush=True)
    before_after = compare_iteration(opts.quick)
    knobs = plan(opts.quick)[0]
    note = (f"seconds per iteration = min (and median) over {knobs['repeats']} runs of a "
            f"fixed number of iterations lasting about {knobs['budget_s']} s each; time to "
            f"{TOLERANCE:g} = min over up to {knobs['tol_repeats']} identical solves (only solves "
            f"that converge and fit a {knobs['tol_budget_s']:g} s budget are repeated); runs "
            f"that do not converge stop at {knobs['cap_s']:g} s or {knobs['max_iterations']} "
            "iterations and report the exploitability reached")
    return (render(results, opts.command, info, started, note, opts.quick)
            + render_before_after(before_after))


# --------------------------------------------------------------------------- before / after


def baseline_src() -> str:
    """The source tree of ``iteration.BASELINE_REF`` (main before issue 10), extracted once
    with ``git archive`` into ``benchmarks/.baseline-REF/``."""
    import subprocess

    from iteration import BASELINE_REF

    dest = common.BENCH_DIR / f".baseline-{BASELINE_REF}"
    if not (dest / "src" / "crowdsteer").is_dir():
        dest.mkdir(exist_ok=True)
        archive = subprocess.run(["git", "archive", BASELINE_REF, "src"], cwd=common.REPO,
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return str(dest / "src")


def compare_iteration(quick: bool) -> list[tuple[str, dict]]:
    """Old and new iteration timed in alternating fresh processes (old, new, old, new...)."""
    old, new = baseline_src(), str(common.REPO / "src")
    k, rounds = (5, 1) if quick else (30, 3)
    out = []
    for _ in range(rounds):
        for name, src in (("before", old), ("after", new)):
            print(f"[solver] iteration {name} ...", flush=True)
            res = common.run_worker("iteration.py", {"src": src, "iterations": k,
                                                     "repeats": 2 if quick else 3})
            out.append((name, res))
    return out


PARTS = ("iteration_tau0", "iteration_tau0.1", "forward", "rewards", "backward", "certificate")
PART_LABEL = {"iteration_tau0": "whole omd iteration, tau = 0",
              "iteration_tau0.1": "whole omd iteration, tau = 0.1",
              "forward": "forward pass (mean field)", "rewards": "reward table",
              "backward": "backward pass (policy evaluation)",
              "certificate": "certificate's best response"}


def render_before_after(runs: list[tuple[str, dict]]) -> str:
    from iteration import BASELINE_REF

    best = {name: {part: min(r[part] for n, r in runs if n == name) for part in PARTS}
            for name in ("before", "after")}
    rows = [[PART_LABEL[part], common.fmt_time(best["before"][part]),
             common.fmt_time(best["after"][part]),
             common.fmt_ratio(best["before"][part] / best["after"][part])] for part in PARTS]
    n = sum(1 for name, _ in runs if name == "after")
    return "\n".join([
        "", "### One iteration, before and after issue 10", "",
        f"The issue's game (100x100, T = 10, local moves, noise 0.1, log congestion 0.5, "
        f"S = 10,000, A = 5). `before`: the source of `{BASELINE_REF}` (main before issue "
        f"10, extracted by `git archive` into `benchmarks/.baseline-{BASELINE_REF}/`); "
        f"`after`: this tree. Both timed by `benchmarks/iteration.py` in fresh processes, "
        f"alternating before/after, {n} rounds; min over rounds (each itself the min of 3 "
        f"repeats). A whole iteration is `ExactSolver(method='omd')` per iteration (forward "
        f"pass, reward table, policy evaluation, best response for the certificate, update). "
        f"Parts: `before` through the public functions (`mean_field`, `reward_table`, "
        f"`evaluate`, `best_response`), `after` through the solver's own action-major passes "
        f"(`crowdsteer.learners.passes`; the certificate needs only the best values).", "",
        common.md_table(["", "before", "after", "speed-up"], rows), ""])


def _by(results, gid: str, method: str, tau: float):
    for case, res in results:
        if case["grid"]["id"] == gid and case["method"] == method and case["tau"] == tau:
            return res
    return None


def render(results, command: str, info: dict, started: float, note: str, quick: bool) -> str:
    title = "## Exact solver" + (" (quick run)" if quick else "")
    parts = [title, "", common.provenance(command, info, started, note), ""]
    parts += [
        "Games: `crowd` built by `crowdsteer.games.crowd.build(CrowdConfig(...))`, uniform "
        "`mu0`, kernel congestion (strength 1, radius 1), desirability = two Gaussian bumps "
        "(height 1 at 1/4 of the grid, height 0.6 at (0.7, 0.6) of it, widths n/8 and n/6). "
        "`local` = stay/up/down/left/right (A = 5), `any` = jump to any cell (A = S). Solver: "
        f"`ExactSolver(ExactConfig(method=..., temperature=..., tolerance={TOLERANCE:g}, "
        "max_iterations=...)).solve(game)`. An iteration includes the exploitability "
        "certificate (policy evaluation + best response) that the solver computes every step.",
        "",
        "### Speed",
        "",
    ]
    rows = []
    for case, res in results:
        if case.get("peer"):
            continue
        g, pi = case["grid"], res["per_iter"]
        row = [g["id"], res["S"], res["A"], case["method"], f"{case['tau']:g}",
               f"{common.fmt_time(pi['min'])} ({common.fmt_time(pi['median'])})",
               common.fmt_time(pi["cpu_min"])]
        tt = res.get("to_tol")
        if tt is None:
            row += ["not run", "-"]
        else:
            times = sorted(tt["seconds_all"])
            if tt["converged"]:
                reached = (f"**{tt['iterations']} it, {common.fmt_time(times[0])}** (median "
                           f"{common.fmt_time(times[len(times) // 2])}, n={len(times)})")
            else:
                reached = (f"not reached: {fmt_expl(tt['exploitability'])} after "
                           f"{tt['iterations']} it, {common.fmt_time(tt['seconds'])} "
                           f"({tt['stop']})")
            s3 = tt["first"].get("0.001")
            row += [reached, "-" if s3 is None else f"{s3[0]} it, {common.fmt_time(s3[1])}"]
        rows.append(row)
    parts.append(common.md_table(
        ["game", "S", "A", "method", "tau", "wall s / iteration: min (median)", "CPU s / iteration",
         f"to exploitability {TOLERANCE:g}: iterations, time", "first below 1e-3"], rows))
    parts += ["", "### Peak memory (one fresh process per row)", ""]
    rows = []
    for case, res in results:
        if case.get("peer"):
            continue
        pol_mib = res["T"] * res["S"] * res["A"] * 8 / common.MIB
        rows.append([case["grid"]["id"], case["method"], f"{case['tau']:g}",
                     f"{pol_mib:.2f}", common.fmt_mib(res["tracemalloc_mib"]),
                     common.fmt_mib(res["rss_base_mib"]),
                     common.fmt_mib(res["peak_rss_mib"]),
                     common.fmt_mib(res["peak_rss_mib"] - res["rss_base_mib"])])
    parts.append(common.md_table(
        ["game", "method", "tau", "one (T,S,A) array, MiB", "tracemalloc peak of a 20-iteration "
         "solve, MiB", "RSS after imports + game, MiB", "peak RSS of the process, MiB",
         "peak RSS growth during the solves, MiB"], rows))
    parts += ["", "### Versus peers (per iteration, fictitious play)", "",
              "Peer figures are the issue's reference numbers (single thread, this kind of "
              "machine), **not measured by us**; ours are the `fp` per-iteration minima above "
              "(an iteration also computes the exploitability certificate). The wall-clock "
              "speed-up is the conservative one (other work shared the cores); CPU time is "
              "what an idle machine would show for this single-threaded process. Each peer "
              "row is compared with our benchmark game of the same grid size and with a "
              "peer-shaped variant (log congestion, noisy moves with 5 successors, same horizon).",
              ""]
    rows = []
    for peer in PEERS:
        for gid in peer["ours"]:
            res = _by(results, gid, "fp", 0.0)
            if res is None:  # not in this (quick) run
                continue
            wall, cpu = res["per_iter"]["min"], res["per_iter"]["cpu_min"]
            r_wall, r_cpu = peer["s_per_iter"] / wall, peer["s_per_iter"] / cpu
            met = ("yes" if r_wall >= peer["aim"] else
                   "by CPU time only" if r_cpu >= peer["aim"] else "**no**")
            rows.append([peer["peer"], peer["their_game"], common.fmt_time(peer["s_per_iter"]),
                         gid, common.fmt_time(wall), common.fmt_time(cpu),
                         common.fmt_ratio(r_wall), common.fmt_ratio(r_cpu),
                         f">= {peer['aim']}x", met])
    parts.append(common.md_table(
        ["peer (reference figure)", "their game", "their s / iteration", "our game (fp)",
         "our wall s / iteration", "our CPU s / iteration", "speed-up (wall)",
         "speed-up (CPU)", "aim", "met (wall)"], rows))
    big = [(c, r) for c, r in results if c["grid"]["id"] == "100x100 T10 local" and "to_tol" in r]
    if big:
        parts += ["", "100x100 (S = 10,000, T = 10, A = 5) to exploitability 1e-4: "
                  + "; ".join(f"{c['method']} tau={c['tau']:g}: {_reached(r['to_tol'])}"
                              for c, r in big) + "."]
    return "\n".join(parts) + "\n"


def _reached(tt: dict) -> str:
    if tt["converged"]:
        return f"{common.fmt_time(min(tt['seconds_all']))} ({tt['iterations']} it)"
    return (f"not reached ({fmt_expl(tt['exploitability'])} after "
            f"{common.fmt_time(tt['seconds'])})")


def fmt_expl(x: float) -> str:
    return f"{x:.1e}"


if __name__ == "__main__":
    common.worker_main(run_case)
