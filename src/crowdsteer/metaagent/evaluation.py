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
from crowdsteer.optimisers import OptimiserConfig, param_names

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
        Largest exploitability over the repeats (certificate of the inner solve: what one
        agent would gain by deviating alone; 0 at an equilibrium).
    converged
        Whether every repeat's inner solve reached its learner's tolerance (the certificate
        at most the tolerance). With ``require_convergence`` (the default) an evaluation that
        did not is kept and marked, and no optimiser takes it as a better J.
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
    """Everything built from a config, once per process (:func:`setup`).

    Attributes
    ----------
    game
        The game (``T``, ``S``, ``A``, ``mu0``, ``reward``, ...).
    learner
        The inner loop, ``learner.solve(game, theta, rng=...) -> Solution``.
    modifier
        ``modifier.theta(w)``, ``modifier.n_params``.
    objective
        ``objective.measure(game, solution, tau)``; ``objective.target`` ``(T, S)`` or
        ``None``.
    optimiser
        The ``optimiser`` section (defaults filled in).
    tau
        The learner's temperature.
    """

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
    if hasattr(game, "net_transfer") and config["modifier"].name != "tolls":
        raise ConfigError("modifier.name", f"{config['modifier'].name} does not steer a road "
                          "network (its travellers choose routes, not moves on a grid); "
                          "allowed here: tolls")
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

    An inner loop that did not reach its tolerance is measured all the same and says so
    (``converged``); with ``require_convergence`` the meta-agent treats it as infeasible
    (:func:`crowdsteer.metaagent.study.feasible`).

    Raises
    ------
    DivergenceError
        The inner loop produced NaN or overflow.
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
    sample = Sample(m.objective, m.kl, m.welfare, m.maxmin, sol.exploitability,
                    net_transfer(s.game, sol, theta), time.perf_counter() - start,
                    sol.converged, sol.iterations)
    return sample, sol, theta


def requires_convergence(opt: OptimiserConfig) -> bool:
    """``optimiser.require_convergence``, whose default (``None``) is on for every learner."""
    return opt.require_convergence is not False


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


Chain = list[tuple[int, list[float]]]
"""How an evaluation is warm-started: ``(trial number, w)`` of the earlier evaluations it
descends from, root first. The root was solved cold, each later one from the one before it,
and the evaluation itself from the last: any process can rebuild the same starting point."""


def takes_init(learner: Any) -> bool:
    """Whether ``learner.solve`` accepts ``init=`` (a warm start)."""
    import inspect

    try:
        return "init" in inspect.signature(learner.solve).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False


KEEP_BYTES = 512 * 2**20
"""Memory the warm starts of one run may hold in one process (about 50 solutions of a
100x100, T = 10 game with local moves; thousands of small ones)."""


class WarmStarts:
    """Equilibria solved for earlier evaluations, by trial number and repeat, so that the next
    solve starts from the one at the closest ``w`` (``init=`` of the learner).

    The closest earlier evaluation is chosen by the meta-agent's process from the study
    (:func:`lineage`), and each evaluation records which one it started from
    (``warm_from``), so the starting point is the same in every process and after a resume:
    a solution this process does not hold is solved again along its chain (cold at the
    root, then warm), exactly as it was first solved. A run therefore gives the same
    evaluations, bit for bit, serial or parallel, interrupted or not.
    """

    def __init__(self, learner: Any, keep_bytes: float = KEEP_BYTES,
                 enabled: bool = True) -> None:
        self.enabled = enabled and takes_init(learner)
        self.keep_bytes = keep_bytes
        self._items: dict[tuple[int, int], Solution] = {}
        self._bytes = 0

    def add(self, number: int, sol: Solution, repeat: int = 0) -> None:
        """Keep ``sol``; the oldest solutions go once they take more than ``keep_bytes``
        (the two newest always stay)."""
        if not self.enabled:
            return
        old = self._items.pop((number, repeat), None)
        if old is not None:
            self._bytes -= _size(old)
        self._items[(number, repeat)] = sol
        self._bytes += _size(sol)
        while self._bytes > self.keep_bytes and len(self._items) > 2:
            self._bytes -= _size(self._items.pop(next(iter(self._items))))

    def start(self, chain: Chain, repeat: int,
              solve: Any) -> Solution | None:
        """The solution at the end of ``chain`` (``None`` for an empty one or when disabled);
        the links this process does not hold are solved again with ``solve(w, init)``."""
        if not self.enabled or not chain:
            return None
        i = len(chain) - 1
        while i >= 0 and (chain[i][0], repeat) not in self._items:
            i -= 1
        sol = self._items[(chain[i][0], repeat)] if i >= 0 else None
        for number, w in chain[i + 1:]:
            sol = solve(np.asarray(w, dtype=float), sol)
            self.add(number, sol, repeat)
        return sol


