"""Model-free learners at scale: agent-steps per second and peak memory against ``N``; and
whether they are done when they say so.

A learner simulates ``N`` agents as an ``(N,)`` array and pools their experience in
``T x S x A`` tables, so its memory should grow like ``N + T S A``, never ``N S A``.
Each ``(learner, game, N)`` runs in a fresh process; the table reports its throughput
(``N * T * iterations / seconds``), the ``tracemalloc`` peak of a short solve and the
peak RSS, and fits the memory per agent between the two largest ``N``.

The second table (issue 12, "learners that say they converged") runs each learner with
its default stopping rule on the issue's cases (``N = 2000``, ``tau = 0``, kernel and log
congestion; and the paper's two games at ``tau = 0.1``) and sets the exploitability
certified with the model beside the learner's own estimate of it; for
``fictitious_play`` also where stopping on that estimate (at most the tolerance for 5
rounds in a row, the rule before) would have stopped, and the certificate there.

Run through ``benchmarks/run.py``; ``python benchmarks/model_free.py --case JSON`` is the
worker.
"""

from __future__ import annotations

import common

common.pin_threads()

import importlib  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402

from solver import make_game  # noqa: E402

# registry name -> module that registers it (imported explicitly in case the package
# __init__ does not import it yet)
LEARNERS = {"fictitious_play": "crowdsteer.learners.sampled_fp",
            "independent": "crowdsteer.learners.independent",
            "policy_gradient": "crowdsteer.learners.policy_gradient"}
GAMES = (
    {"id": "10x10 T1 any", "n": 10, "T": 1, "moves": "any"},
    {"id": "10x10 T3 local", "n": 10, "T": 3, "moves": "local"},
)
AGENTS = {"fictitious_play": (2_000, 100_000, 1_000_000),
          # one table per agent: it refuses N T S A > 2e8 by design; the largest N show that
          "independent": (2_000, 20_000, 100_000, 1_000_000),
          "policy_gradient": (2_000, 100_000, 1_000_000)}
QUICK_AGENTS = (2_000, 100_000)
BUMP_11 = [{"center": [1, 1], "height": 1.5, "width": 1.0}]
HONESTY = (  # (learner, game, temperature): the cases and the paper's games
    ("fictitious_play", {"id": "5x5 T1 any log", "n": 5, "kind": "log", "bumps": BUMP_11}, 0.0),
    ("fictitious_play", {"id": "5x5 T1 any kernel", "n": 5, "kind": "kernel", "bumps": BUMP_11},
     0.0),
    ("fictitious_play", {"id": "oneshot.yaml", "example": "oneshot"}, 0.1),
    ("fictitious_play", {"id": "dynamic.yaml", "example": "dynamic"}, 0.1),
    ("independent", {"id": "3x3 T1 any log", "n": 3, "kind": "log", "bumps": BUMP_11}, 0.0),
    ("independent", {"id": "3x3 T1 any kernel", "n": 3, "kind": "kernel", "bumps": BUMP_11},
     0.0),
    ("independent", {"id": "5x5 T1 any log", "n": 5, "kind": "log", "bumps": BUMP_11}, 0.0),
    ("independent", {"id": "5x5 T1 any kernel", "n": 5, "kind": "kernel", "bumps": BUMP_11},
     0.0),
    ("independent", {"id": "dynamic.yaml, log", "example": "dynamic", "kind": "log"}, 0.0),
    ("independent", {"id": "dynamic.yaml, kernel", "example": "dynamic", "kind": "kernel"}, 0.0),
    # issue 17: policy_gradient on the paper's games and this benchmark's games at tau = 0.1
    ("policy_gradient", {"id": "oneshot.yaml", "example": "oneshot"}, 0.1),
    ("policy_gradient", {"id": "dynamic.yaml", "example": "dynamic"}, 0.1),
    ("policy_gradient", {"id": "10x10 T1 any", "suite": 0}, 0.1),
    ("policy_gradient", {"id": "10x10 T3 local", "suite": 1}, 0.1),
)
OLD_PATIENCE = 5  # the estimate-based rule before: estimate <= tolerance 5 rounds in a row
BEFORE = {  # the same cases run on commit f74072d (before issue 12's stopping rules):
    # rounds, whether it said converged, its (certified) exploitability. A historical
    # measurement, kept for comparison: PYTHONPATH=<f74072d>/src with this file's cases.
    ("fictitious_play", "5x5 T1 any log"): (1612, True, 0.0694),
    ("fictitious_play", "5x5 T1 any kernel"): (119, True, 0.00556),
    ("fictitious_play", "oneshot.yaml"): (118, True, 0.0436),
    ("fictitious_play", "dynamic.yaml"): (26, True, 0.0526),
    ("independent", "3x3 T1 any log"): (2000, False, 0.069),
    ("independent", "3x3 T1 any kernel"): (247, True, 0.0),
    ("independent", "5x5 T1 any log"): (2000, False, 0.226),
    ("independent", "5x5 T1 any kernel"): (2000, False, 0.00792),
    ("independent", "dynamic.yaml, log"): (2000, False, 0.591),
    ("independent", "dynamic.yaml, kernel"): (2000, False, 0.0374),
}


