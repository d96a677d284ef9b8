"""Executors: the same evaluations wherever they run; failures recorded and retried once."""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest

import crowdsteer
from crowdsteer.errors import ConfigError
from crowdsteer.executors import Local, Serial, TaskTimeout
from tests.test_cli import cli, write_config

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


def test_evaluations_that_do_not_converge_are_kept_and_marked(tmp_path):
    """Two exact iterations cannot reach exploitability 1e-12: every evaluation is kept in
    evaluations.csv with its J and ``converged = False``, and the run says that none
    reached equilibrium (issue 17: only equilibria count)."""
    cfg = {**RUN, "learner": {"name": "exact", "max_iterations": 2, "tolerance": 1e-12},
           "optimiser": {"name": "random", "evaluations": 3}}
    with pytest.raises(crowdsteer.CrowdsteerError, match="none of the 4 evaluations"):
        crowdsteer.run(cfg, out=tmp_path / "r")
    with open(tmp_path / "r" / "evaluations.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    assert all(r["state"] == "COMPLETE" and r["converged"] == "False" and r["J"] != ""
               and float(r["exploitability"]) > 1e-12 for r in rows)


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


def sleeps(seconds):
    time.sleep(seconds)
    return seconds


@pytest.mark.parametrize("make", [pytest.param(Serial, marks=pytest.mark.slow), lambda: Local(2)])
def test_a_task_past_its_timeout_is_stopped_and_the_others_finish(make):
    """The clock of a task starts when a worker starts it (not while the worker is being
    spawned), so the quick tasks finish even on a loaded machine."""
    ex = make()
    try:
        start = time.monotonic()
        out = ex.map(sleeps, [0.1, 600, 0.2, 600], timeout=2)
        assert out[0] == 0.1 and out[2] == 0.2
        assert all(isinstance(out[i], TaskTimeout) and str(out[i]) == "timed out after 2 s"
                   for i in (1, 3))
        assert time.monotonic() - start < 120  # not 600 s: the sleepers were stopped
        assert ex.map(sleeps, [0.1], timeout=2) == [0.1]  # a fresh worker took over
    finally:
        ex.close()


def hangs_for_large_w(w, seed):
    """J = w_0^2, except that the training hangs for w_0 > 0.5 (a known region)."""
    if w[0] > 0.5:
        time.sleep(600)
    return float(w[0] ** 2)


@pytest.mark.parametrize("executor", ["serial", pytest.param("local", marks=pytest.mark.slow)])
def test_a_timed_out_evaluation_is_recorded_and_the_run_goes_on(tmp_path, executor):
    result = crowdsteer.optimise(
        hangs_for_large_w, 1, seed=2, out=tmp_path / "r", executor={"name": executor},
        optimiser={"name": "random", "evaluations": 8, "timeout": 2})
    with open(tmp_path / "r" / "evaluations.csv") as f:
        rows = list(csv.DictReader(f))
    hung = [r for r in rows if float(r["w_0"]) > 0.5]
    assert len(rows) == 9 and hung  # seed 2 draws some w_0 > 0.5
    assert all(r["state"] == "FAIL" and "timed out after 2 s" in r["error"] for r in hung)
    assert all(r["state"] == "COMPLETE" for r in rows if float(r["w_0"]) <= 0.5)
    assert result.best.w[0] <= 0.5


def test_a_timeout_through_the_cli_fails_evaluations_with_the_reason(tmp_path):
    """No inner solve finishes in a millisecond: every evaluation is recorded as timed out,
    and the run stops with one line saying the baseline failed, and why."""
    cfg = write_config(tmp_path, {**RUN, "learner": {"name": "exact"},
                                  "optimiser": {"name": "random", "evaluations": 2,
                                                "timeout": 0.001}})
    r = cli("run", cfg, "--out", tmp_path / "r")
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 2 and len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "baseline" in errors[0] and "timed out after 0.001 s" in errors[0]
    with open(tmp_path / "r" / "evaluations.csv") as f:
        rows = list(csv.DictReader(f))
    # the run stops once its baseline has failed (no budget spent on a run without one)
    assert len(rows) == 1 and all("timed out after 0.001 s" in r["error"] for r in rows)


def test_a_lambda_is_refused_for_the_local_executor_before_any_trial(tmp_path):
    with pytest.raises(ConfigError, match="evaluate must be picklable for the local executor: "
                                          "define it at module level"):
        crowdsteer.optimise(lambda w, seed: 0.0, 1, out=tmp_path / "r",
                            executor={"name": "local", "workers": 1})
    assert not (tmp_path / "r").exists()  # no study, so no trial left RUNNING


def processes_with(marker):
    """PIDs of the live processes whose environment holds ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_sigkill_of_a_local_run_leaves_no_orphan_workers(tmp_path):
    """The run is killed (SIGKILL, at the fault point `started`) the moment its second worker
    starts an evaluation that would run for hours; the workers and multiprocessing's
    resource tracker (all carrying a marker in their environment) are gone seconds later."""
    cfg = write_config(tmp_path, {**RUN, "learner": {"name": "exact", "tolerance": 1e-300,
                                                     "max_iterations": 10**8},
                                  "game": {**RUN["game"], "height": 20, "width": 20}})
    marker = f"CROWDSTEER_TEST_MARK=orphans-{os.getpid()}-{time.time_ns()}"
    env = {**os.environ, "CROWDSTEER_TEST_KILL_AT": "started:2",
           marker.split("=")[0]: marker.split("=")[1]}
    with open(tmp_path / "stderr", "wb") as err:  # not a pipe: orphans would hold it open
        code = subprocess.call([sys.executable, "-m", "crowdsteer", "run", str(cfg), "--out",
                                str(tmp_path / "r"), "--executor", "local", "--workers", "2"],
                               env=env, stdout=subprocess.DEVNULL, stderr=err, timeout=300)
    try:
        assert code == -signal.SIGKILL, (tmp_path / "stderr").read_text()
        deadline = time.monotonic() + 10
        while processes_with(marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert processes_with(marker) == []
    finally:
        for pid in processes_with(marker):  # never leave an hours-long evaluation behind
            os.kill(pid, signal.SIGKILL)
