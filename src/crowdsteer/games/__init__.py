"""Registered games. Each module registers its builders in :data:`games`."""

from crowdsteer.games.base import AnyMove, Game, SparseMoves, Transition, games, reward_table
from crowdsteer.games import crowd  # noqa: F401  (registers "crowd")

__all__ = ["AnyMove", "Game", "SparseMoves", "Transition", "games", "reward_table"]
