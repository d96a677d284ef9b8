"""A registered game as one Gymnasium ``VectorEnv`` of ``N`` agents (arrays, no
per-agent objects): :class:`CrowdVectorEnv`."""

from __future__ import annotations

from typing import Any

import numpy as np

# PettingZoo and Gymnasium: crowdsteer.envs (run first) says how to install them
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from crowdsteer.games.base import Game, ThetaLike
from crowdsteer.envs.step import (
    _obs_space, _observe, check_actions, population_step,
)
from crowdsteer.learners.simulate import sample_states

Array = np.ndarray


class CrowdVectorEnv(VectorEnv):
    """A game as a Gymnasium ``VectorEnv`` over its ``N`` agents; build it with :func:`vector_env`.

    ``step(actions)`` takes ``(N,)`` integer actions and returns ``(N, 2)`` observations
    ``[s, t]``, ``(N,)`` rewards, terminations and truncations, and ``infos`` with
    ``"action_mask"`` ``(N, A)`` (masked games) and ``"reward_modifier"`` ``(N,)`` (with a
    modifier), each beside Gymnasium's ``"_<key>"`` presence mask. All arrays: the cost
    of a step is a few passes over ``N`` plus one evaluation of the game's reward.

    Attributes
    ----------
    game, N, theta, modifier, w, t, states
        As for :class:`CrowdParallelEnv`.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, game: Game, N: int, theta: ThetaLike = None, modifier: Any = None,
                 w: Array | None = None) -> None:
        self.game = game
        self.N = self.num_envs = N
        self.theta = theta
        self.modifier = modifier
        self.w = w
        self.single_observation_space = _obs_space(game)
        self.single_action_space = spaces.Discrete(game.A)
        self.observation_space = batch_space(self.single_observation_space, N)
        self.action_space = batch_space(self.single_action_space, N)
        self.t = 0
        self.states: Array | None = None
        self._autoreset = False
        self._all = np.ones(N, dtype=bool)

    def reset(self, *, seed: int | None = None, options: dict | None = None
              ) -> tuple[Array, dict[str, Any]]:
        """Draw every agent's state from ``mu0``; ``options`` is accepted and unused."""
        super().reset(seed=seed)  # seeds self.np_random (= np.random.default_rng(seed))
        return self._restart()

    def _restart(self) -> tuple[Array, dict[str, Any]]:
        self.t = 0
        self._autoreset = False
        self.states = sample_states(self.game.mu0, self.N, self.np_random)
        return _observe(self.states, 0), self._infos(None)

    def step(self, actions: Array) -> tuple[Array, Array, Array, Array, dict[str, Any]]:
        """Move every agent (after the last step: reset them all, ignoring ``actions``)."""
        if self.states is None:
            raise RuntimeError("call reset() first")
        if self._autoreset:
            obs, infos = self._restart()
            zeros = np.zeros(self.N, dtype=bool)
            return obs, np.zeros(self.N), zeros, zeros.copy(), infos
        a = check_actions(self.game, self.states, actions)
        step = population_step(self.game, self.theta, self.t, self.states, a, self.np_random)
        self.t += 1
        self.states = step.states
        done = self.t >= self.game.T
        self._autoreset = done
        terminations = np.full(self.N, done)
        return (_observe(self.states, self.t), step.reward, terminations,
                np.zeros(self.N, dtype=bool), self._infos(step.modifier))

    def _infos(self, extra: Array | None) -> dict[str, Any]:
        infos: dict[str, Any] = {}
        if self.game.allowed is not None:
            infos["action_mask"] = self.game.allowed[self.states]
            infos["_action_mask"] = self._all
        if extra is not None:
            infos["reward_modifier"] = extra
            infos["_reward_modifier"] = self._all
        return infos

    def action_masks(self) -> Array:
        """``(N, A)`` boolean: the actions open to each agent now (all ``True`` if unmasked)."""
        if self.game.allowed is None:
            return np.ones((self.N, self.game.A), dtype=bool)
        return self.game.allowed[self.states]

    def state(self) -> Array:
        """``(S,)`` the empirical distribution of the agents now."""
        if self.states is None:
            raise RuntimeError("call reset() first")
        return np.bincount(self.states, minlength=self.game.S) / self.N
