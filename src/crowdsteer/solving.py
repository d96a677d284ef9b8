"""Solve one game with one learner: the ``crowdsteer solve`` job as a library call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crowdsteer.config import Config, build, build_game, load_config
from crowdsteer.equilibrium import welfare
from crowdsteer.games.base import ThetaLike
from crowdsteer.learners.base import Progress, Solution
from crowdsteer import rundir

Array = np.ndarray


@dataclass(frozen=True)
class SolveResult:
    """A solved game: the game object, what the learner reached, and its welfare."""

    game: Any
    solution: Solution
    welfare: float

    def summary(self) -> dict[str, Any]:
        s = self.solution
        if hasattr(self.game, "solve_equilibrium"):  # road networks: no grid fields
            from crowdsteer.report.network import network_summary

            return network_summary(self.game, s, self.welfare)
        return {
            "exploitability": s.exploitability,
            "exploitability_estimate": s.estimate,  # the learner's own (model-free) view
            "welfare": self.welfare,
            "iterations": s.iterations,
            "seconds": s.seconds,
            "converged": s.converged,
            "agents": s.agents,
            "T": self.game.T,
            "S": self.game.S,
            "A": self.game.A,
            **(s.network_summary() if hasattr(s, "network_summary") else {}),
        }


def solve(config: Config | dict | str | Path, theta: ThetaLike = None,
          progress: Progress | None = None) -> SolveResult:
    """Build the game and learner of ``config`` and solve.

    ``welfare`` is ``sum_t sum_s mu_t(s) r_t(s)`` of the learner's mean field, with the
    intrinsic rewards.
    """
    if not isinstance(config, Config):
        config = load_config(config)
    game = build_game(config)
    from crowdsteer.games.network import check_learner

    check_learner(game, config["learner"].name)
    learner = build(config, "learner")
    rng = np.random.default_rng(config.seed)
    sol = learner.solve(game, theta, rng=rng, progress=progress)
    return SolveResult(game, sol, welfare(game, sol.mu))


def grid(game: Any, per_state: Array) -> Array:
    """Reshape ``(T, S)`` to ``(T, height, width)`` for grid games (unchanged otherwise)."""
    shape = getattr(game, "shape", None)
    return per_state.reshape(per_state.shape[0], *shape) if shape else per_state


def write(result: SolveResult, out: Path) -> list[str]:
    """Write summary.json, mu.npy ``(T, h, w)``, pi.npy ``(T, S, A)`` and mu.png to ``out``
    (road networks: flows.csv, summary.json, map.png); returns the names written."""
    from crowdsteer.report.plots import heatmap_grid

    out = Path(out)
    if hasattr(result.game, "solve_equilibrium"):
        from crowdsteer.report.network import write_solve

        return write_solve(result, out)
    rundir.save_npy(out / "mu.npy", grid(result.game, result.solution.mu))
    rundir.save_npy(out / "pi.npy", result.solution.pi)
    rows = [("mean field", grid(result.game, result.solution.mu))]
    if result.solution.mu_sample is not None:
        rows.append((f"{result.solution.agents} agents", grid(result.game, result.solution.mu_sample)))
    heatmap_grid(rows, out / "mu.png", title="distribution of agents per step")
    rundir.write_json(out / "summary.json", result.summary())
    return ["summary.json", "mu.npy", "pi.npy", "mu.png"]
