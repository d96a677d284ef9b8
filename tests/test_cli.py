"""The command line as a user runs it: files written, errors as one line with exit code 2."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from crowdsteer.equilibrium import exploitability, mean_field
from crowdsteer.games.crowd import CrowdConfig, build

SMALL = {
    "seed": 1,
    "game": {"name": "crowd", "height": 4, "width": 5, "horizon": 2, "moves": "local",
             "desirability": {"bumps": [{"center": [1, 1], "height": 1.0, "width": 1.0}]},
             "congestion": {"kind": "kernel", "strength": 1.0, "radius": 1.0}},
    "learner": {"name": "exact", "temperature": 0.1, "tolerance": 1e-6},
}


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "crowdsteer", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def write_config(tmp_path, data, name="c.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


def test_solve_writes_the_contract_files(tmp_path):
    cfg = write_config(tmp_path, SMALL)
    r = cli("solve", cfg, "--out", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "run"
    summary = json.loads((out / "summary.json").read_text())
    mu = np.load(out / "mu.npy")
    pi = np.load(out / "pi.npy")
    assert mu.shape == (2, 4, 5) and pi.shape == (2, 20, 5)
    assert (out / "mu.png").stat().st_size > 1000
    # the files agree with each other: mu is the mean field of pi, and the reported
    # exploitability is that of pi (recomputed here from the saved policy)
    game = build(CrowdConfig(**SMALL["game"]))
    np.testing.assert_allclose(mean_field(game, pi).reshape(2, 4, 5), mu, atol=1e-12)
    assert summary["exploitability"] == pytest.approx(exploitability(game, pi, 0.1), abs=1e-12)
    assert summary["exploitability"] <= 1e-6
    for key in ("welfare", "iterations", "seconds"):
        assert key in summary


def test_solve_refuses_an_existing_run_unless_forced(tmp_path):
    cfg = write_config(tmp_path, SMALL)
    assert cli("solve", cfg, "--out", tmp_path / "run").returncode == 0
    r = cli("solve", cfg, "--out", tmp_path / "run")
    assert r.returncode == 2 and "--force" in r.stderr and "Traceback" not in r.stderr
    assert cli("solve", cfg, "--out", tmp_path / "run", "--force").returncode == 0


@pytest.mark.parametrize("text, words", [
    ("game: {height: -1}\n", "game.height"),
    ("game: [1, 2\n", "malformed YAML"),
    ("game: {}\nlerner: {}\n", "did you mean 'learner'"),
    ("game: {desirability: {file: nope.npy}}\n", "game.desirability.file: file not found"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, text, words):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    r = cli("solve", p, "--out", tmp_path / "run")
    assert r.returncode == 2
    assert words in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_missing_config_file(tmp_path):
    r = cli("solve", tmp_path / "none.yaml", "--out", tmp_path / "run")
    assert r.returncode == 2 and "not found" in r.stderr and "Traceback" not in r.stderr


def test_help_lists_commands():
    r = cli("--help")
    assert r.returncode == 0 and "solve" in r.stdout
