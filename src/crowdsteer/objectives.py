"""The meta-agent's payoff J(w, pi): KL to a target, social welfare, the worst-off agent.

Every objective measures all three quantities (``kl`` only when a target is given)
so a run can report them side by side; ``objective`` picks which one is J.
With a model-free learner the distribution is that of the ``N`` simulated agents
(``Solution.mu_sample``), so J is noisy, as in the paper; with ``exact`` it is the
mean field.

The empirical KL of ``N`` agents sampled independently from the target itself is about
``(S_+ - 1) / (2 N)`` nats per step (``S_+`` the support size; the bias of the plug-in
estimator of the divergence, Miller 1955): :func:`kl_floor` gives that approximation,
:func:`iid_sample_kl` the Monte-Carlo value. Neither is a floor for learning agents, whose
positions are not independent draws: a coordinated population can land closer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Protocol

import numpy as np
from pydantic import Field, model_validator

from crowdsteer.config_base import Strict, load_npy
from crowdsteer.equilibrium import evaluate, welfare
from crowdsteer.errors import ConfigError
from crowdsteer.games.base import Game, reward_table
from crowdsteer.games.crowd import FieldSpec, check_distribution, grid_field
from crowdsteer.learners.base import Solution
from crowdsteer.registry import Registry

Array = np.ndarray


def kl_divergence(p: Array, q: Array) -> Array:
    """``KL(p || q)`` in nats along the last axis (``0 log 0 = 0``); ``q > 0`` where ``p > 0``.

    >>> float(kl_divergence(np.array([0.5, 0.5]), np.array([0.5, 0.5])))
    0.0
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return terms.sum(axis=-1)


def kl_floor(S_plus: int, N: int, T: int) -> float:
    """Approximate KL of ``N`` iid draws from the target, summed over ``T`` steps:
    ``T (S+ - 1)/(2N)`` (Miller 1955; accurate when ``N`` is much larger than ``S+``)."""
    return T * (S_plus - 1) / (2 * N)


def iid_sample_kl(target: Array, N: int, rng: np.random.Generator,
                  samples: int = 200) -> tuple[float, float]:
    """KL of ``N`` agents drawn iid from the target, summed over steps: ``(mean, std)``.

    Each step's histogram of ``N`` independent draws from ``target_t`` is compared with
    ``target_t`` (``samples`` Monte-Carlo repetitions). This is what perfectly placed but
    *independent* agents would score; it is not a floor: agents that coordinate (the
    learners' populations are not iid) can land closer to the target than this. About
    :func:`kl_floor` when ``N`` is much larger than the support.

    >>> m, _ = iid_sample_kl(np.full((1, 10), 0.1), 10_000, np.random.default_rng(0))
    >>> abs(m - kl_floor(10, 10_000, 1)) < 1e-4
    True
    """
    T = target.shape[0]
    total = np.zeros(samples)
    for t in range(T):
        counts = rng.multinomial(N, target[t], size=samples) / N     # (samples, S)
        total += kl_divergence(counts, target[t][None, :])
    return float(total.mean()), float(total.std())


class TargetSpec(FieldSpec):
    """A target distribution: Gaussian ``bumps`` (per-step centers allowed), a ``.npy``
    ``file`` of shape ``(T, h, w)`` or ``(h, w)`` (``(T, S)``/``(S,)`` for games without a
    grid), or the ``values`` themselves (``(S,)`` or ``(T, S)`` as nested lists)."""

    floor: Annotated[float, Field(ge=0, lt=1)] = 1e-6
    """Added to bump targets, as a fraction of their peak, so no cell has zero mass."""
    values: list[float] | list[list[float]] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "TargetSpec":
        given = [x is not None for x in (self.bumps, self.file, self.values)]
        if sum(given) != 1:
            raise ValueError("give exactly one of 'bumps', 'file' or 'values'")
        return self


class ObjectiveConfig(Strict):
    """The ``objective`` section."""

    name: Literal["kl", "welfare", "maxmin"] = "kl"
    """``kl``: sum_t KL(mu_t || target_t), minimised; ``welfare``: sum of intrinsic rewards,
    maximised; ``maxmin``: the worst-off agent's intrinsic return, maximised."""
    target: TargetSpec | None = None
    """Needed for ``kl``; optional otherwise (then kl is reported too)."""
    simulations: Annotated[int, Field(gt=0)] = 1
    """Model-free learners: J is averaged over this many fresh populations of the ``N``
    agents playing the learned policy (1: the learners' own final round)."""


@dataclass(frozen=True)
class Measure:
    """What an outcome is worth to the meta-agent."""

    objective: float
    kl: float | None
    welfare: float
    maxmin: float


class Objective(Protocol):
    name: str
    direction: str

    def measure(self, game: Game, solution: Solution, tau: float) -> Measure: ...


objectives: Registry[Callable[..., "Objective"]] = Registry("objective")


