"""crowdsteer: a meta-agent that steers self-interested learners to efficient equilibria.

The public API:

* :func:`solve` / :class:`SolveResult`: solve a game with a learner;
* :func:`run` / :class:`RunResult`: the meta-agent's inner-outer loop;
* :func:`optimise` / :class:`Outcome`: the meta-agent around your own ``evaluate(w, seed)``;
* :func:`load_config`: validate a YAML file or dict; :func:`setup` / :class:`Setup`: the
  game, learner, modifier (``n_params``), objective (``target``) and optimiser a config
  builds;
* :func:`kl_divergence`: the KL objective, ``KL(mu || target)``;
* :func:`exploitability`, :func:`mean_field`, :func:`best_response`: the equilibrium engine;
* :mod:`crowdsteer.envs` (extra ``envs``): ``parallel_env``, ``vector_env``,
  ``modify_rewards``, PettingZoo and Gymnasium adapters;
* the registries: ``crowdsteer.games.games``, ``crowdsteer.learners.learners``,
  ``crowdsteer.modifiers.modifiers``, ``crowdsteer.objectives.objectives``.
"""

from crowdsteer.config import Config, load_config
from crowdsteer.equilibrium import best_response, exploitability, mean_field, welfare
from crowdsteer.errors import ConfigError, CrowdsteerError
from crowdsteer.learners.base import Solution
from crowdsteer.learners.ppo import train_ppo  # torch only once it trains
from crowdsteer.metaagent import Outcome, RunResult, Setup, optimise, run, setup
from crowdsteer.objectives import kl_divergence
from crowdsteer.solving import SolveResult, solve

__all__ = [
    "Config", "ConfigError", "CrowdsteerError", "Outcome", "RunResult", "Setup", "Solution",
    "SolveResult", "best_response", "exploitability", "kl_divergence", "load_config",
    "mean_field", "optimise", "run", "setup", "solve", "train_ppo", "welfare",
]
__version__ = "0.1.0"
