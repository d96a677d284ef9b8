"""The outer loop of the black-box optimisers: ask, evaluate on an executor, tell."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from crowdsteer.executors import Executor
from crowdsteer.metaagent.evaluation import Outcome
from crowdsteer.metaagent.study import (
    attrs, best_or_none, finished, reason, tell_failure, write_evaluations,
)
from crowdsteer.optimisers import OptimiserConfig, distributions, make_sampler, param_names


@dataclass(frozen=True)
class Problem:
    """What the outer loop needs to know of an inner loop.

    Attributes
    ----------
    task
        Picklable ``task(payload(w, repeat)) -> sample`` run by the executor.
    combine
        ``combine(w, samples) -> Outcome`` over the repeats of one ``w``.
    """

    n_params: int
    bounds: tuple[float, float]
    direction: str
    seed: int
    optimiser: OptimiserConfig
    task: Callable[[Any], Any]
    payload: Callable[[list[float], int], Any]
    combine: Callable[[list[float], list[Any]], Outcome]

    @property
    def constrained(self) -> bool:
        return self.optimiser.constraint == "budget"


def drive(problem: Problem, study: optuna.Study, executor: Executor, out: Path | None,
          progress: Any = None, close: bool = True) -> None:
    """Ask, evaluate (on the executor), tell, until the study holds the baseline plus
    ``evaluations`` finished evaluations; evaluations.csv is rewritten after every round."""
    opt = problem.optimiser
    n = problem.n_params
    dists = distributions(n, problem.bounds)
    names = param_names(n)
    constraints = ((lambda t: [t.user_attrs.get("net_transfer") or 0.0])
                   if problem.constrained else None)
    total = 1 + opt.evaluations
    # A killed run leaves trials RUNNING: mark them, and ask the same w again first.
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(t._trial_id, "interrupted", True)
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        study.enqueue_trial(dict(t.params), user_attrs={"requeued_from": t.number})
    if not study.trials:
        study.enqueue_trial({k: 0.0 for k in names}, user_attrs={"baseline": True})
    try:
        while (done := len(finished(study))) < total:
            q = min(opt.batch, total - done)
            trials = []
            for _ in range(q):
                index = done + len(trials)  # the evaluation this ask will be
                study.sampler = make_sampler(opt, problem.seed, index, constraints)
                trials.append(study.ask(dists))
            ws = [[t.params[k] for k in names] for t in trials]
            R = opt.repeats
            results = executor.map(problem.task,
                                   [problem.payload(w, r) for w in ws for r in range(R)])
            for i, trial in enumerate(trials):
                parts = results[i * R:(i + 1) * R]
                errors = [p for p in parts if isinstance(p, BaseException)]
                if errors:
                    tell_failure(study, trial, reason(errors[0]), problem.direction)
                    continue
                try:
                    res = problem.combine(ws[i], parts)
                except Exception as exc:  # a user's evaluate returned something unusable
                    tell_failure(study, trial, reason(exc), problem.direction)
                    continue
                for k, v in attrs(res).items():
                    trial.set_user_attr(k, v)
                study.tell(trial, res.objective)
            if out is not None:
                write_evaluations(study, n, out / "evaluations.csv")
            if progress is not None:
                best = best_or_none(study, problem.direction, problem.constrained)
                progress(len(finished(study)), total, best)
    finally:
        if close:
            executor.close()


