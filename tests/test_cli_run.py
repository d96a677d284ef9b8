"""`crowdsteer run`, `report` and `reproduce` as a user runs them."""

import csv
import json

import numpy as np

from tests.test_cli import cli, write_config

RUN = {
    "seed": 3,
    "game": {"name": "crowd", "height": 3, "width": 3, "horizon": 2, "moves": "local",
             "congestion": {"kind": "log", "strength": 1.0},
             "desirability": {"bumps": [{"center": [[0, 0], [0, 1]], "height": 1.0}]}},
    "learner": {"name": "exact", "temperature": 0.1, "tolerance": 1e-7},
    "modifier": {"name": "power_series", "order": 1},
    "objective": {"name": "kl", "target": {"bumps": [{"center": [[2, 2], [2, 1]],
                                                       "width": 1.5}]}},
    "optimiser": {"name": "bo", "evaluations": 5, "initial": 3},
}


def test_run_writes_the_run_folder_and_report(tmp_path):
    cfg = write_config(tmp_path, RUN)
    out = tmp_path / "run"
    r = cli("run", cfg, "--out", out)
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "result.json").read_text())
    assert res["evaluations"] == 6
    assert res["best"]["objective"] <= res["baseline"]["objective"]
    with open(out / "evaluations.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 6
    assert np.load(out / "best_mu.npy").shape == (2, 3, 3)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3
    (out / "report.html").unlink()
    r = cli("report", out)
    assert r.returncode == 0 and (out / "report.html").exists()
    # resuming a finished run evaluates nothing more
    r = cli("run", cfg, "--out", out, "--resume")
    assert r.returncode == 0, r.stderr
    with open(out / "evaluations.csv") as f:
        assert list(csv.DictReader(f)) == table


def test_run_refuses_an_existing_run_and_bad_sections(tmp_path):
    cfg = write_config(tmp_path, RUN)
    assert cli("run", cfg, "--out", tmp_path / "run").returncode == 0
    r = cli("run", cfg, "--out", tmp_path / "run")
    assert r.returncode == 2 and "--resume" in r.stderr and "Traceback" not in r.stderr
    bad = write_config(tmp_path, {**RUN, "optimiser": {"name": "bayes"}}, "bad.yaml")
    r = cli("run", bad, "--out", tmp_path / "other")
    assert r.returncode == 2 and "optimiser.name" in r.stderr and "Traceback" not in r.stderr


def test_report_of_a_folder_without_a_run(tmp_path):
    r = cli("report", tmp_path)
    assert r.returncode == 2 and "result.json" in r.stderr


def test_reproduce_runs_and_plots(tmp_path):
    cfg = write_config(tmp_path, RUN, "tiny.yaml")
    r = cli("reproduce", cfg, "--out", tmp_path / "rep", "--runs", "2", "--evaluations", "2",
            "--simulations", "2")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert summary["tiny"]["runs"] == 2
    assert (tmp_path / "rep" / "tiny.png").stat().st_size > 1000
    assert (tmp_path / "rep" / "tiny" / "run_1" / "result.json").exists()
