"""The meta-agent: the inner-outer loop.

For a candidate ``w`` the agents learn in the game modified by ``Theta(.; w)`` until
they reach equilibrium (inner loop, a registered learner); the meta-agent sees only
the outcome ``J(w, pi)`` and picks the next ``w`` with a black-box optimiser (outer
loop, an Optuna study). In steps:

1. evaluate ``w = 0`` (the agents left alone) as the baseline;
2. ask the optimiser for ``q`` candidates; for each, solve the modified game
   ``repeats`` times (seeds shared by every candidate: common random numbers) and
   average J;
3. tell the study; the study (SQLite by default) commits every finished evaluation,
   which is what makes ``resume`` and crash safety work;
4. at the end, re-solve at the baseline and the best ``w`` (deterministic for a seed)
   and save distributions, modifier and a report.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml

from crowdsteer import rundir
from crowdsteer.config import Config, build, build_game, load_config, plain_section, section
from crowdsteer.equilibrium import state_before
from crowdsteer.executors import Executor, ExecutorConfig, make_executor
from crowdsteer.errors import ConfigError, CrowdsteerError, DivergenceError
from crowdsteer.games.base import theta_at
from crowdsteer.learners.base import Solution
from crowdsteer.modifiers import modifiers
from crowdsteer.objectives import Payoff, build as build_objective, kl_floor
from crowdsteer.objectives import ObjectiveConfig
from crowdsteer.optimisers import (
    OptimiserConfig, distributions, make_sampler, param_names,
)
from crowdsteer.solving import grid

Array = np.ndarray
STUDY = "crowdsteer"

section("modifier", modifiers, "power_series")
plain_section("objective", ObjectiveConfig)
plain_section("optimiser", OptimiserConfig)
plain_section("executor", ExecutorConfig)


@dataclass(frozen=True)
class Outcome:
    """One evaluation of ``w``: J and the diagnostics every trial keeps.

    Attributes
    ----------
    objective
        J, averaged over the repeats.
    objective_std
        Spread (standard deviation) of J over the repeats.
    exploitability
        Largest exploitability over the repeats (certificate of the inner solve).
    net_transfer
        Sum over agents and time of Theta paid out (mean field; <= 0 is budget-feasible).
    diagnostics
        Anything else worth keeping (numbers), e.g. from a user's own ``evaluate``.

    A user's own inner loop (:func:`optimise`) returns ``Outcome(objective=J)`` with any
    of the other fields it knows.
    """

    objective: float
    w: list[float] = field(default_factory=list)
    objective_std: float = 0.0
    kl: float | None = None
    welfare: float | None = None
    maxmin: float | None = None
    exploitability: float | None = None
    net_transfer: float | None = None
    seconds: float = 0.0
    converged: bool = True
    iterations: int = 0
    diagnostics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Setup:
    """Everything built from a config, once per process."""

    config: Config
    game: Any
    learner: Any
    modifier: Any
    objective: Payoff
    optimiser: OptimiserConfig
    tau: float


def setup(config: Config) -> Setup:
    game = build_game(config)
    learner = build(config, "learner")
    modifier = build(config, "modifier", game=game)
    obj_cfg = config["objective"] or ObjectiveConfig(name="welfare")
    objective = build_objective(obj_cfg, game, config.base_dir)
    opt = config["optimiser"] or OptimiserConfig()
    lo, hi = config["modifier"].bounds
    if not lo <= 0 <= hi:
        raise ConfigError("modifier.bounds", f"must contain 0 so that the agents left alone "
                          f"(w = 0) are the baseline; got [{lo}, {hi}]")
    return Setup(config, game, learner, modifier, objective, opt,
                 getattr(config["learner"], "temperature", 0.0))


def net_transfer(game: Any, sol: Solution, theta: Any) -> float:
    """``sum_t sum_{s,a} m_t(s) pi_t(s, a) Theta_t(s, a; mu_t)`` with ``m_t`` the mass before step t."""
    before = state_before(game, sol.mu)
    total = 0.0
    for t in range(game.T):
        th = theta_at(theta, t, sol.mu[t], (game.S, game.A))
        total += float(np.sum(before[t][:, None] * sol.pi[t] * th))
    return total


def solve_at(s: Setup, w: Array, repeat: int) -> Solution:
    """One inner solve at ``w`` with the seed of ``repeat`` (shared by every ``w``)."""
    rng = np.random.default_rng(np.random.SeedSequence([s.config.seed, repeat]))
    return s.learner.solve(s.game, s.modifier.theta(w), rng=rng)


@dataclass(frozen=True)
class Sample:
    """One inner solve at ``w`` with one seed (one repeat)."""

    objective: float
    kl: float | None
    welfare: float
    maxmin: float
    exploitability: float
    net_transfer: float
    seconds: float
    converged: bool
    iterations: int


def evaluate_once(s: Setup, w: Array, repeat: int) -> Sample:
    """Solve the game modified at ``w`` with the seed of ``repeat`` and measure J.

    Raises
    ------
    DivergenceError
        The inner loop produced NaN or overflow, or (with ``require_convergence``) did not
        converge within ``max_iterations``.
    """
    start = time.perf_counter()
    w = np.asarray(w, dtype=float)
    theta = s.modifier.theta(w)
    with np.errstate(over="raise", invalid="raise", divide="ignore"):
        try:
            sol = solve_at(s, w, repeat)
        except FloatingPointError as exc:
            raise DivergenceError(f"the inner loop overflowed ({exc})") from None
    rng = np.random.default_rng(np.random.SeedSequence([s.config.seed, repeat, 1]))
    m = s.objective.measure(s.game, sol, s.tau, rng)
    if not np.isfinite(m.objective):
        raise DivergenceError("the objective is NaN or infinite")
    if s.optimiser.require_convergence and not sol.converged:
        raise DivergenceError(f"no convergence within max_iterations = {sol.iterations} "
                              f"(exploitability {sol.exploitability:.3g})")
    return Sample(m.objective, m.kl, m.welfare, m.maxmin, sol.exploitability,
                  net_transfer(s.game, sol, theta), time.perf_counter() - start,
                  sol.converged, sol.iterations)


def combine(w: Array, samples: list[Sample]) -> Outcome:
    """Average the repeats of one ``w`` (worst exploitability, spread of J kept)."""
    values = [x.objective for x in samples]
    kls = [x.kl for x in samples]
    return Outcome(
        w=[float(v) for v in w], objective=float(np.mean(values)),
        objective_std=float(np.std(values)),
        kl=None if kls[0] is None else float(np.mean(kls)),
        welfare=float(np.mean([x.welfare for x in samples])),
        maxmin=float(np.mean([x.maxmin for x in samples])),
        exploitability=float(max(x.exploitability for x in samples)),
        net_transfer=float(np.mean([x.net_transfer for x in samples])),
        seconds=float(sum(x.seconds for x in samples)),
        converged=all(x.converged for x in samples),
        iterations=int(max(x.iterations for x in samples)))


_CACHE: dict[str, Setup] = {}


def evaluate_task(task: tuple[dict[str, Any], str, list[float], int]) -> Sample:
    """Picklable entry point for executors: ``(resolved config, base_dir, w, repeat)``."""
    raw, base_dir, w, repeat = task
    key = json.dumps(raw, sort_keys=True) + base_dir
    if key not in _CACHE:
        _CACHE[key] = setup(load_config(raw, Path(base_dir)))
    return evaluate_once(_CACHE[key], np.asarray(w), repeat)


@dataclass(frozen=True)
class RunResult:
    """What a meta-agent run found.

    Attributes
    ----------
    baseline, best
        Outcomes at ``w = 0`` and at the best ``w``.
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


