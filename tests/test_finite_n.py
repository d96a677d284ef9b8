"""The finite-N study: N agents approach the mean field like 1/sqrt(N)."""

import json

from tests.test_cli import cli, write_config


def test_finite_n_distance_shrinks_like_one_over_sqrt_n(tmp_path):
    cfg = write_config(tmp_path, {
        "seed": 0, "game": {"height": 4, "width": 4, "congestion": {"kind": "log"}},
        "learner": {"name": "exact", "temperature": 0.3, "tolerance": 1e-8},
        "finite_n": {"agents": [100, 10000], "seeds": 4}})
    r = cli("solve", cfg, "--out", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    rows = json.loads((tmp_path / "run" / "finite_n.json").read_text())["rows"]
    small, large = rows
    # E[TV] of N multinomial draws scales as 1/sqrt(N): 100x more agents, ~10x closer
    assert 5 < small["policy_tv"] / large["policy_tv"] < 20
    assert large["learner_tv_sample"] < small["learner_tv_sample"]
    assert (tmp_path / "run" / "finite_n.png").exists()
