"""Normal-form games, and the state layout every finite-player game shares.

Finite players as populations
-----------------------------
The solvers see a mean-field game (``T``, ``S``, ``A``, ``mu0``, a transition and a
landing reward). A game of ``N`` players with ``K`` actions each fits it as ``N``
populations of mass ``1/N`` (:class:`PlayerGame`):

* state ``i`` (``0 <= i < N``) is player ``i`` before its first move (``mu0(i) = 1/N``);
* state ``N + i K + k`` is player ``i`` having just played ``k`` (its *landing* state);
* action ``k`` takes player ``i`` from any of its states to ``N + i K + k``.

The mass of player ``i`` on its landing states, times ``N``, is its mixed action
``x_i`` (``(N, K)`` rows on the simplex, :meth:`PlayerGame.mixed`), and a game only has to
say what each action pays against a mixed profile, ``payoffs(x) -> (N, K)``. Rewards are
expected payoffs, so for games whose payoffs are linear in every other player's mixed
action (all the games here) the exploitability the solvers report is the average over
players of the exact Nash gap of the mixed profile:

.. math::

    \\text{expl}(\\pi) = \\frac{1}{N} \\sum_i \\Big(\\max_k u_i(k, x_{-i})
    - \\sum_k x_i(k)\\, u_i(k, x_{-i})\\Big),

and welfare ``sum_s mu(s) r(s)`` is the players' average expected payoff. With horizon
``T > 1`` the stage game is played ``T`` times and a player's state is its own previous
action, so a policy ``(T, S, A)`` conditions on it (a repeated game; the learners' memory
is one step of their own play).

Normal-form games
-----------------
``players: 1`` (default): one symmetric population (``N = 1``, ``S = 1 + K``); an agent
playing ``i`` meets a random other agent, so the landing reward of action ``i`` is

.. math::

    r(i) = \\sum_j M_{ij}\\, \\mu(j)

with ``M`` the row player's payoff table and ``mu`` over landing states. Its equilibria
are the symmetric Nash equilibria of the two-player game. ``players: 2``: a row and a
column population of mass 1/2 each, each paid against the other's mixed action:
``u_0(k) = (M x_1)_k``, ``u_1(l) = (B^T x_0)_l`` with ``B`` the column player's table
(``B = M^T`` for a symmetric game).

Presets (``preset: prisoners_dilemma`` or ``stag_hunt``, with their parameters):

* prisoner's dilemma (T, R, P, S) = (5, 3, 1, 0), actions (cooperate, defect):
  ``M = [[R, S], [T, P]]``; defecting is strictly dominant, welfare 1 instead of 3.
* stag hunt (stag, hare, failure) = (4, 3, 0), actions (stag, hare):
  ``M = [[stag, failure], [hare, hare]]``; equilibria all-stag, all-hare and the mixed one
  where stag pays as much as hare, ``stag * p + failure * (1 - p) = hare``, i.e.
  ``p* = (hare - failure) / (stag - failure) = 3/4``.

Equilibrium selection: the exact solver starts at the uniform mix, so in the stag hunt
(``p = 1/2 < p*``) it reaches hare, as mirror descent does from three quarters of random
starts. Potential-based shaping (``potential_based``) keeps the equilibrium set of a
repeated game (``horizon > 1``) but cannot change what the exact solver selects: it shifts
every exact action value by ``-Phi_t(s)``, the same for all actions of a state. It acts
on learners that bootstrap on value estimates still being learned (for Q-learning,
shaping is the same as starting the estimates at ``Phi``; Wiewiora 2003), and then only
before the last round (``Phi_T = 0``); ``tests/test_matrix.py`` shows both.

Potential: a population game with payoffs ``M x`` has a potential iff ``P M P`` is
symmetric (``P = I - 11^T/K``, the projection onto the simplex's tangent space; Sandholm
2010, ch. 3); then, with ``d = P M 1 / K``,

.. math::

    f(x) = \\tfrac12 x^T P M P x + (d^T x)(1^T x), \\qquad
    \\nabla f(x) = M x + c(x) 1 \\quad \\text{for every } x \\ge 0

(``M = P M P + 1 1^T M / K + d 1^T``). Every symmetric 2 x 2 game qualifies. A two-player game is
an exact potential game (Monderer & Shapley 1996) iff ``Phi(i, j) = M_ij - M_0j + B_0j``
satisfies ``B_ij - B_ij' = Phi_ij - Phi_ij'``; its mixed extension ``x_0^T Phi x_1`` is
the potential. Games without one have no ``potential`` attribute (``is_potential`` False).

Examples
--------
>>> game = build(MatrixConfig(preset="prisoners_dilemma"))
>>> (game.N, game.K, game.S, game.A)
(1, 2, 3, 2)
>>> game.reward(0, np.array([0.0, 0.5, 0.5])).tolist()   # half cooperate, half defect
[0.0, 1.5, 3.0]
>>> stag = build(MatrixConfig(preset="stag_hunt"))
>>> stag.payoffs(np.array([[0.75, 0.25]])).tolist()      # p* = 3/4: stag pays hare's 3
[[3.0, 3.0]]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from crowdsteer.config_base import Strict
from crowdsteer.games.base import SparseMoves, games

Array = np.ndarray
PositiveInt = Annotated[int, Field(gt=0)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class PlayerGame:
    """``N`` players with ``K`` actions each, as ``N`` populations of mass ``1/N``.

    Subclasses set ``T``, ``player_names`` (``N``) and ``action_names`` (``K``) and define
    :meth:`payoffs`; the layout (see the module docstring) is built here.

    Attributes
    ----------
    mu0
        ``(S,)``: ``1/N`` on each player's starting state, 0 on landing states.
    transition
        Action ``k`` takes player ``i`` from any of its states to ``N + i K + k``.
    allowed
        ``None``: every action is open in every state.
    """

    T: int
    player_names: tuple[str, ...]
    action_names: tuple[str, ...]
    allowed: Array | None = None
    is_potential: bool = True
    """Whether the game has a potential (then, and only then, :attr:`potential` exists)."""

    @property
    def N(self) -> int:
        return len(self.player_names)

    @property
    def K(self) -> int:
        return len(self.action_names)

    @property
    def S(self) -> int:
        return self.N + self.N * self.K

    @property
    def A(self) -> int:
        return self.K

    @cached_property
    def player_of(self) -> Array:
        """``(S,)``: the player each state belongs to."""
        N, K = self.N, self.K
        return np.concatenate([np.arange(N), np.repeat(np.arange(N), K)])

    @cached_property
    def state_action(self) -> Array:
        """``(S,)``: the action that leads into each state (``-1`` for starting states)."""
        return np.concatenate([np.full(self.N, -1), np.tile(np.arange(self.K), self.N)])

    @cached_property
    def transition(self) -> SparseMoves:
        N, K, S = self.N, self.K, self.S
        nxt = N + self.player_of[:, None] * K + np.arange(K)[None, :]
        return SparseMoves(nxt[:, :, None], np.ones((S, K, 1)))

    @cached_property
    def mu0(self) -> Array:
        return np.concatenate([np.full(self.N, 1.0 / self.N), np.zeros(self.N * self.K)])

    @property
    def state_names(self) -> tuple[str, ...]:
        """Starting states, then ``player:action`` landing states."""
        return self.player_names + tuple(f"{p}:{a}" for p in self.player_names
                                         for a in self.action_names)

    def state(self, i: int, k: int) -> int:
        """Index of player ``i``'s landing state after action ``k``."""
        return self.N + i * self.K + k

    def mixed(self, mu_t: Array) -> Array:
        """``(N, K)``: mixed actions ``x_i = N mu_t(landing states of i)`` (``mu_t`` after a
        move; each player has mass ``1/N``, only about that with sampled agents)."""
        return self.N * np.asarray(mu_t)[self.N:].reshape(self.N, self.K)

    def landing(self, x: Array) -> Array:
        """``(S,)``: the distribution after a move when the players mix ``x`` ``(N, K)``."""
        return np.concatenate([np.zeros(self.N), np.asarray(x, dtype=float).ravel() / self.N])

    def policy(self, x: Array) -> Array:
        """``(T, S, A)``: every state of player ``i`` plays ``x_i`` at every step."""
        return np.broadcast_to(np.asarray(x, dtype=float)[self.player_of],
                               (self.T, self.S, self.K)).copy()

    def payoffs(self, x: Array) -> Array:
        """Expected payoff ``u_i(k, x_{-i})`` of each action: ``(..., N, K)`` from ``x``
        ``(..., N, K)``; it must not depend on ``x_i`` itself."""
        raise NotImplementedError

    def reward(self, t: int, mu_t: Array) -> Array:
        """``(S,)``: ``u_i(k, x_{-i})`` on landing state ``(i, k)``, 0 on starting states."""
        return np.concatenate([np.zeros(self.N), self.payoffs(self.mixed(mu_t)).ravel()])

    def opponents(self, mu_t: Array) -> Array:
        """``(S, K)``: the mixed action of a random other agent met by an agent in each state:
        its own population's (``N = 1``) or the average of the other players' (``N > 1``)."""
        x = self.mixed(mu_t)
        if self.N == 1:
            other = x
        else:
            other = (x.sum(axis=0, keepdims=True) - x) / (self.N - 1)
        return other[self.player_of]

    def pure_payoffs(self, profiles: Array) -> Array:
        """``(M, N, K)``: each action's payoff against each pure profile ``(M, N)`` of action
        indices (row ``[m, i]``: what player ``i`` would get from every action, the others
        fixed)."""
        profiles = np.asarray(profiles, dtype=np.int64)
        return self.payoffs(np.eye(self.K)[profiles])

    def potential_value(self, x: Array) -> float:
        """Stage potential ``Psi(x)`` of a mixed profile: ``dPsi/dx_i(k) = u_i(k, x_{-i})``
        up to a constant per player, for any non-negative ``x`` (not only on the simplex)."""
        raise NotImplementedError

    @property
    def potential(self) -> Callable[[int, Array], float]:
        """``potential(t, mu_t)``: the population potential ``Psi(x) / N``, whose gradient in
        ``mu`` is :meth:`reward` up to a constant over each player's landing states.

        Only games with a potential have this attribute (``hasattr(game, "potential")`` is
        how callers ask); for the others reading it raises ``AttributeError``.
        """
        if not self.is_potential:
            raise AttributeError(f"this {type(self).__name__} is not a potential game")
        return self._potential

    def _potential(self, t: int, mu_t: Array) -> float:
        return self.potential_value(self.mixed(mu_t)) / self.N