class Payoff:
    """Measures kl (if a target), welfare and maxmin; J is the one named."""

    def __init__(self, name: str, target: Array | None, simulations: int = 1) -> None:
        self.name = name
        self.direction = "minimize" if name == "kl" else "maximize"
        self.target = target
        self.simulations = simulations

    def measure(self, game: Game, solution: Solution, tau: float = 0.0,
                rng: np.random.Generator | None = None) -> Measure:
        """J of what the learner reached: on the mean field (exact learner) or on the
        simulated agents (model-free: averaged over ``simulations`` populations)."""
        if solution.mu_sample is None:
            samples = [solution.mu]
        elif self.simulations == 1:
            samples = [solution.mu_sample]
        else:
            rng = rng if rng is not None else np.random.default_rng(0)
            samples = [rollout(game, solution.pi, solution.agents, rng)
                       for _ in range(self.simulations)]
        kl = None if self.target is None else float(np.mean(
            [kl_divergence(mu, self.target).sum() for mu in samples]))
        wf = float(np.mean([welfare(game, mu) for mu in samples]))
        mm = worst_off(game, solution.pi, solution.mu)
        value = {"kl": kl, "welfare": wf, "maxmin": mm}[self.name]
        return Measure(float(value), kl, wf, mm)


    def gradient(self, game: Game, mu: Array) -> Array:
        """``dJ / d mu`` ``(T, S)`` of J measured on the mean field ``mu`` (exact learner).

        .. math::

            \\frac{\\partial}{\\partial \\mu_t} \\sum_t KL(\\mu_t \\| M_t) = \\log\\frac{\\mu_t}{M_t} + 1,
            \\qquad
            \\frac{\\partial}{\\partial \\mu_t} \\sum_t \\mu_t \\cdot r_t(\\mu_t)
            = r_t(\\mu_t) + \\Big(\\frac{\\partial r_t}{\\partial \\mu_t}\\Big)^\\top \\mu_t.

        States with no mass get 0 in the KL derivative (no agent can be moved there at first
        order when none can reach them). ``maxmin`` (a minimum over start states) has no
        gradient where the worst-off state switches: it is refused.
        """
        from crowdsteer.adjoint import GradientError, reward_vjp

        if self.name == "kl":
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(mu > 0, np.log(mu / self.target) + 1.0, 0.0)
        if self.name == "welfare":
            return np.stack([game.reward(t, mu[t]) + reward_vjp(game, t, mu[t], mu[t])
                             for t in range(game.T)])
        raise GradientError(f"objective {self.name} has no gradient (the worst-off agent "
                            "switches between states); use objective welfare or kl, or "
                            "optimiser bo")


def rollout(game: Game, pi: Array, N: int, rng: np.random.Generator) -> Array:
    """Empirical ``(T, S)`` distribution of ``N`` agents playing ``pi`` from ``mu0``."""
    from crowdsteer.learners.simulate import sample_actions, sample_states, sample_step

    states = sample_states(game.mu0, N, rng)
    out = np.empty((game.T, game.S))
    for t in range(game.T):
        actions = sample_actions(pi[t], states, rng)
        states = sample_step(game.transition, states, actions, rng)
        out[t] = np.bincount(states, minlength=game.S) / N
    return out


def worst_off(game: Game, pi: Array, mu: Array) -> float:
    """Lowest intrinsic return ``V^pi_0(s)`` among occupied starting states (mean field)."""
    if hasattr(game, "worst_off"):  # road networks: the worst-off pair's time
        return game.worst_off(mu)
    V0 = evaluate(game, pi, reward_table(game, mu), 0.0).V[0]
    return float(V0[game.mu0 > 0].min())


def build_target(spec: TargetSpec, game: Game, base_dir: Path | None = None) -> Array:
    """``(T, S)`` target, each step normalised; refuses NaN, negative or zero entries."""
    field = "objective.target"
    shape = getattr(game, "shape", None)
    where = f"{field}.file" if spec.file else f"{field}.values" if spec.values else f"{field}.bumps"
    if shape is not None and spec.values is None:
        raw = grid_field(spec, game.T, shape[0], shape[1], field, base_dir)
    else:
        if spec.values is not None:
            arr = np.asarray(spec.values, dtype=float)
        elif spec.file is not None:
            arr = load_npy(spec.file, f"{field}.file", base_dir)
        else:
            raise ConfigError(field, "this game has no grid: give the target as 'values' or "
                              "a .npy 'file'")
        if arr.ndim == 1 and arr.shape == (game.S,):
            arr = np.broadcast_to(arr, (game.T, game.S))
        if arr.shape != (game.T, game.S):
            raise ConfigError(where, f"shape {arr.shape}; allowed: ({game.T}, {game.S}) or "
                              f"({game.S},), one entry per state")
        raw = np.array(arr, dtype=float)
    if spec.bumps is not None:
        raw = raw + spec.floor * raw.max(axis=1, keepdims=True)
    # zeros are fine where no agent can ever land (e.g. the start states of routing games)
    reachable = reachable_states(game)
    out = []
    for t in range(game.T):
        if not np.all(np.isfinite(raw[t])):
            raise ConfigError(where, "contains NaN or infinite values; allowed: finite "
                              "numbers >= 0")
        if np.any(raw[t][reachable] == 0):
            raise ConfigError(where, "has zero entries where agents can land, which make the "
                              "KL divergence infinite; allowed: numbers > 0")
        out.append(check_distribution(raw[t], where, allow_zeros=True))
    return np.stack(out)


def reachable_states(game: Game) -> Array:
    """``(S,)`` bool: states some allowed action can land in (a move's possible outcomes)."""
    allowed = np.ones((game.S, game.A)) if game.allowed is None else game.allowed.astype(float)
    pi = allowed / allowed.sum(axis=1, keepdims=True)
    return game.transition.push(np.full(game.S, 1.0 / game.S), pi) > 0


def build(cfg: ObjectiveConfig, game: Game, base_dir: Path | None = None) -> Payoff:
    if cfg.name == "kl" and cfg.target is None:
        raise ConfigError("objective.target", "the kl objective needs a target distribution")
    target = None if cfg.target is None else build_target(cfg.target, game, base_dir)
    return Payoff(cfg.name, target, cfg.simulations)


for _name in ("kl", "welfare", "maxmin"):
    objectives.register(_name)(build)
build.config = ObjectiveConfig  # type: ignore[attr-defined]
