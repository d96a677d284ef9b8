"""What a run found: :class:`RunResult`, the final re-solves and ``result.json``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from crowdsteer import faults, rundir
from crowdsteer.learners.base import Solution
from crowdsteer.metaagent.evaluation import Outcome, Setup, solve_at
from crowdsteer.metaagent.study import (
    baseline_trial, best_trial_of, evaluation_number, history as run_history, outcome,
    write_evaluations,
)
from crowdsteer.objectives import kl_floor
from crowdsteer.solving import grid

Array = np.ndarray


@dataclass(frozen=True)
class RunResult:
    """What a meta-agent run found.

    Attributes
    ----------
    baseline, best
        Outcomes at ``w = 0`` and at the best ``w``.
    best_trial
        Number of the best evaluation (``0``: the baseline), as in ``evaluations.csv``.
    evaluations
        Finished evaluations (baseline included).
    history
        J of every finished evaluation, in order (``nan`` for failed ones).
    """

    baseline: Outcome
    best: Outcome
    best_trial: int
    evaluations: int
    direction: str
    history: tuple[float, ...]
    seconds: float
    out: Path | None = None
    kl_floor: float | None = None
    best_mu: Array | None = field(default=None, repr=False)
    baseline_mu: Array | None = field(default=None, repr=False)


def finish(s: Setup, study: optuna.Study, out: Path | None, constrained: bool,
           seconds: float) -> RunResult:
    n = s.modifier.n_params
    direction = s.objective.direction
    base_trial = baseline_trial(study)
    best_trial = best_trial_of(study, direction, constrained)
    baseline, best = outcome(base_trial, n), outcome(best_trial, n)
    # Re-solve (deterministic for the seed) to get the distributions to save and plot.
    mu_base = solve_at(s, np.zeros(n), 0)
    mu_best = solve_at(s, np.asarray(best.w), 0)

    def shown(sol: Solution) -> Array:
        return sol.mu_sample if sol.mu_sample is not None else sol.mu

    floor = None
    agents = mu_best.agents
    if agents and s.objective.target is not None:
        floor = kl_floor(s.game.S, agents, s.game.T)
    history = run_history(study)
    result = RunResult(baseline, best, evaluation_number(study, best_trial), len(history),
                       direction, history, seconds, out, floor, shown(mu_best), shown(mu_base))
    faults.point("finish")
    if out is not None:
        g = s.game
        rundir.save_npy(out / "baseline_mu.npy", grid(g, shown(mu_base)))
        rundir.save_npy(out / "best_mu.npy", grid(g, shown(mu_best)))
        rundir.save_npy(out / "best_theta.npy", grid(g, np.asarray(s.modifier.field(np.asarray(best.w)))))
        if s.objective.target is not None:
            rundir.save_npy(out / "target.npy", grid(g, s.objective.target))
        rundir.write_json(out / "result.json", result_json(s, result))
        write_evaluations(study, n, out / "evaluations.csv")
        faults.point("report")
        try:
            from crowdsteer.report.html import write_report

            write_report(out)
        except ImportError:  # pragma: no cover - report module not installed
            pass
    return result


def summary(o: Outcome) -> dict[str, Any]:
    return {"w": o.w, "objective": o.objective, "objective_std": o.objective_std, "kl": o.kl,
            "welfare": o.welfare, "maxmin": o.maxmin, "exploitability": o.exploitability,
            "net_transfer": o.net_transfer, "seconds": o.seconds}


def result_json(s: Setup, r: RunResult) -> dict[str, Any]:
    cfg = s.config
    return {
        "objective": {"name": s.objective.name, "direction": r.direction},
        "baseline": summary(r.baseline),
        "best": {**summary(r.best), "trial": r.best_trial},
        "evaluations": r.evaluations,
        "kl_floor": r.kl_floor,
        "learner": cfg["learner"].name,
        "modifier": cfg["modifier"].name,
        "optimiser": s.optimiser.name,
        "seconds": r.seconds,
    }


