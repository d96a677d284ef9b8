"""Misuse and crashes: a killed run resumed, diverging evaluations, bad input through the CLI,
random configs that either run or are refused cleanly."""

import csv
import os
import signal
import subprocess
import sys
import time
from typing import Literal

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

import crowdsteer
from crowdsteer.config import load_config
from crowdsteer.config_base import Strict
from crowdsteer.errors import ConfigError, DivergenceError
from crowdsteer.learners.base import learners
from crowdsteer.learners.exact import ExactConfig, ExactSolver
from tests.test_cli import cli, write_config
from tests.test_model_free import assert_certificate

RUN = {
    "seed": 11,
    "game": {"name": "crowd", "height": 3, "width": 3, "horizon": 2, "moves": "local",
             "congestion": {"kind": "log", "strength": 1.0}},
    "learner": {"name": "exact", "temperature": 0.2, "tolerance": 1e-7},
    "modifier": {"name": "power_series", "order": 1},
    "objective": {"name": "kl", "target": {"bumps": [{"center": [2, 2], "width": 1.5}]}},
    "optimiser": {"name": "bo", "evaluations": 10, "initial": 3},
}


def table(out):
    with open(out / "evaluations.csv") as f:
        return [(r["trial"], r["J"], *[r[f"w_{i}"] for i in range(3)])
                for r in csv.DictReader(f)]


def rows_now(path):
    try:
        with open(path) as f:
            return max(sum(1 for _ in f) - 1, 0)
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_matches_an_uninterrupted_run(tmp_path):
    cfg = write_config(tmp_path, RUN)
    assert cli("run", cfg, "--out", tmp_path / "full").returncode == 0
    full = [(j, *w) for _, j, *w in table(tmp_path / "full")]
    out = tmp_path / "killed"
    rng = np.random.default_rng(0)
    args = [sys.executable, "-m", "crowdsteer", "run", str(cfg), "--out", str(out)]
    kills = 0
    for stop_at in sorted(rng.choice(np.arange(1, 10), size=3, replace=False)):
        proc = subprocess.Popen(args + (["--resume"] if kills else []),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while rows_now(out / "evaluations.csv") < stop_at and proc.poll() is None \
                and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.3))  # land anywhere: mid-evaluation, mid-ask, mid-write
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 1
    r = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    got = [(j, *w) for _, j, *w in table(out)]
    assert got == full  # the same evaluations in the same order: none lost, none repeated


class DivergingConfig(Strict):
    name: Literal["test_diverging"] = "test_diverging"
    temperature: float = 0.2
    tolerance: float = 1e-7
    max_iterations: int = 1000


@learners.register("test_diverging")
def _diverging(cfg):
    """The exact solver, except that a modifier paying more than 1 anywhere blows up."""

    class Learner:
        def solve(self, game, theta=None, rng=None, progress=None):
            if theta is not None and np.max(np.abs(theta)) > 1:
                raise DivergenceError("exploitability became NaN or infinite")
            return ExactSolver(ExactConfig(temperature=cfg.temperature,
                                           tolerance=cfg.tolerance)).solve(game, theta)

    return Learner()


_diverging.config = DivergingConfig


def test_a_diverging_evaluation_is_recorded_and_the_run_continues(tmp_path):
    cfg = {**RUN, "learner": {"name": "test_diverging"},
           "optimiser": {"name": "random", "evaluations": 8}}
    result = crowdsteer.run(cfg, out=tmp_path / "r")
    with open(tmp_path / "r" / "evaluations.csv") as f:
        rows = list(csv.DictReader(f))
    failed = [r for r in rows if r["state"] == "FAIL"]
    assert len(rows) == 9 and failed
    assert all("DivergenceError" in r["error"] and r["J"] == "" for r in failed)
    assert result.best.objective <= result.baseline.objective
    assert str(result.best_trial) not in {r["trial"] for r in failed}


BAD_FILES = {
    "nan.npy": np.full((3, 3), np.nan),
    "neg.npy": np.array([[1.0, -1, 1], [1, 1, 1], [1, 1, 1]]),
    "shape.npy": np.ones((4, 4)),
}