def honesty_game(spec: dict):
    """A crowd game of the honesty table: an example's game (congestion kind overridden
    if given), or an ``n x n`` one-shot grid with the given bumps."""
    from crowdsteer.config import build_game, load_config

    if "suite" in spec:  # one of GAMES, the throughput table's games
        return make_game(GAMES[spec["suite"]])
    if "example" in spec:
        raw = load_config(common.REPO / "examples" / f"{spec['example']}.yaml").resolved()
        game = raw["game"]
        if "kind" in spec:
            game["congestion"] = {"kind": spec["kind"], "strength": 1.0}
    else:
        game = {"name": "crowd", "height": spec["n"], "width": spec["n"], "horizon": 1,
                "moves": "any", "desirability": {"bumps": spec["bumps"]},
                "congestion": {"kind": spec["kind"], "strength": 1.0}}
    return build_game(load_config({"game": game}))


def run_honesty(case: dict) -> dict:
    """One learner, default stopping rule, N = 2000, seed 0: what it says against the
    certificate; for fictitious_play also where the estimate-based rule would stop."""
    from crowdsteer.learners.base import learners
    from crowdsteer.objectives import kl_floor

    game = honesty_game(case["game"])
    name, tau, N = case["learner"], case["tau"], 2000
    builder = learners.get(name)

    def solve(**kw):
        return builder(builder.config(agents=N, temperature=tau, **kw)).solve(
            game, rng=np.random.default_rng(0))

    t0 = time.perf_counter()
    sol = solve()
    out = {"S": game.S, "A": game.A, "T": game.T, "iterations": sol.iterations,
           "converged": sol.converged, "exploitability": sol.exploitability,
           "estimate": sol.estimate, "last_change": float(sol.history[-1]),
           "tolerance": kl_floor(game.S, N, game.T), "seconds": time.perf_counter() - t0,
           "agent_steps": sol.iterations * N * game.T}
    if name == "fictitious_play":
        below = np.asarray(sol.history) <= out["tolerance"]
        runs = np.convolve(below, np.ones(OLD_PATIENCE), "valid") >= OLD_PATIENCE
        if runs.any():  # the estimate rule would have stopped after round k
            k = int(np.argmax(runs)) + OLD_PATIENCE
            old = solve(max_iterations=k)  # same seed, same rounds: its pi_bar at round k
            out["old_stop"] = {"iterations": k, "estimate": float(sol.history[k - 1]),
                               "exploitability": old.exploitability}
    return out


def available() -> dict[str, str | None]:
    """Which learners import; ``None`` if fine, else the reason."""
    out: dict[str, str | None] = {}
    for name, module in LEARNERS.items():
        try:
            importlib.import_module(module)
            from crowdsteer.learners.base import learners

            learners.get(name)
            out[name] = None
        except Exception as err:  # noqa: BLE001 (reported in the section)
            out[name] = f"{type(err).__name__}: {err}"
    return out


def make_learner(name: str, **fields):
    """``learners.get(name)(Config(**fields))``, passing only fields the config declares."""
    importlib.import_module(LEARNERS[name])
    from crowdsteer.learners.base import learners

    builder = learners.get(name)
    cfg_cls = builder.config
    known = {k: v for k, v in fields.items() if k in cfg_cls.model_fields}
    return builder(cfg_cls(**known)), sorted(known)


