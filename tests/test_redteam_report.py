"""Issue 20, M_report_envs_resume: `report` on a damaged routing run folder names the file
it cannot read and still writes the report (was a traceback); nothing else is written.
Through the CLI."""

import io
import shutil

import numpy as np
import pytest

import crowdsteer as cs
from tests.test_crash import crowdsteer
from tests.test_redteam_folders import braess


@pytest.fixture(scope="module")
def road_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("road")
    cfg = braess(tmp, modifier={"name": "tolls", "bounds": [0, 5]}, objective={"name": "welfare"},
                 optimiser={"name": "bo", "evaluations": 3, "initial": 2})
    cs.run(cfg, out=tmp / "ok")
    assert (tmp / "ok" / "network.npz").is_file()
    return tmp / "ok"


def npz_without_positions(path):
    with np.load(path) as data:
        kept = {k: data[k] for k in data.files if k != "positions"}
    buf = io.BytesIO()
    np.savez(buf, **kept)
    path.write_bytes(buf.getvalue())


DAMAGE = {
    "network.npz": lambda d: (d / "network.npz").write_bytes(b"PK\x03\x04garbage"),
    "network.npz ": lambda d: npz_without_positions(d / "network.npz"),  # a key missing
    "evaluations.csv": lambda d: (d / "evaluations.csv").write_text(
        (d / "evaluations.csv").read_text().replace("\n2,", "\nthree,", 1)),
    "best_mu.npy": lambda d: np.save(d / "best_mu.npy", np.ones((1, 2))),  # 2 flows, 5 links
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_report_on_a_damaged_road_run_names_the_file_and_writes_the_rest(road_run, tmp_path,
                                                                         damage):
    run = tmp_path / "run"
    shutil.copytree(road_run, run)
    (run / "report.html").unlink()
    DAMAGE[damage](run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    r = crowdsteer("report", run)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    named = damage.strip()
    left = [line for line in (r.stdout + r.stderr).splitlines() if line.startswith("left out")]
    assert any(named in line for line in left), (r.stdout, r.stderr)
    page = (run / "report.html").read_text()
    assert "Files left out" in page and "crowdsteer run" in page
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.name != "report.html"} == before
