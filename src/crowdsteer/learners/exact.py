"""The exact mean-field solver: model-based, vectorised over states and time.

Three algorithms, all alternating a forward pass (the mean field of the current policy)
with a backward pass (values and the (soft) best response), chosen by ``method``:

``auto`` (default)
    ``newton`` at temperatures ``tau < 1`` on games whose potential is concave in the
    mean field (crowd, routing) with a modifier that does not depend on the mean field,
    ``omd`` otherwise: the convergence suite of ``BENCHMARKS.md`` measures ``newton`` ahead
    there (up to 10x at ``tau = 1e-3``; at ``tau = 0`` the issue's 100x100 game in ~10 s
    against ~145 s) and ``omd`` ahead at ``tau >= 1``.

``newton`` (:mod:`crowdsteer.learners.newton`)
    Newton steps on the game's potential with the temperature followed down to the target
    (an interior-point path; at a target of 0 a proximal path); for potential games only.

``omd`` (online mirror descent, Perolat et al. 2022)
    1. ``mu = mean_field(pi)``, ``R = R(mu) + Theta(mu)``;
    2. ``Q = Q^pi`` (soft values of ``pi`` against ``mu``);
    3. ``y <- (1 - eta tau) y + eta Q``, ``pi = softmax(y)``.
    Its fixed point is ``pi = softmax(Q^pi / tau)``: the regularised equilibrium.
    The step ``eta`` adapts: halved when the exploitability rises by over 10% (the iteration is
    overshooting, as it does for stiff congestion such as ``-c log mu`` with large ``c``,
    where the one-shot map is a contraction only for ``eta < 2 / (c + tau)``), and
    grown by 5% while it falls.

``fp`` (fictitious play, Perrin et al. 2020)
    1. ``pi_br`` = (soft) best response to the averaged mean field ``mu_bar``;
    2. ``mu_bar <- (k mu_bar + mu(pi_br)) / (k + 1)``, and ``pi_bar`` the matching
       state-weighted average of the best responses.

All stop when the exploitability of the current iterate, computed exactly at the target
temperature, is at most ``tolerance``; the returned solution carries that certificate.

Warm starts: ``solve(..., init=solution)`` starts from an earlier solution of a game of
the same shape (``omd`` from its ``y``, ``newton`` from its policy near the temperature its
path had reached, ``fp`` from its average); the same ``init`` and game give the same result.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from crowdsteer import guards
from crowdsteer.config_base import Strict
from crowdsteer.equilibrium import best_response
from crowdsteer.errors import ConfigError
from crowdsteer.games.base import Game, ThetaLike
from crowdsteer.games.network import DEFAULT_RELATIVE_GAP
from crowdsteer.learners import newton
from crowdsteer.learners.base import Progress, Solution, learners
from crowdsteer.learners.passes import (
    LOG_MIN, Passes, certified, record, to_action_major, to_state_major,
)

Array = np.ndarray


class ExactConfig(Strict):
    """The ``learner`` section for ``name: exact``."""

    name: Literal["exact"] = "exact"
    temperature: Annotated[float, Field(ge=0)] = 0.0
    """``tau``: entropy regularisation of the agents (0: plain Nash)."""
    tolerance: Annotated[float, Field(gt=0)] = 1e-4
    """Stop when the exploitability is at most this."""
    max_iterations: Annotated[int, Field(gt=0)] = 5000
    method: Literal["auto", "newton", "omd", "fp", "bush", "bfw", "gradient_projection"] = "auto"
    """``auto``: ``newton`` at ``tau < 1`` on games with a concave potential, else
    ``omd``; ``newton``:
    Newton steps on the potential along a temperature path (proximal steps at a target of
    0); ``omd``: online mirror descent; ``fp``: fictitious play. Road networks:
    ``auto`` or ``bush`` (Algorithm B), ``bfw`` (bi-conjugate Frank-Wolfe),
    ``gradient_projection`` (path-based); :mod:`crowdsteer.learners.wardrop`."""
    learning_rate: Annotated[float, Field(gt=0)] | None = None
    """Initial OMD step ``eta`` (adapted as it runs); default :func:`default_rate`."""
    relative_gap: Annotated[float, Field(gt=0, lt=1)] | None = None
    """Road networks (``routing`` with ``network:``): stop at this relative gap (default
    1e-6); ``tolerance`` and ``learning_rate`` do not apply there."""
    solve_for: Literal["equilibrium", "system_optimum"] = "equilibrium"
    """Road networks: the travellers' (Wardrop) equilibrium, or the system optimum (the
    flows of least total travel time, what ``crowdsteer solve`` can write to compare
    with); other games: ``equilibrium`` only."""


NETWORK_METHODS = ("bush", "bfw", "gradient_projection")
"""The methods of road networks (the others, of games with states)."""


WARM_FLOOR = 0.1
"""A warm start of ``omd`` at ``tau = 0`` mixes this much of the uniform policy into the
earlier one (measured on tests/test_solver_methods.py's pair of nearby games: mixing 0,
1e-4, 1e-2, 0.1 takes 2.4x, 1.4x, 1.0x, 0.66x the iterations of a cold start): mirror
descent at ``tau = 0`` adapts slower the more deterministic its policy already is."""


def default_rate(tau: float) -> float:
    """A step that keeps ``eta * tau <= 0.5`` (so the damping stays in (0, 1))."""
    return 1.0 if tau <= 0.5 else 0.5 / tau


class ExactSolver:
    """Model-based mean-field solver (see module docstring)."""

    def __init__(self, config: ExactConfig | None = None, refine: float | None = None) -> None:
        self.config = config or ExactConfig()
        self.refine = refine
        """Exploitability ``newton`` keeps stepping towards once ``tolerance`` is met (at
        most two more steps; :func:`newton.solve`); the other methods stop at the
        tolerance. The gradient optimiser sets it."""

    def method_for(self, game: Game, theta: ThetaLike = None) -> str:
        """The method ``solve`` runs on this game and modifier (resolves ``auto``)."""
        method = self.config.method
        if method == "auto":
            return "newton" if newton.suits(game, theta, self.config.temperature) else "omd"
        if method in NETWORK_METHODS:
            raise ConfigError("learner.method", f"{method} solves road networks (routing "
                              "with network:); allowed here: auto, newton, omd, fp")
        if method == "newton" and not newton.supports(game, theta):
            raise ConfigError("learner.method", "newton needs a potential game and a modifier "
                              "that does not depend on the mean field; allowed here: auto, "
                              "omd, fp")
        return method

    def solve(self, game: Game, theta: ThetaLike = None, rng: np.random.Generator | None = None,
              progress: Progress | None = None, init: Solution | None = None) -> Solution:
        """Solve to ``tolerance``; ``init`` warm-starts from an earlier solution (same shape)."""
        cfg = self.config
        gap = cfg.relative_gap or DEFAULT_RELATIVE_GAP  # road networks stop at this gap
        if cfg.solve_for == "system_optimum":
            if not hasattr(game, "system_optimum"):
                raise ConfigError("learner.solve_for", "system_optimum applies to road "
                                  "networks (routing with network:); allowed here: equilibrium")
            if theta is not None:
                raise ConfigError("learner.solve_for", "the system optimum takes no tolls; "
                                  "allowed with a modifier: equilibrium")
            return game.system_optimum(gap, progress, cfg.max_iterations)
        if hasattr(game, "solve_equilibrium"):  # road networks: the link-based engine
            if cfg.method not in ("auto",) + NETWORK_METHODS:
                raise ConfigError("learner.method", f"{cfg.method} does not run on road "
                                  f"networks; allowed: auto, {', '.join(NETWORK_METHODS)}")
            return game.solve_equilibrium(theta, relative_gap=gap,
                                          max_iterations=cfg.max_iterations,
                                          progress=progress, temperature=cfg.temperature,
                                          method=cfg.method)
        if init is not None:
            check_init(game, init)
        guards.check_solve(game, cfg)
        method = self.method_for(game, theta)
        if method == "newton":
            sol = newton.solve(game, theta, cfg, progress, init, self.refine)
            if init is None or sol.converged:
                return sol
            # A warm start can fail where the cold path converges: near temperature 0 the
            # earlier game's equilibrium may lie outside the region where Newton's steps on
            # the new game's stiff softmax contract (measured: kernel congestion at 1e-5,
            # from exploitability 3e-3 it climbs to 0.3 and stalls; cold, the annealed
            # path converges in 25 iterations). Then solve again from the uniform policy;
            # the iterations and time of both count.
            cold = newton.solve(game, theta, cfg, progress, None, self.refine)
            best = cold if cold.converged or cold.exploitability < sol.exploitability else sol
            return dataclasses.replace(best, iterations=sol.iterations + cold.iterations,
                                       seconds=sol.seconds + cold.seconds)
        run = _omd if method == "omd" else _fp
        return run(game, theta, cfg, progress, init)


def check_init(game: Game, init: Solution) -> None:
    """Refuse a warm start whose policy does not fit the game."""
    want = (game.T, game.S, game.A)
    if np.shape(init.pi) != want or np.shape(init.mu) != (game.T, game.S):
        raise ConfigError("init", f"the solution has policy shape {np.shape(init.pi)}; this "
                          f"game needs (T, S, A) = {want}")
    if not np.all(np.isfinite(init.pi)):
        raise ConfigError("init", "the solution's policy contains NaN or infinite values")


def _omd(game: Game, theta: ThetaLike, cfg: ExactConfig, progress: Progress | None,
         init: Solution | None = None) -> Solution:
    start = time.perf_counter()
    tau = certified(cfg.temperature)
    eta = cfg.learning_rate or default_rate(tau)
    if eta * tau >= 1:
        raise ConfigError("learner.learning_rate", f"needs learning_rate * temperature < 1, got "
                          f"{eta} * {tau}")
    eta_max = 0.9 / tau if tau > 0 else 10.0 * eta
    p = Passes(game, theta)
    if init is None:
        y = np.zeros((p.T, p.A, p.S))
    elif tau > 0 and init.dual is not None and np.shape(init.dual) == np.shape(init.pi):
        y = to_action_major(init.dual)  # bounded at tau > 0: the fixed point is Q / tau
    else:
        # At tau = 0, y grows without bound (dominated actions sink like -k eta gap): resuming
        # it leaves actions the new game needs nearly impossible to revive. Resume the
        # policy, mixed with WARM_FLOOR of the uniform one.
        pi0 = (1 - WARM_FLOOR) * to_action_major(init.pi) + WARM_FLOOR * p.uniform()
        y = np.log(np.maximum(pi0, np.exp(LOG_MIN)))
    if p.allowed is not None:
        y = np.where(p.allowed, y, -np.inf)
    pi = p.softmax(y)
    history: list[float] = []
    for k in range(1, cfg.max_iterations + 1):
        mu, _ = p.forward(pi)
        R = p.table(mu)
        Q, V = p.evaluate(pi, R, tau)
        record(gap := p.certify(pi, R, tau, V), k, history, progress)
        if gap <= cfg.tolerance or k == cfg.max_iterations:
            break
        if len(history) > 1 and gap > 1.1 * history[-2]:
            eta *= 0.5
        else:
            eta = min(eta * 1.05, eta_max)
        y *= 1 - eta * tau
        y += eta * Q
        if p.allowed is not None:
            y = np.where(p.allowed, y, -np.inf)
        pi = p.softmax(y)
    return Solution(to_state_major(pi), mu, gap, k, time.perf_counter() - start,
                    gap <= cfg.tolerance, history=np.asarray(history),
                    dual=to_state_major(y))


def _fp(game: Game, theta: ThetaLike, cfg: ExactConfig, progress: Progress | None,
        init: Solution | None = None) -> Solution:
    start = time.perf_counter()
    tau = certified(cfg.temperature)
    p = Passes(game, theta)
    # a warm start continues the average as if its iterations had been run here
    k0 = 0 if init is None else max(int(init.iterations), 1)
    pi_bar = p.uniform() if init is None else to_action_major(init.pi)
    mu_bar, before_bar = p.forward(pi_bar)  # (T, S) mass before each step too
    history: list[float] = []
    for k in range(1, cfg.max_iterations + 1):
        R = p.table(mu_bar)
        record(gap := p.certify(pi_bar, R, tau), k, history, progress)
        if gap <= cfg.tolerance or k == cfg.max_iterations:
            break
        br = to_action_major(best_response(game, to_state_major(R), tau).pi)
        mu_br, before_br = p.forward(br)
        n = k + k0
        # state-weighted policy average: the mixture of populations playing pi_bar and pi_br
        wb, wr = n * before_bar[:, None, :], before_br[:, None, :]
        total = wb + wr
        pi_bar = np.where(total > 0, (wb * pi_bar + wr * br) / np.where(total > 0, total, 1),
                          pi_bar)
        mu_bar = (n * mu_bar + mu_br) / (n + 1)
        before_bar = (n * before_bar + before_br) / (n + 1)
    return Solution(to_state_major(pi_bar), mu_bar, gap, k, time.perf_counter() - start,
                    gap <= cfg.tolerance, history=np.asarray(history))


@learners.register("exact")
def build(cfg: ExactConfig) -> ExactSolver:
    return ExactSolver(cfg)


build.config = ExactConfig  # type: ignore[attr-defined]
guards.EXACT_METHOD[:] = [lambda game, cfg: ExactSolver(
    cfg if isinstance(cfg, ExactConfig) else None).method_for(game)]
