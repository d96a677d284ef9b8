"""Executors: the same evaluations wherever they run; failures recorded and retried once."""

import os

import numpy as np
import pytest

import crowdsteer
from crowdsteer.executors import Local, Serial

RUN = {
    "seed": 4,
    "game": {"name": "crowd", "height": 3, "width": 3,
             "congestion": {"kind": "log", "strength": 1.0}},
    "learner": {"name": "fictitious_play", "agents": 300, "temperature": 0.3,
                "max_iterations": 30},
    "modifier": {"name": "power_series", "order": 1},
    "objective": {"name": "kl", "target": {"bumps": [{"center": [2, 2], "width": 1.5}]}},
    "optimiser": {"name": "bo", "evaluations": 4, "initial": 2, "batch": 2, "repeats": 2,
                  "require_convergence": False},
}


def trace(result_out):
    import csv

    with open(result_out / "evaluations.csv") as f:
        return [(r["J"], *[r[f"w_{i}"] for i in range(3)]) for r in csv.DictReader(f)]


def test_local_processes_give_the_serial_results(tmp_path):
    crowdsteer.run(RUN, out=tmp_path / "serial")
    crowdsteer.run({**RUN, "executor": {"name": "local", "workers": 2}}, out=tmp_path / "local")
    assert trace(tmp_path / "serial") == trace(tmp_path / "local")


def flaky(task):
    """Fails the first time it sees a task (a marker file remembers), then succeeds."""
    path, value = task
    if not os.path.exists(path):
        open(path, "w").close()
        raise RuntimeError("transient")
    return value * 2


def always_fails(task):
    raise ValueError(f"bad task {task}")


def dies(task):
    path, value = task
    if path is not None and not os.path.exists(path):
        open(path, "w").close()
        os._exit(3)  # the worker process dies without a word
    return value


@pytest.mark.parametrize("make", [Serial, lambda: Local(2)])
def test_a_failing_task_is_retried_once(tmp_path, make):
    ex = make()
    try:
        out = ex.map(flaky, [(str(tmp_path / f"m{i}"), i) for i in range(3)])
        assert out == [0, 2, 4]
        bad = ex.map(always_fails, [1, 2])
        assert all(isinstance(b, ValueError) for b in bad)
    finally:
        ex.close()


def test_a_dead_worker_is_replaced_and_its_task_retried(tmp_path):
    ex = Local(2)
    try:
        out = ex.map(dies, [(str(tmp_path / "d0"), 7), (None, 8), (None, 9)])
        assert out == [7, 8, 9]
    finally:
        ex.close()


def test_failed_evaluations_are_recorded_with_their_reason(tmp_path):
    """Two exact iterations cannot reach exploitability 1e-12: every evaluation fails with
    the reason, all are kept in evaluations.csv, and the run says the baseline failed."""
    cfg = {**RUN, "learner": {"name": "exact", "max_iterations": 2, "tolerance": 1e-12},
           "optimiser": {"name": "random", "evaluations": 3}}
    with pytest.raises(crowdsteer.CrowdsteerError, match="baseline"):
        crowdsteer.run(cfg, out=tmp_path / "r")
    import csv

    with open(tmp_path / "r" / "evaluations.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    assert all(r["state"] == "FAIL" and "no convergence" in r["error"] and r["J"] == ""
               for r in rows)


def test_a_failure_is_told_to_the_optimiser_as_the_worst_value():
    import optuna

    from crowdsteer.metaagent.study import ask, tell_failure

    study = optuna.create_study(direction="minimize")
    dist = {"w_0": optuna.distributions.FloatDistribution(-1, 1)}
    for v in (0.5, 2.0):
        t = study.ask(dist)
        study.tell(t, v)
    tell_failure(study, ask(study, dist), "DivergenceError: NaN", "minimize")
    last = study.trials[-1]
    assert last.value == 2.0 and last.user_attrs["failed"]
    assert study.best_value == 0.5
