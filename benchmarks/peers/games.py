"""The peers' crowd games rebuilt as crowdsteer ``crowd`` games.

Everything here is crowdsteer and NumPy only: the peer modules call these builders with
the numbers they read off the peer's own game, then check the two agree.

Both peers use the same timing, which maps onto crowdsteer's "move, then be rewarded
where you land" as follows. A peer with time points ``t = 0..H`` (OpenSpiel: decision
nodes ``t = 0..horizon-1``; MFGLib: ``t = 0..T``) pays ``r_t(x_t; mu_t)`` at every time
point. The reward at ``t = 0`` is paid before any move, so it is the same for every
policy and cancels in the exploitability; every later reward is the landing reward of
the move made one time point earlier. So the crowdsteer game has one step per rewarded
move (``T = horizon - 1`` for OpenSpiel, ``T = T`` for MFGLib), its step ``t`` uses the
peer's reward of time point ``t + 1``, and a peer policy ``pi_peer[t]`` is our ``pi[t]``
for ``t < T``; the peer's last decision (OpenSpiel: at ``horizon - 1``, leading to the
unrewarded terminal state; MFGLib: at ``T``, after which nothing happens) is irrelevant.

Neither peer's noise is crowdsteer's ``local`` noise (which replaces the chosen move by
a uniform one and stops at the walls): both add an independent random displacement to
the chosen move, so an agent can travel two cells in one step. The transition is
therefore rebuilt here as a :class:`~crowdsteer.games.base.SparseMoves` kernel (5
actions, 5 successors) and swapped into the game built from the config; the
desirability comes in through the config's ``.npy`` file and the crowding through the
``log`` congestion.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np

from crowdsteer.games.base import SparseMoves
from crowdsteer.games.crowd import CrowdConfig, CrowdGame, build

Array = np.ndarray

# OpenSpiel crowd_modelling_2d: actions {down, left, neutral, right, up} = 0..4 as
# displacements of (x, y); state index x * size + y (its MergeXY), i.e. our row = x.
OPENSPIEL_MOVES = np.array([(0, -1), (-1, 0), (0, 0), (1, 0), (0, 1)])
OPENSPIEL_NEUTRAL = 2
# MFGLib crowd_motion: actions and noise displacements in the order of its TransitionFn,
# as (row, column) moves; the last one is "stay".
MFGLIB_MOVES = np.array([(1, 0), (-1, 0), (0, 1), (0, -1), (0, 0)])


def displaced_moves(height: int, width: int, moves: Array, noise: Array, wrap: bool) -> SparseMoves:
    """Chosen move plus an independent random displacement, ``(S, A, K)`` successors.

    Parameters
    ----------
    moves
        ``(A, 2)`` displacement of each action (row, column).
    noise
        ``(K,)`` probabilities of the displacements ``moves[k]`` added on top.
    wrap
        ``True``: a torus (OpenSpiel); ``False``: the sum is clipped to the grid (MFGLib
        clips ``s + a + delta`` as a whole, not each move separately).
    """
    S, A, K = height * width, len(moves), len(noise)
    rows, cols = np.divmod(np.arange(S), width)
    di = moves[:, 0][None, :, None] + moves[:, 0][None, None, :]  # (1, A, K)
    dj = moves[:, 1][None, :, None] + moves[:, 1][None, None, :]
    ni, nj = rows[:, None, None] + di, cols[:, None, None] + dj
    if wrap:
        ni, nj = ni % height, nj % width
    else:
        ni, nj = np.clip(ni, 0, height - 1), np.clip(nj, 0, width - 1)
    prob = np.broadcast_to(np.asarray(noise, float)[None, None, :], (S, A, K))
    return SparseMoves(ni * width + nj, prob.copy())


def crowd_from_arrays(d: Array, c: float, moves: SparseMoves, mu0: Array | None) -> CrowdGame:
    """A crowd game with desirability ``d`` ``(T, h, w)``, ``-c log mu`` crowding, a given kernel.

    Goes through the public config (``desirability.file``, ``initial`` as ``.npy``,
    ``congestion.kind = log``); only the transition is swapped in afterwards.
    """
    T, h, w = d.shape
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "d.npy", d)
        initial = "uniform"
        if mu0 is not None:
            np.save(Path(tmp) / "mu0.npy", np.asarray(mu0, float).reshape(h, w))
            initial = "mu0.npy"
        cfg = CrowdConfig(height=h, width=w, horizon=T, moves="local", initial=initial,
                          desirability={"file": "d.npy"},
                          congestion={"kind": "log", "strength": c})
        game = build(cfg, base_dir=Path(tmp))
    return dataclasses.replace(game, transition=moves)


def openspiel_crowd(size: int, horizon: int, mu0: Array | None = None, coef: float = 1.0,
                    noise: float = 1.0) -> CrowdGame:
    """OpenSpiel's ``mfg_crowd_modelling_2d`` with ``only_distribution_reward=true``.

    Reward at decision node ``t``: ``-coef * log(mu_t(x) + 1e-25)``; no positional
    reward, no move cost. After the agent's move a chance node adds one of the 5
    displacements: ``noise / 5`` each, plus ``1 - noise`` on "neutral"; the grid is a
    torus. ``T = horizon - 1`` rewarded moves (see the module docstring).
    """
    p = np.full(5, noise / 5)
    p[OPENSPIEL_NEUTRAL] += 1.0 - noise
    moves = displaced_moves(size, size, OPENSPIEL_MOVES, p, wrap=True)
    return crowd_from_arrays(np.zeros((horizon - 1, size, size)), coef, moves, mu0)


def mfglib_crowd(bonus: Array, p_still: float, mu0: Array | None = None) -> CrowdGame:
    """MFGLib's ``crowd_motion``: ``bonus[t] - log(mu_t + eps)``, noisy moves clipped to the grid.

    Parameters
    ----------
    bonus
        ``(T + 1, l, w)``: ``c * c1s[t]``, the bar term of every time point ``0..T``;
        point 0 is paid before any move and dropped.
    p_still
        Probability that the random displacement is "stay"; each of the 4 others has
        ``(1 - p_still) / 4``.
    """
    _, h, w = bonus.shape
    x = (1.0 - p_still) / 4
    moves = displaced_moves(h, w, MFGLIB_MOVES, np.array([x, x, x, x, p_still]), wrap=False)
    return crowd_from_arrays(np.asarray(bonus[1:], float), 1.0, moves, mu0)


def blob_initial(size: int, seed: int = 0, total_log2: int = 20) -> Array:
    """A lopsided full-support initial distribution, ``(size * size,)``, ``x * size + y``.

    Mass ``k_s / 2^total_log2`` with integer ``k_s``: a Gaussian blob off the diagonal
    plus a floor and a small random integer jitter (no symmetry, hence no exact ties in
    the best responses). Every value is a dyadic rational, exact in the ``float`` (32-bit)
    that OpenSpiel parses ``initial_distribution_value`` into.
    """
    rng = np.random.default_rng(seed)
    x, y = np.divmod(np.arange(size * size), size)
    cx, cy, sigma = 0.3 * (size - 1), 0.15 * (size - 1), size / 6
    blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))
    k = 1 + np.round(200 * blob).astype(np.int64) + rng.integers(0, 8, size * size)
    total = 2**total_log2
    k = np.floor(k * (total / k.sum())).astype(np.int64)
    k[np.argmax(k)] += total - k.sum()  # exact total
    return k / total


def random_policy(T: int, S: int, A: int, seed: int) -> Array:
    """A fixed random policy ``(T, S, A)`` with full support (Dirichlet(1) rows, floored)."""
    rng = np.random.default_rng(seed)
    pi = rng.dirichlet(np.ones(A), size=(T, S)) + 0.02
    return pi / pi.sum(axis=-1, keepdims=True)