def _size(sol: Solution) -> int:
    return sum(int(getattr(a, "nbytes", 0)) for a in (sol.pi, sol.mu, sol.dual, sol.mu_sample,
                                                       getattr(sol, "params", None)))


def trial_w(trial: Any, n: int) -> list[float]:
    """The ``w`` a trial (an Optuna ``FrozenTrial``) evaluated: its ``w`` attribute (written
    whole, in one transaction, by :func:`crowdsteer.metaagent.study.record`) or else its
    Optuna parameters."""
    w = trial.user_attrs.get("w")
    if w is not None:
        return [float(v) for v in w]
    return [trial.params[k] for k in param_names(n)]


def lineage(sources: list[Any], w: Any, n: int) -> tuple[int, Chain]:
    """The earlier evaluation to warm-start ``w`` from: the closest ``w`` among ``sources``
    (finished trials; failed ones are skipped), with its chain of ``warm_from`` links.
    ``(-1, [])`` when there is none."""
    ok = [t for t in sources if not t.user_attrs.get("failed") and t.value is not None]
    if not ok:
        return -1, []
    ws = np.array([trial_w(t, n) for t in ok], dtype=float)
    src = ok[int(np.argmin(np.sum((ws - np.asarray(w, dtype=float)) ** 2, axis=1)))]
    by_number = {t.number: t for t in ok}
    chain: Chain = []
    t = src
    while t is not None:
        chain.append((t.number, trial_w(t, n)))
        parent = t.user_attrs.get("warm_from", -1)
        t = by_number.get(parent) if parent is not None and parent < t.number else None
    chain.reverse()
    return src.number, chain


_CACHE: dict[str, tuple[Setup, WarmStarts]] = {}
CACHED_RUNS = 4
"""Setups (and their warm starts) a process keeps: the runs it served most recently."""


def evaluate_task(task: tuple[Any, ...]) -> Sample:
    """Picklable entry point for executors: ``(resolved config, base_dir, w, repeat, run)``
    or ``(..., run, (number, chain))`` with warm starts: ``number`` is the trial being
    evaluated and ``chain`` (see :data:`Chain`) the earlier evaluations it starts from.

    The setup is built once per process and run; so are the solutions kept for warm starts
    (``optimiser.warm_starts``), which make the rounds of a search cost fewer inner
    iterations without changing what they return.
    """
    raw, base_dir, w, repeat, run_id, *warm_args = task
    key = f"{run_id}:{base_dir}:{json.dumps(raw, sort_keys=True)}"
    if key not in _CACHE:
        s = setup(load_config(raw, Path(base_dir)))
        _CACHE[key] = (s, WarmStarts(s.learner, enabled=s.optimiser.warm_starts))
        while len(_CACHE) > CACHED_RUNS:
            del _CACHE[next(iter(_CACHE))]
    s, warm = _CACHE[key] = _CACHE.pop(key)  # served now: the last to go
    w = np.asarray(w, dtype=float)
    number, chain = warm_args[0] if warm_args and warm_args[0] else (-1, [])
    init = warm.start(chain, repeat, lambda v, i: solve_at(s, v, repeat, i))
    sample, sol, _ = measured(s, w, repeat, init)
    if number >= 0:
        warm.add(number, sol, repeat)
    return sample
