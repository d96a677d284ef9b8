"""A registered game as a PettingZoo ``ParallelEnv`` of named agents:
:class:`CrowdParallelEnv`."""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any

import numpy as np

# PettingZoo and Gymnasium: crowdsteer.envs (run first) says how to install them
from gymnasium import spaces
from pettingzoo import ParallelEnv

from crowdsteer.errors import ConfigError
from crowdsteer.games.base import Game, ThetaLike
from crowdsteer.envs.step import (
    _obs_space, check_actions, population_step,
)
from crowdsteer.learners.simulate import sample_states

Array = np.ndarray


class CrowdParallelEnv(ParallelEnv):
    """A game as a PettingZoo ``ParallelEnv``; build it with :func:`parallel_env`.

    Attributes
    ----------
    game
        The crowdsteer game.
    N
        Number of agents.
    theta, modifier, w
        The modifier term applied to the rewards, the family it came from and its
        parameters (``None`` without a modifier).
    t
        Steps taken in the current episode.
    states
        ``(N,)`` every agent's current state (``agent_i`` is entry ``i``).
    state_space
        ``Box(0, 1, (S,))``: :meth:`state` is the agents' empirical distribution.

    Observation arrays are read-only and shared by the agents in the same state (a fresh
    array per agent per step would cost more than the step); copy one to modify it.
    """

    metadata = {"name": "crowdsteer_v0", "render_modes": [], "is_parallelizable": True}

    def __init__(self, game: Game, N: int, theta: ThetaLike = None, modifier: Any = None,
                 w: Array | None = None) -> None:
        self.game = game
        self.N = N
        self.theta = theta
        self.modifier = modifier
        self.w = w
        self.possible_agents = [f"agent_{i}" for i in range(N)]
        self.agents: list[str] = []
        self.masked = game.allowed is not None
        base = _obs_space(game)
        self._obs_space = (spaces.Dict({"observation": base, "action_mask": spaces.MultiBinary(
            game.A)}) if self.masked else base)
        self._act_space = spaces.Discrete(game.A)
        self.state_space = spaces.Box(0.0, 1.0, (game.S,), dtype=np.float64)
        self.t = 0
        self.states: Array | None = None
        self._rng: np.random.Generator | None = None
        # Observations and masks are shared read-only rows, one per (s, t) and per s:
        # a fresh array per agent per step would cost more than the step itself.
        self._obs_rows = np.zeros((game.S, 2), dtype=np.int64)
        self._obs_rows[:, 0] = np.arange(game.S)
        self._masks: list[Array] | None = None
        if game.allowed is not None:
            masks = game.allowed.astype(np.int8)
            masks.flags.writeable = False
            self._masks = list(masks)
        self._pick = operator.itemgetter(*self.possible_agents)

    def observation_space(self, agent: str) -> spaces.Space:
        """``MultiDiscrete([S, T + 1])`` (masked games: a ``Dict`` with ``action_mask``)."""
        return self._obs_space

    def action_space(self, agent: str) -> spaces.Space:
        """``Discrete(A)``."""
        return self._act_space

    def reset(self, seed: int | None = None, options: dict | None = None
              ) -> tuple[dict[str, Any], dict[str, dict]]:
        """Draw every agent's initial state from ``mu0``; ``options`` is accepted and unused."""
        if seed is not None or self._rng is None:
            self._rng = np.random.default_rng(seed)
        self.t = 0
        self.states = sample_states(self.game.mu0, self.N, self._rng)
        self.agents = list(self.possible_agents)
        obs, infos = self._observe(None)
        return obs, infos

    def step(self, actions: Mapping[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """Move every agent; ``actions`` must name each live agent exactly once."""
        if not self.agents:
            raise RuntimeError("the episode is over (or never started): call reset()")
        if len(actions) != self.N:
            missing = [a for a in self.possible_agents if a not in actions]
            raise ConfigError("actions", f"must give one action per agent ({self.N}); "
                             + (f"missing: {', '.join(missing[:5])}" if missing else
                                f"unknown agents given: {len(actions) - self.N}"))
        try:
            picked = self._pick(actions)
        except KeyError as exc:
            raise ConfigError("actions", f"no action for {exc.args[0]}") from None
        raw = np.asarray(picked if self.N > 1 else (picked,))
        a = check_actions(self.game, self.states, raw)
        step = population_step(self.game, self.theta, self.t, self.states, a, self._rng)
        self.t += 1
        self.states = step.states
        agents = self.agents
        done = self.t >= self.game.T
        obs, infos = self._observe(step.modifier)
        rewards = dict(zip(agents, step.reward.tolist()))
        terminations = dict.fromkeys(agents, done)
        truncations = dict.fromkeys(agents, False)
        if done:
            self.agents = []
        return obs, rewards, terminations, truncations, infos

    def _observe(self, extra: Array | None) -> tuple[dict[str, Any], dict[str, dict]]:
        table = self._obs_rows.copy()  # row s is [s, t]; read-only rows shared by agents
        table[:, 1] = self.t
        table.flags.writeable = False
        states = self.states.tolist()
        rows = list(map(list(table).__getitem__, states))
        names = self.possible_agents
        if self._masks is None:
            obs = dict(zip(names, rows))
            if extra is None:
                return obs, {a: {} for a in names}
            return obs, {a: {"reward_modifier": x} for a, x in zip(names, extra.tolist())}
        masks = list(map(self._masks.__getitem__, states))
        obs = {a: {"observation": o, "action_mask": m} for a, o, m in zip(names, rows, masks)}
        if extra is None:
            return obs, {a: {"action_mask": m} for a, m in zip(names, masks)}
        return obs, {a: {"action_mask": m, "reward_modifier": x}
                     for a, m, x in zip(names, masks, extra.tolist())}

    def state(self) -> Array:
        """``(S,)`` the empirical distribution of the agents now (the mean field's estimate)."""
        if self.states is None:
            raise RuntimeError("call reset() first")
        return np.bincount(self.states, minlength=self.game.S) / self.N

    def close(self) -> None:
        """Nothing to release."""
