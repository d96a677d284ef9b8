"""What one evaluation of ``w`` is: build everything from a config once, solve the modified
game, measure J.

:class:`Outcome` is what every evaluation reports (and what a user's own ``evaluate`` may
return); :func:`evaluate_once` is one inner solve with one seed; :func:`evaluate_task` is
the picklable entry point the executors run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crowdsteer.config import Config, build, build_game, load_config
from crowdsteer.equilibrium import state_before
from crowdsteer.errors import ConfigError, DivergenceError
from crowdsteer.games.base import theta_at
from crowdsteer.learners.base import Solution
from crowdsteer.objectives import ObjectiveConfig, Payoff, build as build_objective
from crowdsteer.optimisers import OptimiserConfig

Array = np.ndarray

@dataclass(frozen=True)
class Outcome:
    """One evaluation of ``w``: J and the diagnostics every trial keeps.

    Attributes
    ----------
    objective
        J, averaged over the repeats.
    objective_std
        Spread (standard deviation) of J over the repeats.
    exploitability
        Largest exploitability over the repeats (certificate of the inner solve).
    net_transfer
        Sum over agents and time of Theta paid out (mean field; <= 0 is budget-feasible).
    diagnostics
        Anything else worth keeping (numbers), e.g. from a user's own ``evaluate``.

    A user's own inner loop (:func:`optimise`) returns ``Outcome(objective=J)`` with any
    of the other fields it knows.
    """

    objective: float
    w: list[float] = field(default_factory=list)
    objective_std: float = 0.0
    kl: float | None = None
    welfare: float | None = None
    maxmin: float | None = None
    exploitability: float | None = None
    net_transfer: float | None = None
    seconds: float = 0.0
    converged: bool = True
    iterations: int = 0
    diagnostics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Setup:
    """Everything built from a config, once per process."""

    config: Config
    game: Any
    learner: Any
    modifier: Any
    objective: Payoff
    optimiser: OptimiserConfig
    tau: float


def setup(config: Config) -> Setup:
    game = build_game(config)
    learner = build(config, "learner")
    modifier = build(config, "modifier", game=game)
    obj_cfg = config["objective"] or ObjectiveConfig(name="welfare")
    objective = build_objective(obj_cfg, game, config.base_dir)
    opt = config["optimiser"] or OptimiserConfig()
    lo, hi = config["modifier"].bounds
    if not lo <= 0 <= hi:
        raise ConfigError("modifier.bounds", f"must contain 0 so that the agents left alone "
                          f"(w = 0) are the baseline; got [{lo}, {hi}]")
    return Setup(config, game, learner, modifier, objective, opt,
                 getattr(config["learner"], "temperature", 0.0))


def net_transfer(game: Any, sol: Solution, theta: Any) -> float:
    """``sum_t sum_{s,a} m_t(s) pi_t(s, a) Theta_t(s, a; mu_t)`` with ``m_t`` the mass before step t."""
    if hasattr(game, "net_transfer"):  # road networks: tolls per link, not a (T, S, A) table
        return game.net_transfer(sol, theta)
    before = state_before(game, sol.mu)
    total = 0.0
    for t in range(game.T):
        th = theta_at(theta, t, sol.mu[t], (game.S, game.A))
        total += float(np.sum(before[t][:, None] * sol.pi[t] * th))
    return total


def solve_at(s: Setup, w: Array, repeat: int) -> Solution:
    """One inner solve at ``w`` with the seed of ``repeat`` (shared by every ``w``)."""
    rng = np.random.default_rng(np.random.SeedSequence([s.config.seed, repeat]))
    return s.learner.solve(s.game, s.modifier.theta(w), rng=rng)


@dataclass(frozen=True)
class Sample:
    """One inner solve at ``w`` with one seed (one repeat)."""

    objective: float
    kl: float | None
    welfare: float
    maxmin: float
    exploitability: float
    net_transfer: float
    seconds: float
    converged: bool
    iterations: int


def evaluate_once(s: Setup, w: Array, repeat: int) -> Sample:
    """Solve the game modified at ``w`` with the seed of ``repeat`` and measure J.

    Raises
    ------
    DivergenceError
        The inner loop produced NaN or overflow, or (with ``require_convergence``) did not
        converge within ``max_iterations``.
    """
    start = time.perf_counter()
    w = np.asarray(w, dtype=float)
    theta = s.modifier.theta(w)
    with np.errstate(over="raise", invalid="raise", divide="ignore"):
        try:
            sol = solve_at(s, w, repeat)
        except FloatingPointError as exc:
            raise DivergenceError(f"the inner loop overflowed ({exc})") from None
    rng = np.random.default_rng(np.random.SeedSequence([s.config.seed, repeat, 1]))
    m = s.objective.measure(s.game, sol, s.tau, rng)
    if not np.isfinite(m.objective):
        raise DivergenceError("the objective is NaN or infinite")
    if s.optimiser.require_convergence and not sol.converged:
        raise DivergenceError(f"no convergence within max_iterations = {sol.iterations} "
                              f"(exploitability {sol.exploitability:.3g})")
    return Sample(m.objective, m.kl, m.welfare, m.maxmin, sol.exploitability,
                  net_transfer(s.game, sol, theta), time.perf_counter() - start,
                  sol.converged, sol.iterations)


def combine(w: Array, samples: list[Sample]) -> Outcome:
    """Average the repeats of one ``w`` (worst exploitability, spread of J kept)."""
    values = [x.objective for x in samples]
    kls = [x.kl for x in samples]
    return Outcome(
        w=[float(v) for v in w], objective=float(np.mean(values)),
        objective_std=float(np.std(values)),
        kl=None if kls[0] is None else float(np.mean(kls)),
        welfare=float(np.mean([x.welfare for x in samples])),
        maxmin=float(np.mean([x.maxmin for x in samples])),
        exploitability=float(max(x.exploitability for x in samples)),
        net_transfer=float(np.mean([x.net_transfer for x in samples])),
        seconds=float(sum(x.seconds for x in samples)),
        converged=all(x.converged for x in samples),
        iterations=int(max(x.iterations for x in samples)))


_CACHE: dict[str, Setup] = {}


def evaluate_task(task: tuple[dict[str, Any], str, list[float], int]) -> Sample:
    """Picklable entry point for executors: ``(resolved config, base_dir, w, repeat)``."""
    raw, base_dir, w, repeat = task
    key = json.dumps(raw, sort_keys=True) + base_dir
    if key not in _CACHE:
        _CACHE[key] = setup(load_config(raw, Path(base_dir)))
    return evaluate_once(_CACHE[key], np.asarray(w), repeat)


