"""Bring your own inner loop: crowdsteer.optimise around a user's evaluate(w, seed);
and the starter config from `crowdsteer init`."""

import csv
import json

import numpy as np
import pytest

import crowdsteer
from crowdsteer import Outcome
from crowdsteer.errors import ConfigError
from tests.test_cli import cli

CENTER = np.array([0.4, -0.2])


def bowl(w, seed):
    """J = |w - c|^2 plus seeded noise; minimum 0 at c (known)."""
    noise = np.random.default_rng(seed).normal(0, 1e-3)
    return Outcome(objective=float(np.sum((w - CENTER) ** 2)) + noise,
                   diagnostics={"distance": float(np.linalg.norm(w - CENTER))})


def test_optimise_finds_the_known_minimum_and_writes_a_run_folder(tmp_path):
    result = crowdsteer.optimise(bowl, 2, bounds=(-1, 1), seed=1, out=tmp_path / "r",
                                 optimiser={"name": "bo", "evaluations": 25, "initial": 5})
    assert result.baseline.w == [0.0, 0.0]
    assert result.baseline.objective == pytest.approx(0.2, abs=0.01)  # |c|^2 = 0.2
    assert result.best.objective < 0.01
    res = json.loads((tmp_path / "r" / "result.json").read_text())
    assert res["evaluations"] == 26
    with open(tmp_path / "r" / "evaluations.csv") as f:
        assert len(list(csv.DictReader(f))) == 26
    assert (tmp_path / "r" / "report.html").exists()
    assert "distance" in result.best.diagnostics


def numbers_only(w, seed):
    if w[0] > 0.5:
        raise RuntimeError("training crashed")
    return float(w[0] ** 2)


def test_plain_numbers_and_crashing_evaluations(tmp_path):
    result = crowdsteer.optimise(numbers_only, 1, bounds=(-1, 1),
                                 optimiser={"name": "random", "evaluations": 12})
    assert result.evaluations == 13
    assert np.isnan(result.history).any()  # some evaluations crashed and were recorded
    assert result.best.w[0] <= 0.5


def test_same_seed_same_evaluations_serial_and_local():
    kw = dict(bounds=(-1, 1), seed=3, optimiser={"name": "tpe", "evaluations": 6, "initial": 2,
                                                  "batch": 2})
    a = crowdsteer.optimise(bowl, 2, **kw)
    b = crowdsteer.optimise(bowl, 2, executor={"name": "local", "workers": 2}, **kw)
    assert a.history == b.history


def test_bad_problem_definitions():
    with pytest.raises(ConfigError, match="bounds"):
        crowdsteer.optimise(bowl, 2, bounds=(0.5, 1))
    with pytest.raises(ConfigError, match="optimiser.name"):
        crowdsteer.optimise(bowl, 2, optimiser={"name": "gradient"})


def test_init_writes_a_starter_config_that_runs(tmp_path):
    path = tmp_path / "starter.yaml"
    assert cli("init", path).returncode == 0
    assert "#" in path.read_text()
    cfg = crowdsteer.load_config(path).resolved()
    cfg["optimiser"]["evaluations"] = 3
    result = crowdsteer.run(cfg)
    assert result.best.objective <= result.baseline.objective
    r = cli("init", path)
    assert r.returncode == 2 and "--force" in r.stderr


def test_module_help_shows_examples():
    r = cli("run", "--help")
    assert r.returncode == 0 and "Example" in r.stdout


def never_converges(w, seed):
    return Outcome(objective=float(w[0] ** 2), converged=False)


def test_no_converged_evaluation_is_named_not_an_empty_min(tmp_path):
    """Review defect 1: optimise's result used best_trial_of directly, so when no evaluation
    converged it raised min()'s bare ValueError; it now raises NoEquilibrium as run does,
    evaluations.csv written first."""
    from crowdsteer.errors import NoEquilibrium

    with pytest.raises(NoEquilibrium, match="none of the 3 evaluations reached equilibrium"):
        crowdsteer.optimise(never_converges, 1, out=tmp_path / "r",
                            optimiser={"name": "random", "evaluations": 2})
    with open(tmp_path / "r" / "evaluations.csv") as f:
        assert [r["converged"] for r in csv.DictReader(f)] == ["False"] * 3
