"""What every learner returns, and the registry learners live in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from crowdsteer.games.base import Game, ThetaLike
from crowdsteer.registry import Registry

Array = np.ndarray
Progress = Callable[[int, float], None]
"""Called after each iteration with ``(iteration, exploitability or change)``."""


@dataclass(frozen=True)
class Solution:
    """The outcome an inner solve reached.

    Attributes
    ----------
    pi
        ``(T, S, A)`` the population's policy.
    mu
        ``(T, S)`` the mean field ``pi`` induces (computed with the model).
    exploitability
        Certificate: gain of a best response against ``mu`` (model-based, in the modified game).
    iterations
        Iterations run.
    seconds
        Wall time of the solve.
    converged
        Whether the stopping rule was met before ``max_iterations``.
    mu_sample
        ``(T, S)`` empirical distribution of the simulated agents (model-free learners),
        else ``None``.
    agents
        Number of simulated agents (0 for the exact solver).
    history
        A statistic after each iteration: the exploitability (exact), the fictitious_play
        learner's estimate of it from its pooled experience, or the change of the
        population policy (independent learners).
    estimate
        The learner's own, model-free estimate of the exploitability when it stopped
        (from the agents' experience, not the model; ``None`` for the exact solver, whose
        ``exploitability`` is computed with the model throughout). Shown next to the
        certificate ``exploitability`` so that the two can be compared.
    dual
        ``(T, S, A)``: the exact solver's mirror-descent state ``y`` (``pi = softmax(y)``),
        which a warm start from this solution resumes; ``None`` for other methods.
    stage_temperature
        The exact solver's ``newton`` method: the regularisation its temperature path had
        reached (a warm start resumes near it); ``None`` for other methods.
    inner_steps
        Work inside the iterations that ``iterations`` does not count: the ``newton``
        method's conjugate-gradient steps (one tangent and one adjoint pass each); 0 else.
    params
        ``(P,)`` float32 weights of a learner's network (``ppo``), which a warm start from
        this solution resumes; ``None`` for other learners.
    """

    pi: Array
    mu: Array
    exploitability: float
    iterations: int
    seconds: float
    converged: bool
    mu_sample: Array | None = None
    agents: int = 0
    history: Array = field(default_factory=lambda: np.zeros(0))
    estimate: float | None = None
    dual: Array | None = None
    stage_temperature: float | None = None
    inner_steps: int = 0
    params: Array | None = None


class Learner(Protocol):
    """A way the agents reach an equilibrium of a (modified) game."""

    def solve(self, game: Game, theta: ThetaLike = None, rng: np.random.Generator | None = None,
              progress: Progress | None = None, init: Solution | None = None) -> Solution:
        """Learn until equilibrium (or ``max_iterations``); return what was reached.

        ``init``: an earlier solution of a game of the same shape to start from (a warm
        start); learners that cannot use one accept and ignore it.
        """
        ...


learners: Registry[Callable[..., Learner]] = Registry("learner")


def initial_policy(game: Game) -> Array:
    """Uniform over the allowed actions, ``(T, S, A)``."""
    allowed = np.ones((game.S, game.A), bool) if game.allowed is None else game.allowed
    pi = allowed / allowed.sum(axis=1, keepdims=True)
    return np.broadcast_to(pi, (game.T, game.S, game.A)).copy()


DEFAULT_EXPLORATION = 0.1
"""Exploration of the model-free learners at temperature 0 (argmax responses need it)."""


def exploration_rate(exploration: float | None, temperature: float, k: int) -> float:
    """Rate of round ``k`` (1-based): ``exploration / sqrt(k)``; ``exploration`` defaults to
    :data:`DEFAULT_EXPLORATION` at temperature 0 and to 0 otherwise (soft responses already
    try every action)."""
    if exploration is None:
        exploration = DEFAULT_EXPLORATION if temperature == 0 else 0.0
    return exploration / np.sqrt(k)


def check_finite(x: Array | float, what: str) -> None:
    from crowdsteer.errors import DivergenceError

    if not np.all(np.isfinite(x)):
        raise DivergenceError(f"{what} became NaN or infinite")
