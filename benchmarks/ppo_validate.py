"""Fresh-seed KL of one w on the PPO agents of examples/ppo.yaml, beside the mean-field optimum.

``python benchmarks/ppo_validate.py W0 W1 ...`` re-solves the game modified at ``w`` from
scratch on 3 validation seeds (``SeedSequence([seed, 1_000_000 + k])``, never used while
tuning: the meta-agent's own ``validation``) and prints J (the KL of the agents' histogram
to the target) on each, their mean, and the KL that fully rational agents (the exact
learner) reach at the same ``w``. Used when a whole ``benchmarks/run.py --only ppo`` run
does not fit the time at hand (BENCHMARKS.md says which numbers came from it).
"""

from __future__ import annotations

import json
import sys
import time

import common

if __name__ == "__main__":
    common.pin_threads()
    import numpy as np

    from crowdsteer import load_config
    from crowdsteer.metaagent.evaluation import setup
    from crowdsteer.metaagent.results import at_mean_field, validate

    w = np.array([float(x) for x in sys.argv[1:]])
    s = setup(load_config(common.REPO / "examples" / "ppo.yaml"))
    t0, cpu = time.perf_counter(), time.process_time()
    fresh = validate(s, w, 3)
    print(json.dumps({"w": w.tolist(), "fresh_seed": fresh, "mean_field": at_mean_field(s, w),
                      "seconds": time.perf_counter() - t0,
                      "cpu_seconds": time.process_time() - cpu}))