def all_profiles(N: int, K: int) -> Array:
    """``(K^N, N)``: every pure profile, player 0 the slowest-changing digit (brute force on
    small games only)."""
    grids = np.meshgrid(*[np.arange(K)] * N, indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1)


def pure_nash(game: PlayerGame, profiles: Array, tol: float = 1e-9) -> Array:
    """``(M,)`` bool: which pure profiles are Nash equilibria (no player gains over ``tol``)."""
    u = game.pure_payoffs(profiles)
    own = np.take_along_axis(u, np.asarray(profiles)[..., None], axis=-1)[..., 0]
    return np.all(u.max(axis=-1) <= own + tol, axis=-1)


# --------------------------------------------------------------------------- matrix games


class PrisonersDilemma(Strict):
    """``preset: prisoners_dilemma``; actions (cooperate, defect); needs T > R > P > S."""

    name: Literal["prisoners_dilemma"] = "prisoners_dilemma"
    temptation: Finite = 5.0
    """``T``: defecting against a cooperator."""
    reward: Finite = 3.0
    """``R``: mutual cooperation."""
    punishment: Finite = 1.0
    """``P``: mutual defection."""
    sucker: Finite = 0.0
    """``S``: cooperating against a defector."""

    @model_validator(mode="after")
    def _ordered(self) -> "PrisonersDilemma":
        if not self.temptation > self.reward > self.punishment > self.sucker:
            raise ValueError("a prisoner's dilemma needs temptation > reward > punishment > "
                             f"sucker, got {self.temptation}, {self.reward}, "
                             f"{self.punishment}, {self.sucker}")
        return self

    def table(self) -> tuple[tuple[str, ...], list[list[float]]]:
        return ("cooperate", "defect"), [[self.reward, self.sucker],
                                         [self.temptation, self.punishment]]


