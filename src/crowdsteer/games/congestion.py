"""Atomic congestion games: ``congestion`` (resources with affine costs) and ``spectrum``.

Both are games of ``N`` players laid out as populations of mass ``1/N``
(:class:`~crowdsteer.games.matrix.PlayerGame`): a player's landing state is the
strategy it chose, its reward minus its expected cost, welfare minus the average cost
(the social cost divided by ``N``) and the exploitability the average Nash gap.

``congestion`` (Rosenthal 1973)
    Resources ``r`` cost ``c_r(l) = a_r + b_r l`` to each of their ``l`` users; a
    strategy ``k`` is a set of resources (default: each resource alone), ``G`` the
    ``(K, R)`` strategy-resource incidence. With independent mixed strategies ``x`` and
    ``p_ir = (x G)_ir`` the probability that player ``i`` uses ``r``, player ``i``'s expected
    cost of strategy ``k`` counts itself once on top of the others' expected load:

    .. math::

        C_i(k) = \\sum_r G_{kr}\\big(a_r + b_r (1 + \\textstyle\\sum_{j \\ne i} p_{jr})\\big),

    exact because costs are affine (so the exploitability is the exact atomic Nash gap of
    the mixed profile). Rosenthal's potential ``Phi(s) = sum_r sum_{l=1}^{L_r} c_r(l)`` of a
    pure profile changes, when one player deviates, by exactly the change of that
    player's cost (an exact potential game, Monderer & Shapley 1996). Its multilinear
    extension, with ``m_r = sum_i p_ir``,

    .. math::

        E[\\Phi] = \\sum_r a_r m_r + \\tfrac{b_r}{2}\\big(m_r^2 + m_r + \\textstyle\\sum_i
        p_{ir}(1 - p_{ir})\\big), \\qquad \\partial E[\\Phi] / \\partial x_i(k) = C_i(k),

    so ``potential(t, mu) = -E[Phi] / N``. The social cost of a pure profile is
    ``sum_r L_r c_r(L_r)``.

``spectrum`` (a spatial congestion game; Tekin et al. 2012)
    Radios at positions ``z_i`` choose one of ``C`` channels; radios closer than the
    interference radius are neighbours (``Adj``, symmetric, zero diagonal). Radio ``i``'s
    cost of channel ``c`` is the channel's base cost plus the number of neighbours on it:

    .. math::

        C_i(c) = a_c + \\sum_j \\mathrm{Adj}_{ij}\\, x_j(c), \\qquad
        \\Phi = \\sum_i a_{c_i} + \\tfrac12 \\sum_{i, j} \\mathrm{Adj}_{ij} [c_i = c_j],

    an exact potential game because interference is symmetric; an interference-free
    assignment is a proper colouring of the interference graph. With equal base costs
    ``Phi`` is half the social cost, so the best equilibrium is optimal and the
    inefficiency is one of selection (local minima of ``Phi``, or a mixed equilibrium).

Learners and steering. The exact solver starts every player at the uniform mix, so
players with the same strategies and the same position in the game (identical
players in ``congestion``; radios with the same neighbourhood in ``spectrum``) move in
lock-step and reach a *symmetric* equilibrium, often mixed: the inefficiency left
alone is the price of anarchy plus the cost of that randomisation. Both games expose
their resources (channels) as ``edge_names`` and ``toll_features()``, so the ``tolls``
modifier charges each resource a price ``w_r`` per use (cost units). Such anonymous
prices keep identical players identical: they can pick the best symmetric profile but
not an asymmetric optimum (see ``examples/congestion.yaml``: the atomic Pigou game). A
per-player price, e.g. ``tabular`` (one weight per state, ``N + N K``), can, at the cost of
many more weights. Sampling learners (``fictitious_play``, ``independent``) break the
symmetry by chance instead.

Examples
--------
>>> game = build(CongestionConfig(players=2, resources=[{"name": "x", "a": 0, "b": 1},
...                                                      {"name": "one", "a": 2, "b": 0}]))
>>> (game.N, game.K, game.S)
(2, 2, 6)
>>> game.pure_costs(np.array([[0, 0], [0, 1]])).tolist()   # both on x; then one moves
[[2.0, 2.0], [1.0, 2.0]]
>>> game.rosenthal(np.array([[0, 0], [0, 1]])).tolist()     # 1 + 2; 1 + 2
[3.0, 3.0]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from crowdsteer.config_base import Strict
from crowdsteer.errors import ConfigError
from crowdsteer.games.base import games
from crowdsteer.games.matrix import PlayerGame

Array = np.ndarray
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
MAX_PLAYERS = 10_000


class CostGame(PlayerGame):
    """A :class:`PlayerGame` given by costs: ``payoffs = -costs``; pure-profile helpers."""

    def costs(self, x: Array) -> Array:
        """``(..., N, K)`` expected cost of each strategy given the others' mixes ``x``."""
        raise NotImplementedError

    def payoffs(self, x: Array) -> Array:
        return -self.costs(x)

    def pure_costs(self, profiles: Array) -> Array:
        """``(M, N)``: each player's cost in each pure profile ``(M, N)``."""
        profiles = np.asarray(profiles, dtype=np.int64)
        c = self.costs(np.eye(self.K)[profiles])
        return np.take_along_axis(c, profiles[..., None], axis=-1)[..., 0]

    def social_cost(self, profiles: Array) -> Array:
        """``(M,)``: total cost of each pure profile."""
        return self.pure_costs(profiles).sum(axis=-1)

    def rosenthal(self, profiles: Array) -> Array:
        """``(M,)``: the exact potential of each pure profile (a cost; lower is better)."""
        profiles = np.asarray(profiles, dtype=np.int64)
        return -np.array([self.potential_value(np.eye(self.K)[p]) for p in profiles])

    # The tolls modifier charges whatever a game lists as edges (crowdsteer.modifiers.tolls
    # .Tolled): here the resources, so one toll per resource (per channel in spectrum).
    resource_names: tuple[str, ...]

    @property
    def edge_names(self) -> tuple[str, ...]:
        """The resources, under the name the ``tolls`` modifier looks for."""
        return self.resource_names

    def usage(self) -> Array:
        """``(K, R)``: resources each strategy uses."""
        raise NotImplementedError

    def toll_features(self) -> Array:
        """``(S, R)``: reward per unit toll, ``-G[k]`` on every landing state ``(i, k)``."""
        G = self.usage()
        return np.concatenate([np.zeros((self.N, G.shape[1])), -np.tile(G, (self.N, 1))])


