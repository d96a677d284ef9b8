"""PettingZoo and Gymnasium adapters: train agents on any registered game with your own library.

The core stays an array API (a population is an ``(N,)`` array of state indices); these
adapters are thin layers over one vectorised step, :func:`population_step`:

* :func:`parallel_env` -> :class:`CrowdParallelEnv`, a PettingZoo ``ParallelEnv`` with one
  named agent per member of the population (dicts of agents: meant for small ``N``; the
  dict-per-agent API costs several times a vectorised step, see ``benchmarks/envs.py``);
* :func:`vector_env` -> :class:`CrowdVectorEnv`, a Gymnasium ``VectorEnv`` whose batch axis
  is the agents (NumPy arrays in and out; for parameter-sharing learners at large ``N``);
* :func:`modify_rewards` -> :class:`ModifiedRewards`: adds a reward modifier (a registered
  family, or your own callable ``(observation, action, w) -> float``) to the rewards of
  *any* PettingZoo ``ParallelEnv``.

One step of the ``N`` agents, at step ``t`` (0-based):

1. agent ``i`` in state ``s_i`` takes action ``a_i``;
2. it lands in ``s'_i ~ P(. | s_i, a_i)``;
3. the empirical distribution after the move is ``mu_hat(s') = #{i : s'_i = s'} / N``;
4. agent ``i`` receives

.. math::

    r_i = r_t(s'_i; \\hat\\mu) + \\Theta_t(s_i, a_i; \\hat\\mu; w),

the game's landing reward plus the modifier (``crowdsteer.games.base.theta_at``). As
``N`` grows ``mu_hat`` tends to the mean field ``mu_t`` and the average reward to its
mean-field expectation, with an error of order ``1 / sqrt(N)``.

Spaces and episodes (both adapters):

* observation: ``[s, t]``, the agent's state index and the step, ``MultiDiscrete([S, T + 1])``
  (``t = T`` in the observation after the last move);
* action: ``Discrete(A)``. When the game restricts actions (``game.allowed`` is not
  ``None``, e.g. routing: a traveller takes one of its own pair's paths), the parallel
  env's observation is PettingZoo's masked form ``{"observation": [s, t],
  "action_mask": int8 (A,)}``, the mask is also in ``infos[agent]["action_mask"]``
  (vector env: ``infos["action_mask"]``, ``(N, A)``), and a forbidden action raises
  ``ValueError``;
* an episode is ``T`` steps; then every agent is *terminated* (the game ends there and
  nothing is earned after it, ``V_T = 0``), never truncated;
* randomness (initial states drawn from ``mu0``, stochastic moves) comes from
  ``reset(seed=...)``; without a seed the first reset draws fresh entropy.

With a modifier, ``infos`` carry each agent's ``"reward_modifier"`` (the ``Theta`` part of
its reward), so the intrinsic reward is ``reward - reward_modifier``.

Examples
--------
Three agents on a 2 x 2 grid all move to cell 0: ``mu_hat = (1, 0, 0, 0)`` and each earns
the desirability ``d(0) = 1`` minus the crowding ``c K(0, 0) mu_hat(0) = 1``.

>>> env = parallel_env({"game": {"name": "crowd", "height": 2, "width": 2}}, agents=3)
>>> obs, infos = env.reset(seed=0)
>>> env.agents
['agent_0', 'agent_1', 'agent_2']
>>> obs, rewards, terminations, truncations, infos = env.step({a: 0 for a in env.agents})
>>> rewards
{'agent_0': 0.0, 'agent_1': 0.0, 'agent_2': 0.0}
>>> obs["agent_0"].tolist(), terminations["agent_0"], env.agents
([0, 1], True, [])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from dataclasses import dataclass
from typing import Any

import operator
import os

import numpy as np

try:
    from gymnasium import spaces
    from gymnasium.vector import AutoresetMode, VectorEnv
    from gymnasium.vector.utils import batch_space
    from pettingzoo import ParallelEnv
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the installed extras
    raise ModuleNotFoundError(
        f"crowdsteer.envs needs PettingZoo and Gymnasium ({exc.name} is missing); install "
        "them with: pip install 'crowdsteer[envs]'", name=exc.name) from None

from crowdsteer.config import Config, build, build_game, load_config, validate_section
from crowdsteer.errors import ConfigError
from crowdsteer.games.base import Game, ThetaLike, theta_at
from crowdsteer.learners.simulate import sample_states, sample_step

Array = np.ndarray
ConfigLike = Config | dict | str | Path
ModifierLike = Any  # a Modifier (has n_params and theta), a family name or section mapping
UserModifier = Callable[[Any, Any, Array], float]
"""``(observation, action, w) -> float``: a user's own modifier for :func:`modify_rewards`."""

