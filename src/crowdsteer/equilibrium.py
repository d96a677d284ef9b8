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


def row_sum(x: Array) -> Array:
    """``x.sum(axis=1)`` of an ``(S, A)`` array, as a product with ones: NumPy reduces a short
    last axis several times slower than it multiplies by a vector."""
    return x @ np.ones(x.shape[1])


def row_max(x: Array) -> Array:
    """``x.max(axis=1)`` of an ``(S, A)`` array; with few actions, a running maximum over
    the columns (about 15x faster than the reduction for ``A = 5``)."""
    A = x.shape[1]
    if A > 16:
        return x.max(axis=1)
    top = x[:, 0].copy()
    for a in range(1, A):
        np.maximum(top, x[:, a], out=top)
    return top


def entropy(p: Array, axis: int = -1) -> Array:
    """Shannon entropy in nats along ``axis`` (``0 log 0 = 0``)."""
    terms = p * np.log(np.where(p > 0, p, 1.0))
    if axis in (-1, p.ndim - 1) and p.ndim == 2:
        return -row_sum(terms)
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
        top = row_max(z)
        e = np.exp(z - top[:, None])
        total = row_sum(e)
        e /= total[:, None]
        return e, tau * (top + np.log(total))
    best = np.argmax(Q_t, axis=1)
    pi_t = np.zeros(Q_t.shape)
    pi_t[np.arange(Q_t.shape[0]), best] = 1.0
    return pi_t, Q_t[np.arange(Q_t.shape[0]), best]


def soft_value(Q_t: Array, tau: float, allowed: Array | None = None) -> Array:
    """``V_t`` of :func:`soft_response` without the policy: ``max_a Q`` or
    ``tau log sum_a exp(Q / tau)``, ``(S,)``."""
    if allowed is not None:
        Q_t = np.where(allowed, Q_t, -np.inf)
    if tau > TAU_MIN:
        top = row_max(Q_t)
        return top + tau * np.log(row_sum(np.exp((Q_t - top[:, None]) / tau)))
    return row_max(Q_t)


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
    masked = game.allowed is not None
    for t in range(T - 1, -1, -1):
        np.add(R[t], game.transition.expect(V_next), out=Q[t])
        q = np.where(pi[t] > 0, Q[t], 0.0) if masked else Q[t]  # masked actions carry no mass
        V[t] = row_sum(pi[t] * q)
        if tau > TAU_MIN:
            V[t] += tau * entropy(pi[t])
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


def best_values(game: Game, R: Array, tau: float = 0.0) -> Array:
    """``(T, S)`` optimal (soft) values: :func:`best_response`'s ``V`` without building the
    policy or keeping ``Q`` (all the exploitability certificate needs)."""
    V = np.empty((game.T, game.S))
    V_next = np.zeros(game.S)
    for t in range(game.T - 1, -1, -1):
        V[t] = V_next = soft_value(R[t] + game.transition.expect(V_next), tau, game.allowed)
    return V


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
    v_br = best_values(game, R, tau)[0]
    gap = float(game.mu0 @ (v_br - v_pi))
    return max(gap, 0.0) if gap > -1e-12 else gap


def welfare(game: Game, mu: Array) -> float:
    """Social welfare ``sum_t sum_s mu_t(s) r_t(s)`` with intrinsic rewards (no transfers)."""
    return float(sum(mu[t] @ game.reward(t, mu[t]) for t in range(game.T)))
