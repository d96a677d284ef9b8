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
    from crowdsteer.games.network import check_learner

    game = build_game(config)
    check_learner(game, config["learner"].name)
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


def solve_at(s: Setup, w: Array, repeat: int, init: Solution | None = None,
             theta: Any = None) -> Solution:
    """One inner solve at ``w`` with the seed of ``repeat`` (shared by every ``w``), warm-started
    from ``init`` (an earlier solution) when given."""
    rng = np.random.default_rng(np.random.SeedSequence([s.config.seed, repeat]))
    theta = s.modifier.theta(w) if theta is None else theta
    if init is None:
        return s.learner.solve(s.game, theta, rng=rng)
    return s.learner.solve(s.game, theta, rng=rng, init=init)


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


def evaluate_once(s: Setup, w: Array, repeat: int, init: Solution | None = None) -> Sample:
    """Solve the game modified at ``w`` with the seed of ``repeat`` and measure J.

    Raises
    ------
    DivergenceError
        The inner loop produced NaN or overflow, or (with ``require_convergence``) did not
        converge within ``max_iterations``.
    """
    return measured(s, w, repeat, init)[0]


def measured(s: Setup, w: Array, repeat: int,
             init: Solution | None = None) -> tuple[Sample, Solution, Any]:
    """:func:`evaluate_once` that also returns the solution and the modifier term."""
    start = time.perf_counter()
    w = np.asarray(w, dtype=float)
    theta = s.modifier.theta(w)
    with np.errstate(over="raise", invalid="raise", divide="ignore"):
        try:
            sol = solve_at(s, w, repeat, init, theta)
        except FloatingPointError as exc:
            raise DivergenceError(f"the inner loop overflowed ({exc})") from None
    rng = np.random.default_rng(np.random.SeedSequence([s.config.seed, repeat, 1]))
    m = s.objective.measure(s.game, sol, s.tau, rng)
    if not np.isfinite(m.objective):
        raise DivergenceError("the objective is NaN or infinite")
    if s.optimiser.require_convergence and not sol.converged:
        raise DivergenceError(f"no convergence within max_iterations = {sol.iterations} "
                              f"(exploitability {sol.exploitability:.3g})")
    sample = Sample(m.objective, m.kl, m.welfare, m.maxmin, sol.exploitability,
                    net_transfer(s.game, sol, theta), time.perf_counter() - start,
                    sol.converged, sol.iterations)
    return sample, sol, theta


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
        iterations=int(sum(x.iterations for x in samples)))


class WarmStarts:
    """The equilibria solved so far in this process, to start the next solve from the one at
    the closest ``w`` (``init=`` of the learner; ignored by learners without warm starts)."""

    def __init__(self, learner: Any, keep: int = 32, enabled: bool = True) -> None:
        import inspect

        try:
            takes_init = "init" in inspect.signature(learner.solve).parameters
        except (TypeError, ValueError):  # pragma: no cover
            takes_init = False
        self.enabled = enabled and takes_init
        self.keep = keep
        self._items: list[tuple[Array, int, Solution]] = []

    def closest(self, w: Array, repeat: int = 0) -> Solution | None:
        items = [(v, sol) for v, r, sol in self._items if r == repeat]
        if not self.enabled or not items:
            return None
        d = [float(np.sum((w - v) ** 2)) for v, _ in items]
        return items[int(np.argmin(d))][1]

    def add(self, w: Array, sol: Solution, repeat: int = 0) -> None:
        if self.enabled:
            self._items.append((np.array(w, dtype=float), repeat, sol))
            del self._items[:-self.keep]


_CACHE: dict[str, tuple[Setup, WarmStarts]] = {}
CACHED_RUNS = 4
"""Setups (and their warm starts) a process keeps: the runs it served most recently."""


def evaluate_task(task: tuple[dict[str, Any], str, list[float], int, str]) -> Sample:
    """Picklable entry point for executors: ``(resolved config, base_dir, w, repeat, run)``.

    The setup is built once per process and run; each evaluation starts from the
    equilibrium at the closest ``w`` this process has solved for the same run and repeat
    (``optimiser.warm_starts``), so the rounds of a search cost fewer inner iterations.
    """
    raw, base_dir, w, repeat, run_id = task
    key = f"{run_id}:{base_dir}:{json.dumps(raw, sort_keys=True)}"
    if key not in _CACHE:
        s = setup(load_config(raw, Path(base_dir)))
        _CACHE[key] = (s, WarmStarts(s.learner, enabled=s.optimiser.warm_starts))
        while len(_CACHE) > CACHED_RUNS:
            del _CACHE[next(iter(_CACHE))]
    s, warm = _CACHE[key]
    w = np.asarray(w, dtype=float)
    sample, sol, _ = measured(s, w, repeat, warm.closest(w, repeat))
    warm.add(w, sol, repeat)
    return sample
