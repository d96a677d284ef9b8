"""How the finite-``N`` game approaches its mean field as ``N`` grows.

For each ``N`` in ``finite_n.agents`` (and each of ``seeds`` seeds) two things are measured
against the exact mean-field equilibrium ``mu*`` of the same game:

* ``policy``: ``N`` agents playing the mean-field equilibrium policy ``pi*`` (evaluating a
  mean-field policy in the ``N``-player game): the total-variation distance of their
  empirical distribution from ``mu*``, which shrinks like ``1/sqrt(N)``;
* ``learner``: ``N`` agents learning with the chosen model-free learner: the distance of
  what they reach (their empirical distribution, and the mean field of their policy) from
  ``mu*``, and its exploitability.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crowdsteer.config import Config, FiniteNConfig  # FiniteNConfig re-exported
from crowdsteer.learners.exact import ExactConfig, ExactSolver
from crowdsteer.objectives import rollout


@dataclass(frozen=True)
class FiniteNRow:
    """Mean over seeds at one ``N``; distances are total variation, summed over steps."""

    agents: int
    policy_tv: float
    learner_tv_sample: float
    learner_tv_mean_field: float
    learner_exploitability: float
    seconds: float


def tv(p: np.ndarray, q: np.ndarray) -> float:
    return float(0.5 * np.abs(p - q).sum())


def study(config: Config) -> list[FiniteNRow]:
    """Run the finite-``N`` study of ``config`` (needs a ``finite_n`` section)."""
    import time

    from crowdsteer.config import build, build_game, validate_section

    spec: FiniteNConfig = config["finite_n"]
    game = build_game(config)
    tau = getattr(config["learner"], "temperature", 0.0)
    star = ExactSolver(ExactConfig(temperature=tau, tolerance=1e-9, max_iterations=20000)
                       ).solve(game)
    rows = []
    for N in spec.agents:
        raw = {"temperature": tau, **spec.learner, "agents": N}
        model = validate_section("learner", raw)
        learner = build(config.replace("learner", model), "learner")
        vals = []
        for k in range(spec.seeds):
            rng = np.random.default_rng(np.random.SeedSequence([config.seed, N, k]))
            start = time.perf_counter()
            sol = learner.solve(game, rng=rng)
            sample = sol.mu_sample if sol.mu_sample is not None else sol.mu
            vals.append((tv(rollout(game, star.pi, N, rng), star.mu), tv(sample, star.mu),
                         tv(sol.mu, star.mu), sol.exploitability, time.perf_counter() - start))
        m = np.mean(vals, axis=0)
        rows.append(FiniteNRow(N, *map(float, m)))
    return rows
