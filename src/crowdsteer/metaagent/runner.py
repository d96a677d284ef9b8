"""``crowdsteer run`` as a library call: the meta-agent on a config."""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from pathlib import Path
from typing import Any

from crowdsteer import guards, rundir
from crowdsteer.config import Config, load_config
from crowdsteer.errors import ConfigError
from crowdsteer.executors import make_executor
from crowdsteer.metaagent.evaluation import Setup, combine, evaluate_task, setup, takes_init
from crowdsteer.metaagent.gradient import descend, gradient_support
from crowdsteer.metaagent.loop import Problem, drive
from crowdsteer.metaagent.results import RunResult, finish
from crowdsteer.metaagent.study import (
    ELAPSED, Clock, begin, failure_note, input_files, storage_errors, storage_for,
)


def choose_optimiser(s: Setup) -> tuple[str, str]:
    """The optimiser a run uses and why: ``auto`` picks ``gradient`` where hypergradients
    exist, ``bo`` elsewhere; an explicit ``gradient`` that cannot apply is refused."""
    name = s.optimiser.name
    why_not = gradient_support(s)
    if name == "gradient":
        if why_not is not None:
            raise ConfigError("optimiser.name", f"gradient does not apply here: {why_not}; "
                              "use auto or bo")
        return "gradient", "asked for"
    if name == "auto" and why_not is None:
        return "gradient", "auto: exact hypergradients through the equilibrium apply"
    if name not in ("auto", "bo"):
        return name, "asked for"
    why = f"auto: no hypergradients ({why_not})" if name == "auto" else "bo asked for"
    if _noisy_and_few(s):
        return "gp", (f"{why}; with {s.modifier.n_params} weights and a noisy J (a model-free "
                      "learner) bo runs as the GP over the whole box")
    return "bo", why if name == "auto" else "asked for"


NOISY_GP_WEIGHTS = 6
"""Up to this many weights, ``bo`` on a noisy J runs the global GP search (``gp``)."""


def _noisy_and_few(s: Setup) -> bool:
    """Whether ``bo`` runs as ``gp``: a noisy J (a model-free learner), at most
    :data:`NOISY_GP_WEIGHTS` weights and no start point, where Optuna's GP over the whole
    box does better than the trust-region search. Measured on ``examples/oneshot.yaml``
    (6 weights, 2,000 agents, 60 evaluations, seeds 0-2): fresh-seed KL 0.034 (gp) against
    0.053 (trust region); on the exact learner the two tie at 6 weights and the trust
    region's asks cost 1/12."""
    opt = s.optimiser
    return (getattr(s.config["learner"], "name", "exact") != "exact"
            and s.modifier.n_params <= NOISY_GP_WEIGHTS and opt.x0 is None
            and opt.warm_start is None)


def run(config: Config | dict | str | Path, out: Path | str | None = None, resume: bool = False,
        force: bool = False, progress: Any = None, executor: Any = None,
        log: Any = None) -> RunResult:
    """Run the meta-agent; the Python API of ``crowdsteer run``.

    Parameters
    ----------
    config
        A :class:`Config`, a dict, or a YAML path.
    out
        Run folder (``None``: keep the study in memory and write nothing). One run at a
        time uses a folder (``out/run.lock``).
    resume
        Continue the study in ``out`` without repeating finished evaluations.
    force
        Replace the run in ``out``; it is kept in ``out/previous/``.
    progress
        Callback ``(done, total, best_J)`` after each finished evaluation.
    executor
        Where evaluations run (default: the config's ``executor`` section, else in process;
        the ``gradient`` optimiser always runs in process: each evaluation depends on the
        last).
    log
        Callback ``(message)`` for what the run decides (e.g. which optimiser ``auto``
        chose); the messages also go to ``run.log`` in ``out``.
    """
    start = time.perf_counter()
    if isinstance(config, (str, Path, dict)):
        config = load_config(config, required=("game", "modifier"))
    elif not isinstance(config, Config):
        raise ConfigError("config", f"expected a Config, a dict or the path of a YAML file; "
                          f"got {type(config).__name__}")
    if config["modifier"] is None:
        raise ConfigError("modifier", "this section is required for a meta-agent run")
    out = check_out(out)
    s = setup(config)
    resolved = config.resolved()
    choice, why = choose_optimiser(s)
    s = dataclasses.replace(s, optimiser=s.optimiser.model_copy(update={"name": choice}))
    warm = None
    if s.optimiser.warm_start == "mean_field" and choice != "gradient":
        warm = mean_field_start(s)
        s = dataclasses.replace(s, optimiser=s.optimiser.model_copy(update={
            "x0": warm["w"], "radius": s.optimiser.radius or warm["radius"]}))
    store = storage_for(s.optimiser.storage, s.optimiser.study, out)
    guards.check_solve(s.game, config["learner"])  # before the study: not in an evaluation
    guards.check_optimiser(s.optimiser.name, s.modifier.n_params, s.optimiser.evaluations,
                           in_memory=store.url is None)
    task_base = (resolved, str(config.base_dir))
    run_id = uuid.uuid4().hex  # scopes the workers' warm starts to this run
    problem = Problem(
        n_params=s.modifier.n_params, bounds=config["modifier"].bounds,
        direction=s.objective.direction, seed=config.seed, optimiser=s.optimiser,
        task=evaluate_task, payload=lambda w, r, warm=None: (*task_base, w, r, run_id, warm),
        combine=combine, warm=s.optimiser.warm_starts and takes_init(s.learner))
    with rundir.claimed(out), storage_errors(store):
        study = begin(store, out, s.objective.direction, resolved, "config.yaml", resume, force,
                      input_files(resolved, config.base_dir))
        note(out, log, f"optimiser: {choice} ({why})")
        caution = learner_caution(config["learner"])
        if caution:
            note(out, log, caution)
        if warm is not None:
            note(out, log, f"warm start: the mean-field optimum (exact learner, temperature "
                 f"{warm['temperature']:g}) has J = {warm['objective']:.6g} after "
                 f"{warm['evaluations']} exact evaluations, {warm['seconds']:.1f} s; "
                 f"{choice} searches around it (radius {s.optimiser.radius:g})")
        clock = Clock(study, start)
        if choice == "gradient":
            given = config["optimiser"].model_fields_set if config["optimiser"] else set()
            unused = [k for k in ("x0", "repeats", "batch") if k in given]
            if unused:
                note(out, log, f"the gradient optimiser ignores optimiser.{', '.join(unused)}: "
                     "it starts at w = 0 and evaluates one w at a time, exactly")
            ex = config["executor"]
            if executor is not None or (ex is not None and ex.name != "serial"):
                note(out, log, "the gradient optimiser runs its evaluations in this process, "
                     "one after another (each depends on the last); the executor is not used")
            descend(s, study, out, clock.wrap(progress))
        else:
            drive(problem, study, executor or make_executor(config["executor"]), out,
                  clock.wrap(progress), close=executor is None, own=store.own)
        result = finish(s, study, out, problem.constrained and choice != "gradient",
                        clock.total(), why, warm)
        study.set_user_attr(ELAPSED, clock.total())  # a later --resume adds to it
        result = dataclasses.replace(result, session_seconds=clock.session())
        from crowdsteer.report.labels import bound_note

        for line in (failure_note(study), bound_note(config, s.game, result.best.w)):
            if line is not None:
                note(out, log, line)
        return result


