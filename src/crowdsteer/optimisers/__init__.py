"""The meta-agent's black-box optimisers: Optuna samplers behind one ask/tell study.

``bo`` (what ``auto`` picks where no hypergradient exists) is the black-box search of
:mod:`~crowdsteer.optimisers.trust_region`: ``2 d`` probes around the baseline ``w = 0``,
Gaussian-process expected-improvement steps while they improve, and derivative-free local
runs (COBYQA) from the best point once they stall. It reaches the issue-9 targets on 15
weights as a black box (BENCHMARKS.md, "Black-box optimisers"); the global GP alone, which
spends a high-dimensional budget far from the baseline, is ``gp`` (Optuna's
``GPSampler``: Matern 5/2 with automatic relevance determination, noise learned from the
data, log expected improvement). ``cmaes`` is CMA-ES from ``x0`` with step ``radius``
(:mod:`~crowdsteer.optimisers.cma`), ``tpe`` the tree-structured Parzen estimator,
``random`` uniform sampling in the box.

A fresh sampler, seeded from the run's seed and the evaluation's index, is made for every
ask. No sampler keeps state outside the study: Optuna's keep theirs in it, ``bo`` and
``cmaes`` derive theirs from the study's finished trials by replaying their (deterministic)
algorithm (:mod:`~crowdsteer.optimisers.replay`, cached between asks), so a resumed run asks
exactly what an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Literal

import numpy as np
import optuna
from pydantic import Field

from crowdsteer.config_base import Strict
from crowdsteer.optimisers import cma, trust_region
from crowdsteer.optimisers.replay import ReplaySampler, Search
from crowdsteer.registry import Registry

optuna.logging.set_verbosity(optuna.logging.ERROR)  # J ties make the GP fit log noise

Constraints = Callable[[optuna.trial.FrozenTrial], Mapping[str, float]] | None


class OptimiserConfig(Strict):
    """The ``optimiser`` section."""

    name: Literal["auto", "gradient", "bo", "gp", "cmaes", "tpe", "random"] = "auto"
    """``auto`` (default): ``gradient`` where hypergradients exist (the exact learner at a
    temperature > 0 on a known game, objective kl or welfare), ``bo`` elsewhere;
    ``gradient``: L-BFGS-B on exact gradients through the equilibrium; ``bo``: probes around
    the baseline, GP steps while they improve, then local COBYQA runs from the best point;
    ``gp``: global GP + noise-aware expected improvement; ``cmaes``; ``tpe``; ``random``."""
    evaluations: Annotated[int, Field(gt=0)] = 40
    """Evaluations after the baseline (w = 0)."""
    initial: Annotated[int, Field(ge=1)] = 8
    """Random evaluations before the model takes over (``gp``, ``tpe``; ``bo`` probes around
    the baseline instead)."""
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
    require_convergence: bool | None = None
    """Count only equilibria (default: on, for every learner). An evaluation whose inner
    loop did not reach its tolerance (certified exploitability above the learner's
    ``tolerance``) is kept, marked ``converged = False`` in evaluations.csv, result.json
    and the report, and treated as infeasible: never chosen as the best ``w``, told to
    every optimiser as no better than the worst converged J (with ``constraint: budget``
    also as a violated Optuna constraint). A run in which no evaluation converged says so
    and exits non-zero (3). ``false``: every evaluation counts, at equilibrium or not."""
    constraint: Literal["budget"] | None = None
    """``budget``: require net transfers <= 0 as an optimiser constraint (gp, tpe; ``bo``
    then runs as ``gp``)."""
    warm_start: Literal["mean_field"] | None = None
    """``mean_field`` (model-free learners): first solve the meta-problem on the exact
    learner with hypergradients (cheap), then start ``bo``/``cmaes`` at that ``w`` (as
    ``x0``) and search around it (``radius`` default: a tenth of the box's width)."""
    warm_start_evaluations: Annotated[int, Field(gt=0)] = 60
    """Exact evaluations of the mean-field warm start (not counted in ``evaluations``)."""
    x0: list[float] | None = None
    """Where ``bo`` and ``cmaes`` start searching (one value per parameter, inside the
    bounds); default: ``w = 0``. ``bo`` evaluates it right after the baseline, probes around
    it first and then keeps its GP steps within 3 ``radius`` of the best point (a local
    search around ``x0``: a warm start)."""
    radius: Annotated[float, Field(gt=0)] | None = None
    """How far from the start the first candidates go, in units of ``w``: ``bo``'s probe step
    and the initial trust-region radius of its local runs (default 10% of the bounds'
    width), CMA-ES's initial step size ``sigma0`` (default 1/6 of the width, Optuna's)."""


samplers: Registry[Callable[..., optuna.samplers.BaseSampler]] = Registry("optimiser")
"""``factory(cfg, seed, index, constraints) -> sampler``: ``seed`` is the run's, ``index`` the
evaluation the ask is for."""


def _index_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


@samplers.register("bo")
def _bo(cfg: OptimiserConfig, seed: int, index: int,
        constraints: Constraints) -> optuna.samplers.BaseSampler:
    if constraints is not None:  # the trust region has no constraint model: the GP has
        return _gp(cfg, seed, index, constraints)

    def algorithm(s: trust_region.TrustSearch) -> None:
        radius = min(0.1 if cfg.radius is None else cfg.radius / _mean_width(s.width), 1.0)
        # seeded with x0: a search around it (global steps within 3 radii of the best point)
        reach = 1.0 if cfg.x0 is None else 3 * radius
        s.settings = trust_region.Settings(radius=radius, reach=reach)
        trust_region.search(s, s.settings)

    return ReplaySampler(algorithm, trust_region.TrustSearch, seed, _index_seed(seed, index),
                         cfg.x0, key=("bo", cfg.radius), step=cfg.radius,
                         scale=0.1)


@samplers.register("gp")
def _gp(cfg: OptimiserConfig, seed: int, index: int,
        constraints: Constraints) -> optuna.samplers.BaseSampler:
    # constraints reach it as the trials' own (set_constraint's system attributes, written
    # when an evaluation is told): Optuna 5 deprecates constraints_func
    return optuna.samplers.GPSampler(seed=_index_seed(seed, index), n_startup_trials=cfg.initial,
                                     deterministic_objective=False)


@samplers.register("cmaes")
def _cmaes(cfg: OptimiserConfig, seed: int, index: int,
           constraints: Constraints) -> optuna.samplers.BaseSampler:
    def algorithm(s: Search) -> None:
        sigma = 1 / 6 if cfg.radius is None else cfg.radius / _mean_width(s.width)
        cma.search(s, sigma)

    return ReplaySampler(algorithm, Search, seed, _index_seed(seed, index), cfg.x0,
                         key=("cmaes", cfg.radius), step=cfg.radius, scale=1 / 6)


@samplers.register("tpe")
def _tpe(cfg: OptimiserConfig, seed: int, index: int,
         constraints: Constraints) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=_index_seed(seed, index), n_startup_trials=cfg.initial)