def run_case(case: dict) -> dict:
    if case.get("kind") == "honesty":
        return run_honesty(case)
    game = make_game(case["game"])
    N = case["agents"]
    name = case["learner"]
    make_learner(name, agents=N, max_iterations=1)  # import everything before the baseline
    common.limit_torch_threads()
    rss_base = common.peak_rss_mib()

    def solve(iterations: int):
        """One solve; also the time per round inside the loop (progress-callback stamps),
        which leaves out the set-up and the final exploitability certificate."""
        learner, used = make_learner(name, agents=N, max_iterations=iterations,
                                     tolerance=1e-300)
        stamps: list[tuple[int, float]] = []
        c0 = time.process_time()
        sol = learner.solve(game, rng=np.random.default_rng(0),
                            progress=lambda k, _: stamps.append((k, time.perf_counter())))
        solve.cpu = time.process_time() - c0  # type: ignore[attr-defined]
        (k0, t0), (k1, t1) = stamps[0], stamps[-1]
        loop = (t1 - t0) / (k1 - k0) if k1 > k0 else sol.seconds / sol.iterations
        return sol, used, loop

    from crowdsteer.errors import ConfigError

    try:
        sol, used, loop = solve(3)  # warm-up and first estimate
    except ConfigError as err:  # a learner refusing a size it cannot hold
        return {"S": game.S, "A": game.A, "T": game.T, "refused": str(err),
                "rss_base_mib": rss_base}
    overhead = max(sol.seconds - loop * sol.iterations, 0.0)
    iterations = int(np.clip(case["budget_s"] / loop, 3, 1000))  # rounds lasting ~budget_s
    runs = []

    def once() -> float:
        s, _, loop_s = solve(iterations)
        runs.append((s.iterations, s.seconds, loop_s, solve.cpu))  # type: ignore[attr-defined]
        return s.seconds / s.iterations

    secs = common.repeat_timing(once, case["repeats"])
    best = min(runs, key=lambda r: r[1] / r[0])
    out = {"S": game.S, "A": game.A, "T": game.T, "config_fields": used,
           "iterations": best[0], "s_per_iter": common.summary(secs),
           "agent_steps_per_s": N * game.T * best[0] / best[1],
           "agent_steps_per_cpu_s": max(N * game.T * r[0] / r[3] for r in runs),
           "loop_s_per_round": min(r[2] for r in runs),
           "agent_steps_per_s_loop": N * game.T / min(r[2] for r in runs),
           "overhead_s": overhead, "rss_base_mib": rss_base,
           "rss_solve_mib": common.peak_rss_mib()}
    learner, _ = make_learner(name, agents=N, max_iterations=2, tolerance=1e-300)
    tracemalloc.start()
    try:
        learner.solve(game, rng=np.random.default_rng(0))
        out["tracemalloc_mib"] = tracemalloc.get_traced_memory()[1] / common.MIB
    finally:
        tracemalloc.stop()
    return out


# --------------------------------------------------------------------------- the suite


def plan(quick: bool, names: list[str]) -> list[dict]:
    knobs = ({"budget_s": 0.3, "repeats": 1} if quick else {"budget_s": 2.0, "repeats": 3})
    return [{"learner": n, "game": g, "agents": N, **knobs}
            for n in names for g in GAMES for N in (QUICK_AGENTS if quick else AGENTS[n])]


