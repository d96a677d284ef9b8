"""The PettingZoo and Gymnasium adapters: seconds per step, dict-per-agent against arrays.

``crowdsteer.envs.parallel_env`` speaks PettingZoo's dicts (one entry per agent for
actions, observations, rewards, terminations, truncations and infos);
``crowdsteer.envs.vector_env`` takes and returns ``(N,)`` arrays. Both call the same
vectorised population step, so the difference is the cost of the dicts. Each
``(game, N)`` runs in a fresh single-threaded process; a step is timed alone (the reset
before it is not), and the minimum and median over the repeats are reported.

Columns: *PettingZoo step* is ``env.step(actions)`` with the actions dict built beforehand;
*+ dict conversion* adds what an array-based learner pays on top (actions array -> dict,
rewards dict -> array); *VectorEnv step* is ``env.step(actions)`` on an ``(N,)`` array.

Examples
--------
.venv/bin/python benchmarks/envs.py            # prints the markdown table
.venv/bin/python benchmarks/envs.py --quick    # one game, fewer repeats
"""

from __future__ import annotations

import common

common.pin_threads()

import argparse  # noqa: E402
import os  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

GAMES = (
    {"id": "crowd 10x10 T1 any (A = 100)", "config": "examples/oneshot.yaml"},
    {"id": "crowd 6x6 T3 local (A = 5)", "config": "examples/dynamic.yaml"},
)
AGENTS = (2_000, 200_000)


def repeats_for(N: int, quick: bool) -> int:
    return (3 if N > 10_000 else 10) if quick else (7 if N > 10_000 else 30)


def run_case(case: dict) -> dict:
    """Time one step of both adapters on ``case["config"]`` with ``case["agents"]`` agents."""
    import numpy as np

    from crowdsteer.config import load_config
    from crowdsteer.envs import parallel_env, vector_env

    cfg = load_config(common.REPO / case["config"])
    N, repeats = case["agents"], case["repeats"]
    w = np.full(6, 0.1)  # the examples' power_series, order 2: the modifier is applied
    par = parallel_env(cfg, agents=N, w=w)
    vec = vector_env(cfg, agents=N, w=w)
    game = par.game
    rng = np.random.default_rng(0)
    allowed = np.ones((game.S, game.A), bool) if game.allowed is None else game.allowed

    def actions_for(states):
        # a random allowed action per agent (uniform over the allowed ones)
        p = allowed[states] * rng.random((states.shape[0], game.A))
        return p.argmax(axis=1)

    par_s, conv_s, vec_s = [], [], []
    for r in range(repeats):
        par.reset(seed=r)
        a = actions_for(par.states)
        t0 = time.perf_counter()
        actions = dict(zip(par.agents, a.tolist()))
        t1 = time.perf_counter()
        _, rewards, *_ = par.step(actions)
        t2 = time.perf_counter()
        np.fromiter(rewards.values(), float, N)
        t3 = time.perf_counter()
        par_s.append(t2 - t1)
        conv_s.append((t1 - t0) + (t3 - t2))

        obs, _ = vec.reset(seed=r)
        a = actions_for(obs[:, 0])
        t0 = time.perf_counter()
        vec.step(a)
        vec_s.append(time.perf_counter() - t0)
    return {"S": game.S, "A": game.A, "T": game.T, "parallel": common.summary(par_s),
            "conversion": common.summary(conv_s), "vector": common.summary(vec_s)}


def plan(quick: bool) -> list[dict]:
    games = GAMES[:1] if quick else GAMES
    return [{"game": g["id"], "config": g["config"], "agents": N,
             "repeats": repeats_for(N, quick)} for g in games for N in AGENTS]


def run_suite(opts) -> str:
    """Run every case in its own process; return the markdown section."""
    started = time.perf_counter()
    info = common.machine_info()
    results = []
    for case in plan(opts.quick):
        print(f"[envs] {case['game']} N={case['agents']:,} ...", flush=True)
        res = common.run_worker("envs.py", case)
        results.append((case, res))
        print(f"  PettingZoo {common.fmt_time(res['parallel']['min'])}, VectorEnv "
              f"{common.fmt_time(res['vector']['min'])} per step", flush=True)
    note = ("one step timed per repeat (min and median over "
            + ", ".join(sorted({str(c["repeats"]) for c, _ in results})) + " repeats, each "
            "after a fresh seeded reset); the modifier (power_series, 6 weights) is applied")
    return render(results, opts.command, info, started, note, opts.quick)


def render(results, command, info, started, note, quick) -> str:
    title = "## PettingZoo and Gymnasium adapters" + (" (quick run)" if quick else "")
    parts = [title, "", common.provenance(command, info, started, note), ""]
    rows = []
    for case, res in results:
        p, c, v = res["parallel"], res["conversion"], res["vector"]
        full = [a + b for a, b in zip(p["all"], c["all"])]
        rows.append([
            case["game"], f"{case['agents']:,}",
            f"{common.fmt_time(p['min'])} ({common.fmt_time(p['median'])})",
            f"{common.fmt_time(min(full))} ({common.fmt_time(statistics.median(full))})",
            f"{common.fmt_time(v['min'])} ({common.fmt_time(v['median'])})",
            common.fmt_ratio(p["min"] / v["min"]),
            f"{case['agents'] / v['min'] / 1e6:.1f}",
        ])
    parts.append(common.md_table(
        ["game", "N", "PettingZoo step, min (median)", "+ dict conversion",
         "VectorEnv step, min (median)", "PettingZoo / VectorEnv", "VectorEnv M agent-steps/s"],
        rows))
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one game, fewer repeats")
    opts = p.parse_args(argv)
    python = os.path.relpath(sys.executable, Path.cwd()) if sys.executable else "python"
    script = os.path.relpath(Path(__file__).resolve(), Path.cwd())
    opts.command = shlex.join([python, script, *(sys.argv[1:] if argv is None else argv)])
    print("\n" + run_suite(opts), flush=True)
    return 0


if __name__ == "__main__":
    if "--case" in sys.argv:
        common.worker_main(run_case)
    else:
        sys.exit(main())