class StagHunt(Strict):
    """``preset: stag_hunt``; actions (stag, hare); needs stag > hare > failure."""

    name: Literal["stag_hunt"] = "stag_hunt"
    stag: Finite = 4.0
    """Both hunt stag."""
    hare: Finite = 3.0
    """Hunting hare, whatever the other does."""
    failure: Finite = 0.0
    """Hunting stag alone."""

    @model_validator(mode="after")
    def _ordered(self) -> "StagHunt":
        if not self.stag > self.hare > self.failure:
            raise ValueError(f"a stag hunt needs stag > hare > failure, got {self.stag}, "
                             f"{self.hare}, {self.failure}")
        return self

    def table(self) -> tuple[tuple[str, ...], list[list[float]]]:
        return ("stag", "hare"), [[self.stag, self.failure], [self.hare, self.hare]]


Preset = Annotated[PrisonersDilemma | StagHunt, Field(discriminator="name")]


class MatrixConfig(Strict):
    """The ``game`` section for ``name: matrix``: a preset or a payoff table."""

    name: Literal["matrix"] = "matrix"
    preset: Preset | None = None
    """``prisoners_dilemma`` or ``stag_hunt``, or a mapping ``{name: ..., parameters}``."""
    payoffs: list[list[Finite]] | None = None
    """``K x K``: ``payoffs[i][j]`` is the row player's payoff for playing ``i`` against ``j``."""
    column_payoffs: list[list[Finite]] | None = None
    """``K x K`` payoffs of the column player (``players: 2`` only; default: the transpose of
    ``payoffs``, a symmetric game)."""
    actions: list[str] | None = None
    """Names of the ``K`` actions (default: the preset's, or ``a0, a1, ...``)."""
    players: Literal[1, 2] = 1
    """1: one symmetric population; 2: a row and a column population."""
    horizon: PositiveInt = 1
    """``T``: times the stage game is played; a player's state is its previous action."""

    @field_validator("preset", mode="before")
    @classmethod
    def _preset_name(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _one_table(self) -> "MatrixConfig":
        if (self.preset is None) == (self.payoffs is None):
            raise ValueError("give exactly one of 'preset' or 'payoffs'")
        if self.column_payoffs is not None and self.players != 2:
            raise ValueError("column_payoffs need players: 2 (one population plays a "
                             "symmetric game)")
        K = 2 if self.preset is not None else len(self.payoffs or [])
        for key in ("payoffs", "column_payoffs"):
            table = getattr(self, key)
            if table is not None and (len(table) < 2 or any(len(r) != len(table)
                                                            for r in table)):
                raise ValueError(f"{key} must be a square table with at least 2 actions")
            if table is not None and len(table) != K:
                raise ValueError(f"{key} has {len(table)} rows; the game has {K} actions")
        if self.actions is not None and (len(self.actions) != K
                                         or len(set(self.actions)) != K):
            raise ValueError(f"actions needs {K} distinct names, got {self.actions}")
        return self


@dataclass(frozen=True, eq=False)
class MatrixGame(PlayerGame):
    """A normal-form game from payoff tables; see the module docstring.

    Attributes
    ----------
    M
        ``(K, K)`` row player's payoffs ``M[i, j]`` (``i`` own action, ``j`` the other's).
    B
        ``(K, K)`` column player's payoffs ``B[i, j]`` (``i`` the row's action, ``j`` its own);
        ``M.T`` for a symmetric game.
    """

    M: Array
    B: Array
    action_names: tuple[str, ...]
    player_names: tuple[str, ...] = ("population",)
    T: int = 1
    _phi: Array | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_phi", self._find_potential())

    def payoffs(self, x: Array) -> Array:
        x = np.asarray(x, dtype=float)
        if self.N == 1:
            return np.einsum("ij,...j->...i", self.M, x[..., 0, :])[..., None, :]
        row = np.einsum("ij,...j->...i", self.M, x[..., 1, :])
        col = np.einsum("ij,...i->...j", self.B, x[..., 0, :])
        return np.stack([row, col], axis=-2)

    def _find_potential(self) -> Array | None:
        K = self.K
        if self.N == 1:
            P = np.eye(K) - 1.0 / K
            tangent = P @ self.M @ P
            return tangent if np.allclose(tangent, tangent.T, atol=1e-12) else None
        phi = self.M - self.M[0][None, :] + self.B[0][None, :]
        ok = np.allclose(self.B - self.B[:, :1], phi - phi[:, :1], atol=1e-12)
        return phi if ok else None

    @property
    def is_potential(self) -> bool:  # type: ignore[override]
        return self._phi is not None

    def potential_value(self, x: Array) -> float:
        if self._phi is None:
            raise AttributeError("this matrix game is not a potential game")
        x = np.asarray(x, dtype=float)
        if self.N == 1:
            # (d . x)(1 . x) rather than d . x: the same on the simplex, and its gradient
            # d (1 . x) + (d . x) 1 matches M x up to a multiple of 1 for any mass 1 . x
            K = self.K
            P = np.eye(K) - 1.0 / K
            d = P @ self.M @ np.ones(K) / K
            return float(0.5 * x[0] @ self._phi @ x[0] + (d @ x[0]) * x[0].sum())
        return float(x[0] @ self._phi @ x[1])


@games.register("matrix")
def build(cfg: MatrixConfig, base_dir: Path | None = None, field_name: str = "game") -> MatrixGame:
    """Build a :class:`MatrixGame` from its validated config section."""
    if cfg.preset is not None:
        names, table = cfg.preset.table()
    else:
        table = cfg.payoffs
        names = tuple(f"a{k}" for k in range(len(table)))
    M = np.array(table, dtype=float)
    B = M.T.copy() if cfg.column_payoffs is None else np.array(cfg.column_payoffs, dtype=float)
    if cfg.actions is not None:
        names = tuple(cfg.actions)
    players = ("population",) if cfg.players == 1 else ("row", "column")
    return MatrixGame(M, B, tuple(names), players, cfg.horizon)


build.config = MatrixConfig  # type: ignore[attr-defined]