@samplers.register("random")
def _random(cfg: OptimiserConfig, seed: int, index: int,
            constraints: Constraints) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=_index_seed(seed, index))


def _mean_width(width: np.ndarray) -> float:
    return float(np.exp(np.mean(np.log(np.maximum(width, 1e-300)))))


def make_sampler(cfg: OptimiserConfig, seed: int, trial_number: int,
                 constraints: Constraints = None) -> optuna.samplers.BaseSampler:
    """The sampler for one ask: the run's ``seed`` and the index of the evaluation asked for.

    Samplers that keep state keep it in the study (Optuna's) or derive it from the study's
    finished trials (``bo``, ``cmaes``), so a resumed run asks what an uninterrupted one
    would.
    """
    return samplers.get(cfg.name, "optimiser.name")(cfg, seed, trial_number, constraints)


def param_names(n: int) -> list[str]:
    """Parameter names in the study: ``w_0 .. w_{n-1}``."""
    return [f"w_{i}" for i in range(n)]


def distributions(n: int, bounds: Sequence[float] | Sequence[Sequence[float]]
                  ) -> dict[str, optuna.distributions.FloatDistribution]:
    """The search box: ``bounds`` is one ``(lo, hi)`` for every weight, or ``n`` pairs."""
    box = np.broadcast_to(np.asarray(bounds, dtype=float).reshape(-1, 2), (n, 2))
    return {name: optuna.distributions.FloatDistribution(float(lo), float(hi))
            for name, (lo, hi) in zip(param_names(n), box)}
