"""The game interface shared by every registered game.

A game here is a finite-horizon mean-field (population) game, the limit of the
paper's Markov game as the number of agents grows. It is data plus pure
functions:

* ``T`` steps; ``S`` states; ``A`` actions; ``mu0`` the initial distribution, ``(S,)``.
* a :class:`Transition` ``P(s' | s, a)``, the same at every step;
* ``reward(t, mu_t) -> (S,)``: the intrinsic reward ``r_t(s')`` of landing in ``s'``
  at step ``t`` (0-based) when the agents are distributed as ``mu_t`` after the move;
* optionally ``allowed``, an ``(S, A)`` boolean mask of the actions open in each state.

The expected intrinsic reward of action ``a`` in state ``s`` is
``R_t(s, a) = sum_s' P(s'|s, a) r_t(s'; mu_t)``; the reward modifier adds
``Theta_t(s, a; mu_t)`` to it (see :func:`reward_table`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np
from scipy.sparse import csr_matrix

from crowdsteer.registry import Registry

Array = np.ndarray
# Theta: None, a (T, S, A) array, or a callable (t, mu_t) -> (S, A).
ThetaLike = None | Array | Callable[[int, Array], Array]


@runtime_checkable
class Transition(Protocol):
    """Transition kernel ``P(s' | s, a)``, the same at every step."""

    def expect(self, v: Array) -> Array:
        """``E[v(s') | s, a]`` for a value ``v`` of shape ``(S,)``; returns ``(S, A)``."""
        ...

    def push(self, mu: Array, pi_t: Array) -> Array:
        """Distribution after one step: ``mu'(s') = sum_{s,a} mu(s) pi_t(s,a) P(s'|s,a)``."""
        ...


def push_mass(transition: Transition, m: Array) -> Array:
    """Where an ``(S, A)`` table of mass lands: ``sum_{s,a} m(s, a) P(s'|s, a)``, ``(S,)``.

    ``m`` may have either sign (a change of mass). Transitions defined here have a direct
    ``push_mass``; any other :class:`Transition` goes through ``push(1, m)``.
    """
    direct = getattr(transition, "push_mass", None)
    if direct is not None:
        return direct(m)
    return transition.push(np.ones(m.shape[0]), m)


class AnyMove:
    """Every state can reach every state in one step: action ``a`` lands in state ``a``.

    No ``S x S`` matrix is stored; ``expect`` is a broadcast and ``push`` a matrix product.
    """

    def __init__(self, S: int) -> None:
        self.S = S
        self.A = S

    def expect(self, v: Array) -> Array:
        return np.broadcast_to(v[None, :], (self.S, self.A))

    def push(self, mu: Array, pi_t: Array) -> Array:
        return mu @ pi_t

    def push_mass(self, m: Array) -> Array:
        return m.sum(axis=0)

    def expect_as(self, v: Array) -> Array:
        """Action-major :meth:`expect`: ``out[a, s] = E[v(s') | s, a]``, ``(A, S)``."""
        return np.broadcast_to(v[:, None], (self.A, self.S))

    def push_as(self, m: Array) -> Array:
        """Action-major :meth:`push_mass`: where an ``(A, S)`` table of mass lands."""
        return m @ np.ones(self.S)


class SparseMoves:
    """A kernel with at most ``K`` successors per ``(s, a)``.

    Parameters
    ----------
    next_state
        ``(S, A, K)`` integer successor indices.
    prob
        ``(S, A, K)`` probabilities, summing to 1 over the last axis.
    """

    def __init__(self, next_state: Array, prob: Array) -> None:
        if next_state.shape != prob.shape or next_state.ndim != 3:
            raise ValueError("next_state and prob must both have shape (S, A, K)")
        if not np.allclose(prob.sum(-1), 1.0):
            raise ValueError("transition probabilities must sum to 1 over successors")
        self.next_state = np.ascontiguousarray(next_state, dtype=np.int64)
        self.prob = np.ascontiguousarray(prob, dtype=float)
        self.S, self.A, self.K = next_state.shape
        # (S*A, S) sparse kernel and its transpose: a sparse product is several times
        # faster than gathering (S, A, K) values and reducing over K
        rows = np.repeat(np.arange(self.S * self.A), self.K)
        P = csr_matrix((self.prob.ravel(), (rows, self.next_state.ravel())),
                       shape=(self.S * self.A, self.S))
        self._P = P
        self._PT = P.T.tocsr()
        # the same kernel with rows in action-major order (a, s), for expect_as / push_as
        order = (np.arange(self.S)[None, :] * self.A + np.arange(self.A)[:, None]).ravel()
        self._P_as = P[order]
        self._PT_as = self._P_as.T.tocsr()

    def expect(self, v: Array) -> Array:
        """``E[v(s') | s, a]``: ``(S, A)`` from ``v`` ``(S,)``, or ``(S, A, k)`` from ``(S, k)``."""
        return (self._P @ v).reshape((self.S, self.A) + v.shape[1:])

    def push(self, mu: Array, pi_t: Array) -> Array:
        return self._PT @ (mu[:, None] * pi_t).ravel()

    def push_mass(self, m: Array) -> Array:
        return self._PT @ m.ravel()

    def expect_as(self, v: Array) -> Array:
        """Action-major :meth:`expect`: ``out[a, s] = E[v(s') | s, a]``, ``(A, S)``."""
        return (self._P_as @ v).reshape(self.A, self.S)

    def push_as(self, m: Array) -> Array:
        """Action-major :meth:`push_mass`: where an ``(A, S)`` table of mass lands."""
        return self._PT_as @ m.ravel()

    def dense(self) -> Array:
        """``(S, A, S)`` dense kernel, for tests and tiny games only."""
        P = np.zeros((self.S, self.A, self.S))
        s, a = np.meshgrid(np.arange(self.S), np.arange(self.A), indexing="ij")
        for k in range(self.K):
            np.add.at(P, (s, a, self.next_state[:, :, k]), self.prob[:, :, k])
        return P


class NoisyMoves(SparseMoves):
    """Each action has one target; with probability ``noise`` the move is replaced by one
    of the state's ``A`` targets drawn uniformly (the same draw whatever the action).

    .. math::

        P(s' | s, a) = (1 - p)\\,[s' = g(s, a)] + \\frac{p}{A} \\sum_k [s' = g(s, k)]

    The noise term does not depend on ``a``, so ``expect`` is one gather of ``v`` at the
    targets plus one shared term per state, and ``push`` one scatter in which each move
    carries ``1 - p`` of its own mass and ``p / A`` of its state's: about ``2 S A``
    operations instead of the ``S A^2`` of the general ``(S, A, K)`` kernel it equals
    (kept for :meth:`dense`, sampling and tests).

    Parameters
    ----------
    targets
        ``(S, A)`` integer target ``g(s, a)`` of each move.
    noise
        ``p`` in ``[0, 1]``.
    """

    def __init__(self, targets: Array, noise: float) -> None:
        targets = np.ascontiguousarray(targets, dtype=np.int64)
        S, A = targets.shape
        if noise == 0:
            super().__init__(targets[:, :, None], np.ones((S, A, 1)))
        else:
            nxt = np.broadcast_to(targets[:, None, :], (S, A, A))
            prob = np.full((S, A, A), noise / A) + (1 - noise) * np.eye(A)[None]
            super().__init__(nxt.copy(), prob)
        self.targets = targets
        self.noise = float(noise)
        self._flat = targets.ravel()
        self._targets_as = np.ascontiguousarray(targets.T)  # (A, S)
        self._flat_as = self._targets_as.ravel()

    def expect(self, v: Array) -> Array:
        out = np.take(v, self.targets, axis=0)  # (S, A) or (S, A, k)
        if self.noise == 0:
            return out
        # the noise term does not depend on the action: one mean over the row's targets
        shared = np.tensordot(out, np.full(self.A, self.noise / self.A), axes=([1], [0]))
        out *= 1.0 - self.noise
        out += shared[:, None]
        return out

    def push_mass(self, m: Array) -> Array:
        if self.noise == 0:
            return np.bincount(self._flat, weights=m.ravel(), minlength=self.S)
        # one scatter: each move carries 1 - p of its own mass and p / A of its state's
        w = m * (1.0 - self.noise)
        w += (m @ np.full(self.A, self.noise / self.A))[:, None]
        return np.bincount(self._flat, weights=w.ravel(), minlength=self.S)

    def push(self, mu: Array, pi_t: Array) -> Array:
        return self.push_mass(mu[:, None] * pi_t)

    def expect_as(self, v: Array) -> Array:
        out = np.take(v, self._targets_as)  # (A, S): v at each move's target
        if self.noise == 0:
            return out
        shared = out.sum(axis=0)  # the noise term, the same for every action
        shared *= self.noise / self.A
        out *= 1.0 - self.noise
        out += shared
        return out

    def push_as(self, m: Array) -> Array:
        if self.noise == 0:
            return np.bincount(self._flat_as, weights=m.ravel(), minlength=self.S)
        # one scatter: each move carries 1 - p of its own mass and p / A of its state's
        w = m * (1.0 - self.noise)
        w += m.sum(axis=0) * (self.noise / self.A)
        return np.bincount(self._flat_as, weights=w.ravel(), minlength=self.S)
        moved *= 1.0 - self.noise
        moved += self.noise * (self._spread_T @ m.sum(axis=0))
        return moved


class Game(Protocol):
    """What the solvers, learners and objectives need from a game.

    Attributes
    ----------
    T, S, A
        Horizon, number of states, number of actions.
    mu0
        ``(S,)`` initial distribution.
    transition
        The kernel ``P(s'|s, a)``.
    allowed
        ``(S, A)`` boolean mask of available actions, or ``None`` for all.
    """

    T: int
    S: int
    A: int
    mu0: Array
    transition: Transition
    allowed: Array | None

    def reward(self, t: int, mu_t: Array) -> Array:
        """Intrinsic landing reward ``r_t(s')``, shape ``(S,)``, given ``mu_t`` ``(S,)``."""
        ...


games: Registry[Callable[..., Game]] = Registry("game")


def theta_at(theta: ThetaLike, t: int, mu_t: Array, shape: tuple[int, int]) -> Array | float:
    """The modifier term ``Theta_t(s, a; mu_t)`` at step ``t`` (``0`` when ``theta`` is None)."""
    if theta is None:
        return 0.0
    if callable(theta):
        out = np.asarray(theta(t, mu_t), dtype=float)
    else:
        out = np.asarray(theta[t], dtype=float)
    if out.shape != shape and out.ndim != 0:
        out = np.broadcast_to(out, shape)
    return out


def reward_table(game: Game, mu: Array, theta: ThetaLike = None) -> Array:
    """Modified expected rewards ``R_t(s, a) + Theta_t(s, a)`` for every step.

    Parameters
    ----------
    mu
        ``(T, S)``: ``mu[t]`` is the distribution after the move of step ``t``.

    Returns
    -------
    ``(T, S, A)`` array.
    """
    out = np.empty((game.T, game.S, game.A))
    for t in range(game.T):
        out[t] = game.transition.expect(game.reward(t, mu[t]))
        out[t] += theta_at(theta, t, mu[t], (game.S, game.A))
    return out


POWER_FLOOR = 1e-12
"""Smallest base :func:`power_derivative` raises to a negative exponent."""


def power_derivative(u: Array, p: Array | float, order: int = 1) -> Array:
    """``d^k u^p / du^k`` (``k = order``, 1 or 2) of ``u^p`` at ``u >= 0``, elementwise.

    Below ``p = k`` the exponent ``p - k`` is negative and the derivative grows without
    bound as ``u -> 0``; there ``u`` is floored at :data:`POWER_FLOOR` (a link with no flow:
    no path with flow crosses it, so its slope enters no derivative that is used, but an
    infinity would turn the zeros multiplying it into NaN).
    """
    p = np.asarray(p, dtype=float)
    e = p - order
    u = np.maximum(np.asarray(u, dtype=float), 0.0)
    u = np.where(e < 0, np.maximum(u, POWER_FLOOR), u)
    fall = p if order == 1 else p * (p - 1)
    return np.where(fall != 0, fall * u ** e, 0.0)
