"""The exact mean-field solver: model-based, vectorised over states and time.

Two algorithms, both alternating a forward pass (the mean field of the current
policy) with a backward pass (values and the (soft) best response):

``omd`` (online mirror descent, Perolat et al. 2022), the default
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

Both stop when the exploitability of the current iterate is at most ``tolerance``.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field
from scipy.special import softmax

from crowdsteer import guards
from crowdsteer.config_base import Strict
from crowdsteer.equilibrium import best_response, evaluate, mean_field, state_before
from crowdsteer.games.base import Game, ThetaLike, reward_table
from crowdsteer.learners.base import (
    Progress, Solution, check_finite, initial_policy, learners,
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
    method: Literal["omd", "fp"] = "omd"
    """``omd``: online mirror descent; ``fp``: fictitious play."""
    learning_rate: Annotated[float, Field(gt=0)] | None = None
    """Initial OMD step ``eta`` (adapted as it runs); default :func:`default_rate`."""
    relative_gap: Annotated[float, Field(gt=0, lt=1)] | None = None
    """Road networks (``routing`` with ``network:``): stop at this relative gap (default
    1e-6); ``tolerance``, ``method`` and ``learning_rate`` do not apply there."""


def default_rate(tau: float) -> float:
    """A step that keeps ``eta * tau <= 0.5`` (so the damping stays in (0, 1))."""
    return 1.0 if tau <= 0.5 else 0.5 / tau


class ExactSolver:
    """Model-based mean-field solver (see module docstring)."""

    def __init__(self, config: ExactConfig | None = None) -> None:
        self.config = config or ExactConfig()

    def solve(self, game: Game, theta: ThetaLike = None, rng: np.random.Generator | None = None,
              progress: Progress | None = None) -> Solution:
        cfg = self.config
        if hasattr(game, "solve_equilibrium"):  # road networks: the link-based engine
            return game.solve_equilibrium(theta, relative_gap=cfg.relative_gap or 1e-6,
                                          max_iterations=cfg.max_iterations,
                                          progress=progress, temperature=cfg.temperature)
        run = _omd if cfg.method == "omd" else _fp
        guards.check_solve(game, cfg)
        return run(game, theta, cfg, progress)


def _omd(game: Game, theta: ThetaLike, cfg: ExactConfig, progress: Progress | None) -> Solution:
    start = time.perf_counter()
    tau = cfg.temperature
    eta = cfg.learning_rate or default_rate(tau)
    if eta * tau >= 1:
        from crowdsteer.errors import ConfigError

        raise ConfigError("learner.learning_rate", f"needs learning_rate * temperature < 1, got "
                          f"{eta} * {tau}")
    eta_max = 0.9 / tau if tau > 0 else 10.0 * eta
    pi = initial_policy(game)
    y = np.zeros_like(pi)
    mask = None if game.allowed is None else ~game.allowed
    history = []
    for k in range(1, cfg.max_iterations + 1):
        mu = mean_field(game, pi)
        ev, br, gap = _certify(game, pi, reward_table(game, mu, theta), tau, k, history,
                               progress)
        if gap <= cfg.tolerance or k == cfg.max_iterations:
            converged = gap <= cfg.tolerance
            break
        if len(history) > 1 and gap > 1.1 * history[-2]:
            eta *= 0.5
        else:
            eta = min(eta * 1.05, eta_max)
        y = (1 - eta * tau) * y + eta * ev.Q
        if mask is not None:
            y[:, mask] = -np.inf
        pi = softmax_actions(y)
    return Solution(pi, mu, gap, k, time.perf_counter() - start, converged,
                    history=np.asarray(history))


def _certify(game: Game, pi: Array, R: Array, tau: float, k: int, history: list[float],
             progress: Progress | None) -> tuple[Any, Any, float]:
    """Values of ``pi``, the best response and the exploitability gap, recorded in ``history``."""
    ev = evaluate(game, pi, R, tau)
    br = best_response(game, R, tau)
    gap = max(float(game.mu0 @ (br.V[0] - ev.V[0])), 0.0)
    check_finite(gap, "exploitability")
    history.append(gap)
    if progress:
        progress(k, gap)
    return ev, br, gap


def _fp(game: Game, theta: ThetaLike, cfg: ExactConfig, progress: Progress | None) -> Solution:
    start = time.perf_counter()
    tau = cfg.temperature
    pi_bar = initial_policy(game)
    mu_bar = mean_field(game, pi_bar)
    before_bar = state_before(game, mu_bar)  # (T, S) mass before each step
    history = []
    for k in range(1, cfg.max_iterations + 1):
        ev, br, gap = _certify(game, pi_bar, reward_table(game, mu_bar, theta), tau, k,
                               history, progress)
        if gap <= cfg.tolerance or k == cfg.max_iterations:
            converged = gap <= cfg.tolerance
            break
        mu_br = mean_field(game, br.pi)
        before_br = state_before(game, mu_br)
        # state-weighted policy average: the mixture of populations playing pi_bar and pi_br
        wb, wr = k * before_bar[:, :, None], before_br[:, :, None]
        total = wb + wr
        pi_bar = np.where(total > 0, (wb * pi_bar + wr * br.pi) / np.where(total > 0, total, 1),
                          pi_bar)
        mu_bar = (k * mu_bar + mu_br) / (k + 1)
        before_bar = (k * before_bar + before_br) / (k + 1)
    return Solution(pi_bar, mu_bar, gap, k, time.perf_counter() - start, converged,
                    history=np.asarray(history))


def softmax_actions(y: Array) -> Array:
    """Softmax over the last (action) axis of ``(T, S, A)``; masked entries are ``-inf``.

    With few actions, reductions over the short last axis are slow in NumPy, so the max
    and the sum run over action slices instead (same result as ``scipy.special.softmax``).
    """
    A = y.shape[-1]
    if A > 16:
        return softmax(y, axis=-1)
    top = y[..., 0].copy()
    for a in range(1, A):
        np.maximum(top, y[..., a], out=top)
    e = np.exp(y - top[..., None])  # keeps exp() in range; softmax is shift-invariant
    total = e[..., 0].copy()
    for a in range(1, A):
        total += e[..., a]
    e /= total[..., None]
    return e


@learners.register("exact")
def build(cfg: ExactConfig) -> ExactSolver:
    return ExactSolver(cfg)


build.config = ExactConfig  # type: ignore[attr-defined]
