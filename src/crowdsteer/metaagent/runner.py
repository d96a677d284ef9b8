"""``crowdsteer run`` as a library call: the meta-agent on a config."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from crowdsteer import guards, rundir
from crowdsteer.config import Config, load_config
from crowdsteer.errors import ConfigError
from crowdsteer.executors import make_executor
from crowdsteer.metaagent.evaluation import combine, evaluate_task, setup
from crowdsteer.metaagent.loop import Problem, drive
from crowdsteer.metaagent.results import RunResult, finish
from crowdsteer.metaagent.study import begin, storage_errors, storage_for


def run(config: Config | dict | str | Path, out: Path | str | None = None, resume: bool = False,
        force: bool = False, progress: Any = None, executor: Any = None) -> RunResult:
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
        Where evaluations run (default: the config's ``executor`` section, else in process).
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
    store = storage_for(s.optimiser.storage, s.optimiser.study, out)
    guards.check_solve(s.game, config["learner"])  # before the study: not in an evaluation
    guards.check_optimiser(s.optimiser.name, s.modifier.n_params, s.optimiser.evaluations,
                           in_memory=store.url is None)
    task_base = (resolved, str(config.base_dir))
    problem = Problem(
        n_params=s.modifier.n_params, bounds=config["modifier"].bounds,
        direction=s.objective.direction, seed=config.seed, optimiser=s.optimiser,
        task=evaluate_task, payload=lambda w, r: (*task_base, w, r), combine=combine)
    with rundir.claimed(out), storage_errors(store):
        study = begin(store, out, s.objective.direction, resolved, "config.yaml", resume, force)
        drive(problem, study, executor or make_executor(config["executor"]), out, progress,
              close=executor is None, own=store.own)
        return finish(s, study, out, problem.constrained, time.perf_counter() - start)


def check_out(out: Any) -> Path | None:
    """``out`` as a path (``None`` passes); anything else is a :class:`ConfigError`."""
    if out is None:
        return None
    if isinstance(out, os.PathLike) or (isinstance(out, str) and out):
        return Path(out)
    raise ConfigError("out", f"expected a folder path or None, got {out!r}")
