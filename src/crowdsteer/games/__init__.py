"""Registered games. Each module registers its builders in :data:`games`."""

from crowdsteer.games.base import AnyMove, Game, SparseMoves, Transition, games, reward_table
from crowdsteer.games import congestion, crowd, matrix, routing  # noqa: F401  (registration)

__all__ = ["AnyMove", "Game", "SparseMoves", "Transition", "games", "reward_table"]
