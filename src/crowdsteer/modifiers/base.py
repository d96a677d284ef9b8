"""Reward modifiers ``Theta(s, u; w)``: what the meta-agent adds to every agent's reward.

Most families are linear in ``w`` over a field of landing states: with features
``phi_k(s)`` (``(S, k)``), the field at step ``t`` is ``f_t(s') = sum_k w_k phi_k(s')``
(``per_step``: each step its own weights) and an agent taking ``a`` in ``s`` receives

.. math::

    \\Theta_t(s, a; w) = \\sum_{s'} P(s'|s, a) f_t(s')
    \\;[\\, - \\textstyle\\sum_{s'} \\mu_t(s') f_t(s') \\text{ when budget-balanced}].

Budget balance subtracts the population's average transfer at every step, so the
transfers sum to zero over the population at every step and over time (the
paper's no-net-transfer condition). The subtracted term is the same for every
agent, so it changes no best response: a budget-balanced modifier induces the same
equilibrium as the unbalanced one, only the money differs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Protocol

import numpy as np
from pydantic import Field, field_validator
from scipy import sparse

from crowdsteer.config_base import Strict
from crowdsteer.games.base import Game, ThetaLike
from crowdsteer.registry import Registry

Array = np.ndarray


class Modifier(Protocol):
    """A parametric reward modifier for one game."""

    n_params: int

    def theta(self, w: Array) -> ThetaLike:
        """The term added to the rewards: ``(T, S, A)`` array or callable ``(t, mu_t) -> (S, A)``."""
        ...

    def field(self, w: Array) -> Array:
        """``(T, S)``: what the modifier pays per landing state (the potential for shaping)."""
        ...


modifiers: Registry[Callable[..., Modifier]] = Registry("modifier")


class ModifierConfig(Strict):
    """Fields every modifier family has."""

    bounds: tuple[float, float] = (-3.0, 3.0)
    """``[lo, hi]``: the box every weight lies in."""
    budget_balanced: bool = False
    """Subtract the population's average transfer at every step (no net payout)."""
    per_step: bool = False
    """Give each time step its own weights."""

    @field_validator("bounds")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        lo, hi = v
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo >= hi:
            raise ValueError(f"needs lo < hi (both finite), got [{lo}, {hi}]")
        if max(abs(lo), abs(hi)) > 1e6:
            raise ValueError(f"allowed: weights within [-1e6, 1e6]; got [{lo}, {hi}]")
        return v


def grid_coords(game: Game) -> tuple[Array, Array]:
    """Row and column of every state, ``(S,)`` each (a 1 x S strip for games without a grid)."""
    shape = getattr(game, "shape", None) or (1, game.S)
    rows, cols = np.divmod(np.arange(game.S), shape[1])
    return rows.astype(float), cols.astype(float)


def scaled(x: Array) -> Array:
    """Affine map of ``x`` onto ``[-1, 1]`` (all zeros when ``x`` is constant)."""
    lo, hi = x.min(), x.max()
    return np.zeros_like(x) if hi == lo else 2 * (x - lo) / (hi - lo) - 1


class LinearModifier:
    """``f_t = Phi w_t`` over landing states; see the module docstring.

    Parameters
    ----------
    game
        The game the modifier acts on.
    features
        ``(S, k)`` feature matrix ``phi_k(s)``, dense or ``scipy.sparse`` (a tabular
        modifier's identity is sparse: ``S`` entries, not ``S^2``).
    per_step
        One weight vector per step (``n_params = T * k``) or shared (``k``).
    budget_balanced
        Subtract the population average at every step.
    """

    def __init__(self, game: Game, features: Array, per_step: bool = False,
                 budget_balanced: bool = False) -> None:
        self.game = game
        self.features = (features.tocsr().astype(float) if sparse.issparse(features)
                         else np.asarray(features, dtype=float))
        self.per_step = per_step
        self.budget_balanced = budget_balanced
        k = self.features.shape[1]
        self.n_params = game.T * k if per_step else k

    def field(self, w: Array) -> Array:
        w = np.asarray(w, dtype=float)
        if w.shape != (self.n_params,):
            raise ValueError(f"w has shape {w.shape}; this modifier takes ({self.n_params},)")
        if self.per_step:  # (features @ W^T)^T: sparse @ dense stays a dense array
            return np.asarray(self.features @ w.reshape(self.game.T, -1).T).T
        return np.broadcast_to(np.asarray(self.features @ w), (self.game.T, self.game.S))

    def theta(self, w: Array) -> ThetaLike:
        f = self.field(w)
        table = np.stack([self.game.transition.expect(f[t]) for t in range(self.game.T)])
        if not self.budget_balanced:
            return table

        def balanced(t: int, mu_t: Array) -> Array:
            return table[t] - mu_t @ f[t]

        return balanced

    def field_vjp(self, g_field: Array) -> Array:
        """``(d f / d w)^T g``: ``(T, S)`` cotangent of the field -> ``(n_params,)``."""
        g_field = np.asarray(g_field, dtype=float)
        if self.per_step:
            return np.asarray(g_field @ self.features).ravel()
        return np.asarray(g_field.sum(axis=0) @ self.features).ravel()

    def theta_vjp(self, w: Array, g_theta: Array, mu: Array | None = None) -> Array:
        """``(d Theta / d w)^T g``: ``(T, S, A)`` cotangent of the modifier's table ->
        ``(n_params,)``; ``mu`` ``(T, S)`` is needed when budget-balanced (the subtracted
        average ``mu_t . f_t`` moves with ``w``)."""
        from crowdsteer.adjoint import expect_T

        g_field = np.stack([expect_T(self.game, g_theta[t]) for t in range(self.game.T)])
        if self.budget_balanced:
            if mu is None:
                raise ValueError("a budget-balanced modifier's derivative needs mu")
            g_field -= np.asarray(g_theta).sum(axis=(1, 2))[:, None] * mu
        return self.field_vjp(g_field)

    def theta_mu_vjp(self, w: Array, g_theta: Array) -> Array | None:
        """``(d Theta / d mu)^T g`` ``(T, S)``, or ``None`` where ``Theta`` ignores ``mu``."""
        if not self.budget_balanced:
            return None
        return -np.asarray(g_theta).sum(axis=(1, 2))[:, None] * self.field(w)


Bounded = Annotated[int, Field(gt=0, le=64)]