@pytest.mark.parametrize("text, field, words", [
    ("game: {height: 3\n", "config.yaml", "malformed YAML"),
    ("gmae: {}\nmodifier: {}\n", "gmae", "did you mean 'game'"),
    ("game: {}\nmodifier: {name: rbff}\n", "modifier.name", "did you mean 'rbf'"),
    ("game: {height: three}\nmodifier: {}\n", "game.height", "integer"),
    ("game: {height: -2}\nmodifier: {}\n", "game.height", "greater than 0"),
    ("game: {width: 0}\nmodifier: {}\n", "game.width", "greater than 0"),
    ("game: {}\nmodifier: {bounds: [2, 1]}\n", "modifier.bounds", "lo < hi"),
    ("game: {}\nmodifier: {}\noptimiser: {evaluations: 0}\n", "optimiser.evaluations",
     "greater than 0"),
    ("game: {height: 3, width: 3}\nmodifier: {}\nobjective: {name: kl, target: {file: nan.npy}}\n",
     "objective.target.file", "NaN"),
    ("game: {height: 3, width: 3}\nmodifier: {}\nobjective: {name: kl, target: {file: neg.npy}}\n",
     "objective.target.file", "negative"),
    ("game: {height: 3, width: 3}\nmodifier: {}\nobjective: {name: kl, target: {file: shape.npy}}\n",
     "objective.target.file", "shape"),
    ("game: {height: 3, width: 3}\nmodifier: {}\nobjective: {name: kl, target: {file: gone.npy}}\n",
     "objective.target.file", "not found"),
    ("game: {}\nmodifier: {}\nlearner: {name: exact, agents: 10}\n", "learner.agents",
     "allowed here"),
])
def test_bad_input_through_the_cli(tmp_path, text, field, words):
    for name, arr in BAD_FILES.items():
        np.save(tmp_path / name, arr)
    p = tmp_path / "config.yaml"
    p.write_text(text)
    r = cli("run", p, "--out", tmp_path / "run")
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert field in line and words in line
    assert not (tmp_path / "run" / "study.db").exists()


def test_an_output_folder_holding_another_run_is_refused(tmp_path):
    cfg = write_config(tmp_path, {**RUN, "optimiser": {"name": "random", "evaluations": 1}})
    assert cli("run", cfg, "--out", tmp_path / "r").returncode == 0
    before = (tmp_path / "r" / "evaluations.csv").read_text()
    r = cli("run", cfg, "--out", tmp_path / "r")
    assert r.returncode == 2 and "--resume" in r.stderr and "--force" in r.stderr
    assert (tmp_path / "r" / "evaluations.csv").read_text() == before  # nothing lost


def maybe_nan(lo, hi):
    return st.one_of(st.floats(lo, hi), st.sampled_from([float("nan"), float("inf")]))


names = st.sampled_from(["crowd", "crwd", 3, None])
sizes = st.one_of(st.integers(-2, 5), st.floats(-1, 5), st.text(max_size=3))
game_dicts = st.fixed_dictionaries({}, optional={
    "name": names, "height": sizes, "width": sizes, "horizon": st.integers(-1, 3),
    "moves": st.sampled_from(["any", "local", "diagonal"]),
    "noise": maybe_nan(-0.5, 1.5),
    "congestion": st.fixed_dictionaries({}, optional={
        "kind": st.sampled_from(["kernel", "log", "quadratic"]),
        "strength": maybe_nan(-1, 3), "radius": st.floats(-1, 3)}),
    "desirability": st.one_of(st.none(), st.just({"bumps": []}), st.fixed_dictionaries(
        {"bumps": st.lists(st.fixed_dictionaries({"center": st.lists(
            st.integers(-2, 6), min_size=1, max_size=3)}, optional={
            "height": maybe_nan(-5, 5),
            "width": st.floats(-1, 3)}), max_size=2)})),
})


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(game=game_dicts, tau=st.floats(0, 1), method=st.sampled_from(["omd", "fp", "gd"]))
def test_random_configs_run_or_are_refused_cleanly(game, tau, method):
    try:
        cfg = load_config({"game": game, "learner": {"name": "exact", "temperature": tau,
                                                     "method": method, "max_iterations": 20}})
        result = crowdsteer.solve(cfg)
    except ConfigError as exc:
        assert exc.field and "\n" not in str(exc)
        return
    except DivergenceError:
        return
    assert np.all(np.isfinite(result.solution.mu))
    np.testing.assert_allclose(result.solution.mu.sum(axis=1), 1)
    assert_certificate(result.game, result.solution, tau)


@settings(deadline=None, max_examples=40)
@given(arr=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=4,
                    max_size=4))
def test_random_target_arrays_are_used_or_refused_cleanly(tmp_path_factory, arr):
    d = tmp_path_factory.mktemp("t")
    np.save(d / "t.npy", np.array(arr, dtype=float).reshape(2, 2))
    game = crowdsteer.config.build_game(load_config({"game": {"height": 2, "width": 2}}))
    from crowdsteer.objectives import ObjectiveConfig, build

    try:
        target = build(ObjectiveConfig(name="kl", target={"file": "t.npy"}), game, d).target
    except ConfigError as exc:
        assert exc.field == "objective.target.file"
        return
    assert np.all(target > 0) and np.allclose(target.sum(axis=1), 1)