def _attrs(o: Outcome) -> dict[str, Any]:
    d = asdict(o)
    d.pop("w")
    if not d["diagnostics"]:
        d.pop("diagnostics")
    return d


def _outcome(trial: optuna.trial.FrozenTrial, n: int) -> Outcome:
    a = trial.user_attrs
    w = [trial.params[k] for k in param_names(n)]
    known = {k: a[k] for k in Outcome.__dataclass_fields__ if k in a and k not in ("w",
                                                                                 "objective")}
    return Outcome(objective=float(trial.value), w=w, **known)


def _finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that count as evaluations: complete, or failed for a reason other than a kill."""
    return [t for t in study.get_trials(deepcopy=False)
            if t.state == optuna.trial.TrialState.COMPLETE
            or (t.state == optuna.trial.TrialState.FAIL and not t.user_attrs.get("interrupted"))]


def _feasible(t: optuna.trial.FrozenTrial, constrained: bool) -> bool:
    if t.user_attrs.get("failed"):
        return False
    return not constrained or (t.user_attrs.get("net_transfer") or 0.0) <= 1e-9


def _best(study: optuna.Study, direction: str, constrained: bool) -> optuna.trial.FrozenTrial:
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if _feasible(t, constrained)]
    key = (lambda t: t.value) if direction == "minimize" else (lambda t: -t.value)
    return min(done, key=key)


def write_evaluations(study: optuna.Study, n: int, path: Path) -> None:
    """evaluations.csv: one row per finished evaluation, in order."""
    names = param_names(n)
    cols = ["trial", "state", "J", "J_std", "kl", "welfare", "maxmin", "exploitability",
            "net_transfer", "seconds", "error", *names]
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(cols)
    for t in _finished(study):
        a = t.user_attrs
        failed = a.get("failed") or t.state == optuna.trial.TrialState.FAIL
        wr.writerow([t.number, "FAIL" if failed else t.state.name,
                     "" if failed or t.value is None else repr(t.value),
                     *(_fmt(a.get(k)) for k in ("objective_std", "kl", "welfare", "maxmin",
                                                "exploitability", "net_transfer", "seconds")),
                     a.get("error", ""), *(repr(t.params[k]) for k in names)])
    rundir.atomic_write(path, buf.getvalue().encode())


def _fmt(x: Any) -> str:
    return "" if x is None else repr(float(x))


def _open_study(direction: str, url: str | None, out: Path | None, resume: bool) -> optuna.Study:
    if url is None and out is not None:
        url = f"sqlite:///{(out / 'study.db').resolve()}"
    storage: Any = optuna.storages.InMemoryStorage() if url is None else url
    if resume:
        try:
            return optuna.load_study(study_name=STUDY, storage=storage)
        except KeyError:
            raise ConfigError("--resume", f"no study to resume in {url}") from None
    return optuna.create_study(study_name=STUDY, storage=storage, direction=direction)


def run(config: Config | dict | str | Path, out: Path | str | None = None, resume: bool = False,
        force: bool = False, progress: Any = None, executor: Any = None) -> RunResult:
    """Run the meta-agent; the Python API of ``crowdsteer run``.

    Parameters
    ----------
    config
        A :class:`Config`, a dict, or a YAML path.
    out
        Run folder (``None``: keep the study in memory and write nothing).
    resume
        Continue the study in ``out`` without repeating finished evaluations.
    progress
        Callback ``(done, total, best_J)`` after each finished evaluation.
    executor
        Where evaluations run (default: in process).
    """
    start = time.perf_counter()
    if not isinstance(config, Config):
        config = load_config(config, required=("game", "modifier"))
    if config["modifier"] is None:
        raise ConfigError("modifier", "this section is required for a meta-agent run")
    s = setup(config)
    resolved = config.resolved()
    if out is not None:
        out = rundir.prepare(Path(out), force=force, resume=resume)
        saved = out / "config.yaml"
        if resume and saved.exists():
            if yaml.safe_load(saved.read_text()) != json.loads(json.dumps(resolved)):
                raise ConfigError("--resume", f"the config differs from the one the run in {out} "
                                  "started with (config.yaml); resume with that config")
        else:
            rundir.atomic_write(saved, yaml.safe_dump(resolved, sort_keys=False).encode())
    study = _open_study(s.objective.direction, s.optimiser.storage, out, resume)
    task_base = (resolved, str(config.base_dir))
    problem = Problem(
        n_params=s.modifier.n_params, bounds=config["modifier"].bounds,
        direction=s.objective.direction, seed=config.seed, optimiser=s.optimiser,
        task=evaluate_task, payload=lambda w, r: (*task_base, w, r), combine=combine)
    drive(problem, study, executor or make_executor(config["executor"]), out, progress,
          close=executor is None)
    return finish(s, study, out, problem.constrained, time.perf_counter() - start)


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
        while (done := len(_finished(study))) < total:
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
                    _tell_failure(study, trial, _reason(errors[0]), problem.direction)
                    continue
                try:
                    res = problem.combine(ws[i], parts)
                except Exception as exc:  # a user's evaluate returned something unusable
                    _tell_failure(study, trial, _reason(exc), problem.direction)
                    continue
                for k, v in _attrs(res).items():
                    trial.set_user_attr(k, v)
                study.tell(trial, res.objective)
            if out is not None:
                write_evaluations(study, n, out / "evaluations.csv")
            if progress is not None:
                best = _best_or_none(study, problem.direction, problem.constrained)
                progress(len(_finished(study)), total, best)
    finally:
        if close:
            executor.close()


def _tell_failure(study: optuna.Study, trial: optuna.Trial, reason: str, direction: str) -> None:
    """Record a failed evaluation with its reason. The optimiser is told the worst J seen so
    far, so it learns the region is bad; the trial stays marked failed everywhere else."""
    trial.set_user_attr("error", reason)
    trial.set_user_attr("failed", True)
    done = [t.value for t in study.get_trials(deepcopy=False,
                                              states=(optuna.trial.TrialState.COMPLETE,))
            if not t.user_attrs.get("failed")]
    if not done:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return
    study.tell(trial, max(done) if direction == "minimize" else min(done))


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def _best_or_none(study: optuna.Study, direction: str, constrained: bool) -> float | None:
    try:
        return float(_best(study, direction, constrained).value)
    except ValueError:
        return None


def finish(s: Setup, study: optuna.Study, out: Path | None, constrained: bool,
           seconds: float) -> RunResult:
    n = s.modifier.n_params
    direction = s.objective.direction
    base_trial = next(t for t in study.trials if t.user_attrs.get("baseline"))
    if base_trial.state != optuna.trial.TrialState.COMPLETE or base_trial.user_attrs.get("failed"):
        raise CrowdsteerError(f"the baseline (w = 0) failed: {base_trial.user_attrs.get('error')}")
    best_trial = _best(study, direction, constrained)
    baseline, best = _outcome(base_trial, n), _outcome(best_trial, n)
    # Re-solve (deterministic for the seed) to get the distributions to save and plot.
    mu_base = solve_at(s, np.zeros(n), 0)
    mu_best = solve_at(s, np.asarray(best.w), 0)

    def shown(sol: Solution) -> Array:
        return sol.mu_sample if sol.mu_sample is not None else sol.mu

    floor = None
    agents = mu_best.agents
    if agents and s.objective.target is not None:
        floor = kl_floor(s.game.S, agents, s.game.T)
    history = tuple(float("nan") if t.value is None or t.user_attrs.get("failed")
                    else float(t.value) for t in _finished(study))
    result = RunResult(baseline, best, best_trial.number, len(history), direction, history,
                       seconds, out, floor, shown(mu_best), shown(mu_base))
    if out is not None:
        g = s.game
        rundir.save_npy(out / "baseline_mu.npy", grid(g, shown(mu_base)))
        rundir.save_npy(out / "best_mu.npy", grid(g, shown(mu_best)))
        rundir.save_npy(out / "best_theta.npy", grid(g, np.asarray(s.modifier.field(np.asarray(best.w)))))
        if s.objective.target is not None:
            rundir.save_npy(out / "target.npy", grid(g, s.objective.target))
        rundir.write_json(out / "result.json", result_json(s, result))
        write_evaluations(study, n, out / "evaluations.csv")
        try:
            from crowdsteer.report.html import write_report

            write_report(out)
        except ImportError:  # pragma: no cover - report module not installed
            pass
    return result


def _summary(o: Outcome) -> dict[str, Any]:
    return {"w": o.w, "objective": o.objective, "objective_std": o.objective_std, "kl": o.kl,
            "welfare": o.welfare, "maxmin": o.maxmin, "exploitability": o.exploitability,
            "net_transfer": o.net_transfer, "seconds": o.seconds}


def result_json(s: Setup, r: RunResult) -> dict[str, Any]:
    cfg = s.config
    return {
        "objective": {"name": s.objective.name, "direction": r.direction},
        "baseline": _summary(r.baseline),
        "best": {**_summary(r.best), "trial": r.best_trial},
        "evaluations": r.evaluations,
        "kl_floor": r.kl_floor,
        "learner": cfg["learner"].name,
        "modifier": cfg["modifier"].name,
        "optimiser": s.optimiser.name,
        "seconds": r.seconds,
    }


# --- bring your own inner loop -------------------------------------------------------------


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
    >>> result = optimise(evaluate, 2, bounds=(-1, 1), optimiser={"name": "cmaes",
    ...                   "evaluations": 30, "initial": 2})
    >>> result.best.objective < 0.01 < result.baseline.objective
    True
    """
    from crowdsteer.config_base import validate

    start = time.perf_counter()
    opt = optimiser if isinstance(optimiser, OptimiserConfig) else validate(
        OptimiserConfig, optimiser or {}, "optimiser")
    if direction not in ("minimize", "maximize"):
        raise ConfigError("direction", f"allowed: minimize, maximize; got {direction!r}")
    lo, hi = bounds
    if not lo <= 0 <= hi or lo >= hi:
        raise ConfigError("bounds", f"needs lo < hi with 0 inside (the baseline); got {bounds}")
    if n_params <= 0:
        raise ConfigError("n_params", f"must be > 0, got {n_params}")
    if isinstance(executor, dict):
        executor = validate(ExecutorConfig, executor, "executor")
    own = executor is None or isinstance(executor, ExecutorConfig)
    runner = make_executor(executor) if own else executor
    spec = {"n_params": n_params, "bounds": [float(lo), float(hi)], "direction": direction,
            "seed": seed, "optimiser": opt.model_dump(mode="json")}
    if out is not None:
        out = rundir.prepare(Path(out), force=force, resume=resume)
        saved = out / "problem.json"
        if resume and saved.exists() and json.loads(saved.read_text()) != spec:
            raise ConfigError("--resume", f"the problem differs from the one in {saved}")
        rundir.write_json(saved, spec)
    study = _open_study(direction, opt.storage, out, resume)
    seeds = [int(np.random.SeedSequence([seed, r]).generate_state(1)[0])
             for r in range(opt.repeats)]
    problem = Problem(n_params, (float(lo), float(hi)), direction, seed, opt, _user_task,
                      lambda w, r: (evaluate, w, seeds[r]), _combine_user)
    drive(problem, study, runner, out, progress, close=own)
    base_trial = next(t for t in study.trials if t.user_attrs.get("baseline"))
    if base_trial.state != optuna.trial.TrialState.COMPLETE or base_trial.user_attrs.get("failed"):
        raise CrowdsteerError(f"the baseline (w = 0) failed: {base_trial.user_attrs.get('error')}")
    best_trial = _best(study, direction, problem.constrained)
    history = tuple(float("nan") if t.value is None or t.user_attrs.get("failed")
                    else float(t.value) for t in _finished(study))
    result = RunResult(_outcome(base_trial, n_params), _outcome(best_trial, n_params),
                       best_trial.number, len(history), direction, history,
                       time.perf_counter() - start, out)
    if out is not None:
        rundir.write_json(out / "result.json", {
            "objective": {"name": "J", "direction": direction},
            "baseline": _summary(result.baseline),
            "best": {**_summary(result.best), "trial": result.best_trial},
            "evaluations": result.evaluations, "kl_floor": None, "learner": "user",
            "modifier": f"{n_params} parameters", "optimiser": opt.name,
            "seconds": result.seconds})
        from crowdsteer.report.html import write_report

        write_report(out)
    return result
