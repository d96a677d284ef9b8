"""The reward wrapper: a modifier added to the rewards of any PettingZoo parallel env
(:func:`modify_rewards`, :class:`ModifiedRewards`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


import numpy as np

# PettingZoo and Gymnasium: crowdsteer.envs (run first) says how to install them
from gymnasium import spaces
from pettingzoo import ParallelEnv

from crowdsteer.config import Config, build, validate_section
from crowdsteer.errors import ConfigError
from crowdsteer.games.base import Game, theta_at
from crowdsteer.envs.step import check_w

Array = np.ndarray
ModifierLike = Any  # a Modifier (has n_params and theta), a family name or section mapping
UserModifier = Callable[[Any, Any, Array], float]
"""``(observation, action, w) -> float``: a user's own modifier for :func:`modify_rewards`."""


def _is_family(modifier: Any) -> bool:
    return hasattr(modifier, "theta") and hasattr(modifier, "n_params")


def _build_modifier(spec: ModifierLike | None, game: Game, config: Config | None = None) -> Any:
    """A modifier object from ``None`` (the config's ``modifier`` section, which must then
    exist), a family name, a section mapping, or an already built modifier."""
    if spec is not None and _is_family(spec):
        return spec
    if spec is None:
        cfg = config if config is not None else Config()
        if cfg["modifier"] is None:
            raise ConfigError("modifier", "the config has no modifier section; pass modifier= "
                              "(a family name, a section mapping or a built modifier)")
    elif isinstance(spec, (str, Mapping)):
        cfg = (config or Config()).replace("modifier", validate_section("modifier", spec))
    else:
        raise ConfigError("modifier", "expected a registered family (a name, a section "
                          f"mapping or a built modifier); got {type(spec).__name__}")
    return build(cfg, "modifier", game=game)



def _locate(observation: Any) -> tuple[int, int]:
    """``(s, t)`` from a crowdsteer observation ``[s, t]`` (or its masked ``Dict`` form)."""
    if isinstance(observation, Mapping):
        observation = observation["observation"]
    return int(observation[0]), int(observation[1])


class ModifiedRewards(ParallelEnv):
    """Any PettingZoo ``ParallelEnv`` with a reward modifier added; see :func:`modify_rewards`.

    Only the rewards change (and ``infos[agent]["reward_modifier"]`` is added); spaces,
    agents, ``state`` and ``unwrapped`` are those of the inner env, which stays reachable
    as ``.env``. Attributes are not forwarded otherwise.
    """

    def __init__(self, env: ParallelEnv, modifier: Any, w: Any,
                 locate: Callable[[Any], tuple[int, int]] | None = None) -> None:
        self.env = env
        self.modifier = modifier
        self.locate = locate or _locate
        self._family = _is_family(modifier)
        self._last: dict[str, Any] = {}
        self.w = w

    @property
    def w(self) -> Array:
        """The modifier's parameters; assigning them takes effect from the next step."""
        return self._w

    @w.setter
    def w(self, value: Any) -> None:
        if self._family:
            self._w = check_w(value, self.modifier.n_params)
        else:
            try:
                self._w = np.asarray(value, dtype=float)
            except (TypeError, ValueError) as exc:
                raise ConfigError("w", f"expected numbers ({exc})") from None
        self.theta = self.modifier.theta(self._w) if self._family else None

    @property
    def possible_agents(self) -> list:
        return self.env.possible_agents

    @property
    def agents(self) -> list:
        return self.env.agents

    @property
    def metadata(self) -> dict:
        return self.env.metadata

    @property
    def unwrapped(self) -> ParallelEnv:
        return self.env.unwrapped

    def observation_space(self, agent: Any) -> spaces.Space:
        return self.env.observation_space(agent)

    def action_space(self, agent: Any) -> spaces.Space:
        return self.env.action_space(agent)

    def reset(self, seed: int | None = None, options: dict | None = None
              ) -> tuple[dict, dict]:
        obs, infos = self.env.reset(seed=seed, options=options)
        self._last = dict(obs)
        return obs, infos

    def step(self, actions: Mapping[Any, Any]) -> tuple[dict, dict, dict, dict, dict]:
        before = self._last
        obs, rewards, terminations, truncations, infos = self.env.step(actions)
        acted = [a for a in actions if a in rewards]
        extra = self._terms(before, actions, obs, acted)
        rewards = dict(rewards)
        infos = dict(infos)
        for a, x in zip(acted, extra):
            rewards[a] = rewards[a] + x
            infos[a] = {**infos.get(a, {}), "reward_modifier": x}
        self._last.update(obs)
        return obs, rewards, terminations, truncations, infos

    def _terms(self, before: Mapping, actions: Mapping, after: Mapping, acted: list) -> list:
        if not self._family:
            return [float(self.modifier(before[a], actions[a], self._w)) for a in acted]
        if not acted:
            return []
        game = self.modifier.game
        st = np.array([self.locate(before[a]) for a in acted], dtype=np.int64).reshape(-1, 2)
        act = np.fromiter((actions[a] for a in acted), dtype=np.int64, count=len(acted))
        mu = None
        if callable(self.theta):  # e.g. budget balance: needs where everyone landed
            landing = np.array([self.locate(after[a])[0] for a in acted], dtype=np.int64)
            mu = np.bincount(landing, minlength=game.S) / landing.shape[0]
        out = np.empty(len(acted))
        for t in np.unique(st[:, 1]):
            rows = st[:, 1] == t
            th = np.broadcast_to(theta_at(self.theta, int(t), mu, (game.S, game.A)),
                                 (game.S, game.A))
            out[rows] = th[st[rows, 0], act[rows]]
        return out.tolist()

    def state(self) -> Array:
        return self.env.state()

    def render(self) -> Any:
        return self.env.render()

    def close(self) -> None:
        self.env.close()