def learner_caution(learner: Any) -> str | None:
    """A line for the run when its learner is measured not to reach its tolerance on games
    like it (see :mod:`crowdsteer.learners.independent`, "Where it does not converge")."""
    if getattr(learner, "name", "") != "independent":
        return None
    where = ("at temperature 0 (greedy agents facing a mixed equilibrium keep switching: "
             "above the tolerance in 4 of 6 cases of BENCHMARKS.md, Stopping)"
             if learner.temperature == 0 else
             "with many actions per state or T > 1 (temperature 0.1, 2000 rounds: 0.81 "
             "against 0.025 on examples/oneshot.yaml's game, 0.029 against 0.026 on "
             "dynamic.yaml's; BENCHMARKS.md, Learners)")
    return (f"learner independent: measured to stop above its tolerance {where}; evaluations "
            "that do not converge are kept but never the best; fictitious_play converges "
            "on those games")


WARM_TEMPERATURE = 0.01
"""Temperature of the mean-field warm start when the agents' own is 0 (gradients need one)."""


def mean_field_start(s: Setup) -> dict[str, Any]:
    """The warm start ``optimiser: {warm_start: mean_field}`` for model-free learners.

    1. Solve the meta-problem on the exact learner (the agents' mean-field limit, same game,
       modifier, objective and temperature) with the ``gradient`` optimiser:
       ``warm_start_evaluations`` cheap exact evaluations.
    2. Its best ``w`` becomes ``x0`` of the black-box search on the learning agents, which
       starts there (right after the baseline) and searches locally around it: ``radius``
       defaults to a tenth of the box's width.

    Deterministic for a config and seed, so a resumed run computes the same start.
    """
    from crowdsteer.learners.exact import ExactConfig

    tau = s.tau if s.tau > 0 else WARM_TEMPERATURE
    opt = s.optimiser
    exact = s.config.replace("learner", ExactConfig(temperature=tau))
    exact = exact.replace("optimiser", opt.model_copy(update={
        "name": "gradient", "evaluations": opt.warm_start_evaluations, "warm_start": None,
        "storage": None, "study": None, "validation": 0, "x0": None}))
    started = time.perf_counter()
    result = run(exact)
    lo, hi = s.config["modifier"].bounds
    return {"w": [float(v) for v in result.best.w], "objective": result.best.objective,
            "baseline": result.baseline.objective, "temperature": tau,
            "evaluations": result.evaluations, "seconds": time.perf_counter() - started,
            "radius": 0.1 * (hi - lo)}


def note(out: Path | None, log: Any, message: str) -> None:
    """Tell the caller, and append to ``out/run.log``."""
    if log is not None:
        log(message)
    if out is not None:
        with open(out / "run.log", "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")


def check_out(out: Any) -> Path | None:
    """``out`` as a path (``None`` passes); anything else is a :class:`ConfigError`."""
    if out is None:
        return None
    if isinstance(out, os.PathLike) or (isinstance(out, str) and out):
        return Path(out)
    raise ConfigError("out", f"expected a folder path or None, got {out!r}")
