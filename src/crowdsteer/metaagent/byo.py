"""Bring your own inner loop: the meta-agent around a user's ``evaluate(w, seed)``."""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from crowdsteer import faults, guards, rundir
from crowdsteer.errors import ConfigError, DivergenceError
from crowdsteer.executors import Executor, ExecutorConfig, check_picklable, make_executor
from crowdsteer.metaagent.evaluation import Outcome
from crowdsteer.metaagent.loop import Problem, drive
from crowdsteer.metaagent.results import RunResult, best_of, summary
from crowdsteer.metaagent.runner import check_out, note
from crowdsteer.metaagent.study import (
    ELAPSED, Clock, baseline_trial, begin, evaluation_number, failure_note,
    failures, history as run_history,
    outcome, reason, storage_errors, storage_for,
)
from crowdsteer.optimisers import OptimiserConfig

Array = np.ndarray


TRACEBACK = "crowdsteer_traceback"
"""Attribute of an exception raised by a user's ``evaluate``: its formatted traceback (an
exception sent back from a worker process keeps it; its ``__traceback__`` is lost)."""


def _user_task(task: tuple[Callable[[Array, int], Any], list[float], int]) -> Outcome:
    evaluate_fn, w, seed = task
    start = time.perf_counter()
    try:
        res = evaluate_fn(np.asarray(w, dtype=float), seed)
    except Exception as exc:
        try:
            setattr(exc, TRACEBACK, traceback.format_exc())
        except AttributeError:  # pragma: no cover - an exception type with __slots__
            pass
        raise
    if isinstance(res, (int, float, np.floating, np.integer)) and not isinstance(res, bool):
        res = Outcome(objective=float(res))
    if not isinstance(res, Outcome):
        raise TypeError(f"evaluate must return an Outcome or a number, got {type(res).__name__}")
    if not isinstance(res.objective, (int, float, np.floating, np.integer)):
        raise TypeError(f"evaluate returned Outcome(objective={res.objective!r}); it must be "
                        "a number")
    if not np.isfinite(res.objective):
        raise DivergenceError("evaluate returned a NaN or infinite objective")
    _check_diagnostics(res.diagnostics)
    if res.seconds == 0.0:
        res = Outcome(**{**asdict(res), "seconds": time.perf_counter() - start})
    return res


def _check_diagnostics(diagnostics: Any) -> None:
    """``Outcome.diagnostics`` must map names to numbers (or ``None``)."""
    if not isinstance(diagnostics, dict):
        raise TypeError(f"evaluate returned Outcome(diagnostics={diagnostics!r}); expected a "
                        "dict of names to numbers")
    for k, v in diagnostics.items():
        if not isinstance(k, str) or not (v is None or (
                isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool))):
            raise TypeError(f"evaluate returned diagnostics {{{k!r}: {v!r}}}; diagnostics map "
                            "names (str) to numbers (int or float) or None")


