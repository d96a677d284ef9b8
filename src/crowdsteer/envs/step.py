"""The vectorised step of a whole population, shared by the environments: one
move of ``N`` agents (:func:`population_step`), action checks, memory estimates and
observations. Imports no config (the learners use it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

# PettingZoo and Gymnasium: crowdsteer.envs (run first) says how to install them
from gymnasium import spaces

from crowdsteer.errors import ConfigError
from crowdsteer.games.base import Game, ThetaLike, theta_at
from crowdsteer.learners.simulate import sample_step

Array = np.ndarray


@dataclass(frozen=True)
class Step:
    """One step of the whole population.

    Attributes
    ----------
    states
        ``(N,)`` landing states ``s'_i``.
    reward
        ``(N,)`` rewards ``r_t(s'_i; mu_hat) + Theta_t(s_i, a_i; mu_hat)``.
    modifier
        ``(N,)`` the ``Theta`` part of ``reward`` (``None`` without a modifier).
    mu
        ``(S,)`` empirical distribution after the move; sums to 1.
    """

    states: Array
    reward: Array
    modifier: Array | None
    mu: Array


def population_step(game: Game, theta: ThetaLike, t: int, states: Array, actions: Array,
                    rng: np.random.Generator) -> Step:
    """Move every agent once and pay it: see the module docstring; ``O(N + S A)``.

    Parameters
    ----------
    theta
        The modifier term: ``None``, a ``(T, S, A)`` array or a callable ``(t, mu_t) -> (S, A)``.
    states, actions
        ``(N,)`` integer state and action of every agent (actions assumed valid).

    Examples
    --------
    Pigou's network (latencies 1 and x): one of four travellers on the constant link pays 1,
    the three on the variable link pay x = 3/4 each.

    >>> from crowdsteer.config import build_game, load_config
    >>> game = build_game(load_config({"game": {
    ...     "name": "routing", "demand": [{"from": "s", "to": "t"}],
    ...     "edges": [{"from": "s", "to": "t", "latency": {"kind": "constant", "a": 1}},
    ...               {"from": "s", "to": "t", "latency": {"kind": "affine", "b": 1}}]}}))
    >>> step = population_step(game, None, 0, np.zeros(4, dtype=int), np.array([0, 1, 1, 1]),
    ...                        np.random.default_rng(0))
    >>> step.reward.tolist()
    [-1.0, -0.75, -0.75, -0.75]
    """
    landing = sample_step(game.transition, states, actions, rng)
    if landing is actions:  # AnyMove lands on the action: never alias the caller's array
        landing = landing.copy()
    mu = np.bincount(landing, minlength=game.S) / landing.shape[0]
    reward = np.asarray(game.reward(t, mu), dtype=float)[landing]
    if theta is None:
        return Step(landing, reward, None, mu)
    th = theta_at(theta, t, mu, (game.S, game.A))
    extra = th[states, actions] if np.ndim(th) else np.full(landing.shape[0], float(th))
    return Step(landing, reward + extra, extra, mu)


def check_actions(game: Game, states: Array, actions: Array) -> Array:
    """``actions`` as ``(N,)`` int64, or a :class:`ConfigError` (a ``ValueError``) on
    ``actions`` naming the first invalid agent."""
    a = np.asarray(actions)
    if a.shape != states.shape:
        raise ConfigError("actions", f"expected one per agent, shape {states.shape}; got "
                          f"{a.shape}")
    if a.dtype.kind not in "iu":
        if a.dtype.kind == "f" and np.all(a == np.round(a)):
            a = a.astype(np.int64)
        else:
            raise ConfigError("actions", f"must be integers in [0, {game.A}); got dtype "
                              f"{a.dtype}")
    a = a.astype(np.int64, copy=False)
    bad = (a < 0) | (a >= game.A)
    if game.allowed is not None and not bad.any():
        bad = ~game.allowed[states, a]
    if bad.any():
        i = int(np.argmax(bad))
        raise ConfigError("actions", f"agent {i} in state {int(states[i])} took action "
                          f"{int(a[i])}; allowed: {_allowed_text(game, int(states[i]))}")
    return a


def _allowed_text(game: Game, s: int) -> str:
    if game.allowed is None:
        return f"0..{game.A - 1}"
    return ", ".join(str(a) for a in np.flatnonzero(game.allowed[s]))


# --------------------------------------------------------------------------- building


PARALLEL_BYTES_PER_AGENT = 700
"""Memory of one agent in :class:`CrowdParallelEnv`: its name (in ``possible_agents`` and
``agents``) and one entry in each of the five dicts a step returns (an ``infos`` dict of its
own included), plus the ``(N,)`` arrays of a step. Measured with ``tracemalloc`` over
construction, ``reset`` and one modified ``step``: 610-625 bytes per agent at N = 2e4 to 8e4
(``tests/test_hostile_inputs.py`` checks the estimate against a measurement)."""

VECTOR_BYTES_PER_AGENT = 160
"""Memory of one agent in :class:`CrowdVectorEnv`: the ``(N,)`` state, reward, modifier and
flag arrays, the ``(N, 2)`` observation and the sampler's ``(N,)`` temporaries (a uniform
draw and two int64 indices). Measured as above: about 120 bytes per agent."""


def total_memory() -> int:
    """Physical memory of this machine in bytes (0 where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX
        return 0


def _check_memory(N: int, per_agent: int, kind: str) -> None:
    """Refuse ``N`` agents whose estimated memory exceeds the machine's, naming ``agents``."""
    need, have = N * per_agent, total_memory()
    if have and need > have:
        other = ("; vector_env needs about "
                 f"{VECTOR_BYTES_PER_AGENT} bytes per agent" if kind == "parallel_env" else "")
        raise ConfigError("agents", f"{N:,} agents need about {need / 2**30:,.1f} GiB in "
                          f"{kind} (about {per_agent} bytes per agent) but this machine has "
                          f"{have / 2**30:,.1f} GiB; allowed: at most {have // per_agent:,} "
                          f"agents{other}")



def check_w(w: Any, n_params: int) -> Array:
    """``w`` as a finite float ``(n_params,)`` array, or a :class:`ConfigError` naming ``w``."""
    try:
        arr = np.asarray(w, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ConfigError("w", f"expected {n_params} numbers, got {type(w).__name__} "
                          f"({exc})") from None
    if arr.shape != (n_params,):
        raise ConfigError("w", f"expected {n_params} numbers (the modifier's n_params), got "
                          f"shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ConfigError("w", "contains NaN or infinite values; allowed: finite numbers")
    return arr



def _agents(agents: int, per_agent: int, kind: str) -> int:
    if isinstance(agents, bool) or not isinstance(agents, (int, np.integer)) or agents < 1:
        raise ConfigError("agents", f"must be a whole number >= 1, got {agents!r}")
    _check_memory(int(agents), per_agent, kind)
    return int(agents)


def _obs_space(game: Game) -> spaces.MultiDiscrete:
    return spaces.MultiDiscrete(np.array([game.S, game.T + 1]), dtype=np.int64)


def _observe(states: Array, t: int) -> Array:
    """``(N, 2)`` int64 rows ``[s, t]``."""
    obs = np.empty((states.shape[0], 2), dtype=np.int64)
    obs[:, 0] = states
    obs[:, 1] = t
    return obs

