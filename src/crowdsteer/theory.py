"""Numerical checks of the paper's theory on any registered game.

Lemma 1 (the modified game is still a potential game)
    For a population game with potential ``Phi_t(mu)`` (its gradient in ``mu`` is the
    landing reward ``r_t``), the game modified by ``Theta`` has the potential
    ``Phi_w(m) = Phi_t(P'm) + <m, Theta_t>`` over state-action masses ``m``. A unilateral
    deviation of a small mass ``eps`` from action ``a`` to ``a'`` in state ``s`` must change
    ``Phi_w`` by ``eps (R_w(s, a') - R_w(s, a))``: the deviator's change in value. We move
    ``eps`` and compare (central differences, so the error is ``O(eps^2)``), stage by stage,
    at random distributions and random ``w``; the largest gap is the violation.

Continuity of the equilibrium in ``w`` (the paper's Theorem 1)
    Solve the regularised equilibrium at ``w`` and at ``w + h d`` for shrinking ``h``; the
    change of ``mu`` must shrink with ``h``. The largest ``|mu(w + h d) - mu(w)|_1 / h`` is
    reported as a local Lipschitz estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from crowdsteer.config import Config, build, build_game, load_config, validate_section
from crowdsteer.games.base import Game, theta_at
from crowdsteer.learners.exact import ExactConfig, ExactSolver

Array = np.ndarray


@dataclass(frozen=True)
class TheoryReport:
    """Largest violations found for one game.

    Attributes
    ----------
    lemma1
        Largest ``|dPhi_w / eps - (R_w(s, a') - R_w(s, a))|`` over the samples (``None``: the
        game has no potential).
    lemma1_scale
        Typical size of the reward differences compared (to judge ``lemma1``).
    lipschitz
        Largest ``|mu(w + h d) - mu(w)|_1 / h`` seen.
    shrinks
        Whether the change of ``mu`` fell with every smaller ``h`` (continuity).
    """

    game: str
    modifier: str
    samples: int
    lemma1: float | None
    lemma1_scale: float
    lipschitz: float
    shrinks: bool


def _modifier(config: Config, game: Game) -> tuple[str, Any]:
    if config["modifier"] is not None:
        return config["modifier"].name, build(config, "modifier", game=game)
    cfg = validate_section("modifier", {"name": "tabular"})
    return "tabular", build(config.replace("modifier", cfg), "modifier", game=game)


def lemma1_violation(game: Game, theta: Any, rng: np.random.Generator, pairs: int = 20,
                     eps: float = 1e-5) -> tuple[float, float]:
    """Largest potential-identity gap over random stages, distributions and deviations."""
    if not hasattr(game, "potential"):
        raise AttributeError("no potential")
    allowed = np.ones((game.S, game.A), bool) if game.allowed is None else game.allowed
    worst, scale = 0.0, 0.0
    for _ in range(pairs):
        t = int(rng.integers(game.T))
        # a random state-action mass m (S, A) on the allowed actions, positive everywhere
        m = rng.dirichlet(np.ones(game.S * game.A)).reshape(game.S, game.A) * allowed
        m /= m.sum()
        s = int(rng.choice(np.flatnonzero(allowed.any(axis=1))))
        a, b = rng.choice(np.flatnonzero(allowed[s]), size=2, replace=True)

        mu_m = game.transition.push(m.sum(axis=1), _policy(m))
        # Theta at the distribution before the deviation: a mu-dependent part that is the
        # same for every action (budget balance's -mu . f) changes no deviation and is no
        # part of the potential, so it is held at its current value here.
        th = np.broadcast_to(theta_at(theta, t, mu_m, (game.S, game.A)), (game.S, game.A))

        def phi_w(mass: Array) -> float:
            mu = game.transition.push(mass.sum(axis=1), _policy(mass))
            return game.potential(t, mu) + float(np.sum(mass * th))

        delta = np.zeros_like(m)
        delta[s, b] += eps
        delta[s, a] -= eps
        lhs = (phi_w(m + delta) - phi_w(m - delta)) / (2 * eps)
        R = game.transition.expect(game.reward(t, mu_m)) + th
        rhs = R[s, b] - R[s, a]
        worst = max(worst, abs(lhs - rhs))
        scale = max(scale, abs(rhs))
    return worst, scale


def _policy(mass: Array) -> Array:
    tot = mass.sum(axis=1, keepdims=True)
    return np.where(tot > 0, mass / np.where(tot > 0, tot, 1), 1.0 / mass.shape[1])


def continuity(game: Game, modifier: Any, w: Array, rng: np.random.Generator,
               tau: float = 0.2, steps: tuple[float, ...] = (1e-1, 1e-2, 1e-3)
               ) -> tuple[float, bool]:
    if hasattr(game, "solve_equilibrium"):  # road networks: Wardrop's link flows are unique
        solver = ExactSolver(ExactConfig(relative_gap=1e-10, max_iterations=20000))
    else:
        solver = ExactSolver(ExactConfig(temperature=tau, tolerance=1e-11, max_iterations=20000))
    base = solver.solve(game, modifier.theta(w)).mu
    d = rng.normal(size=w.shape)
    d /= np.linalg.norm(d)
    changes = [float(np.abs(solver.solve(game, modifier.theta(w + h * d)).mu - base).sum())
               for h in steps]
    ratios = [c / h for c, h in zip(changes, steps)]
    shrinks = all(changes[i + 1] < changes[i] or changes[i] < 1e-9
                  for i in range(len(changes) - 1))
    return max(ratios), shrinks


def check(config: Config | dict | str, samples: int = 4, seed: int = 0) -> TheoryReport:
    """Check Lemma 1 and continuity on the game of ``config`` for ``samples`` random ``w``."""
    if not isinstance(config, Config):
        config = load_config(config)
    rng = np.random.default_rng(seed)
    game = build_game(config)
    name, modifier = _modifier(config, game)
    lo, hi = config["modifier"].bounds if config["modifier"] is not None else (-1.0, 1.0)
    lemma, scale, lip, shrinks = 0.0, 0.0, 0.0, True
    has_potential = hasattr(game, "potential")
    for _ in range(samples):
        w = rng.uniform(max(lo, -1.0), min(hi, 1.0), modifier.n_params)
        if has_potential:
            v, sc = lemma1_violation(game, modifier.theta(w), rng)
            lemma, scale = max(lemma, v), max(scale, sc)
        r, ok = continuity(game, modifier, w, rng)
        lip, shrinks = max(lip, r), shrinks and ok
    return TheoryReport(config["game"].name, name, samples, lemma if has_potential else None,
                        scale, lip, shrinks)