# ----------------------------------------------------------------------------- congestion


class Resource(Strict):
    """A resource with cost ``a + b l`` to each of its ``l`` users."""

    name: str | None = Field(default=None, min_length=1)
    """Label (default ``r0, r1, ...``)."""
    a: NonNegFloat = 0.0
    """Fixed part of the cost to each user (>= 0)."""
    b: NonNegFloat = 1.0
    """Extra cost per user (>= 0)."""


class CongestionConfig(Strict):
    """The ``game`` section for ``name: congestion``."""

    name: Literal["congestion"] = "congestion"
    players: Annotated[int, Field(gt=0, le=MAX_PLAYERS)]
    """``N``: players, each choosing one strategy."""
    resources: list[Resource] = Field(min_length=1)
    """``{name, a, b}`` per resource."""
    strategies: list[list[str]] | None = None
    """Each a list of resource names used together (e.g. a path); default: each resource
    alone. Every player has the same strategies."""

    @model_validator(mode="after")
    def _names(self) -> "CongestionConfig":
        names = resource_names(self)
        if len(set(names)) != len(names):
            raise ValueError(f"resource names must be unique, got {list(names)}")
        for k, strat in enumerate(self.strategies or []):
            if not strat:
                raise ValueError(f"strategies.{k} is empty; a strategy uses resources")
            for r in strat:
                if r not in names:
                    raise ValueError(f"strategies.{k}: unknown resource {r!r}; allowed: "
                                     + ", ".join(names))
            if len(set(strat)) != len(strat):
                raise ValueError(f"strategies.{k} names a resource twice")
        if len(self.strategies or names) < 2:
            raise ValueError("a player needs at least 2 strategies (or 2 resources)")
        return self


def resource_names(cfg: CongestionConfig) -> tuple[str, ...]:
    return tuple(r.name if r.name is not None else f"r{i}" for i, r in enumerate(cfg.resources))


@dataclass(frozen=True, eq=False)
class CongestionGame(CostGame):
    """An atomic congestion game with affine costs; see the module docstring.

    Attributes
    ----------
    a, b
        ``(R,)`` cost coefficients: ``c_r(l) = a_r + b_r l``.
    G
        ``(K, R)`` 0/1 strategy-resource incidence.
    """

    a: Array
    b: Array
    G: Array
    resource_names: tuple[str, ...]
    action_names: tuple[str, ...]
    player_names: tuple[str, ...]
    T: int = 1

    def usage(self) -> Array:
        return self.G

    def costs(self, x: Array) -> Array:
        p = np.asarray(x, dtype=float) @ self.G                    # (..., N, R)
        others = p.sum(axis=-2, keepdims=True) - p
        return (self.a + self.b * (1.0 + others)) @ self.G.T      # (..., N, K)

    def potential_value(self, x: Array) -> float:
        p = np.asarray(x, dtype=float) @ self.G                    # (N, R)
        m = p.sum(axis=0)
        expected = self.a @ m + 0.5 * self.b @ (m**2 + m + (p * (1 - p)).sum(axis=0))
        return float(-expected)

    def loads(self, profiles: Array) -> Array:
        """``(M, R)``: users of each resource in each pure profile."""
        return np.eye(self.K)[np.asarray(profiles)].sum(axis=-2) @ self.G