def _mean(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _combine_user(w: list[float], parts: list[Outcome]) -> Outcome:
    keys = set().union(*(p.diagnostics for p in parts))
    values = [p.objective for p in parts]
    return Outcome(
        objective=float(np.mean(values)), w=[float(v) for v in w],
        objective_std=float(np.std(values)), kl=_mean([p.kl for p in parts]),
        welfare=_mean([p.welfare for p in parts]), maxmin=_mean([p.maxmin for p in parts]),
        exploitability=_mean([p.exploitability for p in parts]),
        net_transfer=_mean([p.net_transfer for p in parts]),
        seconds=float(sum(p.seconds for p in parts)),
        converged=all(p.converged for p in parts),
        iterations=int(max(p.iterations for p in parts)),
        diagnostics={k: _mean([p.diagnostics.get(k) for p in parts]) for k in sorted(keys)})


def optimise(evaluate: Callable[[Array, int], Any], n_params: int,
             bounds: Sequence[float] | Sequence[Sequence[float]] = (-1.0, 1.0),
             direction: str = "minimize",
             optimiser: OptimiserConfig | dict | None = None, seed: int = 0,
             out: Path | str | None = None, resume: bool = False, force: bool = False,
             executor: Executor | ExecutorConfig | dict | str | None = None,
             progress: Any = None, on_error: str = "record",
             log: Callable[[str], None] | None = None) -> RunResult:
    """The meta-agent around your own inner loop.

    ``evaluate(w, seed) -> Outcome`` (or a number) runs any training code for the modifier
    parameters ``w`` (``(n_params,)`` array) and reports J. The optimisers, the study,
    ``resume``, the executors (``evaluate`` must then be importable: a module-level
    function) and the report work as for :func:`run`. ``w = 0`` is evaluated first as the
    baseline, so ``bounds`` must contain 0.

    Parameters
    ----------
    evaluate
        ``evaluate(w, seed)``: returns J (a number) or an :class:`Outcome` with the fields
        ``objective`` (J, required), ``objective_std``, ``kl``, ``welfare``, ``maxmin``,
        ``exploitability``, ``net_transfer``, ``seconds`` (measured when 0),
        ``converged``, ``iterations`` and ``diagnostics`` (a dict of names to numbers,
        written to ``evaluations.csv`` as columns ``diagnostics.NAME`` and to
        ``result.json``).
    n_params
        Number of weights ``d``.
    bounds
        ``(lo, hi)`` for every weight, or ``d`` pairs ``[(lo_0, hi_0), ...]``; each box
        contains 0 and has a finite width.
    direction
        ``minimize`` or ``maximize``.
    optimiser
        The ``optimiser`` section as a dict or :class:`OptimiserConfig`; keys: ``name``
        (``auto``/``bo``: the trust-region Bayesian search, ``gp``, ``cmaes``, ``tpe``,
        ``random``; ``gradient`` needs the game's model and is refused here),
        ``evaluations`` (after the baseline, default 40), ``initial``, ``batch``,
        ``repeats`` (seeds per ``w``), ``validation``, ``storage``, ``study``,
        ``timeout`` (seconds per evaluation), ``constraint``, ``x0``, ``radius``.
    seed
        Seed of the optimiser and of the seeds passed to ``evaluate``.
    out
        Run folder (``study.db``, ``evaluations.csv``, ``result.json``, ``run.log``,
        ``report.html``); ``None`` keeps everything in memory.
    resume, force
        Continue the run in ``out``; replace it (kept in ``out/previous/``).
    executor
        ``serial`` (default), ``local`` or ``ray``, as a name, a dict
        (``{"name": "local", "workers": 4}``), an :class:`ExecutorConfig` or an executor.
    progress
        Callback ``(done, total, best_J)`` after each round.
    on_error
        ``record`` (default): an exception raised by ``evaluate`` marks that evaluation
        failed (told to the optimiser as the worst J so far), prints one line to stderr,
        writes the first traceback to ``out/run.log`` (to stderr without ``out``), and the
        run goes on; at the end the number of failures is reported. ``raise``: the
        evaluation is recorded as failed, then the exception is raised.
    log
        Callback ``(message)`` for the run's own messages (default: stderr); they also go
        to ``out/run.log``.

    Returns
    -------
    RunResult
        ``baseline``, ``best`` (Outcomes), ``best_trial``, ``evaluations``, ``history``
        (J per evaluation, ``nan`` for failed ones), ``seconds``, ``out``.

    Examples
    --------
    >>> def evaluate(w, seed):
    ...     return Outcome(objective=float(((w - 0.3) ** 2).sum()))
    >>> result = optimise(evaluate, 2, bounds=[(-1, 1), (0, 2)],
    ...                   optimiser={"name": "bo", "evaluations": 30})
    >>> result.best.objective < 0.01 < result.baseline.objective
    True
    """
    from crowdsteer.config_base import validate

    start = time.perf_counter()
    if not callable(evaluate):
        raise ConfigError("evaluate", f"must be a function evaluate(w, seed), got "
                          f"{type(evaluate).__name__}")
    n_params = _whole(n_params, "n_params", 1)
    seed = _whole(seed, "seed", 0)
    if on_error not in ("record", "raise"):
        raise ConfigError("on_error", f"allowed: record, raise; got {on_error!r}")
    opt = optimiser if isinstance(optimiser, OptimiserConfig) else validate(
        OptimiserConfig, optimiser or {}, "optimiser")
    if opt.name == "gradient":
        raise ConfigError("optimiser.name", "gradient needs the game's model (the exact "
                          "learner); around your own evaluate only J is seen: use auto or bo")
    if opt.name == "auto":  # no hypergradients through a user's evaluate
        opt = opt.model_copy(update={"name": "bo"})
    if direction not in ("minimize", "maximize"):
        raise ConfigError("direction", f"allowed: minimize, maximize; got {direction!r}")
    box = _box(bounds, n_params)
    if isinstance(executor, str):
        executor = {"name": executor}
    if isinstance(executor, dict):
        executor = validate(ExecutorConfig, executor, "executor")
    elif executor is not None and not isinstance(executor, ExecutorConfig) and not (
            callable(getattr(executor, "map", None)) and callable(getattr(executor, "close",
                                                                          None))):
        raise ConfigError("executor", f"expected serial, local or ray (a name, a dict or an "
                          f"ExecutorConfig) or an object with map() and close(); got "
                          f"{type(executor).__name__}")
    own = executor is None or isinstance(executor, ExecutorConfig)
    runner = make_executor(executor) if own else executor
    check_picklable(evaluate, "evaluate", runner, opt.timeout)
    spec = {"n_params": n_params, "bounds": _spec_bounds(bounds, box), "direction": direction,
            "seed": seed, "optimiser": opt.model_dump(mode="json")}
    out = check_out(out)
    store = storage_for(opt.storage, opt.study, out)
    guards.check_optimiser(opt.name, n_params, opt.evaluations, in_memory=store.url is None,
                           field="n_params")
    seeds = [int(np.random.SeedSequence([seed, r]).generate_state(1)[0])
             for r in range(opt.repeats)]
    say = log or _stderr
    problem = Problem(n_params, box, direction, seed, opt, _user_task,
                      lambda w, r: (evaluate, w, seeds[r]), _combine_user,
                      on_error=_Failures(out, on_error == "raise"))
    with rundir.claimed(out), storage_errors(store):
        study = begin(store, out, direction, spec, "problem.json", resume, force)
        clock = Clock(study, start)
        drive(problem, study, runner, out, clock.wrap(progress), close=own, own=store.own)
        result = _result(study, problem, out, clock.total())
        study.set_user_attr(ELAPSED, clock.total())  # a later resume adds to it
        failed = failure_note(study)
        if failed is not None:
            note(out, say, failed)
        return result


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _box(bounds: Any, n: int) -> tuple[tuple[float, float], ...]:
    """``bounds`` as ``n`` checked pairs ``(lo, hi)``: one pair for all, or one per weight."""
    try:
        arr = np.asarray(bounds, dtype=float)
    except (TypeError, ValueError):
        arr = None
    if arr is None or not (arr.shape == (2,) or arr.shape == (n, 2)):
        raise ConfigError("bounds", f"expected (lo, hi), two numbers, or {n} such pairs (one "
                          f"per weight); got {bounds!r}"[:300])
    pairs = np.broadcast_to(arr.reshape(-1, 2), (n, 2))
    for i, (lo, hi) in enumerate(pairs):
        which = "" if arr.shape == (2,) else f"[{i}]"
        with np.errstate(over="ignore"):
            width = hi - lo
        if not (np.isfinite(lo) and np.isfinite(hi) and np.isfinite(width)):
            raise ConfigError(f"bounds{which}", f"must be finite numbers with a finite width "
                              f"hi - lo (below {np.finfo(float).max:.3g}); got ({lo:g}, {hi:g})")
        if not lo <= 0 <= hi or lo >= hi:
            raise ConfigError(f"bounds{which}", f"needs lo < hi with 0 inside (the baseline); "
                              f"got ({lo:g}, {hi:g})")
    return tuple((float(lo), float(hi)) for lo, hi in pairs)


def _spec_bounds(bounds: Any, box: tuple[tuple[float, float], ...]) -> list[Any]:
    """``bounds`` as saved in problem.json: one pair as before, else one per weight."""
    if np.asarray(bounds, dtype=float).shape == (2,):
        return list(box[0])
    return [list(p) for p in box]


class _Failures:
    """What happens when a user's ``evaluate`` fails: one line to stderr each time, the first
    traceback into ``out/run.log`` (stderr without a run folder); ``fatal``: raise."""

    def __init__(self, out: Path | None, fatal: bool) -> None:
        self.out, self.fatal, self.seen = out, fatal, 0

    def __call__(self, exc: BaseException, trial: int) -> None:
        tb = getattr(exc, TRACEBACK, None)
        line = f"evaluation {trial} failed: {reason(exc)}"
        self.seen += 1
        if self.seen == 1 and tb:
            if self.out is not None:
                note(self.out, None, f"{line}; its traceback:\n{tb.rstrip()}")
                line += f" (traceback in {self.out / 'run.log'})"
            else:
                print(tb.rstrip(), file=sys.stderr)
        print(f"warning: {line}", file=sys.stderr)
        if self.fatal:
            if exc.__traceback__ is None and tb:
                raise exc from RemoteTraceback(tb)
            raise exc


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker process (shown as its cause)."""


def _whole(x: Any, field: str, least: int) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < least:
        raise ConfigError(field, f"must be a whole number >= {least}, got {x!r}")
    return int(x)


def _result(study: Any, problem: Problem, out: Path | None, seconds: float) -> RunResult:
    n_params, direction, opt = problem.n_params, problem.direction, problem.optimiser
    base_trial = baseline_trial(study)
    # best_of, not best_trial_of: none feasible is a one-line error naming why, not min()'s
    best_trial = best_of(study, direction, problem.constrained, problem.required,
                         None if out is None else out / "evaluations.csv", n_params)
    history = run_history(study)
    result = RunResult(outcome(base_trial, n_params), outcome(best_trial, n_params),
                       evaluation_number(study, best_trial), len(history), direction, history,
                       seconds, out)
    faults.point("finish")
    if out is not None:
        rundir.write_json(out / "result.json", {
            "objective": {"name": "J", "direction": direction},
            "baseline": summary(result.baseline),
            "best": {**summary(result.best), "trial": result.best_trial},
            "evaluations": result.evaluations, "iid_sample_kl": None, "learner": "user",
            "modifier": f"{n_params} parameters", "optimiser": opt.name,
            "seconds": result.seconds, **dict(zip(("failed", "first_failure"),
                                                  failures(study)))})
        faults.point("report")
        from crowdsteer.report.html import write_report

        write_report(out)
    return result