def run_suite(opts) -> str:
    started = time.perf_counter()
    info = common.machine_info()
    status = available()
    names = [n for n, err in status.items() if err is None]
    results = []
    for case in plan(opts.quick, names):
        label = f"{case['learner']} {case['game']['id']} N={case['agents']:,}"
        print(f"[model_free] {label} ...", flush=True)
        res = common.run_worker("model_free.py", case)
        results.append((case, res))
        if "refused" in res:
            print(f"  refused: {res['refused']}", flush=True)
            continue
        print(f"  {res['agent_steps_per_s'] / 1e6:.2f} M agent-steps/s "
              f"({res['agent_steps_per_s_loop'] / 1e6:.2f} M in the rounds), tracemalloc "
              f"{res['tracemalloc_mib']:.1f} MiB, peak RSS {res['peak_rss_mib']:.0f} MiB "
              f"({res['wall_s']:.1f} s)", flush=True)
    honesty = []
    for learner, game, tau in HONESTY[:2] + HONESTY[4:6] if opts.quick else HONESTY:
        if learner not in names:
            continue
        case = {"kind": "honesty", "learner": learner, "game": game, "tau": tau}
        print(f"[model_free] stopping: {learner} {game['id']} tau={tau} ...", flush=True)
        res = common.run_worker("model_free.py", case)
        print(f"  {res['iterations']} rounds, converged {res['converged']}, exploitability "
              f"{res['exploitability']:.3g}, estimate {res['estimate']:.3g}", flush=True)
        honesty.append((case, res))
    knobs = plan(opts.quick, list(LEARNERS))[0]
    note = (f"seconds per iteration = min (and median) over {knobs['repeats']} solves of a "
            f"fixed number of iterations lasting about {knobs['budget_s']} s each "
            "(`tolerance` set to 1e-300 so the stopping rule does not end them early); a solve's "
            "time includes its final model-based exploitability certificate")
    return (render(results, status, opts.command, info, started, note, opts.quick)
            + render_honesty(honesty))


def render_honesty(rows) -> str:
    """The stopping-rule table: what each learner says against the certificate."""
    if not rows:
        return ""
    table = []
    for case, r in rows:
        old = r.get("old_stop")
        before = BEFORE.get((case["learner"], case["game"]["id"]))
        table.append([
            case["learner"], case["game"]["id"], f"{case['tau']:g}",
            f"{r['S']} x {r['A']} x {r['T']}", f"{r['tolerance']:.3g}", r["iterations"],
            "yes" if r["converged"] else "**no**", f"{r['exploitability']:.3g}",
            f"{r['estimate']:.3g}", f"{r['exploitability'] / max(r['estimate'], 1e-300):.2g}",
            f"{r['last_change']:.3g}" if case["learner"] == "independent" else "-",
            "-" if old is None else f"{old['iterations']}: estimate {old['estimate']:.3g}, "
                                    f"certified {old['exploitability']:.3g}",
            "-" if before is None else f"{before[0]}, {'yes' if before[1] else 'no'}, "
                                       f"{before[2]:.3g}",
            f"{r['seconds']:.1f}"])
    return "\n".join([
        "", "### Stopping: do the learners stop where they say?", "",
        "Each learner with its defaults (`agents: 2000`, seed 0, default `tolerance` "
        "`T (S - 1) / (2 N)`), which now stop on the exploitability certified with the model "
        "every `check_every` = 5 rounds. *certified* is that certificate of the returned "
        "policy, *estimate* the learner's own model-free estimate of it (fictitious_play: "
        "the gap on its pooled reward estimates; independent: the gap on the agents' mean "
        "values). For fictitious_play, *estimate rule* is where the rule before this "
        "change (estimate at most the tolerance 5 rounds in a row) would have stopped and "
        "the certificate of its policy there; for independent, *policy change* is the last "
        "round's agent-weighted TV between consecutive population policies (the rule before "
        "stopped when it fell to 1e-3). *before* is the same case on commit f74072d "
        "(before these stopping rules; a historical measurement, not re-run): rounds, "
        "whether it said it converged, and its certified exploitability.", "",
        common.md_table(["learner", "game", "tau", "S x A x T", "tolerance", "rounds",
                         "converged", "certified", "estimate", "certified / estimate",
                         "policy change", "estimate rule: round, estimate, certified",
                         "before (f74072d): rounds, converged, certified", "seconds"], table),
        ""])


