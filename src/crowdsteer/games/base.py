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

    def expect(self, v: Array) -> Array:
        return (self._P @ v).reshape(self.S, self.A)

    def push(self, mu: Array, pi_t: Array) -> Array:
        return self._PT @ (mu[:, None] * pi_t).ravel()

    def dense(self) -> Array:
        """``(S, A, S)`` dense kernel, for tests and tiny games only."""
        P = np.zeros((self.S, self.A, self.S))
        s, a = np.meshgrid(np.arange(self.S), np.arange(self.A), indexing="ij")
        for k in range(self.K):
            np.add.at(P, (s, a, self.next_state[:, :, k]), self.prob[:, :, k])
        return P


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
