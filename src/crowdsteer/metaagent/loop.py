"""The outer loop of the black-box optimisers: ask, evaluate on an executor, tell."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from crowdsteer import faults
from crowdsteer.executors import Executor
from crowdsteer.metaagent.evaluation import Outcome, lineage, requires_convergence
from crowdsteer.metaagent.study import (
    Candidate, ask, baseline_trial, best_or_none, enqueue_baseline, finished, has_baseline,
    reason, reclaim, tell,
    tell_failure, write_evaluations,
)
from crowdsteer.optimisers import OptimiserConfig, distributions, make_sampler


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
    bounds: tuple[float, float] | tuple[tuple[float, float], ...]
    """One ``(lo, hi)`` for every weight, or one pair per weight."""
    direction: str
    seed: int
    optimiser: OptimiserConfig
    task: Callable[[Any], Any]
    payload: Callable[[list[float], int], Any]
    combine: Callable[[list[float], list[Any]], Outcome]
    warm: bool = False
    """Warm starts: ``payload`` also takes ``(number, chain)`` (see
    :func:`~crowdsteer.metaagent.evaluation.lineage`)."""
    on_error: Callable[[BaseException, int], None] | None = None
    """Called with the exception and the evaluation's number for each failed evaluation,
    after the round is recorded (it may raise to stop the run: nothing is lost)."""

    @property
    def constrained(self) -> bool:
        return self.optimiser.constraint == "budget"

    @property
    def required(self) -> bool:
        """``require_convergence`` (default on): only equilibria count."""
        return requires_convergence(self.optimiser)


def constraints_of(problem: Problem) -> Any:
    """With ``constraint: budget``, the constraints told with each evaluation
    (``trial -> {name: value}``, feasible at <= 0; see
    :func:`~crowdsteer.metaagent.study.set_constraints`), for ``gp`` and ``tpe`` (``bo``
    then runs as ``gp``): net transfers and, with ``require_convergence``, ``1`` for an
    evaluation that did not converge; ``None`` without a budget. Without one, every
    optimiser sees a non-converged evaluation through the value it is told
    (:func:`~crowdsteer.metaagent.study.infeasible_value`): never better than the worst
    converged J."""
    if not problem.constrained:
        return None

    def constraints(t: optuna.trial.FrozenTrial) -> dict[str, float]:
        out = {"budget": t.user_attrs.get("net_transfer") or 0.0}
        if problem.required:
            out["converged"] = 0.0 if t.user_attrs.get("converged") is not False else 1.0
        return out

    return constraints


def drive(problem: Problem, study: optuna.Study, executor: Executor, out: Path | None,
          progress: Any = None, close: bool = True, own: bool = True) -> None:
    """Ask, evaluate (on the executor), tell, until the study holds the baseline plus
    ``evaluations`` finished evaluations; evaluations.csv is rewritten after every round.

    Rounds hold ``batch`` candidates and start at multiples of ``batch`` evaluations, so a
    resumed run forms the same rounds. A killed run is continued where it stopped (see
    :func:`~crowdsteer.metaagent.study.reclaim`; ``own``: the study is the run folder's
    own, used by no other run): the candidates it had stored are evaluated again as they
    were, and an ask it was in the middle of is asked again with the same seed (the
    evaluation's index), so the evaluations are those of an uninterrupted run.
    """
    opt = problem.optimiser
    n = problem.n_params
    dists = distributions(n, problem.bounds)
    constraints = constraints_of(problem)
    total = 1 + opt.evaluations
    pending = reclaim(study, own)
    if not has_baseline(study):
        enqueue_baseline(study, dists)
    try:
        while (done := len(records := finished(study))) < total:
            if any(t.user_attrs.get("baseline") for t in records):
                baseline_trial(study)  # a failed baseline stops the run now, not at the end
            end = min((done // opt.batch + 1) * opt.batch, total)  # this round's last + 1
            round_ = pending[:end - done]
            pending = pending[end - done:]
            while done + len(round_) < end:
                index = done + len(round_)  # the evaluation this ask will be
                study.sampler = make_sampler(opt, problem.seed, index, constraints)
                round_.append(ask(study, dists))
            faults.point("evaluate")
            R = opt.repeats
            if problem.warm:  # from the closest w of the earlier rounds, the same on resume
                earlier = records[:(done // opt.batch) * opt.batch]
                links = [lineage(earlier, c.w, n) for c in round_]
                for c, (src, _) in zip(round_, links):
                    study._storage.set_trial_user_attr(c.trial_id, "warm_from", src)
                tasks = [problem.payload(c.w, r, (c.number, chain))
                         for c, (_, chain) in zip(round_, links) for r in range(R)]
            else:
                tasks = [problem.payload(c.w, r) for c in round_ for r in range(R)]
            results = (executor.map(problem.task, tasks, timeout=opt.timeout)
                       if opt.timeout else executor.map(problem.task, tasks))
            failed: list[tuple[BaseException, Candidate]] = []
            for i, c in enumerate(round_):
                parts = results[i * R:(i + 1) * R]
                errors = [p for p in parts if isinstance(p, BaseException)]
                if errors:
                    tell_failure(study, c, reason(errors[0]), problem.direction, constraints)
                    failed.append((errors[0], c))
                    continue
                try:
                    res = problem.combine(c.w, parts)
                except Exception as exc:  # a user's evaluate returned something unusable
                    tell_failure(study, c, reason(exc), problem.direction, constraints)
                    failed.append((exc, c))
                    continue
                tell(study, c, res, problem.required, problem.direction, constraints)
            if out is not None:
                write_evaluations(study, n, out / "evaluations.csv")
            if failed and problem.on_error is not None:
                numbers = {t.number: k for k, t in enumerate(finished(study))}
                for exc, c in failed:
                    problem.on_error(exc, numbers.get(c.number, c.number))
            if progress is not None:
                best = best_or_none(study, problem.direction, problem.constrained,
                                    problem.required)
                progress(len(finished(study)), total, best)
    finally:
        if close:
            executor.close()