def modify_rewards(env: ParallelEnv, modifier: ModifierLike | UserModifier, w: Any,
                   locate: Callable[[Any], tuple[int, int]] | None = None) -> ModifiedRewards:
    """Add a reward modifier to the rewards of any PettingZoo ``ParallelEnv``.

    Parameters
    ----------
    env
        The environment; its own rewards are kept and the modifier's term added.
    modifier
        Either a registered family built for a crowdsteer game (an object with ``n_params``
        and ``theta``, or, when ``env`` is a crowdsteer env, a family name or section
        mapping, built for its game), which pays agent ``i``

        .. math:: \\Theta_t(s_i, a_i; \\hat\\mu; w)

        with ``(s_i, t)`` read from the observation it acted on and ``mu_hat`` the
        empirical distribution of the acting agents' landing states; or your own callable
        ``modifier(observation, action, w) -> float`` of the observation the agent acted on.
    w
        Parameters passed to the modifier (``(n_params,)`` for a family); settable later
        through the wrapper's ``w`` attribute.
    locate
        ``observation -> (s, t)`` for families on envs whose observations are not
        crowdsteer's ``[s, t]``.

    Examples
    --------
    A flat bonus of ``w[0]`` for action 1, on any env:

    >>> from crowdsteer.envs import parallel_env
    >>> env = parallel_env({"game": {"name": "crowd", "height": 1, "width": 2}}, agents=2)
    >>> bonus = modify_rewards(env, lambda obs, action, w: w[0] * (action == 1), [0.5])
    >>> _ = bonus.reset(seed=0)
    >>> _, rewards, _, _, infos = bonus.step({"agent_0": 0, "agent_1": 1})
    >>> infos["agent_0"]["reward_modifier"], infos["agent_1"]["reward_modifier"]
    (0.0, 0.5)
    """
    if isinstance(modifier, (str, Mapping)):
        game = getattr(env.unwrapped, "game", None)
        if game is None:
            raise ConfigError("modifier", "a family given by name needs a crowdsteer env to "
                              "build it for; build it yourself with crowdsteer.modifiers."
                              "modifiers.get(name)(config, game)")
        modifier = _build_modifier(modifier, game)
    elif not (_is_family(modifier) or callable(modifier)):
        raise ConfigError("modifier", "expected a registered family or a callable "
                          f"(observation, action, w) -> float; got {type(modifier).__name__}")
    if not (callable(getattr(env, "reset", None)) and callable(getattr(env, "step", None))):
        raise ConfigError("env", f"expected a PettingZoo ParallelEnv, got {type(env).__name__}")
    return ModifiedRewards(env, modifier, w, locate)
