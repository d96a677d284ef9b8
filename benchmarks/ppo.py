"""Deep agents (``learner: {name: ppo}``) on the paper's dynamic game, examples/dynamic.yaml.

Two measurements at 2,000 agents, temperature 0.1 (issue 17, section 4):

* solve: one PPO solve from scratch per seed; its certified exploitability (the model's
  exploitability of the policy table the network induces) against the learners' tolerance
  ``T (S - 1) / (2 N)``, the rounds and the wall time of the solve (torch and TorchRL are
  imported before the clock starts; their import time is reported apart);
* steer: the meta-agent (``bo`` with ``warm_start: mean_field``, 30 evaluations,
  examples/ppo.yaml) steering the PPO agents: the mean-field optimum's J (the exact
  learner's best w, the warm start), the fresh-seed KL of the best w found on the PPO
  agents (``validation``: seeds never used in tuning) and their ratio, the share of
  evaluations that converged, and the wall time.

Run through ``benchmarks/run.py --only ppo`` (``--quick``: one seed, 5 evaluations).
Needs the ``[deep]`` extra; the suite skips itself without it.
"""

from __future__ import annotations

import csv
import importlib.util
import statistics
import tempfile
import time
from pathlib import Path

import common

SEEDS = (0, 1, 2)
EXAMPLES = common.REPO / "examples"


def solve_case(seed: int) -> dict:
    import numpy as np

    t0 = time.perf_counter()
    import torchrl  # noqa: F401
    import crowdsteer.envs  # noqa: F401
    imports = time.perf_counter() - t0
    from crowdsteer import load_config
    from crowdsteer.config import build_game
    from crowdsteer.learners.ppo import PPOConfig, PPOLearner
    from crowdsteer.objectives import kl_floor

    cfg = load_config(EXAMPLES / "ppo.yaml")
    game = build_game(cfg)
    learner = PPOLearner(cfg["learner"])
    cpu = time.process_time()
    sol = learner.solve(game, rng=np.random.default_rng(seed))
    cpu = time.process_time() - cpu  # CPU time: what the solve costs on a core of its own
    assert isinstance(cfg["learner"], PPOConfig)
    tol = kl_floor(game.S, cfg["learner"].agents, game.T)
    return {"seed": seed, "exploitability": sol.exploitability, "tolerance": tol,
            "rounds": sol.iterations, "seconds": sol.seconds, "converged": sol.converged,
            "estimate": sol.estimate, "imports": imports, "cpu_seconds": cpu}


def steer_case(evaluations: int) -> dict:
    import crowdsteer as cs
    from crowdsteer.config import parse_yaml

    raw = parse_yaml((EXAMPLES / "ppo.yaml").read_text())
    raw["optimiser"]["evaluations"] = evaluations
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        r = cs.run(raw, out=Path(tmp) / "run")
        seconds = time.perf_counter() - t0
        with open(Path(tmp) / "run" / "evaluations.csv") as f:
            rows = [row for row in csv.DictReader(f) if row.get("state", "COMPLETE") == "COMPLETE"]
    game = raw["game"]
    S, T, N = game["height"] * game["width"], game["horizon"], raw["learner"]["agents"]
    tol = T * (S - 1) / (2 * N)  # the learner's default tolerance
    expl = [float(row["exploitability"]) for row in rows]
    converged = [e <= tol for e in expl]
    return {"evaluations": evaluations, "mean_field_J": r.warm_start["objective"],
            "mean_field_seconds": r.warm_start["seconds"],
            "best_J": r.best.objective, "best_w": list(r.best.w),
            "fresh_seed_kl": r.best_validation["mean"] if r.best_validation else None,
            "fresh_seed_std": r.best_validation["std"] if r.best_validation else None,
            "baseline_fresh_kl": r.baseline_validation["mean"] if r.baseline_validation
            else None,
            "converged_share": (sum(converged) / len(converged)) if converged else None,
            "exploitability_median": statistics.median(expl) if expl else None,
            "exploitability_max": max(expl) if expl else None, "tolerance": tol,
            "seconds": seconds}


