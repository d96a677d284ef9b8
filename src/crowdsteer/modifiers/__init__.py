"""Reward modifiers Theta(s, u; w), registered by family name."""

from crowdsteer.modifiers.base import LinearModifier, Modifier, ModifierConfig, modifiers
from crowdsteer.modifiers import families, pairwise, tolls  # noqa: F401  (registration)

__all__ = ["LinearModifier", "Modifier", "ModifierConfig", "modifiers"]
