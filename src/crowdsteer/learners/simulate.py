"""Vectorised N-agent simulation: draw actions, moves and initial states for whole populations.

A population is an ``(N,)`` integer array of state indices. Every helper here works on
all agents at once; the only Python loops are over search steps of the inverse-CDF
(a handful, independent of ``N``, ``S`` and ``A``).

Sampling is inverse-CDF with a guide table (Chen and Asau 1974): for a categorical
row ``p`` of width ``C`` with cumulative sums ``F``, a uniform draw ``u`` in ``[0, 1)``
selects the first column ``c`` with ``F(c) > u``. The guide table stores, for each of
``4 C`` equal buckets of ``u``, a column at or before the answer, so the search starts
there and moves right by a fraction of a column on average. This costs ``O(N)``
per draw however wide the rows are (a binary search over the flattened table costs
``O(N log(S A))`` with poor locality, several times slower at ``N = 10^6``).

Columns of probability zero are never drawn: their ``F`` equals their left neighbour's,
so they are never the *first* column above ``u`` (masked actions rely on this).

Examples
--------
>>> rng = np.random.default_rng(0)
>>> pi_t = np.array([[0.0, 1.0], [0.5, 0.5]])      # state 0 always takes action 1
>>> states = np.zeros(1000, dtype=np.int64)
>>> bool(np.all(sample_actions(pi_t, states, rng) == 1))
True
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

import numpy as np

from crowdsteer.games.base import AnyMove, Game, SparseMoves, ThetaLike, Transition, theta_at

Array = np.ndarray
_GUIDE_MARGIN = 1e-9  # bucket edges are nudged left by this (in bucket units) so float error
# in F * C can only make a guide entry earlier, never later, than the true first column.


class Categorical(NamedTuple):
    """Rows of categorical distributions prepared for inverse-CDF draws.

    Attributes
    ----------
    cdf
        ``(R, C)`` cumulative probabilities; every entry from a row's last positive
        column on is exactly ``1.0``.
    guide
        ``(R, L)`` ints, ``L = GUIDE_BUCKETS * C``: ``guide[r, j]`` is a column at or
        before the first column with ``cdf[r, c] > u`` for every ``u`` in ``[j / L, (j+1) / L)``.
    """

    cdf: Array
    guide: Array


GUIDE_BUCKETS = 4  # guide buckets per column: a draw then walks about 1/4 of a column on average


def categorical(p: Array) -> Categorical:
    """Prepare the rows of ``p`` ``(R, C)`` (non-negative, positive row sums) for :func:`draw`."""
    p = np.asarray(p, dtype=float)
    R, C = p.shape
    L = GUIDE_BUCKETS * C
    cdf = np.cumsum(p, axis=1)
    cdf /= cdf[:, -1:]  # the last positive column and everything after it become exactly 1
    # column c counts towards guide[r, j] iff cdf[r, c] < j / L (with a margin): a lower bound.
    first_bucket = np.floor(cdf * L + _GUIDE_MARGIN).astype(np.int64) + 1
    np.minimum(first_bucket, L, out=first_bucket)
    offsets = np.arange(R, dtype=np.int64)[:, None] * (L + 1)
    counts = np.bincount((offsets + first_bucket).ravel(), minlength=R * (L + 1))
    guide = np.cumsum(counts.reshape(R, L + 1)[:, :L], axis=1)
    return Categorical(cdf, guide)


def draw(table: Categorical, rows: Array, rng: np.random.Generator) -> Array:
    """One draw per entry of ``rows`` ``(N,)`` from the matching row of ``table``; ``(N,)`` ints.

    Uses one ``rng.random(N)`` call (none when rows have a single column), so the stream
    of draws is fixed by the seed.
    """
    R, C = table.cdf.shape
    L = table.guide.shape[1]
    if C == 1:
        return np.zeros(rows.shape[0], dtype=np.int64)
    u = rng.random(rows.shape[0])
    rows = rows.astype(np.int64, copy=False)
    bucket = (u * L).astype(np.int64)
    np.minimum(bucket, L - 1, out=bucket)  # u * L can round up to L when u is just below 1
    bucket += rows * L
    at = table.guide.ravel()[bucket]
    at += rows * C  # flat index into cdf
    cdf = table.cdf.ravel()
    # walk right while F(col) <= u; F(last positive column) = 1 > u, so every walk stops in-row.
    todo = np.flatnonzero(cdf[at] <= u)
    while todo.size:
        at[todo] += 1
        todo = todo[cdf[at[todo]] <= u[todo]]
    at -= rows * C
    return at


def draw_own(p: Array, rng: np.random.Generator) -> Array:
    """One draw per column of ``p`` ``(C, M)``: column ``i`` is agent ``i``'s own distribution.

    For populations where every agent has its own probabilities (independent learners).
    Columns-as-agents keeps the cumulative sum and the count running over contiguous
    ``(M,)`` rows, which is several times faster than row-wise work on ``(M, C)``.
    Returns ``(M,)`` ints; zero-probability entries are never drawn.
    """
    cdf = np.cumsum(p, axis=0)
    cdf /= cdf[-1]  # every entry from the last positive one on is exactly 1
    u = rng.random(p.shape[1])
    return np.count_nonzero(cdf <= u, axis=0)  # the first entry with F > u


def sample_actions(pi_t: Array, states: Array, rng: np.random.Generator) -> Array:
    """Each agent draws ``a ~ pi_t[state]``; ``pi_t`` is ``(S, A)``, ``states`` ``(N,)``."""
    return draw(categorical(pi_t), states, rng)


def sample_states(p: Array, n: int, rng: np.random.Generator) -> Array:
    """``n`` independent draws from the distribution ``p`` ``(S,)`` (e.g. ``mu0``)."""
    return draw(categorical(np.asarray(p)[None, :]), np.zeros(n, dtype=np.int64), rng)


def sample_population(p: Array, n: int, rng: np.random.Generator) -> Array:
    """``n`` agents placed by the distribution ``p`` ``(S,)``, sorted by state.

    The histogram has exactly the law of ``n`` independent draws (multinomial), and the
    agents are listed in state order. Use it when agents are exchangeable (they carry no
    memory of their own, as in pooled learning); it is an order of magnitude faster than
    :func:`sample_states` and the sorted order makes later table look-ups cache-friendly.
    """
    p = np.asarray(p, dtype=float)
    counts = rng.multinomial(n, p / p.sum())
    return np.repeat(np.arange(p.shape[0]), counts)


_successor_tables: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _successor_table(transition: SparseMoves) -> Categorical:
    table = _successor_tables.get(transition)
    if table is None:
        table = categorical(transition.prob.reshape(-1, transition.K))
        _successor_tables[transition] = table
    return table


def sample_slot(transition: Transition, states: Array, actions: Array,
                rng: np.random.Generator) -> Array:
    """Which of the ``K`` successor slots each agent's move lands in, ``(N,)``.

    For :class:`AnyMove` and single-successor kernels the slot is always ``0`` and no
    random numbers are used. The landing state is ``successors(transition)[s, a, slot]``.
    """
    if isinstance(transition, AnyMove) or (isinstance(transition, SparseMoves)
                                           and transition.K == 1):
        return np.zeros(states.shape[0], dtype=np.int64)
    if isinstance(transition, SparseMoves):
        return draw(_successor_table(transition), states * transition.A + actions, rng)
    raise TypeError(f"cannot sample moves of {type(transition).__name__}; "
                    "supported: AnyMove, SparseMoves")


def sample_step(transition: Transition, states: Array, actions: Array,
                rng: np.random.Generator) -> Array:
    """Landing states ``s' ~ P(. | s, a)`` of agents in ``states`` taking ``actions``, ``(N,)``.

    ``AnyMove``: the landing state is the action. ``SparseMoves``: slot ``k`` is drawn by
    inverse-CDF on ``prob[s, a]`` and the agent lands in ``next_state[s, a, k]``.
    """
    if isinstance(transition, AnyMove):
        return actions
    slot = sample_slot(transition, states, actions, rng)
    return transition.next_state[states, actions, slot]


def successors(transition: Transition) -> Array:
    """``(S, A, K)`` landing state of each slot (``AnyMove``: ``K = 1``, slot 0 lands in ``a``)."""
    if isinstance(transition, AnyMove):
        return np.broadcast_to(np.arange(transition.A)[None, :, None],
                               (transition.S, transition.A, 1))
    if isinstance(transition, SparseMoves):
        return transition.next_state
    raise TypeError(f"cannot sample moves of {type(transition).__name__}; "
                    "supported: AnyMove, SparseMoves")


def histogram(states: Array, S: int) -> Array:
    """Empirical distribution ``(S,)`` of a population ``(N,)``."""
    return np.bincount(states, minlength=S) / states.shape[0]


def explore(pi_t: Array, epsilon: float, allowed: Array | None) -> Array:
    """``(1 - epsilon) pi_t + epsilon * uniform over the allowed actions``, ``(S, A)``."""
    if epsilon <= 0:
        return pi_t
    uniform = (np.ones(pi_t.shape[-2:]) if allowed is None else allowed.astype(float))
    uniform = uniform / uniform.sum(axis=-1, keepdims=True)
    return (1 - epsilon) * pi_t + epsilon * uniform


def weighted_tv(p: Array, q: Array, weight: Array) -> float:
    """``sum_{t,s} weight[t,s] * TV(p[t,s], q[t,s])`` for ``(T, S, A)`` policies.

    ``weight`` ``(T, S)`` sums to 1 (e.g. the share of agent-steps spent in ``s`` at ``t``);
    the result is the share of agents' choices whose distribution differs, in ``[0, 1]``.
    """
    return float(np.sum(weight * 0.5 * np.abs(p - q).sum(axis=-1)))


MAX_COUNT = 255
"""Visit counts saturate here (uint8): the step size then stays at its floor."""


def counted_step(values: np.ndarray, counts: np.ndarray, cell: np.ndarray,
                 target: np.ndarray, floor: float) -> None:
    """Move ``values[cell]`` towards ``target`` by ``max(1 / n, floor)`` in place, ``n`` the
    cell's visit count after this visit (``counts``, saturating at :data:`MAX_COUNT`): a
    running mean of the targets that becomes an exponential average once ``1 / n < floor``.
    """
    n = counts[cell]
    np.minimum(n, MAX_COUNT - 1, out=n)
    n += 1
    counts[cell] = n
    v = values[cell]
    values[cell] = v + np.maximum(1.0 / n, floor) * (target - v)


class PooledCrowd:
    """The mean field the sampled rewards are paid at: the agents' histograms pooled over
    the rounds, round ``j`` of ``k`` weighing ``j^p`` (about the last ``k / (p + 1)``
    rounds). Why pool: a state the mean field gives a mass of order ``1/N`` or less is, in
    one round, empty or held by an agent who counts itself, so under ``-c log mu`` it pays
    ``c log N`` where the mean field pays more (the learners' module docstrings measure
    what that costs them)."""

    def __init__(self, T: int, S: int, power: int) -> None:
        self.mu = np.zeros((T, S))
        self.rounds = np.zeros(T, dtype=np.int64)
        self.power = power

    def fold(self, t: int, mu_t: Array) -> Array:
        """Take in step ``t``'s histogram of this round; returns the pooled mean field."""
        self.rounds[t] += 1
        p = self.power
        self.mu[t] += (p + 1) / (self.rounds[t] + p) * (mu_t - self.mu[t])
        return self.mu[t]


def landing_rewards(game: Game, theta: ThetaLike, t: int, x: Array, a: Array,
                    x_next: Array, N: int,
                    crowd: PooledCrowd | None = None) -> tuple[Array, Array]:
    """Each agent's own modified reward at step ``t``, ``(N,)``, and this round's histogram
    ``(S,)``; the rewards are paid at ``crowd`` (the histogram folded in) when given, else
    at the histogram itself."""
    S, A = game.S, game.A
    mu_t = np.bincount(x_next, minlength=S) / N
    seen = mu_t if crowd is None else crowd.fold(t, mu_t)
    r = np.asarray(game.reward(t, seen), dtype=float)[x_next]
    th = theta_at(theta, t, seen, (S, A))
    if np.ndim(th):
        r = r + np.asarray(th)[x, a]
    elif th:
        r = r + th
    return r, mu_t