def run_case(case: dict) -> dict:
    if case["kind"] == "solve":
        return solve_case(case["seed"])
    return steer_case(case["evaluations"])


def run_suite(opts) -> str | None:
    if importlib.util.find_spec("torchrl") is None:
        print("[ppo] skipped: torchrl is not installed (pip install 'crowdsteer[deep]')")
        return None
    info = common.machine_info()
    started = time.perf_counter()
    seeds = SEEDS[:1] if opts.quick else SEEDS
    solves = []
    for seed in seeds:
        out = common.run_worker("ppo.py", {"kind": "solve", "seed": seed}, timeout=1800)
        print(f"[ppo] solve seed {seed}: {out}", flush=True)
        solves.append(out)
    steer = common.run_worker("ppo.py", {"kind": "steer", "evaluations": 5 if opts.quick
                                         else 30}, timeout=7200)
    print(f"[ppo] steer: {steer}", flush=True)
    rows = [[s["seed"], f"{s['exploitability']:.4f}", f"{s['tolerance']:.4f}",
             f"{s['exploitability'] / s['tolerance']:.2f}", s["rounds"],
             common.fmt_time(s["seconds"]), "yes" if s["converged"] else "no",
             f"{s['estimate']:.3f}"] for s in solves]
    solve_table = common.md_table(
        ["seed", "certified exploitability", "tolerance T(S-1)/(2N)", "ratio", "rounds",
         "solve time", "converged", "agents' own estimate"], rows)
    ratio = (steer["fresh_seed_kl"] / steer["mean_field_J"]
             if steer["fresh_seed_kl"] is not None else None)
    steer_table = common.md_table(
        ["evaluations", "mean-field optimum J", "fresh-seed KL of the best w (PPO agents)",
         "ratio", "KL at w = 0 (fresh seeds)", "converged evaluations",
         "exploitability median / max", "wall time"],
        [[steer["evaluations"], f"{steer['mean_field_J']:.4f}",
          f"{steer['fresh_seed_kl']:.4f} ± {steer['fresh_seed_std']:.4f}",
          "-" if ratio is None else f"{ratio:.3f}",
          "-" if steer["baseline_fresh_kl"] is None else f"{steer['baseline_fresh_kl']:.4f}",
          "-" if steer["converged_share"] is None else f"{steer['converged_share']:.0%}",
          f"{steer['exploitability_median']:.4f} / {steer['exploitability_max']:.4f}",
          common.fmt_time(steer["seconds"])]])
    times = [s["seconds"] for s in solves]
    return "\n".join([
        "## Deep agents: PPO on the dynamic game (issue 17, section 4)", "",
        common.provenance(opts.command, info, started,
                          "one solve per seed, each in a fresh subprocess (torch on 1 "
                          "thread, the learner's `threads`); one meta-agent run"),
        f"- torch/TorchRL import (not in the solve time): "
        f"{statistics.median(s['imports'] for s in solves):.1f} s", "",
        "examples/ppo.yaml (examples/dynamic.yaml with `learner: {name: ppo, agents: 2000, "
        "temperature: 0.1}`): each solve from scratch until the certificate meets the "
        "tolerance; target: at most 2x the tolerance, within 60 s.", "",
        solve_table, "",
        f"Solve time: min {common.fmt_time(min(times))}, median "
        f"{common.fmt_time(statistics.median(times))}.", "",
        "The meta-agent steering the PPO agents (`bo`, `warm_start: mean_field`, each "
        "evaluation warm-started from the network of the closest earlier w); target: the "
        "fresh-seed KL within 25% of the mean-field optimum's (ratio <= 1.25). The "
        "fresh-seed KL is measured on the agents' histogram, so it includes the sampling "
        "noise of 2,000 agents (about T(S-1)/(2N) = 0.026).", "",
        steer_table,
    ])


if __name__ == "__main__":
    common.pin_threads()
    common.worker_main(run_case)
