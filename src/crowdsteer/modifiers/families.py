"""The registered modifier families."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field
from scipy import sparse

from crowdsteer import guards
from crowdsteer.config_base import validate
from crowdsteer.errors import ConfigError
from crowdsteer.games.base import Game, ThetaLike
from crowdsteer.modifiers.base import (
    Bounded, LinearModifier, ModifierConfig, grid_coords, modifiers, scaled,
)

Array = np.ndarray


class PowerSeriesConfig(ModifierConfig):
    """``name: power_series``: the paper's truncated series (Theorem 2)."""

    name: Literal["power_series"] = "power_series"
    order: Annotated[int, Field(ge=0, le=12)] = 2
    """``n``: terms ``u^p v^q`` with ``p + q <= n``; u, v the column and row scaled to [-1, 1]."""


def power_features(game: Game, order: int) -> Array:
    rows, cols = grid_coords(game)
    u, v = scaled(cols), scaled(rows)
    terms = [u**p * v**q for total in range(order + 1) for p in range(total, -1, -1)
             for q in [total - p]]
    return np.stack(terms, axis=1)


@modifiers.register("power_series")
def power_series(cfg: PowerSeriesConfig, game: Game) -> LinearModifier:
    return LinearModifier(game, power_features(game, cfg.order), cfg.per_step, cfg.budget_balanced)


power_series.config = PowerSeriesConfig  # type: ignore[attr-defined]


class RBFConfig(ModifierConfig):
    """``name: rbf``: a ``k x k`` lattice of Gaussian bumps over the grid, one weight each."""

    name: Literal["rbf"] = "rbf"
    centers: Bounded = 3
    """``k``: bumps per side."""
    width: Annotated[float, Field(gt=0)] | None = None
    """Bump standard deviation in cells; default: the spacing between centers."""


def rbf_features(game: Game, k: int, width: float | None) -> Array:
    rows, cols = grid_coords(game)
    h, w = rows.max() + 1, cols.max() + 1
    ci = np.linspace(0, h - 1, k) if h > 1 else np.zeros(k)
    cj = np.linspace(0, w - 1, k)
    sigma = width or max((h - 1) / max(k - 1, 1), (w - 1) / max(k - 1, 1), 0.5)
    ci = ci if h > 1 else np.zeros(1)  # a strip: one row of centers
    CI, CJ = np.meshgrid(ci, cj, indexing="ij")
    d2 = (rows[:, None] - CI.ravel()[None]) ** 2 + (cols[:, None] - CJ.ravel()[None]) ** 2
    return np.exp(-d2 / (2 * sigma**2))


@modifiers.register("rbf")
def rbf(cfg: RBFConfig, game: Game) -> LinearModifier:
    guards.check_memory(2 * 8 * game.S * cfg.centers**2, "modifier.centers",
                        f"{cfg.centers}^2 bumps over {game.S:,} states", "use fewer centers")
    return LinearModifier(game, rbf_features(game, cfg.centers, cfg.width), cfg.per_step,
                          cfg.budget_balanced)


rbf.config = RBFConfig  # type: ignore[attr-defined]


class TabularConfig(ModifierConfig):
    """``name: tabular``: one weight per state (and step, with ``per_step``)."""

    name: Literal["tabular"] = "tabular"


@modifiers.register("tabular")
def tabular(cfg: TabularConfig, game: Game) -> LinearModifier:
    return LinearModifier(game, sparse.identity(game.S, format="csr"), cfg.per_step,
                          cfg.budget_balanced)


tabular.config = TabularConfig  # type: ignore[attr-defined]


class PotentialConfig(ModifierConfig):
    """``name: potential_based``: shaping ``F = Phi_w(s_{t+1}) - Phi_w(s_t)``.

    ``potential`` is any linear family (``{name: rbf, centers: 3}``...) giving ``Phi_w``;
    its own ``bounds``/``per_step`` are taken from here.
    """

    name: Literal["potential_based"] = "potential_based"
    potential: dict[str, Any] = Field(default_factory=lambda: {"name": "rbf"})


class PotentialShaping:
    """Potential-based shaping: ``Theta_t(s, a) = E[Phi_{t+1}(s') | s, a] - Phi_t(s)``.

    With ``Phi_T = 0`` (no potential after the last step) the shaping terms along any
    trajectory telescope to ``-Phi_0(s_0)``, which no action affects: every agent's
    action values shift by ``-Phi_t(s)``, a state-only term, so best responses, and
    hence the equilibrium set, are unchanged (Ng et al. 1999; Devlin & Kudenko 2011).
    Budget-balanced: ``Phi_0 = 0`` as well, so each agent's transfers sum to exactly
    zero over the horizon.
    """

    def __init__(self, game: Game, inner: LinearModifier, budget_balanced: bool) -> None:
        self.game = game
        self.inner = inner
        self.n_params = inner.n_params
        self.budget_balanced = budget_balanced

    def field(self, w: Array) -> Array:
        phi = np.array(self.inner.field(w))
        if self.budget_balanced:
            phi[0] = 0.0
        return phi

    def theta(self, w: Array) -> ThetaLike:
        phi = self.field(w)  # Phi_t before step t, t = 0..T-1
        T = self.game.T
        out = np.empty((T, self.game.S, self.game.A))
        for t in range(T):
            nxt = phi[t + 1] if t + 1 < T else np.zeros(self.game.S)
            out[t] = self.game.transition.expect(nxt) - phi[t][:, None]
        return out

    def theta_vjp(self, w: Array, g_theta: Array, mu: Array | None = None) -> Array:
        """``(d Theta / d w)^T g`` through ``Theta_t = E[Phi_{t+1}(s')] - Phi_t(s)``."""
        from crowdsteer.adjoint import expect_T

        g_theta = np.asarray(g_theta, dtype=float)
        T = self.game.T
        g_phi = -g_theta.sum(axis=2)
        for t in range(T - 1):
            g_phi[t + 1] += expect_T(self.game, g_theta[t])
        if self.budget_balanced:
            g_phi[0] = 0.0
        return self.inner.field_vjp(g_phi)

    def theta_mu_vjp(self, w: Array, g_theta: Array) -> None:
        return None


@modifiers.register("potential_based")
def potential_based(cfg: PotentialConfig, game: Game) -> PotentialShaping:
    raw = {**cfg.potential, "bounds": list(cfg.bounds), "per_step": cfg.per_step}
    name = raw.get("name", "rbf")
    if name == "potential_based" or name not in modifiers:
        allowed = [n for n in modifiers.names() if n != "potential_based"]
        raise ConfigError("modifier.potential.name",
                          f"unknown potential family {name!r}; allowed: {', '.join(allowed)}")
    builder = modifiers.get(name)
    inner_cfg = validate(builder.config, raw, "modifier.potential")
    inner = builder(inner_cfg, game)
    return PotentialShaping(game, inner, cfg.budget_balanced)


potential_based.config = PotentialConfig  # type: ignore[attr-defined]
