"""Issue 20, resume: a run whose input files changed since it started is refused, naming
the file (H2). Through the CLI."""

import hashlib
import os

import pytest
import yaml

from crowdsteer.metaagent.study import input_files
from tests.test_crash import crowdsteer, killed, table
from tests.test_cli import write_config
from tests.test_redteam_folders import braess, one_line

STEER = {"modifier": {"name": "tolls", "bounds": [0, 5]}, "objective": {"name": "welfare"},
         "optimiser": {"name": "tpe", "evaluations": 4, "initial": 2}}


def test_a_resume_whose_trips_file_changed_is_refused_naming_it(tmp_path):
    cfg = braess(tmp_path, **STEER)
    out = tmp_path / "o"
    killed(cfg, out, "tell")  # killed as the first evaluation is told
    trips = tmp_path / "trips.tntp"
    kept = trips.read_text()
    trips.write_text(kept.replace("150.0", "300.0"))  # the demand is corrected
    before = (out / "study.db").read_bytes()
    line = one_line(crowdsteer("run", cfg, "--out", out, "--resume"))
    assert "game.network.trips" in line and "trips.tntp changed" in line, line
    assert (out / "study.db").read_bytes() == before  # nothing written
    trips.write_text(kept)  # restored: the resume goes on, with the files it started with
    r = crowdsteer("run", cfg, "--out", out, "--resume")
    assert r.returncode == 0, r.stderr
    assert len(table(out)) == 5


def test_the_files_a_config_names_are_found_and_hashed(tmp_path):
    cfg = yaml.safe_load(braess(tmp_path).read_text())
    found = input_files(cfg, tmp_path)
    assert set(found) == {"game.network.net", "game.network.trips"}
    assert found["game.network.trips"]["sha256"] == hashlib.sha256(
        (tmp_path / "trips.tntp").read_bytes()).hexdigest()  # hashlib of the whole file


def gradient_run(tmp_path):
    from tests.test_crash import RUN

    cfg = {**RUN, "optimiser": {"name": "gradient", "evaluations": 4,
                                "storage": f"sqlite:///{tmp_path / 'shared.db'}",
                                "study": "g"}}
    return cfg, write_config(tmp_path, cfg, "g.yaml")


@pytest.mark.slow
def test_a_gradient_study_another_live_process_drives_is_not_joined(tmp_path):
    """H3: two processes on one gradient study asked the same w in lock-step (421 trials for
    a budget of 251) and left a study no resume could follow."""
    import optuna

    import crowdsteer as cs
    from crowdsteer import rundir
    from crowdsteer.metaagent.gradient import DRIVER

    cfg, path = gradient_run(tmp_path)
    cs.run(cfg, out=tmp_path / "A")
    study = optuna.load_study(study_name="g", storage=cfg["optimiser"]["storage"])
    assert study.user_attrs[DRIVER] is None  # released at the end
    n = len(study.trials)
    study.set_user_attr(DRIVER, rundir.holder())  # this test process drives it
    line = one_line(crowdsteer("run", path, "--out", tmp_path / "B", "--resume"))
    assert f"pid {os.getpid()}" in line and "cannot be shared" in line
    assert len(study.trials) == n
    dead = {**rundir.holder(), "pid": 2**22 + 1}  # no such process: a killed driver
    study.set_user_attr(DRIVER, dead)
    r = crowdsteer("run", path, "--out", tmp_path / "B", "--resume")
    assert r.returncode == 0, r.stderr
    assert len(study.trials) == n and table(tmp_path / "B") == table(tmp_path / "A")
