"""The crowd game: agents on a ``height x width`` grid choose where to be.

Cell ``s = (i, j)`` (row ``i``, column ``j``) has index ``s = i * width + j``.
Agents start from ``mu0`` at ``t = 0``, move, and are rewarded where they land at
``t = 1..T`` (0-based ``t = 0..T-1`` in code). The intrinsic landing reward is

.. math::

    r_t(s) = d_t(s) - c \\sum_{s'} K(s, s') \\mu_t(s'), \\qquad
    K(s, s') = \\exp(-|s - s'|^2 / (2 l^2))         \\quad (\\text{kernel})

    r_t(s) = d_t(s) - c \\log \\mu_t(s)               \\quad (\\text{log})

with desirability ``d_t(s) = sum_b h_b exp(-|s - c_b|^2 / (2 sigma_b^2))``.
With the kernel congestion this is a potential game: the one-shot equilibrium
maximises ``a . mu - (c/2) mu' K mu + tau H(mu)`` with ``a = d + Theta``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from crowdsteer import guards
from crowdsteer.config_base import Strict, check_values, load_npy
from crowdsteer.errors import ConfigError
from crowdsteer.games.base import AnyMove, NoisyMoves, Transition, games

Array = np.ndarray
LOG_FLOOR = 1e-12  # mu below this is treated as this in log(mu): a finite, very large pull

PositiveInt = Annotated[int, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]


class Bump(Strict):
    """A Gaussian bump of desirability (or target mass)."""

    center: list[float] | list[list[float]]
    """``[i, j]`` (row, column), or a list of ``T`` such centers, one per step."""
    height: float = 1.0
    """Peak value ``h``."""
    width: Annotated[float, Field(gt=0)] = 1.0
    """Standard deviation ``sigma`` in cell units."""

    @field_validator("center")
    @classmethod
    def _pairs(cls, v: list) -> list:
        items = v if v and isinstance(v[0], list) else [v]
        for c in items:
            if len(c) != 2:
                raise ValueError(f"a center is [row, column], got {c!r}")
        return v


class FieldSpec(Strict):
    """A field over the grid, per step: Gaussian bumps or a ``.npy`` file."""

    bumps: list[Bump] | None = None
    file: str | None = None
    """``.npy`` of shape ``(T, height, width)`` or ``(height, width)``."""

    @model_validator(mode="after")
    def _one_source(self) -> "FieldSpec":
        if (self.bumps is None) == (self.file is None):
            raise ValueError("give exactly one of 'bumps' or 'file'")
        return self


class Congestion(Strict):
    kind: Literal["kernel", "log"] = "kernel"
    """``kernel``: Gaussian crowding kernel; ``log``: ``-c log mu``."""
    strength: NonNegFloat = 1.0
    """``c``: how much crowding costs."""
    radius: NonNegFloat = 1.0
    """``l``: kernel width in cells (0: only one's own cell)."""


class CrowdConfig(Strict):
    """The ``game`` section for ``name: crowd``."""

    name: Literal["crowd"] = "crowd"
    height: PositiveInt = 10
    width: PositiveInt = 10
    horizon: PositiveInt = 1
    """``T``: number of steps."""
    moves: Literal["any", "local"] | None = None
    """``any``: jump to any cell (default when horizon is 1); ``local``: stay/up/down/left/right."""
    noise: Annotated[float, Field(ge=0, le=1)] = 0.0
    """Probability that the chosen move is replaced by a uniformly drawn one (local moves)."""
    initial: str = "uniform"
    """``uniform`` or a ``.npy`` of shape ``(height, width)``."""
    desirability: FieldSpec = Field(
        default_factory=lambda: FieldSpec(bumps=[Bump(center=[0.0, 0.0], height=1.0, width=2.0)])
    )
    congestion: Congestion = Field(default_factory=Congestion)

    @model_validator(mode="after")
    def _moves(self) -> "CrowdConfig":
        if self.moves is None:
            object.__setattr__(self, "moves", "any" if self.horizon == 1 else "local")
        if self.moves == "any" and self.noise > 0:
            raise ValueError("noise applies to moves: local only")
        return self


def grid_field(spec: FieldSpec, T: int, height: int, width: int, field_name: str,
               base_dir: Path | None = None) -> Array:
    """Evaluate a :class:`FieldSpec` on the grid: ``(T, height * width)``."""
    if spec.file is not None:
        arr = load_npy(spec.file, f"{field_name}.file", base_dir)
        if arr.shape == (height, width):
            arr = np.broadcast_to(arr, (T, height, width))
        if arr.shape != (T, height, width):
            raise ConfigError(
                f"{field_name}.file",
                f"shape {arr.shape} does not fit the game; allowed: ({T}, {height}, {width}) "
                f"or ({height}, {width})",
            )
        if not np.all(np.isfinite(arr)):
            raise ConfigError(f"{field_name}.file", "contains NaN or infinite values")
        return np.array(arr, dtype=float).reshape(T, height * width)
    rows, cols = np.divmod(np.arange(height * width), width)
    out = np.zeros((T, height * width))
    for b, bump in enumerate(spec.bumps or []):
        centers = bump.center if isinstance(bump.center[0], list) else [bump.center] * T
        if len(centers) != T:
            raise ConfigError(
                f"{field_name}.bumps.{b}.center",
                f"{len(centers)} centers given; a moving bump needs one per step (T = {T})",
            )
        c = np.asarray(centers, dtype=float)  # (T, 2)
        dist2 = (rows[None, :] - c[:, :1]) ** 2 + (cols[None, :] - c[:, 1:]) ** 2
        w2 = 2 * bump.width**2
        with np.errstate(over="ignore", under="ignore"):
            # a width whose square underflows is a spike at the center, not 0 / 0 there
            z = dist2 / w2 if w2 > 0 else np.where(dist2 > 0, np.inf, 0.0)
            out += bump.height * np.exp(-z)
    return check_values(out, field_name + ".bumps")


def local_moves(height: int, width: int, noise: float) -> NoisyMoves:
    """Stay, up, down, left, right; off-grid moves stay put; noise mixes in a uniform move.

    Successor ``k`` is the outcome of move ``k``: the intended move ``a`` lands where it
    aims with probability ``1 - p + p/5``, every other move's target gets ``p/5``.
    """
    S = height * width
    rows, cols = np.divmod(np.arange(S), width)
    di = np.array([0, -1, 1, 0, 0])
    dj = np.array([0, 0, 0, -1, 1])
    ni = rows[:, None] + di[None, :]
    nj = cols[:, None] + dj[None, :]
    inside = (ni >= 0) & (ni < height) & (nj >= 0) & (nj < width)
    target = np.where(inside, ni * width + nj, np.arange(S)[:, None])  # (S, 5)
    return NoisyMoves(target, noise)


@dataclass(frozen=True, eq=False)
class CrowdGame:
    """The crowd game as arrays. Build it with :func:`build` from a :class:`CrowdConfig`.

    Attributes
    ----------
    d
        ``(T, S)`` desirability.
    mu0
        ``(S,)`` initial distribution.
    """

    height: int
    width: int
    T: int
    d: Array
    mu0: Array
    transition: Transition
    kind: str = "kernel"
    c: float = 1.0
    radius: float = 1.0
    allowed: Array | None = None
    _kr: Array = field(init=False, repr=False)
    _kc: Array = field(init=False, repr=False)
    concave_potential = True
    """The potential is concave in ``mu`` (``-c mu log mu``, or ``-c mu' K mu / 2`` with the
    positive semi-definite Gaussian kernel): its maximisers are the equilibria."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_kr", _kernel_1d(self.height, self.radius))
        object.__setattr__(self, "_kc", _kernel_1d(self.width, self.radius))

    @property
    def S(self) -> int:
        return self.height * self.width

    @property
    def A(self) -> int:
        return self.transition.A  # type: ignore[attr-defined]

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    def crowding(self, mu_t: Array) -> Array:
        """``sum_s' K(s, s') mu(s')`` via the separable kernel, ``(S,)``; no ``S x S`` matrix."""
        M = mu_t.reshape(self.height, self.width)
        return (self._kr @ M @ self._kc.T).ravel()

    def reward(self, t: int, mu_t: Array) -> Array:
        if self.kind == "log":
            return self.d[t] - self.c * np.log(np.maximum(mu_t, LOG_FLOOR))
        return self.d[t] - self.c * self.crowding(mu_t)

    def reward_jvp(self, t: int, mu_t: Array, dmu_t: Array) -> Array:
        """Derivative of :meth:`reward` in ``mu_t`` along ``dmu_t``, ``(S,)``: ``-c dmu / mu``
        (0 below the log floor, where the reward is flat) or ``-c K dmu``."""
        if self.kind == "log":
            return self.reward_jacobian_diagonal(t, mu_t) * dmu_t
        return -self.c * self.crowding(dmu_t)

    def reward_jacobian_diagonal(self, t: int, mu_t: Array) -> Array | None:
        """``(S,)`` diagonal of ``d reward / d mu_t`` when the Jacobian is diagonal (log
        congestion: ``-c / mu``, 0 below the floor), ``None`` for the kernel."""
        if self.kind != "log":
            return None
        return np.where(mu_t > LOG_FLOOR, -self.c / np.maximum(mu_t, LOG_FLOOR), 0.0)

    def potential(self, t: int, mu_t: Array) -> float:
        """Population potential of step ``t``: its gradient in ``mu`` is the landing reward
        (up to a constant over the simplex)."""
        if self.kind == "log":
            m = np.maximum(mu_t, LOG_FLOOR)
            return float(self.d[t] @ mu_t - self.c * np.sum(mu_t * np.log(m)))
        return float(self.d[t] @ mu_t - 0.5 * self.c * mu_t @ self.crowding(mu_t))

    def kernel_matrix(self) -> Array:
        """Dense ``(S, S)`` kernel, for tests on tiny grids only."""
        return np.kron(self._kr, self._kc)


def _kernel_1d(n: int, radius: float) -> Array:
    x = np.arange(n, dtype=float)
    if radius * radius < 1e-300:  # 0, or so small that 2 r^2 underflows: only one's own cell
        return np.eye(n)
    return np.exp(-((x[:, None] - x[None, :]) ** 2) / (2 * radius**2))


@games.register("crowd")
def build(cfg: CrowdConfig, base_dir: Path | None = None, field_name: str = "game") -> CrowdGame:
    """Build a :class:`CrowdGame` from its validated config section."""
    h, w, T = cfg.height, cfg.width, cfg.horizon
    guards.check_crowd(h, w, T, cfg.moves, cfg.noise)
    S = h * w
    if cfg.initial == "uniform":
        mu0 = np.full(S, 1.0 / S)
    else:
        arr = load_npy(cfg.initial, f"{field_name}.initial", base_dir)
        if arr.shape != (h, w):
            raise ConfigError(f"{field_name}.initial",
                              f"shape {arr.shape} does not fit the grid; allowed: ({h}, {w})")
        mu0 = check_distribution(arr.ravel(), f"{field_name}.initial", allow_zeros=True)
    d = grid_field(cfg.desirability, T, h, w, f"{field_name}.desirability", base_dir)
    transition = AnyMove(S) if cfg.moves == "any" else local_moves(h, w, cfg.noise)
    game = CrowdGame(h, w, T, d, mu0, transition, cfg.congestion.kind, cfg.congestion.strength,
                     cfg.congestion.radius)
    guards.check_horizon(game, f"{field_name}.horizon")
    return game


build.config = CrowdConfig  # type: ignore[attr-defined]


def check_distribution(p: Array, field_name: str, allow_zeros: bool) -> Array:
    """Validate and normalise a non-negative array into a distribution."""
    if not np.all(np.isfinite(p)):
        raise ConfigError(field_name, "contains NaN or infinite values; allowed: finite numbers >= 0")
    if np.any(p < 0):
        raise ConfigError(field_name, "has negative entries; allowed: numbers >= 0")
    if not allow_zeros and np.any(p == 0):
        raise ConfigError(field_name, "has zero entries, which make the KL divergence infinite; "
                          "allowed: numbers > 0")
    total = p.sum()
    if total <= 0:
        raise ConfigError(field_name, "sums to zero; it needs positive mass")
    return p / total
