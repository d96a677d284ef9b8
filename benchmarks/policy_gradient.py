"""policy_gradient against fictitious_play: agent-steps to the tolerance, and steering.

``python benchmarks/policy_gradient.py`` prints

1. for examples/dynamic.yaml's and examples/oneshot.yaml's games, each learner's
   agent-steps (rounds x N x T) to its certified tolerance on seeds 0-4 (``agents: 2000``,
   ``temperature: 0.1``, defaults otherwise) and their median;
2. the meta-agent steering examples/oneshot.yaml with ``policy_gradient`` agents in place of
   its ``fictitious_play`` ones (same modifier, target and seed; the default optimiser,
   30 evaluations): how many evaluations converged, the fresh-seed KL of its best ``w``
   (10 validation seeds) and the wall time.

The numbers BENCHMARKS.md ("Policy-gradient learners") and the README quote.
"""

from __future__ import annotations

import statistics
import time

import common

if __name__ == "__main__":
    common.pin_threads()
    import numpy as np
    import yaml

    import crowdsteer
    from crowdsteer.config import build_game, load_config
    from crowdsteer.learners.base import learners

    examples = common.REPO / "examples"
    for name in ("dynamic", "oneshot"):
        raw = yaml.safe_load((examples / f"{name}.yaml").read_text())
        game = build_game(load_config({"game": raw["game"]}, base_dir=examples))
        for learner in ("fictitious_play", "policy_gradient"):
            build = learners.get(learner)
            steps = []
            for seed in range(5):
                sol = build(build.config(agents=2000, temperature=0.1)).solve(
                    game, rng=np.random.default_rng(seed))
                steps.append(sol.iterations * 2000 * game.T if sol.converged else None)
            shown = ", ".join("not converged" if s is None else f"{s // 1000}k" for s in steps)
            done = [s for s in steps if s is not None]
            median = f"{statistics.median(done) // 1000:.0f}k" if done else "-"
            print(f"{name}.yaml {learner}: {shown} (median {median})", flush=True)

    raw = yaml.safe_load((examples / "oneshot.yaml").read_text())
    raw["learner"] = {"name": "policy_gradient", "agents": 2000, "temperature": 0.1}
    raw["optimiser"] = {**raw.get("optimiser", {}), "evaluations": 30}
    start = time.perf_counter()
    r = crowdsteer.run(load_config(raw, base_dir=examples))
    fresh = r.best_validation["mean"] if r.best_validation else float("nan")
    print(f"steering oneshot.yaml with policy_gradient: {r.converged_evaluations} of "
          f"{r.evaluations} evaluations converged; fresh-seed KL of the best {fresh:.4f}; "
          f"{time.perf_counter() - start:.0f} s", flush=True)
