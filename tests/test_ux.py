"""What a new user meets (issue 19): failures that speak, the Python API's shapes and
checks, the starter config, progress lines, and numbers printed for people."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import get_args

import numpy as np
import pytest

import crowdsteer
from crowdsteer import ConfigError, Outcome, optimise, solve
from crowdsteer.optimisers import OptimiserConfig
from crowdsteer.progress import Lines, duration, number, plural

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# a small crowd game the exact learner solves in well under a second
SMALL = {
    "seed": 0,
    "game": {"name": "crowd", "height": 4, "width": 5, "horizon": 2, "moves": "local",
             "desirability": {"bumps": [{"center": [1, 1], "height": 1.0, "width": 1.5}]},
             "congestion": {"kind": "log", "strength": 1.0}},
    "learner": {"name": "exact", "temperature": 0.3, "tolerance": 1e-9},
    "modifier": {"name": "power_series", "order": 1, "bounds": [-2, 2]},
    "objective": {"name": "kl", "target": {"bumps": [{"center": [2, 3], "height": 1.0,
                                                      "width": 1.5}]}},
    "optimiser": {"name": "bo", "evaluations": 4},
}


def cli(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crowdsteer", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=600)


def read_rows(run: Path) -> list[dict[str, str]]:
    with open(run / "evaluations.csv", newline="") as f:
        return list(csv.DictReader(f))


def bowl(w: np.ndarray, seed: int) -> float:
    return float(((w - 0.3) ** 2).sum())


def fails_right_of_half(w: np.ndarray, seed: int) -> Outcome:
    if w[0] > 0.5:
        raise ValueError(f"boom at {w[0]:.3f}")
    return Outcome(objective=bowl(w, seed), diagnostics={"loss": float(w[0]), "steps": 3})


# ------------------------------------------------------------------- failures that speak

def test_a_users_failing_evaluate_is_reported_with_its_traceback(tmp_path, capsys):
    r = optimise(fails_right_of_half, 2, optimiser={"name": "random", "evaluations": 12},
                 out=tmp_path / "run", seed=1)
    rows = read_rows(tmp_path / "run")
    failed = [row for row in rows if row["state"] == "FAIL"]
    # the random sampler puts w_0 > 0.5 for some of 12 uniform draws in [-1, 1] (seed 1)
    assert failed and all(float(row["w_0"]) > 0.5 for row in failed)
    assert all(np.isnan(r.history[int(row["trial"])]) for row in failed)
    err = capsys.readouterr().err
    first = failed[0]
    assert f"evaluation {first['trial']} failed: ValueError: boom at" in err
    assert f"{len(failed)} of {len(rows)} evaluations failed" in err
    log = (tmp_path / "run" / "run.log").read_text()
    assert "Traceback (most recent call last)" in log and "fails_right_of_half" in log
    assert log.count("Traceback") == 1  # the first traceback only
    assert f"{len(failed)} of {len(rows)} evaluations failed" in log
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["failed"] == len(failed)
    assert result["first_failure"].startswith(f"trial {first['trial']}: ValueError")


def test_on_error_raise_stops_the_run_after_recording_the_failure(tmp_path):
    with pytest.raises(ValueError, match="boom"):
        optimise(fails_right_of_half, 2, optimiser={"name": "random", "evaluations": 12},
                 out=tmp_path / "run", seed=1, on_error="raise")
    rows = read_rows(tmp_path / "run")
    assert rows[-1]["state"] == "FAIL" and rows[-1]["error"].startswith("ValueError")
    assert all(row["state"] == "COMPLETE" for row in rows[:-1])


def test_a_failure_in_a_worker_process_keeps_its_traceback(tmp_path):
    from crowdsteer.metaagent.byo import RemoteTraceback

    with pytest.raises(ValueError, match="boom") as info:
        optimise(fails_right_of_half, 2, optimiser={"name": "random", "evaluations": 12},
                 out=tmp_path / "run", seed=1, on_error="raise",
                 executor={"name": "local", "workers": 1})
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback) and "fails_right_of_half" in str(cause)
    assert "fails_right_of_half" in (tmp_path / "run" / "run.log").read_text()


def test_the_convergence_error_names_the_configured_cap():
    cfg = {**SMALL, "learner": {**SMALL["learner"], "max_iterations": 3,
                                "tolerance": 1e-14, "method": "omd"},
           "optimiser": {"name": "random", "evaluations": 1, "require_convergence": True}}
    # no evaluation converges, so there is no best: the line names the caps the config set
    with pytest.raises(crowdsteer.CrowdsteerError,
                       match=r"none of the 2 evaluations reached equilibrium.*configured: "
                             r"max_iterations = 3, tolerance = 1e-14\)"):
        crowdsteer.run(cfg)


def test_the_run_says_how_many_evaluations_failed(tmp_path, monkeypatch):
    from crowdsteer.errors import DivergenceError
    from crowdsteer.metaagent import evaluation

    measured = evaluation.measured

    def fails_left_of_zero(s, w, *args, **kwargs):  # in process: the serial executor
        if np.asarray(w)[0] < 0:
            raise DivergenceError(f"made to fail at w_0 = {np.asarray(w)[0]:.3f}")
        return measured(s, w, *args, **kwargs)

    monkeypatch.setattr(evaluation, "measured", fails_left_of_zero)
    said: list[str] = []
    cfg = {**SMALL, "optimiser": {"name": "random", "evaluations": 8}}
    crowdsteer.run(cfg, tmp_path / "run", log=said.append)
    rows = read_rows(tmp_path / "run")
    failed = [row for row in rows if float(row["w_0"]) < 0]
    assert failed and [row["state"] for row in failed] == ["FAIL"] * len(failed)
    line = (f"{len(failed)} of {len(rows)} evaluations failed (recorded with the worst J, "
            f"column error of evaluations.csv); the first: trial {failed[0]['trial']}: "
            f"DivergenceError: made to fail at w_0 = ")
    assert said[-1].startswith(line)
    assert line in (tmp_path / "run" / "run.log").read_text()
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["failed"] == len(failed)


# ------------------------------------------------------------------- the Python API

def test_diagnostics_go_to_evaluations_csv_and_result_json(tmp_path):
    optimise(fails_right_of_half, 2, optimiser={"name": "random", "evaluations": 4},
             out=tmp_path / "run", seed=0)
    rows = read_rows(tmp_path / "run")
    ok = [row for row in rows if row["state"] == "COMPLETE"]
    assert ok and all(float(row["diagnostics.loss"]) == float(row["w_0"]) for row in ok)
    assert all(row["diagnostics.steps"] == "3.0" for row in ok)
    best = json.loads((tmp_path / "run" / "result.json").read_text())["best"]
    assert best["diagnostics"] == {"loss": best["w"][0], "steps": 3}


def test_per_weight_bounds_are_kept():
    seen = []

    def evaluate(w, seed):
        seen.append(np.array(w))
        return bowl(w, seed)

    optimise(evaluate, 2, bounds=[(-1, 0.25), (0, 2)], optimiser={"name": "random",
                                                                  "evaluations": 30})
    ws = np.array(seen)
    assert ws[:, 0].min() >= -1 and ws[:, 0].max() <= 0.25
    assert ws[:, 1].min() >= 0 and ws[:, 1].max() <= 2
    assert ws[:, 1].max() > 1  # the second box is used beyond the first one's width


@pytest.mark.parametrize("kwargs, match", [
    ({"bounds": (-1e308, 1e308)}, r"bounds: .*finite width"),
    ({"bounds": [(-1, 1)]}, r"bounds: expected \(lo, hi\), two numbers, or 2 such pairs"),
    ({"bounds": [(-1, 1), (0.5, 2)]}, r"bounds\[1\]: needs lo < hi with 0 inside"),
    ({"executor": "fast"}, r"executor.name: .*'serial', 'local' or 'ray'"),
    ({"executor": 3}, r"executor: expected serial, local or ray"),
    ({"on_error": "ignore"}, r"on_error: allowed: record, raise"),
])
def test_bad_optimise_arguments_get_one_clear_line(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        optimise(bowl, 2, optimiser={"evaluations": 2}, **kwargs)


def test_a_string_in_diagnostics_is_named():
    def evaluate(w, seed):
        return Outcome(objective=1.0, diagnostics={"loss": "low"})

    with pytest.raises(TypeError, match=r"diagnostics \{'loss': 'low'\}; diagnostics map "
                                        r"names \(str\) to numbers"):
        optimise(evaluate, 1, optimiser={"name": "random", "evaluations": 1},
                 on_error="raise")


def test_solve_at_w_equals_solve_at_the_saved_theta(tmp_path):
    result = crowdsteer.run(SMALL, tmp_path / "run")
    theta = np.load(tmp_path / "run" / "best_theta.npy")
    assert theta.shape == (2, 4, 5)  # (T, height, width)
    at_w = solve(SMALL, w=result.best.w)
    at_theta = solve(SMALL, theta=theta)
    # independent: the modifier's own table at best.w through the exact learner
    assert at_w.welfare == pytest.approx(at_theta.welfare, rel=1e-9)
    np.testing.assert_allclose(at_w.solution.mu, at_theta.solution.mu, atol=1e-9)
    # and the J of the run is what w gives
    assert not np.allclose(at_w.solution.mu, solve(SMALL).solution.mu, atol=1e-6)


@pytest.mark.parametrize("shape", [(4, 5), (2, 20), (20,), (2, 4, 5, 1), (1, 4, 5)])
def test_theta_of_another_shape_is_refused_naming_the_shape(shape):
    with pytest.raises(ConfigError, match=r"theta: expected shape \(2, 4, 5\) \(T, height, "
                                          r"width\), as best_theta.npy is saved; got "
                                          + str(shape).replace("(", r"\(").replace(")", r"\)")):
        solve(SMALL, theta=np.zeros(shape))


def test_w_is_checked():
    with pytest.raises(ConfigError, match=r"w: expected shape \(3,\)"):
        solve(SMALL, w=[1.0])
    with pytest.raises(ConfigError, match="not both"):
        solve(SMALL, w=np.zeros(3), theta=np.zeros((2, 4, 5)))
    with pytest.raises(ConfigError, match="w: holds NaN"):
        solve(SMALL, w=[np.nan] * 3)


def test_docstrings_name_the_optimiser_keys_and_the_outcome_fields():
    doc = optimise.__doc__
    keys = [k for k in OptimiserConfig.model_fields if k not in (
        "warm_starts", "warm_start", "warm_start_evaluations", "require_convergence")]
    assert all(f"``{k}``" in doc for k in keys), [k for k in keys if f"``{k}``" not in doc]
    assert all(f"``{f}``" in doc for f in Outcome.__dataclass_fields__ if f != "w")
    assert "``w``" in solve.__doc__ and "best_theta.npy" in solve.__doc__


# ------------------------------------------------------------------- init

def test_init_writes_auto_lists_every_optimiser_and_names_its_file(tmp_path):
    path = tmp_path / "mine.yaml"
    r = cli("init", path)
    assert r.returncode == 0, r.stderr
    text = path.read_text()
    assert f"crowdsteer run {path} --out" in text and "crowdsteer.yaml" not in text
    cfg = crowdsteer.load_config(path)
    assert cfg["optimiser"].name == "auto"
    names = get_args(OptimiserConfig.model_fields["name"].annotation)
    assert all(n in text for n in names)
    # nothing written that the optimiser auto picks here (gradient) ignores
    written = cfg.resolved()
    assert "executor" not in {k for k, v in written.items() if v is not None} or (
        written["executor"] is None)
    raw = __import__("yaml").safe_load(text)
    assert not {"initial", "batch", "repeats"} & set(raw["optimiser"])
    assert "tolerance" not in raw["learner"]


# ------------------------------------------------------------------- progress and text

def test_progress_lines_wait_for_both_steps_and_seconds():
    now = [0.0]
    out: list[str] = []
    lines = Lines("evaluations", out.append, total=41, every=5, seconds=10, clock=lambda: now[0])
    for k in range(1, 42):
        now[0] = 3.0 * k  # 3 s an evaluation: 5 evaluations take 15 s > 10 s
        lines(k, 1.0 / k)
    # the first call starts the clock; then every 5 evaluations, and the last
    assert len(out) == 8  # 6, 11, ..., 36 and 41
    assert out[0] == "evaluations: 6/41, best J 0.166667, 18 s elapsed, about 1 min 45 s left"
    assert out[-1].startswith("evaluations: 41/41") and out[-1].endswith("about 0 s left")
    slow: list[str] = []
    now[0] = 0.0
    lines = Lines("x", slow.append, total=100, every=5, seconds=10, clock=lambda: now[0])
    for k in range(100):
        now[0] = 0.5 * k  # 5 evaluations in 2.5 s: the 10 s govern
        lines(k, 0.0)
    assert [line.split(",")[0] for line in slow] == [f"x: {k}/100" for k in (20, 40, 60, 80)]


def test_a_solves_time_left_extrapolates_the_decay_to_the_tolerance():
    now = [0.0]
    out: list[str] = []
    lines = Lines("solving", out.append, every=1, seconds=0, metric="exploitability",
                  target=1e-6, clock=lambda: now[0])
    lines(1, 1e-1)
    now[0] = 10.0
    lines(2, 1e-3)  # two decades in 10 s: the three left to 1e-6 take 15 s
    assert out == ["solving: 2, exploitability 0.001, 10 s elapsed, about 15 s left"]


def test_numbers_for_people():
    assert number(-1.66596e-260) == "-1.67e-260 (zero to machine precision)"
    assert number(0.0155) == "0.0155" and number(None) == "-"
    assert plural(1, "iteration") == "1 iteration" and plural(2, "iteration") == "2 iterations"
    assert duration(59.6) == "1 min 00 s" and duration(7260) == "2 h 01 min"


def test_version():
    r = cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"crowdsteer {crowdsteer.__version__}"


@pytest.mark.slow
def test_piped_run_prints_progress_lines_and_a_resumed_run_counts_all_its_time(tmp_path):
    cfg = {**SMALL, "optimiser": {"name": "random", "evaluations": 6}}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    r = cli("run", path, "--out", tmp_path / "run")  # stdout is a pipe here
    assert r.returncode == 0, r.stderr
    assert "evaluations: 7/7, best J" in r.stdout  # the last evaluation always reports
    assert "evaluations: 7/7, best J" in (tmp_path / "run" / "run.log").read_text()
    first = json.loads((tmp_path / "run" / "result.json").read_text())["seconds"]
    r = cli("run", path, "--out", tmp_path / "run", "--resume")
    assert r.returncode == 0, r.stderr
    total = json.loads((tmp_path / "run" / "result.json").read_text())["seconds"]
    assert total > first and "in this session" in r.stdout


# ------------------------------------------------------------------- examples

PUBLIC_MODULES = {"crowdsteer": set(crowdsteer.__all__),
                  "crowdsteer.envs": {"parallel_env", "vector_env", "modify_rewards"}}
"""What an example may import: ``crowdsteer.__all__`` and the documented env adapters."""


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.py")), ids=lambda p: p.name)
def test_examples_use_only_public_names(path):
    import ast

    used = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("crowdsteer"):
            used += [(node.module, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            used += [(a.name, None) for a in node.names if a.name.startswith("crowdsteer")]
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and node.value.id == "crowdsteer"):
            used.append(("crowdsteer", node.attr))
    assert used, "an example that uses nothing of crowdsteer?"
    private = [(m, n) for m, n in used if m not in PUBLIC_MODULES
               or (n is not None and n not in PUBLIC_MODULES[m])]
    assert not private, f"{path.name} imports internal names: {private}"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.py")), ids=lambda p: p.name)
def test_examples_import_and_run_small(path, monkeypatch, tmp_path):
    import importlib.util

    pytest.importorskip("pettingzoo")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, path.stem, module)  # dataclasses look it up
    spec.loader.exec_module(module)
    result = module.main(["--evaluations", "2", "--agents", "20", "--episodes", "20",
                          "--out", str(tmp_path / "run")])
    assert result.evaluations == 3 and (tmp_path / "run" / "report.html").is_file()


# ------------------------------------------------------------------- plots

def test_the_search_plot_draws_trial_k_at_k(monkeypatch, tmp_path):
    from crowdsteer.report import plots

    drawn = {}

    def keep(fig, path):
        ax = fig.axes[0]
        drawn.update({line.get_label(): line.get_xydata() for line in ax.get_lines()})
        drawn["xlabel"] = ax.get_xlabel()
        plots.plt.close(fig)
        return path

    monkeypatch.setattr(plots, "_save", keep)
    J = np.array([3.0, 2.0, np.nan, 1.0, 1.5])
    plots.objective_trace(J, tmp_path / "x.png", "minimize", "J", best_index=3,
                          trials=np.arange(5))
    # the star of "best trial 3" sits at x = 3, the baseline (trial 0) at x = 0
    assert drawn["best"].tolist() == [[3.0, 1.0]]
    assert drawn["evaluation"][:, 0].tolist() == [0, 1, 3, 4]
    assert drawn["xlabel"].startswith("trial")


@pytest.mark.parametrize("order, per_step", [(0, False), (2, False), (3, True)])
def test_power_series_weights_are_named_by_their_terms(order, per_step):
    from crowdsteer.config import build, build_game
    from crowdsteer.modifiers.base import grid_coords, scaled
    from crowdsteer.report.labels import weight_names

    cfg = crowdsteer.load_config({**SMALL, "modifier": {"name": "power_series", "order": order,
                                                        "per_step": per_step}})
    game = build_game(cfg)
    modifier = build(cfg, "modifier", game=game)
    names = weight_names(cfg, game, modifier.n_params)
    assert len(names) == modifier.n_params
    rows, cols = grid_coords(game)
    u, v = scaled(cols), scaled(rows)
    for k, name in enumerate(names[:modifier.features.shape[1]]):
        term = name.split(": ")[-1]
        # independent: evaluate the name itself as u^p v^q on the grid
        value = np.ones(game.S)
        for factor in term.split():
            if factor != "1":
                base, _, power = factor.partition("^")
                value = value * {"u": u, "v": v}[base] ** int(power or 1)
        np.testing.assert_allclose(np.asarray(modifier.features[:, k].todense()).ravel()
                                   if hasattr(modifier.features, "todense")
                                   else modifier.features[:, k], value, atol=1e-12)
    if per_step:
        assert names[0].startswith("t=1: ") and names[-1].startswith(f"t={game.T}: ")


def test_concentrated_mass_gets_a_log_scale():
    from crowdsteer.report.plots import choose_scale

    crowd = np.full((10, 100, 100), 1e-7)
    crowd[:, 50, 50] = 1.0  # almost all of it in one cell of each step
    assert choose_scale(crowd) == "log"
    assert choose_scale(np.random.default_rng(0).uniform(size=(2, 8, 8))) == "linear"
    assert choose_scale(np.array([-1.0, 0.0, 5.0])) == "linear"  # signed: not a log scale


def test_check_piped_prints_whole_columns_a_verdict_each_and_why_a_network_is_not_checked():
    r = cli("check", EXAMPLES / "siouxfalls_tolls.yaml", EXAMPLES / "pigou.yaml",
            "--samples", "1")
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if "examples/" in line and "│" in line]
    assert len(rows) == 2 and "…" not in r.stdout  # nothing cut at 80 columns
    assert "pass (continuity only *)" in rows[0] and rows[1].rstrip(" │").endswith("pass")
    assert "Beckmann's potential" in r.stdout and "2 of 2 passed" in r.stdout


def test_best_weights_at_a_bound_are_named_at_the_end_of_the_run(tmp_path):
    # the target is far from where the agents like to be: a box of +-0.05 is too small,
    # and the gradient optimiser presses the weights against it
    cfg = {**SMALL, "modifier": {"name": "power_series", "order": 1, "bounds": [-0.05, 0.05]},
           "optimiser": {"name": "gradient", "evaluations": 4}}
    said: list[str] = []
    result = crowdsteer.run(cfg, tmp_path / "run", log=said.append)
    w = np.array(result.best.w)
    at = np.isclose(np.abs(w), 0.05, atol=1e-3)
    assert at.any()
    names = ["1", "u", "v"]
    line = next(s for s in said if "at a bound" in s)
    assert line.startswith(f"{at.sum()} of 3 best weights sit at a bound of [-0.05, 0.05] "
                           f"({', '.join(n for n, a in zip(names, at) if a)})")
    assert line in (tmp_path / "run" / "run.log").read_text()
    page = (tmp_path / "run" / "report.html").read_text()
    assert f"{at.sum()} of 3 weights sit at a bound" in page