@games.register("congestion")
def build(cfg: CongestionConfig, base_dir: Path | None = None,
          field_name: str = "game") -> CongestionGame:
    """Build a :class:`CongestionGame` from its validated config section."""
    names = resource_names(cfg)
    strategies = cfg.strategies or [[n] for n in names]
    G = np.zeros((len(strategies), len(names)))
    for k, strat in enumerate(strategies):
        G[k, [names.index(r) for r in strat]] = 1.0
    if len({tuple(row) for row in G}) != len(G):
        raise ConfigError(f"{field_name}.strategies", "two strategies use the same resources")
    return CongestionGame(
        a=np.array([r.a for r in cfg.resources]), b=np.array([r.b for r in cfg.resources]),
        G=G, resource_names=names, action_names=tuple("+".join(s) for s in strategies),
        player_names=tuple(f"player{i}" for i in range(cfg.players)))


build.config = CongestionConfig  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------- spectrum


class SpectrumConfig(Strict):
    """The ``game`` section for ``name: spectrum``: radios choosing channels."""

    name: Literal["spectrum"] = "spectrum"
    positions: list[list[float]] | None = None
    """``[x, y]`` of every radio; or leave out and give ``radios``."""
    radios: Annotated[int, Field(gt=0, le=MAX_PLAYERS)] | None = None
    """Number of radios placed uniformly at random in ``[0, side]^2`` (with ``placement_seed``)."""
    side: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.0
    """Side of the square random radios are placed in."""
    placement_seed: Annotated[int, Field(ge=0)] = 0
    """Seed of the random placement (part of the game's definition, not of the run)."""
    channels: Annotated[int, Field(ge=2)] = 2
    """``C``: channels to choose from."""
    radius: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.0
    """Radios at most this far apart interfere."""
    channel_cost: list[NonNegFloat] | None = None
    """Base cost ``a_c`` of each channel (default 0)."""

    @field_validator("positions")
    @classmethod
    def _pairs(cls, v: list[list[float]] | None) -> list[list[float]] | None:
        for i, p in enumerate(v or []):
            if len(p) != 2 or not all(np.isfinite(p)):
                raise ValueError(f"position {i} must be a finite [x, y], got {p!r}")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> "SpectrumConfig":
        if (self.positions is None) == (self.radios is None):
            raise ValueError("give exactly one of 'positions' or 'radios'")
        if self.positions is not None and not self.positions:
            raise ValueError("positions is empty; give at least one radio")
        if self.channel_cost is not None and len(self.channel_cost) != self.channels:
            raise ValueError(f"channel_cost has {len(self.channel_cost)} entries; one per "
                             f"channel ({self.channels}) is needed")
        return self


@dataclass(frozen=True, eq=False)
class SpectrumGame(CostGame):
    """Radios choosing channels; see the module docstring.

    Attributes
    ----------
    positions
        ``(N, 2)`` radio positions.
    adjacency
        ``(N, N)`` 0/1 interference graph (symmetric, zero diagonal).
    base
        ``(C,)`` base cost of each channel.
    """

    positions: Array
    adjacency: Array
    base: Array
    action_names: tuple[str, ...]
    player_names: tuple[str, ...]
    T: int = 1

    @property
    def resource_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.action_names

    def usage(self) -> Array:
        return np.eye(self.K)

    def costs(self, x: Array) -> Array:
        x = np.asarray(x, dtype=float)
        return self.base + self.adjacency @ x

    def potential_value(self, x: Array) -> float:
        x = np.asarray(x, dtype=float)
        expected = 0.5 * np.sum(x * (self.adjacency @ x)) + np.sum(x @ self.base)
        return float(-expected)

    def interference(self, profiles: Array) -> Array:
        """``(M,)``: interfering (unordered) pairs on the same channel in each pure profile."""
        p = np.asarray(profiles)
        same = p[:, :, None] == p[:, None, :]
        return 0.5 * np.einsum("mij,ij->m", same, self.adjacency)


@games.register("spectrum")
def build_spectrum(cfg: SpectrumConfig, base_dir: Path | None = None,
                   field_name: str = "game") -> SpectrumGame:
    """Build a :class:`SpectrumGame`: place the radios and draw the interference graph."""
    if cfg.positions is not None:
        z = np.array(cfg.positions, dtype=float)
    else:
        z = np.random.default_rng(cfg.placement_seed).uniform(0, cfg.side, (cfg.radios, 2))
    dist = np.linalg.norm(z[:, None, :] - z[None, :, :], axis=-1)
    adjacency = ((dist <= cfg.radius) & ~np.eye(len(z), dtype=bool)).astype(float)
    base = np.zeros(cfg.channels) if cfg.channel_cost is None else np.array(cfg.channel_cost)
    return SpectrumGame(z, adjacency, base, tuple(f"ch{c}" for c in range(cfg.channels)),
                        tuple(f"radio{i}" for i in range(len(z))))


build_spectrum.config = SpectrumConfig  # type: ignore[attr-defined]
