"""Registered learners: how the agents reach an equilibrium."""

from crowdsteer.learners.base import Learner, Solution, learners
from crowdsteer.learners import exact  # noqa: F401  (registers "exact")

__all__ = ["Learner", "Solution", "learners"]
