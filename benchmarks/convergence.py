"""Convergence of the exact solver: iterations and seconds to tolerance, per method.

Each case in a fresh worker process (``python benchmarks/convergence.py
--case JSON``):

* the suite: 26 crowd games spanning grid sizes 5x5 to 100x100, horizons 1, 3 and 10,
  ``any`` and ``local`` moves, noise 0 / 0.1 / 0.3, kernel and log congestion of strength
  0.1 to 10, temperatures 0 / 1e-3 / 0.1 / 1 and stiff cases (log congestion of strength
  10 with mirror-descent step 5). Tolerance 1e-4 at ``tau = 0``, 1e-8 at ``tau > 0``.
  Every game is solved by ``newton`` and by ``omd`` (the default before issue 10), each
  to the tolerance or a time cap; the row says which one the default (``method: auto``)
  picks and whether it got there, its certificate recomputed by the public
  ``exploitability`` at the returned policy;
* the issue's game (100x100, T = 10, local, noise 0.1, moving bump, log congestion 0.5)
  at ``tau = 0`` is row ``c20``, with its own paragraph;
* scale: 300x300, T = 10, ``tau = 0.05``: time to 1e-4 and the process's peak RSS.

Run through ``benchmarks/run.py --only convergence``.
"""

from __future__ import annotations

import common

common.pin_threads()

import time  # noqa: E402


from crowdsteer.equilibrium import exploitability  # noqa: E402
from crowdsteer.games.crowd import CrowdConfig, build  # noqa: E402
from crowdsteer.learners.exact import ExactConfig, ExactSolver  # noqa: E402

ISSUE_CENTERS = [(20, 20), (30, 30), (40, 40), (50, 50), (60, 60), (70, 70), (75, 75),
                 (80, 80), (80, 80), (80, 80)]


def game_spec(n, T, moves, noise, kind, c, field="moving"):
    return {"n": n, "T": T, "moves": moves, "noise": noise, "kind": kind, "c": c,
            "field": field}


def case(cid, spec, tau, lr=None, label=""):
    return {"id": cid, "game": spec, "tau": tau, "lr": lr, "label": label,
            "tol": 1e-4 if tau == 0 else 1e-8}


ISSUE = game_spec(100, 10, "local", 0.1, "log", 0.5)
SUITE = (
    case("c01", game_spec(5, 1, "any", 0.0, "log", 1.0), 0.0),
    case("c02", game_spec(5, 3, "local", 0.0, "kernel", 1.0), 0.0),
    case("c03", game_spec(10, 1, "any", 0.0, "kernel", 0.1), 0.0, label="weak kernel"),
    case("c04", game_spec(10, 1, "any", 0.0, "log", 10.0), 0.0, lr=5.0, label="stiff"),
    case("c05", game_spec(10, 3, "local", 0.3, "log", 1.0), 1e-3),
    case("c06", game_spec(10, 10, "local", 0.1, "log", 0.5), 0.0, label="issue game, 10x10"),
    case("c07", game_spec(10, 10, "local", 0.1, "kernel", 1.0), 0.1),
    case("c08", game_spec(20, 3, "local", 0.0, "kernel", 10.0), 0.0, label="strong kernel"),
    case("c09", game_spec(20, 3, "local", 0.3, "log", 0.1), 0.0, label="weak log"),
    case("c10", game_spec(20, 10, "local", 0.1, "log", 0.5), 1.0),
    case("c11", game_spec(20, 1, "any", 0.0, "log", 0.5), 1e-3),
    case("c12", game_spec(20, 1, "any", 0.0, "kernel", 2.0, "two"), 0.1),
    case("c13", game_spec(30, 10, "local", 0.1, "log", 0.5), 0.0, label="issue game, 30x30"),
    case("c14", game_spec(30, 10, "local", 0.1, "log", 0.5), 1e-3),
    case("c15", game_spec(30, 3, "local", 0.0, "log", 10.0), 0.0, lr=5.0, label="stiff"),
    case("c16", game_spec(50, 10, "local", 0.1, "kernel", 1.0, "two"), 0.0),
    case("c17", game_spec(50, 10, "local", 0.3, "log", 2.0), 0.1),
    case("c18", game_spec(50, 3, "local", 0.1, "log", 0.1), 1e-3, label="weak log"),
    case("c19", game_spec(50, 10, "local", 0.0, "kernel", 0.1, "two"), 1.0),
    case("c20", ISSUE, 0.0, label="the issue's game"),
    case("c21", ISSUE, 0.1),
    case("c22", ISSUE, 1.0),
    case("c23", game_spec(100, 10, "local", 0.1, "kernel", 1.0, "two"), 0.0),
    case("c24", game_spec(100, 3, "local", 0.3, "log", 10.0), 1e-3, lr=5.0, label="stiff"),
    case("c25", game_spec(100, 1, "local", 0.1, "log", 1.0), 0.0),
    case("c26", game_spec(100, 10, "local", 0.1, "log", 0.5), 1e-3),
)
SCALE = case("s300", game_spec(300, 10, "local", 0.1, "log", 0.5), 0.05,
             label="300x300 T10") | {"tol": 1e-4}  # the issue's scale target: 1e-4


