"""One exact-solver iteration, timed in a fresh process on a given copy of the source.

The worker of the solver suite's "before and after" table: ``--case`` names a ``src``
directory (the current one, or the tree of ``BASELINE_REF`` extracted by ``git archive``)
that is put first on ``sys.path`` before ``crowdsteer`` is imported, so the same script
times today's code and the code before issue 10 on the same game.

Timed on the issue's game (100x100, T = 10, local moves, noise 0.1, log congestion 0.5):

* a whole ``omd`` iteration (``ExactSolver`` with ``max_iterations = k`` and an
  unreachable tolerance, seconds / k), at ``tau = 0`` and ``tau = 0.1``;
* its parts: the forward pass (mean field), the backward pass (policy evaluation) and
  the certificate's best response, each on a fixed random policy.
"""

from __future__ import annotations

import common

common.pin_threads()

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

BASELINE_REF = "f74072d"
"""``main`` before issue 10 (the commit the ``solver`` branch started from)."""


def _best(fn, repeats: int, number: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        c = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - c) / number)
    return best


def run_case(case: dict) -> dict:
    sys.path.insert(0, case["src"])
    import numpy as np

    import crowdsteer
    from convergence import ISSUE, make_game
    from crowdsteer.games.base import reward_table
    from crowdsteer.learners.exact import ExactConfig, ExactSolver

    if not crowdsteer.__file__.startswith(case["src"]):
        raise RuntimeError(f"imported {crowdsteer.__file__}, not the copy in {case['src']}")
    game = make_game(ISSUE)
    out: dict = {"file": crowdsteer.__file__}
    k, repeats = case["iterations"], case["repeats"]
    for tau in (0.0, 0.1):
        solver = ExactSolver(ExactConfig(method="omd", temperature=tau, tolerance=1e-300,
                                         max_iterations=k))
        out[f"iteration_tau{tau:g}"] = _best(lambda: solver.solve(game), repeats, 1) / k
    rng = np.random.default_rng(0)
    pi = rng.dirichlet(np.ones(game.A), size=(game.T, game.S))
    try:  # the solver's own passes (action-major), where they exist
        from crowdsteer.learners.passes import Passes, to_action_major

        p = Passes(game)
        pa = to_action_major(pi)
        mu, _ = p.forward(pa)
        R = p.table(mu)
        parts = {"forward": lambda: p.forward(pa), "rewards": lambda: p.table(mu),
                 "backward": lambda: p.evaluate(pa, R, 0.0),
                 "certificate": lambda: p.best_values(R, 0.0)}
        out["layout"] = "passes (T, A, S)"
    except ImportError:
        from crowdsteer.equilibrium import best_response, evaluate, mean_field

        mu = mean_field(game, pi)
        R = reward_table(game, mu)
        parts = {"forward": lambda: mean_field(game, pi), "rewards": lambda: reward_table(game, mu),
                 "backward": lambda: evaluate(game, pi, R, 0.0),
                 "certificate": lambda: best_response(game, R, 0.0)}
        out["layout"] = "equilibrium (T, S, A)"
    for name, fn in parts.items():
        out[name] = _best(fn, repeats, 5)
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(common.BENCH_DIR))
    # the case must be read before crowdsteer is imported: worker_main would import nothing
    # itself, but keep the order explicit
    case = json.loads(sys.argv[sys.argv.index("--case") + 1])
    res = run_case(case)
    res["peak_rss_mib"] = common.peak_rss_mib()
    print("RESULT " + json.dumps(res))
