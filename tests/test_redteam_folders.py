"""Issue 20, run folders: `solve --force` honours a live run's lock (H1), a second `--force`
after a failed replacement keeps the finished run (H8), a read-only folder is refused
before anything is computed. Through the CLI."""

import os
import subprocess
import sys

import pytest
import yaml

import crowdsteer as cs
from crowdsteer import rundir
from tests.test_cli import SMALL, write_config
from tests.test_crash import crowdsteer, killed

BRAESS_NET = """<NUMBER OF ZONES> 2
<NUMBER OF NODES> 4
<FIRST THRU NODE> 1
<NUMBER OF LINKS> 5
<END OF METADATA>
~ init term cap len fft b power speed toll type ;
\t1\t3\t100\t1\t1\t0.15\t4\t0\t0\t1\t;
\t1\t4\t100\t1\t5\t0.15\t4\t0\t0\t1\t;
\t3\t2\t100\t1\t5\t0.15\t4\t0\t0\t1\t;
\t4\t2\t100\t1\t1\t0.15\t4\t0\t0\t1\t;
\t3\t4\t100\t1\t0.5\t0.15\t4\t0\t0\t1\t;
"""
BRAESS_TRIPS = "<NUMBER OF ZONES> 2\n<END OF METADATA>\nOrigin 1\n    2 : 150.0;\n"


def braess(tmp_path, **sections):
    """A 4-node TNTP network (the redteam scripts' common.sh) and a config using it."""
    (tmp_path / "net.tntp").write_text(BRAESS_NET)
    (tmp_path / "trips.tntp").write_text(BRAESS_TRIPS)
    cfg = {"seed": 0, "game": {"name": "routing", "network": {"net": "net.tntp",
                                                              "trips": "trips.tntp"}},
           "learner": {"name": "exact"}, **sections}
    return write_config(tmp_path, cfg, "braess.yaml")


def one_line(r):
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    return r.stderr


def test_solve_force_leaves_a_folder_a_live_run_holds_alone(tmp_path):
    cfg = write_config(tmp_path, SMALL)
    out = tmp_path / "run"
    out.mkdir()
    (out / "study.db").write_bytes(b"the live run's study")
    with rundir.locked(out):  # this test process is the live run
        line = one_line(crowdsteer("solve", cfg, "--out", out, "--force"))
        assert "in use by another run" in line and f"pid {os.getpid()}" in line
        assert (out / "study.db").read_bytes() == b"the live run's study"
        assert not (out / "previous").exists() and not (out / "summary.json").exists()
    r = crowdsteer("solve", cfg, "--out", out, "--force")  # once it has ended: replaced
    assert r.returncode == 0, r.stderr
    assert (out / "previous" / "study.db").read_bytes() == b"the live run's study"


def test_a_second_force_after_a_failed_replacement_keeps_the_finished_run(tmp_path):
    steer = {"modifier": {"name": "tolls", "bounds": [0, 5]}, "objective": {"name": "welfare"},
             "optimiser": {"name": "bo", "evaluations": 3, "initial": 2}}
    good = braess(tmp_path, **steer)
    other = write_config(tmp_path, {**yaml.safe_load(good.read_text()), "seed": 1}, "o.yaml")
    out = tmp_path / "F"
    cs.run(good, out=out)
    finished = (out / "result.json").read_bytes()
    for _ in range(2):  # each replacement dies before its result is written
        killed(other, out, "finish", "--force")
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("previous")) == [
        "previous", "previous.1"]
    assert (out / "previous.1" / "result.json").read_bytes() == finished
    assert (out / "previous" / "study.db").exists()  # the first failed replacement, kept too


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_solve_into_a_read_only_folder_is_refused_before_computing(tmp_path):
    cfg = write_config(tmp_path, SMALL)
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        line = one_line(crowdsteer("solve", cfg, "--out", out))
    finally:
        out.chmod(0o755)
    assert str(out) in line and "ermission" in line and "solving" not in line


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_written_files_have_the_mode_of_an_ordinary_new_file(tmp_path, umask, mode):
    """Review defect 5: atomic_write's files kept mkstemp's 0600 after the rename, so
    result.json or report.html were unreadable by others whatever the umask; they now get
    0o666 less the umask (022: 0644; 077 still 0600), as open() gives. The umask is set in
    a fresh process, which reads it once."""
    code = ("import sys; from pathlib import Path; from crowdsteer import rundir; "
            "rundir.write_json(Path(sys.argv[1]), {'J': 1}); "
            "rundir.atomic_write(Path(sys.argv[2]), b'<html>')")
    files = [tmp_path / "result.json", tmp_path / "report.html"]
    files[1].write_text("an older report")  # replaced, its mode not kept either
    files[1].chmod(0o600)
    r = subprocess.run([sys.executable, "-c", code, *map(str, files)], capture_output=True,
                       text=True, timeout=120, check=False, preexec_fn=lambda: os.umask(umask))
    assert r.returncode == 0, r.stderr
    assert [f.stat().st_mode & 0o777 for f in files] == [mode, mode]
    assert files[1].read_text() == "<html>"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_an_atomic_write_is_on_disk_before_it_replaces_the_file(tmp_path, monkeypatch):
    """Review defect 5: the data is fsynced before os.replace, so a power cut after the
    rename never leaves an empty file where the old one was."""
    calls = []
    monkeypatch.setattr(rundir.os, "fsync",
                        lambda fd: calls.append(("fsync", os.fstat(fd).st_size)))
    real_replace = os.replace
    monkeypatch.setattr(rundir.os, "replace",
                        lambda a, b: (calls.append(("replace", b)), real_replace(a, b)))
    rundir.atomic_write(tmp_path / "evaluations.csv", b"trial,J\n0,1.5\n")
    assert calls == [("fsync", 14), ("replace", tmp_path / "evaluations.csv")]