def make_game(spec: dict):
    n, T = spec["n"], spec["T"]
    scale = (n - 1) / 99
    if spec["field"] == "moving":  # the issue's bump, its path scaled to the grid
        centers = [[a * scale, b * scale] for a, b in ISSUE_CENTERS]
        centers = [centers[min(t * 10 // T, 9)] for t in range(T)]
        bumps = [{"center": centers, "height": 1.0, "width": max(1.0, 10 * scale)}]
    else:  # two static bumps (the solver suite's)
        bumps = [{"center": [0.25 * (n - 1)] * 2, "height": 1.0, "width": max(1.0, n / 8)},
                 {"center": [0.7 * (n - 1), 0.6 * (n - 1)], "height": 0.6,
                  "width": max(1.0, n / 6)}]
    cfg = CrowdConfig(height=n, width=n, horizon=T, moves=spec["moves"], noise=spec["noise"],
                      desirability={"bumps": bumps},
                      congestion={"kind": spec["kind"], "strength": spec["c"], "radius": 1.0})
    return build(cfg)


class _Cap(Exception):
    pass


def timed_solve(game, method: str, tau: float, tol: float, cap_s: float,
                lr: float | None) -> dict:
    """One solve to ``tol``, stopped at ``cap_s`` seconds (reported as not reached)."""
    state = {"k": 0, "gap": float("nan")}
    start = time.perf_counter()

    def progress(k: int, gap: float) -> None:
        state["k"], state["gap"] = k, gap
        if time.perf_counter() - start > cap_s and gap > tol:
            raise _Cap

    cfg = ExactConfig(method=method, temperature=tau, tolerance=tol, max_iterations=10**6,
                      learning_rate=lr if method == "omd" else None)
    solver = ExactSolver(cfg)
    default = ExactSolver(ExactConfig(temperature=tau)).method_for(game)
    c0 = time.process_time()
    try:
        sol = solver.solve(game, progress=progress)
    except _Cap:
        return {"method": method, "default": default, "converged": False, "stop": "time cap",
                "iterations": state["k"], "seconds": time.perf_counter() - start,
                "cpu": time.process_time() - c0, "exploitability": state["gap"]}
    out = {"method": method, "default": default, "converged": sol.converged,
           "stop": "converged" if sol.converged else "max_iterations",
           "iterations": sol.iterations, "inner_steps": sol.inner_steps,
           "seconds": sol.seconds, "cpu": time.process_time() - c0,
           "exploitability": sol.exploitability}
    # the certificate again, by the public function at the returned policy
    out["recheck"] = exploitability(game, sol.pi, tau)
    out["recheck_ok"] = out["recheck"] <= tol
    return out


def warm_up() -> float:
    """Solve a 3x3 game with ``newton`` once, so that the compiled kernels are loaded from
    Numba's cache before anything is timed (a one-off per process); returns its seconds."""
    start = time.perf_counter()
    small = make_game(game_spec(3, 2, "local", 0.1, "log", 1.0))
    ExactSolver(ExactConfig(method="newton", temperature=0.0)).solve(small)
    return time.perf_counter() - start


def run_case(c: dict) -> dict:
    warm_up()
    game = make_game(c["game"])
    out = {"S": game.S, "A": game.A, "T": game.T, "rss_base_mib": common.peak_rss_mib()}
    runs = []
    for method, cap, *times in c["methods"]:
        for _ in range(times[0] if times else 1):
            runs.append(timed_solve(game, method, c["tau"], c["tol"], cap, c["lr"]))
    if c["lr"] is not None and runs and runs[0]["default"] == "omd":
        # the stiff cases time the old omd with learning_rate 5; the default runs its own rate
        runs.append(timed_solve(game, "auto", c["tau"], c["tol"], c["methods"][-1][1], None)
                    | {"method": "auto"})
    out["runs"] = runs
    return out


# --------------------------------------------------------------------------- the suite


def plan(quick: bool) -> list[dict]:
    if quick:
        picks = ("c01", "c04", "c06", "c07", "c11")
        return [c | {"methods": [("newton", 30.0), ("omd", 10.0)]} for c in SUITE
                if c["id"] in picks]
    # the issue's game: newton three times (the machine is shared; min and median)
    suite = [c | {"methods": [("newton", 300.0, 3 if c["id"] == "c20" else 1),
                              ("omd", 300.0)]} for c in SUITE]
    scale = SCALE | {"methods": [("auto", 600.0)]}
    return suite + [scale]


def _run(c: dict) -> dict:
    print(f"[convergence] {c['id']} {c['game']} tau={c['tau']:g} ...", flush=True)
    res = common.run_worker("convergence.py", c, timeout=3600)
    for r in res["runs"]:
        print(f"  {r['method']}: {r['stop']} after {r['iterations']} it, "
              f"{r['seconds']:.2f} s, expl {r['exploitability']:.2e}", flush=True)
    return res


def run_suite(opts) -> str:
    started, info = time.perf_counter(), common.machine_info()
    results = [(c, _run(c)) for c in plan(opts.quick)]
    note = ("one solve per method and game, each to the tolerance or a wall-clock cap of 300 s "
            "(the 300x300 case: 600 s); seconds are wall time of the solve (CPU seconds of the "
            "process in the headline paragraphs)")
    return render(results, opts.command, info, started, note, opts.quick)


def _cell(r: dict) -> str:
    if r["converged"]:
        extra = f" + {r['inner_steps']} CG" if r.get("inner_steps") else ""
        return f"{r['iterations']} it{extra}, {common.fmt_time(r['seconds'])}"
    return (f"**not reached**: {r['exploitability']:.1e} after {r['iterations']} it, "
            f"{common.fmt_time(r['seconds'])} ({r['stop']})")


def describe(spec: dict) -> str:
    noise = f", noise {spec['noise']:g}" if spec["moves"] == "local" else ""
    field = "moving bump" if spec["field"] == "moving" else "two bumps"
    return (f"{spec['n']}x{spec['n']} T{spec['T']} {spec['moves']}{noise}, "
            f"{spec['kind']} {spec['c']:g}, {field}")


def render(results, command: str, info: dict, started: float, note: str, quick: bool) -> str:
    parts = ["## Convergence of the exact solver" + (" (quick run)" if quick else ""), "",
             common.provenance(command, info, started, note), "",
             "Crowd games built by `benchmarks/convergence.py:make_game` (moving bump: the "
             "issue's bump path (20,20) ... (80,80) scaled to the grid, height 1, width 10 "
             "scaled; two bumps: the solver suite's). Tolerance 1e-4 at tau = 0, 1e-8 at "
             "tau > 0. Both methods run on every game; `omd` was the default before issue 10 "
             "(stiff cases: `learning_rate = 5`); the default now (`method: auto`) picks "
             "`newton` at tau < 1 on these games (a concave potential; at tau = 0 through "
             "its proximal stage) and `omd` at tau >= 1, and its row reports whether its "
             "pick reached the tolerance. An "
             "iteration of `newton` is one Newton step: a forward pass, "
             "two or three backward passes and the line search, plus the conjugate-gradient "
             "steps (`CG`, one tangent and one adjoint pass each) counted beside it; an `omd` "
             "iteration is a forward and two backward passes. Each worker process first solves a "
             "3x3 game with `newton`, which loads its compiled kernels from Numba's cache "
             "(a one-off of about 0.2 s per process, not in the times). `recheck`: the pick's "
             "exploitability recomputed by `crowdsteer.equilibrium.exploitability` at the "
             "returned policy.",
             "",
             ]
    rows = []
    all_ok = True
    for c, res in results:
        if c["id"] == "s300":
            continue
        runs = {r["method"]: r for r in res["runs"]}
        new, omd = runs["newton"], runs["omd"]
        pick = runs.get("auto") or runs[new["default"]]
        ok = pick["converged"] and pick.get("recheck_ok", False)
        all_ok &= ok
        ratio = (common.fmt_ratio(omd["seconds"] / new["seconds"])
                 + ("" if omd["converged"] else " (omd capped)"))
        rows.append([c["id"], describe(c["game"]) + (f" ({c['label']})" if c["label"] else ""),
                     f"{c['tau']:g}", f"{c['tol']:g}", _cell(new), _cell(omd), ratio,
                     f"{new['default']}: " + ("yes" if ok else "**no**")
                     + f" (recheck {fmt_sci(pick.get('recheck'))})"
                     + (f"; at its own learning rate: {_cell(pick)}" if "auto" in runs else "")])
    parts.append(common.md_table(
        ["id", "game", "tau", "tolerance", "newton: iterations + CG steps, time",
         "omd: iterations, time", "omd time / newton time",
         "default (`auto`) picks: reached, recheck"], rows))
    parts += ["", f"All {len(rows)} configurations reach the tolerance with the default: "
              f"**{'yes' if all_ok else 'no'}** (within the 300 s cap)."]
    for c, res in results:
        if c["id"] in HEADLINE:
            parts += ["", f"### {HEADLINE[c['id']]}", "", headline(c, res)]
    return "\n".join(parts) + "\n"


HEADLINE = {"c20": "The issue's game at temperature 0 (row c20)", "s300": "Scale: 300x300"}
"""Paragraphs under the table: the issue's two targets."""


def headline(c: dict, res: dict) -> str:
    """The issue's game (both methods) or the 300x300 case, against their targets."""
    lines = []
    for r in res["runs"]:
        reached = (f"**{common.fmt_time(r['seconds'])}** (CPU {common.fmt_time(r['cpu'])}), "
                   f"{r['iterations']} iterations"
                   + (f" + {r['inner_steps']} CG steps" if r.get("inner_steps") else "")
                   + f", exploitability {r['exploitability']:.2e} (recheck "
                   f"{fmt_sci(r.get('recheck'))})" if r["converged"] else _cell(r))
        lines.append(f"`{r['method']}`{' (the default)' if r['method'] == r['default'] else ''}"
                     f": {reached}")
    news = sorted(r["seconds"] for r in res["runs"] if r["method"] == "newton"
                  and r["converged"])
    if c["id"] == "c20" and len(news) > 1:
        lines.append(f"`newton` over {len(news)} runs: min {common.fmt_time(news[0])}, "
                     f"median {common.fmt_time(news[len(news) // 2])}")
    target = ("Target: 1e-4 within 10 s." if c["id"] == "c20"
              else "Targets: 1e-4 within 60 s, peak memory under 3 GB.")
    return (f"{describe(c['game'])}, tau = {c['tau']:g}, tolerance {c['tol']:g}: "
            + "; ".join(lines) + f". Peak RSS of the fresh process "
            f"{common.fmt_mib(res['peak_rss_mib'])} MiB (after imports and the game: "
            f"{common.fmt_mib(res['rss_base_mib'])} MiB). {target}")


def fmt_sci(x):
    return "-" if x is None else f"{x:.1e}"


if __name__ == "__main__":
    common.worker_main(run_case)
