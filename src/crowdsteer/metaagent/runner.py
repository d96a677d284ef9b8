"""``crowdsteer run`` as a library call: the meta-agent on a config."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from crowdsteer import rundir
from crowdsteer.config import Config, load_config
from crowdsteer.errors import ConfigError
from crowdsteer.executors import make_executor
from crowdsteer.metaagent.evaluation import Setup, combine, evaluate_task, setup
from crowdsteer.metaagent.gradient import descend, gradient_support
from crowdsteer.metaagent.loop import Problem, drive
from crowdsteer.metaagent.results import RunResult, finish
from crowdsteer.metaagent.study import open_study


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
    if name == "auto":
        if why_not is None:
            return "gradient", "auto: exact hypergradients through the equilibrium apply"
        return "bo", f"auto: no hypergradients ({why_not})"
    return name, "asked for"


def run(config: Config | dict | str | Path, out: Path | str | None = None, resume: bool = False,
        force: bool = False, progress: Any = None, executor: Any = None,
        log: Any = None) -> RunResult:
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
        Where evaluations run (default: in process; the ``gradient`` optimiser always runs
        in process: its evaluations depend on one another).
    log
        Callback ``(message)`` for what the run decides (e.g. which optimiser ``auto``
        chose); the messages also go to ``run.log`` in ``out``.
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
    choice, why = choose_optimiser(s)
    note(out, log, f"optimiser: {choice} ({why})")
    s = dataclasses.replace(s, optimiser=s.optimiser.model_copy(update={"name": choice}))
    study = open_study(s.objective.direction, s.optimiser.storage, out, resume)
    if choice == "gradient":
        ex = config["executor"]
        if executor is not None or (ex is not None and ex.name != "serial"):
            note(out, log, "the gradient optimiser runs its evaluations in this process, one "
                 "after another (each depends on the last); the executor is not used")
        descend(s, study, out, progress)
        return finish(s, study, out, False, time.perf_counter() - start, why)
    task_base = (resolved, str(config.base_dir))
    run_id = uuid.uuid4().hex  # scopes the workers' warm starts to this run
    problem = Problem(
        n_params=s.modifier.n_params, bounds=config["modifier"].bounds,
        direction=s.objective.direction, seed=config.seed, optimiser=s.optimiser,
        task=evaluate_task, payload=lambda w, r: (*task_base, w, r, run_id), combine=combine)
    drive(problem, study, executor or make_executor(config["executor"]), out, progress,
          close=executor is None)
    return finish(s, study, out, problem.constrained, time.perf_counter() - start, why)


def note(out: Path | None, log: Any, message: str) -> None:
    """Tell the caller, and append to ``out/run.log``."""
    if log is not None:
        log(message)
    if out is not None:
        with open(out / "run.log", "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")


