"""Errors that reach a user as one clear line."""

from __future__ import annotations


class CrowdsteerError(Exception):
    """Base class for errors that the CLI prints as one line (exit code 2)."""


class ConfigError(CrowdsteerError, ValueError):
    """A configuration value is not allowed.

    Parameters
    ----------
    field
        Dotted path of the offending field, e.g. ``game.height``.
    message
        What is wrong and what is allowed.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class DivergenceError(CrowdsteerError, FloatingPointError):
    """An inner solve produced NaN or overflow."""


class NoEquilibrium(CrowdsteerError):
    """No evaluation of a run reached equilibrium (``require_convergence``): nothing to call
    the best. What was computed is kept; the CLI exits with :attr:`exit_code`."""

    exit_code = 3


class CrowdsteerWarning(UserWarning):
    """Something will work but slowly or poorly; the CLI prints it as one line."""
