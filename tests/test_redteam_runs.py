"""Issue 20, M_run_level: the gradient optimiser honours optimiser.timeout and records an
ask whose costs turn negative as a failure; a failed baseline stops a run at once and its
resume says why; --resume --executor local is the same run; a finite_n section on a road
network and a negative toll in a network file are refused naming the right field. Through
the CLI."""

import csv

import pytest
import yaml

from tests.test_crash import RUN, crowdsteer, killed, table
from tests.test_cli import write_config
from tests.test_redteam_folders import braess, one_line

STEER = {"modifier": {"name": "tolls", "bounds": [0, 5]}, "objective": {"name": "welfare"}}


def rows(out):
    with open(out / "evaluations.csv") as f:
        return list(csv.DictReader(f))


def test_gradient_honours_the_timeout(tmp_path):
    cfg = braess(tmp_path, **STEER, optimiser={"name": "gradient", "evaluations": 3,
                                               "timeout": 1e-4})
    line = one_line(crowdsteer("run", cfg, "--out", tmp_path / "o"))
    assert "baseline (w = 0) failed" in line and "timed out after 0.0001 s" in line


def test_gradient_records_an_ask_with_negative_costs_as_a_failure(tmp_path):
    """Braess's shortcut costs 0.5 at free flow: a toll below -0.5 on it makes it negative."""
    cfg = braess(tmp_path, **{**STEER, "modifier": {"name": "tolls", "bounds": [-5, 5]}},
                 optimiser={"name": "gradient", "evaluations": 6})
    r = crowdsteer("run", cfg, "--out", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    got = rows(tmp_path / "o")
    assert len(got) == 7 and got[0]["state"] == "COMPLETE"
    failed = [g for g in got if "< 0 at free flow" in (g.get("error") or "")]
    assert failed, got


def test_a_failed_baseline_stops_bo_at_once_and_its_resume_says_why(tmp_path):
    cfg = braess(tmp_path, **STEER, optimiser={"name": "bo", "evaluations": 30, "initial": 4,
                                               "timeout": 1e-4})
    line = one_line(crowdsteer("run", cfg, "--out", tmp_path / "o"))
    assert "baseline (w = 0) failed" in line and "--force" in line
    assert len(rows(tmp_path / "o")) == 1  # not 31: stopped after the baseline's round


def test_the_resume_of_a_gradient_run_whose_baseline_failed_says_why(tmp_path):
    # a solve that stops unconverged is kept (marked) now: a timeout makes the baseline fail
    cfg = write_config(tmp_path, {**RUN, "optimiser": {"name": "gradient", "evaluations": 3,
                                                       "timeout": 1e-4}})
    first = one_line(crowdsteer("run", cfg, "--out", tmp_path / "o"))
    again = one_line(crowdsteer("run", cfg, "--out", tmp_path / "o", "--resume"))
    assert "baseline (w = 0) failed" in first and "baseline (w = 0) failed" in again
    assert "timed out" in again


@pytest.mark.slow
def test_resume_with_another_executor_is_the_same_run(tmp_path):
    cfg = braess(tmp_path, **STEER, optimiser={"name": "random", "evaluations": 4})
    killed(cfg, tmp_path / "o", "tell")
    r = crowdsteer("run", cfg, "--out", tmp_path / "o", "--resume", "--executor", "local",
                   "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert len(table(tmp_path / "o")) == 5
    assert "executor" not in yaml.safe_load((tmp_path / "o" / "config.yaml").read_text())


def test_finite_n_on_a_road_network_is_refused(tmp_path):
    cfg = braess(tmp_path)
    cfg.write_text(cfg.read_text() + "finite_n: {agents: [10, 100]}\n")
    line = one_line(crowdsteer("solve", cfg, "--out", tmp_path / "o"))
    assert line.startswith("error: finite_n:") and "road network" in line
    assert not (tmp_path / "o").exists()


def solve_with_file_toll(tmp_path, toll: str, toll_weight: float) -> str:
    """``crowdsteer solve`` on Braess whose link 1->3 carries ``toll`` in the net file."""
    cfg = braess(tmp_path)
    net = tmp_path / "net.tntp"
    lines = net.read_text().splitlines()
    lines[6] = lines[6].replace("\t0\t0\t1\t;", f"\t0\t{toll}\t1\t;")
    net.write_text("\n".join(lines) + "\n")
    data = yaml.safe_load(cfg.read_text())
    data["game"]["network"]["toll_weight"] = toll_weight
    cfg.write_text(yaml.safe_dump(data))
    return one_line(crowdsteer("solve", cfg, "--out", tmp_path / "o"))


def test_a_negative_toll_in_the_network_file_is_blamed_on_the_file(tmp_path):
    line = solve_with_file_toll(tmp_path, "-100", 1.0)
    assert "game.network.net" in line and "1->3" in line and "modifier" not in line


def test_gradient_says_which_optimiser_fields_it_ignores(tmp_path):
    cfg = write_config(tmp_path, {**RUN, "optimiser": {"name": "gradient", "evaluations": 2,
                                                       "batch": 2, "repeats": 3}})
    r = crowdsteer("run", cfg, "--out", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    assert "ignores optimiser.repeats, batch" in r.stderr + r.stdout


def test_a_tiny_temperature_is_not_called_zero(tmp_path):
    cfg = write_config(tmp_path, {**RUN, "learner": {**RUN["learner"], "temperature": 1e-300},
                                  "optimiser": {"name": "gradient", "evaluations": 2}})
    line = one_line(crowdsteer("run", cfg, "--out", tmp_path / "o"))
    assert "temperature is 1e-300, at or below 1e-08" in line, line


def test_demand_that_overflows_the_costs_is_refused_naming_the_trips(tmp_path):
    """1e300 trips: BPR's (x / capacity)^4 is infinite, so every engine's gap would be NaN;
    the solve is refused naming the trips, before any engine runs."""
    cfg = braess(tmp_path)
    (tmp_path / "trips.tntp").write_text((tmp_path / "trips.tntp").read_text()
                                         .replace("150.0", "1e300"))
    line = one_line(crowdsteer("solve", cfg, "--out", tmp_path / "o"))
    assert line.startswith("error: game.network.trips:") and "overflow" in line


def test_a_file_toll_that_overflows_with_its_weight_is_blamed_on_the_file(tmp_path):
    line = solve_with_file_toll(tmp_path, "1e300", 1e100)  # the largest weight allowed
    assert line.startswith("error: game.network.net:") and "not finite" in line