__all__ = [
    "CrowdParallelEnv", "CrowdVectorEnv", "ModifiedRewards", "Step", "modify_rewards",
    "parallel_env", "population_step", "vector_env",
]


# --------------------------------------------------------------------------- the core step


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


def _setup(config: ConfigLike, w: Any, modifier: ModifierLike | None
           ) -> tuple[Game, Any, ThetaLike, Array | None]:
    """``(game, modifier, theta, w)`` from what a user passes to the factories."""
    if isinstance(config, Config):
        cfg = config
    elif isinstance(config, (dict, str, Path)):
        cfg = load_config(config)
    else:
        raise ConfigError("config", "expected a mapping, a YAML path or a crowdsteer Config; "
                          f"got {type(config).__name__}")
    game = build_game(cfg)
    if hasattr(game, "solve_equilibrium"):  # a road network: links, no states to step through
        raise ConfigError("game.network", "the environments step agents through a game's "
                          "states; a road network has none (its travellers learn routes: "
                          "learner: {name: routes})")
    mod = None
    if w is not None and modifier is None and cfg["modifier"] is None:
        raise ConfigError("w", "given, but there is no modifier to apply it to: pass "
                          "modifier= (a family name, a section mapping or a built modifier) "
                          "or add a modifier section to the config")
    if modifier is not None or w is not None:
        mod = _build_modifier(modifier, game, cfg)
    if w is None:
        return game, mod, None, None
    w = check_w(w, mod.n_params)
    return game, mod, mod.theta(w), w


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


def parallel_env(config: ConfigLike, agents: int = 100, w: Any = None,
                 modifier: ModifierLike | None = None) -> "CrowdParallelEnv":
    """A registered game as a PettingZoo ``ParallelEnv`` of ``agents`` named agents.

    Parameters
    ----------
    config
        What :func:`crowdsteer.load_config` accepts (a mapping or a YAML path) or a
        :class:`~crowdsteer.config.Config`; its ``game`` section picks the game.
    agents
        ``N``, the number of agents (``agent_0`` ... ``agent_{N-1}``).
    w
        ``(n_params,)`` modifier parameters; ``None``: the intrinsic rewards only.
    modifier
        The family that turns ``w`` into ``Theta``: a name (``"rbf"``), a section mapping
        (``{"name": "rbf", "centers": 2}``) or a built modifier; default: the config's
        ``modifier`` section (``w`` without either is refused: no modifier is made up).

    Raises
    ------
    ConfigError
        Naming the argument: ``config`` of the wrong type or not valid, ``agents`` not a
        whole number >= 1 or needing more memory than the machine has (an estimate of
        :data:`PARALLEL_BYTES_PER_AGENT` bytes per agent against the physical memory),
        ``w`` of the wrong length or not finite, ``modifier`` of the wrong type or missing.

    Returns
    -------
    :class:`CrowdParallelEnv`; it passes ``pettingzoo.test.parallel_api_test``.
    """
    N = _agents(agents, PARALLEL_BYTES_PER_AGENT, "parallel_env")
    game, mod, theta, w = _setup(config, w, modifier)
    return CrowdParallelEnv(game, N, theta, mod, w)


def vector_env(config: ConfigLike, agents: int = 100, w: Any = None,
               modifier: ModifierLike | None = None) -> "CrowdVectorEnv":
    """A registered game as a Gymnasium ``VectorEnv`` whose ``num_envs`` axis is the agents.

    The agents share one game (their rewards depend on each other through ``mu_hat``), so
    they are not independent copies: they start and end their episodes together, and the
    env resets all of them on the step after the last (``autoreset_mode`` ``NEXT_STEP``).
    Arguments as for :func:`parallel_env`.
    """
    N = _agents(agents, VECTOR_BYTES_PER_AGENT, "vector_env")
    game, mod, theta, w = _setup(config, w, modifier)
    return CrowdVectorEnv(game, N, theta, mod, w)


# --------------------------------------------------------------------------- PettingZoo


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


# --------------------------------------------------------------------------- Gymnasium


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


# --------------------------------------------------------------------------- reward modifier


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