def render(results, status, command, info, started, note, quick) -> str:
    title = "## Model-free learners" + (" (quick run)" if quick else "")
    parts = [title, "", common.provenance(command, info, started, note), ""]
    missing = {n: err for n, err in status.items() if err is not None}
    if missing:
        parts += ["**TODO**: not benchmarked because the learner is not available yet (re-run "
                  "`.venv/bin/python benchmarks/run.py --only model_free` once it exists):", ""]
        parts += [f"- `{n}` (`{LEARNERS[n]}`): {err}" for n, err in missing.items()]
        parts.append("")
    if not results:
        return "\n".join(parts) + "\n"
    parts += [
        "Learners built as `learners.get(name)(Config(agents=N, max_iterations=k, "
        "tolerance=1e-300))` and run as `solve(game, rng=np.random.default_rng(0))`. Games: the "
        "crowd game with the solver suite's desirability and kernel congestion; `T1 any` is "
        "one-shot (A = S = 100), `T3 local` has horizon 3 and 5 moves. "
        "agent-steps / s = N * T * iterations / seconds of the whole solve (set-up, rounds, "
        "final certificate); the rounds-only rate is timed between the progress callbacks "
        "after round 1 and after round k (rounds 2..k), and the fixed cost is the rest of a "
        "3-round solve: set-up, round 1 (which first touches freshly allocated tables; for "
        "per-agent tables that is O(N T S A) page zeroing) and the final model-based "
        "exploitability.",
        "",
    ]
    rows = []
    for case, res in results:
        naive = case["agents"] * res["T"] * res["S"] * res["A"] * 8 / common.MIB
        if "refused" in res:
            rows.append([case["learner"], case["game"]["id"], f"{case['agents']:,}",
                         "refused: " + res["refused"].split(";")[0]] + ["-"] * 9
                        + [f"{naive:,.0f}"])
            continue
        spi = res["s_per_iter"]
        rows.append([case["learner"], case["game"]["id"], f"{case['agents']:,}",
                     res["iterations"],
                     f"{common.fmt_time(spi['min'])} ({common.fmt_time(spi['median'])})",
                     f"{res['agent_steps_per_s'] / 1e6:.2f} M",
                     f"{res['agent_steps_per_s_loop'] / 1e6:.2f} M",
                     f"{res['agent_steps_per_cpu_s'] / 1e6:.2f} M",
                     common.fmt_time(res["overhead_s"]),
                     common.fmt_mib(res["tracemalloc_mib"]), common.fmt_mib(res["rss_base_mib"]),
                     common.fmt_mib(res["peak_rss_mib"]),
                     common.fmt_mib(res["peak_rss_mib"] - res["rss_base_mib"]),
                     f"{naive:,.0f}"])
    parts.append(common.md_table(
        ["learner", "game", "N", "iterations", "s / iteration: min (median)",
         "agent-steps / s (whole solve)", "agent-steps / s (rounds only)",
         "agent-steps / CPU s (whole solve)",
         "fixed cost per solve (set-up, round 1, certificate)",
         "tracemalloc peak (2 iterations), MiB", "RSS after imports + game, MiB",
         "peak RSS, MiB", "RSS growth, MiB", "N x T x S x A float64 would be, MiB"], rows))
    parts += ["", "Memory per agent, a straight line through the tracemalloc peaks of the two "
              "largest N each learner accepts. A learner whose memory grows like N + T S A "
              "spends a few dozen bytes per agent (its state, action and landing arrays) and "
              "far below one byte per agent per (t, s, a); one that keeps a table per agent "
              "spends a few bytes per agent per entry (`independent`: float32 values + uint8 "
              "counts = 5).", ""]
    for learner in sorted({c["learner"] for c, _ in results}):
        for game in GAMES:
            pts = sorted((c["agents"], r["tracemalloc_mib"]) for c, r in results
                         if c["learner"] == learner and c["game"]["id"] == game["id"]
                         and "refused" not in r)
            if len(pts) < 2:
                continue
            (n1, m1), (n2, m2) = pts[-2], pts[-1]
            per_agent = (m2 - m1) * common.MIB / (n2 - n1)
            fixed = m2 - per_agent * n2 / common.MIB
            S, A = next(r["S"] for c, r in results if c["game"]["id"] == game["id"]), \
                next(r["A"] for c, r in results if c["game"]["id"] == game["id"])
            TSA = game["T"] * S * A
            parts.append(f"- `{learner}`, {game['id']} (N = {n1:,} to {n2:,}): {per_agent:,.0f} "
                         f"bytes per agent + {fixed:.1f} MiB independent of N, i.e. "
                         f"{per_agent / TSA:.3g} bytes per agent per (t, s, a) entry "
                         f"(T S A = {TSA:,})")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    common.worker_main(run_case)
