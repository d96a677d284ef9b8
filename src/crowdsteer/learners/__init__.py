"""Registered learners: how the agents reach an equilibrium."""

from crowdsteer.learners.base import Learner, Solution, learners
from crowdsteer.learners import exact, independent, routes, sampled_fp  # noqa: F401  (registration)
from crowdsteer.learners import policy_gradient  # noqa: F401  (registration)
from crowdsteer.learners import ppo  # noqa: F401  (registration; torch only once it solves)

__all__ = ["Learner", "Solution", "learners"]
