"""Bring your own inner loop: the meta-agent around a user's ``evaluate(w, seed)``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from crowdsteer import faults, guards, rundir
from crowdsteer.errors import ConfigError, DivergenceError
from crowdsteer.executors import Executor, ExecutorConfig, check_picklable, make_executor
from crowdsteer.metaagent.evaluation import Outcome
from crowdsteer.metaagent.loop import Problem, drive
from crowdsteer.metaagent.results import RunResult, summary
from crowdsteer.metaagent.runner import check_out
from crowdsteer.metaagent.study import (
    baseline_trial, begin, best_trial_of, evaluation_number, history as run_history, outcome,
    storage_errors, storage_for,
)
from crowdsteer.optimisers import OptimiserConfig

Array = np.ndarray


def _user_task(task: tuple[Callable[[Array, int], Any], list[float], int]) -> Outcome:
    evaluate_fn, w, seed = task
    start = time.perf_counter()
    res = evaluate_fn(np.asarray(w, dtype=float), seed)
    if isinstance(res, (int, float, np.floating, np.integer)):
        res = Outcome(objective=float(res))
    if not isinstance(res, Outcome):
        raise TypeError(f"evaluate must return an Outcome or a number, got {type(res).__name__}")
    if not np.isfinite(res.objective):
        raise DivergenceError("evaluate returned a NaN or infinite objective")
    if res.seconds == 0.0:
        res = Outcome(**{**asdict(res), "seconds": time.perf_counter() - start})
    return res


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
             bounds: tuple[float, float] = (-1.0, 1.0), direction: str = "minimize",
             optimiser: OptimiserConfig | dict | None = None, seed: int = 0,
             out: Path | str | None = None, resume: bool = False, force: bool = False,
             executor: Executor | ExecutorConfig | dict | None = None,
             progress: Any = None) -> RunResult:
    """The meta-agent around your own inner loop.

    ``evaluate(w, seed) -> Outcome`` (or a number) runs any training code for the modifier
    parameters ``w`` (``(n_params,)`` array) and reports J. The optimisers, the study,
    ``resume``, the executors (``evaluate`` must then be importable: a module-level
    function) and the report work as for :func:`run`. ``w = 0`` is evaluated first as the
    baseline, so ``bounds`` must contain 0.

    Examples
    --------
    >>> def evaluate(w, seed):
    ...     return Outcome(objective=float(((w - 0.3) ** 2).sum()))
    >>> result = optimise(evaluate, 2, bounds=(-1, 1), optimiser={"name": "bo",
    ...                   "evaluations": 30, "initial": 2})
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
    opt = optimiser if isinstance(optimiser, OptimiserConfig) else validate(
        OptimiserConfig, optimiser or {}, "optimiser")
    if opt.name == "gradient":
        raise ConfigError("optimiser.name", "gradient needs the game's model (the exact "
                          "learner); around your own evaluate only J is seen: use auto or bo")
    if opt.name == "auto":  # no hypergradients through a user's evaluate
        opt = opt.model_copy(update={"name": "bo"})
    if direction not in ("minimize", "maximize"):
        raise ConfigError("direction", f"allowed: minimize, maximize; got {direction!r}")
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ConfigError("bounds", f"expected (lo, hi), two numbers; got {bounds!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ConfigError("bounds", f"must be finite numbers; got ({lo}, {hi})")
    if not lo <= 0 <= hi or lo >= hi:
        raise ConfigError("bounds", f"needs lo < hi with 0 inside (the baseline); got ({lo}, {hi})")
    if isinstance(executor, dict):
        executor = validate(ExecutorConfig, executor, "executor")
    own = executor is None or isinstance(executor, ExecutorConfig)
    runner = make_executor(executor) if own else executor
    check_picklable(evaluate, "evaluate", runner, opt.timeout)
    spec = {"n_params": n_params, "bounds": [lo, hi], "direction": direction,
            "seed": seed, "optimiser": opt.model_dump(mode="json")}
    out = check_out(out)
    store = storage_for(opt.storage, opt.study, out)
    guards.check_optimiser(opt.name, n_params, opt.evaluations, in_memory=store.url is None,
                           field="n_params")
    seeds = [int(np.random.SeedSequence([seed, r]).generate_state(1)[0])
             for r in range(opt.repeats)]
    problem = Problem(n_params, (lo, hi), direction, seed, opt, _user_task,
                      lambda w, r: (evaluate, w, seeds[r]), _combine_user)
    with rundir.claimed(out), storage_errors(store):
        study = begin(store, out, direction, spec, "problem.json", resume, force)
        drive(problem, study, runner, out, progress, close=own, own=store.own)
        return _result(study, problem, out, time.perf_counter() - start)


def _whole(x: Any, field: str, least: int) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < least:
        raise ConfigError(field, f"must be a whole number >= {least}, got {x!r}")
    return int(x)


def _result(study: Any, problem: Problem, out: Path | None, seconds: float) -> RunResult:
    n_params, direction, opt = problem.n_params, problem.direction, problem.optimiser
    base_trial = baseline_trial(study)
    best_trial = best_trial_of(study, direction, problem.constrained, problem.required)
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
            "seconds": result.seconds})
        faults.point("report")
        from crowdsteer.report.html import write_report

        write_report(out)
    return result
