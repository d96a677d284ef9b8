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

from pathlib import Path
from typing import Any

import numpy as np

try:  # the optional extras, before the submodules that need them
    import gymnasium  # noqa: F401
    import pettingzoo  # noqa: F401
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the installed extras
    raise ModuleNotFoundError(
        f"crowdsteer.envs needs PettingZoo and Gymnasium ({exc.name} is missing); install "
        "them with: pip install 'crowdsteer[envs]'", name=exc.name) from None

from crowdsteer.config import Config, build_game, load_config
from crowdsteer.errors import ConfigError
from crowdsteer.games.base import Game, ThetaLike
from crowdsteer.envs.pettingzoo import CrowdParallelEnv
from crowdsteer.envs.rewards import (  # noqa: F401  (re-exported)
    ModifiedRewards, ModifierLike, UserModifier, _build_modifier, modify_rewards,
)
from crowdsteer.envs.step import (  # noqa: F401  (re-exported)
    PARALLEL_BYTES_PER_AGENT, VECTOR_BYTES_PER_AGENT, Step, _agents, check_actions, check_w,
    population_step, total_memory,
)
from crowdsteer.envs.vector import CrowdVectorEnv

Array = np.ndarray
ConfigLike = Config | dict | str | Path

__all__ = [
    "CrowdParallelEnv", "CrowdVectorEnv", "ModifiedRewards", "Step", "modify_rewards",
    "parallel_env", "population_step", "vector_env",
]


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
