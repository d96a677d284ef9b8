"""The ``transfers`` family: payments between agents that depend on the pair of actions played.

An agent playing ``i`` who meets an agent playing ``j`` receives ``W_ij`` (a negative
``W_ij`` is a payment). Against the mixed action ``o`` of the agents it meets (its own
population's in a symmetric game, the other players' average in a game of ``N``
players; the game's ``opponents(mu_t)``), the expected transfer of action ``i`` is

.. math::

    \\Theta_t(s, i; \\mu_t) = \\sum_j W_{ij}\\, o_s(j),

a callable ``(t, mu_t) -> (S, A)`` because it moves with the crowd. Parameters:

* default: the off-diagonal entries ``W_ij, i != j`` (``K (K - 1)`` weights, row-major);
  ``diagonal: true`` adds the diagonal (``K^2``);
* ``budget_balanced: true``: ``W = U - U^T`` with ``U`` strictly upper triangular
  (``K (K - 1) / 2`` weights). Every payment is then received by the other side of the
  meeting, so the transfers sum to zero over the population for *every* distribution:
  ``sum_ij x_i W_ij x_j = 0`` for one population, and ``sum_{i != j} x_i^T W x_j = 0``
  over the ordered pairs of players.

In the prisoner's dilemma (actions cooperate ``C``, defect ``D``) the budget-balanced
``w = [t]`` is a transfer ``t`` from a defector to the cooperator it meets
(``W_CD = t``, ``W_DC = -t``): cooperating against a cooperator pays ``R = 3``,
defecting ``T - t = 5 - t``, so all-cooperate is an equilibrium iff ``t >= T - R = 2``.

``field(w)`` (what reports draw) is the transfer in each landing state against a
uniformly mixed opponent, ``mean_j W_ij`` on the states reached by action ``i``.

Examples
--------
>>> from crowdsteer.games.matrix import MatrixConfig, build
>>> game = build(MatrixConfig(preset="prisoners_dilemma"))
>>> m = Transfers(game, budget_balanced=True)
>>> m.matrix(np.array([2.5]))[0].tolist()
[[0.0, 2.5], [-2.5, 0.0]]
>>> mu = np.array([0.0, 0.5, 0.5])                       # half cooperate
>>> m.theta(np.array([2.5]))(0, mu).tolist()              # C gets 1.25, D pays 1.25
[[1.25, -1.25], [1.25, -1.25], [1.25, -1.25]]
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

import numpy as np

from crowdsteer.errors import ConfigError
from crowdsteer.games.base import Game, ThetaLike
from crowdsteer.modifiers.base import ModifierConfig, modifiers

Array = np.ndarray


@runtime_checkable
class Pairwise(Protocol):
    """A game whose agents meet others and play actions against them.

    Attributes
    ----------
    action_names
        The ``K`` actions (``K = A``).
    state_action
        ``(S,)``: the action that leads into each state (``-1`` where none does).
    """

    action_names: tuple[str, ...]
    state_action: Array

    def opponents(self, mu_t: Array) -> Array:
        """``(S, K)``: mixed action of the agents met from each state, given ``mu_t``."""
        ...


class TransfersConfig(ModifierConfig):
    """``name: transfers``: a payment ``W_ij`` to an agent playing ``i`` from one playing ``j``."""

    name: Literal["transfers"] = "transfers"
    diagonal: bool = False
    """Also pay (or charge) agents meeting their own action, ``W_ii`` (not budget-balanced)."""


class Transfers:
    """Pairwise action transfers; see the module docstring.

    Parameters
    ----------
    game
        A :class:`Pairwise` game.
    budget_balanced
        ``W`` antisymmetric (no net payout for any distribution).
    diagonal
        Free diagonal ``W_ii`` (refused together with ``budget_balanced``).
    per_step
        One ``W`` per step (``n_params`` times ``T``).
    """

    def __init__(self, game: Game, budget_balanced: bool = False, diagonal: bool = False,
                 per_step: bool = False) -> None:
        if budget_balanced and diagonal:
            raise ValueError("a budget-balanced W is antisymmetric: its diagonal is zero")
        self.game = game
        self.K = game.A
        self.budget_balanced = budget_balanced
        self.per_step = per_step
        K = self.K
        if budget_balanced:
            self._rows, self._cols = np.triu_indices(K, k=1)
        else:
            mask = np.ones((K, K), bool) if diagonal else ~np.eye(K, dtype=bool)
            self._rows, self._cols = np.nonzero(mask)
        per = len(self._rows)
        self.n_params = game.T * per if per_step else per

    def matrix(self, w: Array) -> Array:
        """``(T, K, K)``: the transfer matrix ``W`` of each step."""
        w = np.asarray(w, dtype=float)
        if w.shape != (self.n_params,):
            raise ValueError(f"w has shape {w.shape}; this modifier takes ({self.n_params},)")
        T, K = self.game.T, self.K
        steps = w.reshape(T, -1) if self.per_step else np.broadcast_to(w, (T, w.size))
        W = np.zeros((T, K, K))
        W[:, self._rows, self._cols] = steps
        if self.budget_balanced:
            W -= W.transpose(0, 2, 1)
        return W

    def theta(self, w: Array) -> ThetaLike:
        W = self.matrix(w)
        game = self.game

        def transfers(t: int, mu_t: Array) -> Array:
            return game.opponents(mu_t) @ W[t].T  # (S, K): sum_j W[a, j] o_s(j)

        return transfers

    def theta_vjp(self, w: Array, g_theta: Array, mu: Array | None = None) -> Array:
        """``(d Theta / d w)^T g``: ``Theta_t = o(mu_t) W_t^T`` is linear in ``W_t``, so
        ``W_bar_t = g_t^T o(mu_t)``, then onto the free entries of ``W``."""
        if mu is None:
            raise ValueError("the transfers' derivative needs mu (they move with the crowd)")
        g_theta = np.asarray(g_theta, dtype=float)
        W_bar = np.stack([g_theta[t].T @ self.game.opponents(mu[t])
                          for t in range(self.game.T)])            # (T, K, K)
        if self.budget_balanced:
            W_bar = W_bar - W_bar.transpose(0, 2, 1)
        steps = W_bar[:, self._rows, self._cols]                    # (T, per)
        return steps.ravel() if self.per_step else steps.sum(axis=0)

    def theta_mu_vjp(self, w: Array, g_theta: Array) -> Array:
        """``(d Theta / d mu)^T g``, ``(T, S)``: through the opponents' mix ``o(mu_t)``."""
        from crowdsteer.adjoint import opponents_vjp

        W = self.matrix(w)
        g_theta = np.asarray(g_theta, dtype=float)
        return np.stack([opponents_vjp(self.game, g_theta[t] @ W[t])
                         for t in range(self.game.T)])

    def field(self, w: Array) -> Array:
        W = self.matrix(w)
        uniform = W.mean(axis=2)                                   # (T, K)
        action = np.asarray(self.game.state_action)
        return np.where(action >= 0, uniform[:, np.maximum(action, 0)], 0.0)


@modifiers.register("transfers")
def transfers(cfg: TransfersConfig, game: Game) -> Transfers:
    """A :class:`Transfers` modifier; refuses games whose agents do not meet in pairs."""
    if not isinstance(game, Pairwise):
        raise ConfigError("modifier.name", f"transfers need a game of players meeting each "
                          f"other (matrix, congestion, spectrum); {type(game).__name__} is not")
    if cfg.budget_balanced and cfg.diagonal:
        raise ConfigError("modifier.diagonal", "a budget-balanced W is antisymmetric, so its "
                          "diagonal is zero; drop diagonal or budget_balanced")
    return Transfers(game, cfg.budget_balanced, cfg.diagonal, cfg.per_step)


transfers.config = TransfersConfig  # type: ignore[attr-defined]
