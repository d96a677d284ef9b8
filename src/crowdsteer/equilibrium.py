"""Mean field of a policy, (soft) best response, policy evaluation, exploitability.

Notation (finite horizon ``T``, 0-based steps): agents in state ``s`` before step
``t`` pick ``a ~ pi[t, s]``, land in ``s' ~ P(.|s, a)`` and receive ``r_t(s'; mu_t)``
(+ ``Theta_t(s, a)``), where ``mu[t]`` is the distribution after the move of step ``t``.

With temperature ``tau >= 0`` an agent maximises reward plus ``tau`` times the
entropy of its own action choice at every step. The (soft) value of ``pi`` and of a
best response against a fixed mean field are computed by backward induction:

.. math::

    Q_t(s, a) = R_t(s, a) + \\sum_{s'} P(s'|s, a) V_{t+1}(s'), \\quad V_T = 0,

    V^{\\pi}_t(s) = \\sum_a \\pi_t(s, a) Q^{\\pi}_t(s, a) + \\tau H(\\pi_t(s, \\cdot)),
    \\qquad V^{*}_t(s) = \\tau \\log \\sum_a e^{Q^*_t(s,a)/\\tau} \\;(\\max_a \\text{ at } \\tau = 0).

Exploitability is ``sum_s mu0(s) (V*_0(s) - V^pi_0(s)) >= 0``, zero exactly at a
(tau-regularised) mean-field Nash equilibrium.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crowdsteer.games.base import Game, ThetaLike, reward_table

Array = np.ndarray
TAU_MIN = 1e-8
"""Temperatures at or below this give a plain best response (Q / tau would overflow)."""


def mean_field(game: Game, pi: Array) -> Array:
    """Distribution of agents after each step under ``pi``.

    Parameters
    ----------
    pi
        ``(T, S, A)`` policy, rows on the simplex.

    Returns
    -------
    ``(T, S)`` array; ``mu[t]`` is the distribution after the move of step ``t``.
    Every row sums to 1.
    """
    mu = np.empty((game.T, game.S))
    prev = game.mu0
    for t in range(game.T):
        prev = mu[t] = game.transition.push(prev, pi[t])
    return mu


def state_before(game: Game, mu: Array) -> Array:
    """``(T, S)``: the distribution before step ``t`` (``mu0``, then ``mu[:-1]``)."""
    return np.concatenate([game.mu0[None], mu[:-1]], axis=0)


def _mask(game: Game, Q: Array) -> Array:
    if game.allowed is None:
        return Q
    return np.where(game.allowed, Q, -np.inf)


def entropy(p: Array, axis: int = -1) -> Array:
    """Shannon entropy in nats along ``axis`` (``0 log 0 = 0``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=axis)


def soft_response(Q_t: Array, tau: float, allowed: Array | None = None) -> tuple[Array, Array]:
    """Best (``tau = 0``) or soft (``tau > 0``) response to ``Q_t``; returns ``(pi_t, V_t)``.

    ``Q_t`` is ``(S, A)``; ``pi_t`` ``(S, A)`` rows on the simplex; ``V_t`` ``(S,)``.
    At ``tau = 0`` (or ``tau <= TAU_MIN``) ties go to the first maximiser.
    """
    if allowed is not None:
        Q_t = np.where(allowed, Q_t, -np.inf)
    if tau > TAU_MIN:
        # log-sum-exp by hand: scipy's is several times slower on (S, A) rows this small
        z = Q_t / tau
        top = z.max(axis=1, keepdims=True)
        e = np.exp(z - top)
        total = e.sum(axis=1, keepdims=True)
        return e / total, tau * (top + np.log(total))[:, 0]
    best = np.argmax(Q_t, axis=1)
    pi_t = np.zeros(Q_t.shape)
    pi_t[np.arange(Q_t.shape[0]), best] = 1.0
    return pi_t, Q_t[np.arange(Q_t.shape[0]), best]


@dataclass(frozen=True)
class Evaluation:
    """Values of a policy against a fixed mean field.

    Attributes
    ----------
    Q
        ``(T, S, A)`` action values of the policy (soft, with ``tau``).
    V
        ``(T, S)`` state values before each step.
    """

    Q: Array
    V: Array


def evaluate(game: Game, pi: Array, R: Array, tau: float = 0.0) -> Evaluation:
    """Soft values of ``pi`` for the reward table ``R`` ``(T, S, A)`` (mean field fixed)."""
    T = game.T
    Q = np.empty_like(R)
    V = np.empty((T, game.S))
    V_next = np.zeros(game.S)
    for t in range(T - 1, -1, -1):
        Q[t] = R[t] + game.transition.expect(V_next)
        q = np.where(pi[t] > 0, Q[t], 0.0)  # masked actions (Q = -inf) carry no mass
        V[t] = (pi[t] * q).sum(axis=1) + (tau * entropy(pi[t]) if tau > TAU_MIN else 0.0)
        V_next = V[t]
    return Evaluation(Q, V)


@dataclass(frozen=True)
class Response:
    """A (soft) best response.

    Attributes
    ----------
    pi
        ``(T, S, A)`` the responding policy.
    Q
        ``(T, S, A)`` optimal (soft) action values.
    V
        ``(T, S)`` optimal (soft) state values.
    """

    pi: Array
    Q: Array
    V: Array


def best_response(game: Game, R: Array, tau: float = 0.0) -> Response:
    """Backward induction for the (soft) best response to the reward table ``R``."""
    T = game.T
    Q = np.empty_like(R)
    V = np.empty((T, game.S))
    pi = np.empty_like(R)
    V_next = np.zeros(game.S)
    for t in range(T - 1, -1, -1):
        Q[t] = R[t] + game.transition.expect(V_next)
        pi[t], V[t] = soft_response(Q[t], tau, game.allowed)
        V_next = V[t]
    return Response(pi, Q, V)


def exploitability(game: Game, pi: Array, tau: float = 0.0, theta: ThetaLike = None,
                   mu: Array | None = None) -> float:
    """Gain of a (soft) best response against the mean field ``pi`` induces.

    Averaged over the initial distribution ``mu0``; ``>= 0``, and ``0`` exactly at a
    ``tau``-regularised mean-field Nash equilibrium of the game modified by ``theta``.

    Examples
    --------
    >>> from crowdsteer.games.crowd import CrowdConfig, build
    >>> game = build(CrowdConfig(height=2, width=2, congestion={"kind": "log", "strength": 1.0},
    ...                          desirability={"bumps": [{"center": [0, 0], "height": 0.0}]}))
    >>> uniform = np.full((1, 4, 4), 0.25)   # zero desirability, log crowding: uniform is Nash
    >>> round(exploitability(game, uniform), 12)
    0.0
    """
    if mu is None:
        mu = mean_field(game, pi)
    R = reward_table(game, mu, theta)
    return exploitability_from(game, pi, R, tau)


def exploitability_from(game: Game, pi: Array, R: Array, tau: float) -> float:
    """Exploitability given the reward table ``R`` of the mean field of ``pi``."""
    v_pi = evaluate(game, pi, R, tau).V[0]
    v_br = best_response(game, R, tau).V[0]
    gap = float(game.mu0 @ (v_br - v_pi))
    return max(gap, 0.0) if gap > -1e-12 else gap


def welfare(game: Game, mu: Array) -> float:
    """Social welfare ``sum_t sum_s mu_t(s) r_t(s)`` with intrinsic rewards (no transfers)."""
    return float(sum(mu[t] @ game.reward(t, mu[t]) for t in range(game.T)))
