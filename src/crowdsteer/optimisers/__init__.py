"""The meta-agent's black-box optimisers: Optuna samplers behind one ask/tell study.

``bo`` (default) is Optuna's ``GPSampler``: a Gaussian-process prior (Matern 5/2 with
automatic relevance determination), noise learned from the data
(``deterministic_objective=False``) and log expected improvement, i.e. noise-aware
Bayesian optimisation. ``cmaes`` is CMA-ES, ``tpe`` the tree-structured Parzen
estimator, ``random`` uniform sampling in the box.

A fresh sampler, seeded from the run's seed and the trial number, is made for every
ask: the samplers keep their state in the study itself (CMA-ES in trial system
attributes), so a resumed run asks exactly what an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Literal

import numpy as np
import optuna
from pydantic import Field

from crowdsteer.config_base import Strict
from crowdsteer.registry import Registry

optuna.logging.set_verbosity(optuna.logging.ERROR)  # J ties make the GP fit log noise

Constraints = Callable[[optuna.trial.FrozenTrial], Sequence[float]] | None


class OptimiserConfig(Strict):
    """The ``optimiser`` section."""

    name: Literal["auto", "gradient", "bo", "cmaes", "tpe", "random"] = "auto"
    """``auto`` (default): ``gradient`` where hypergradients exist (the exact learner at a
    temperature > 0 on a known game, objective kl or welfare), ``bo`` elsewhere;
    ``gradient``: L-BFGS-B on exact gradients through the equilibrium; ``bo``: GP +
    noise-aware expected improvement; ``cmaes``; ``tpe``; ``random``."""
    evaluations: Annotated[int, Field(gt=0)] = 40
    """Evaluations after the baseline (w = 0)."""
    initial: Annotated[int, Field(ge=1)] = 8
    """Random evaluations before the model takes over."""
    batch: Annotated[int, Field(gt=0)] = 1
    """``q``: candidates asked and evaluated together."""
    warm_starts: bool = True
    """Start each equilibrium solve from the one at the closest ``w`` already solved in the
    same process (learners with ``init``); J then agrees with a cold start to within the
    learner's tolerance. ``false``: every solve starts cold, so a resumed run repeats an
    uninterrupted one bit for bit."""
    validation: Annotated[int, Field(ge=0)] | None = None
    """``M``: at the end, re-evaluate the baseline and the best ``w`` on ``M`` fresh seeds
    (never used in tuning); default 10 for model-free learners, 0 for the exact one (its
    equilibrium does not depend on a seed)."""
    repeats: Annotated[int, Field(gt=0)] = 1
    """``r``: seeds J is averaged over at each w (its spread is kept)."""
    storage: str | None = None
    """SQLAlchemy URL of the study (default: ``sqlite:///DIR/study.db``, the run folder's own)."""
    study: Annotated[str, Field(min_length=1, max_length=512)] | None = None
    """Name of the study in ``storage`` (default: ``crowdsteer`` in the run folder's own
    study.db, the run folder's name in a shared ``storage``)."""
    timeout: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    """Seconds one inner solve (one of the ``repeats`` of an evaluation) may take; past it
    the evaluation is recorded as failed ("timed out after N s") and the run goes on."""
    require_convergence: bool = True
    """Count an evaluation whose inner loop did not converge within ``max_iterations`` as
    failed (recorded with the reason; the optimiser is told it was bad)."""
    constraint: Literal["budget"] | None = None
    """``budget``: require net transfers <= 0 as an optimiser constraint (bo, tpe)."""


samplers: Registry[Callable[..., optuna.samplers.BaseSampler]] = Registry("optimiser")


@samplers.register("bo")
def _bo(cfg: OptimiserConfig, seed: int, constraints: Constraints) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=cfg.initial,
                                     deterministic_objective=False, constraints_func=constraints)


@samplers.register("cmaes")
def _cmaes(cfg: OptimiserConfig, seed: int, constraints: Constraints) -> optuna.samplers.BaseSampler:
    return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=cfg.initial,
                                        warn_independent_sampling=False)


@samplers.register("tpe")
def _tpe(cfg: OptimiserConfig, seed: int, constraints: Constraints) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.initial,
                                      constraints_func=constraints)


@samplers.register("random")
def _random(cfg: OptimiserConfig, seed: int, constraints: Constraints) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


def make_sampler(cfg: OptimiserConfig, seed: int, trial_number: int,
                 constraints: Constraints = None) -> optuna.samplers.BaseSampler:
    """The sampler for one ask, seeded by ``(seed, trial_number)``."""
    sub = int(np.random.SeedSequence([seed, trial_number]).generate_state(1)[0])
    return samplers.get(cfg.name, "optimiser.name")(cfg, sub, constraints)


def param_names(n: int) -> list[str]:
    """Parameter names in the study: ``w_0 .. w_{n-1}``."""
    return [f"w_{i}" for i in range(n)]


def distributions(n: int, bounds: tuple[float, float]) -> dict[str, optuna.distributions.FloatDistribution]:
    lo, hi = bounds
    return {name: optuna.distributions.FloatDistribution(lo, hi) for name in param_names(n)}
