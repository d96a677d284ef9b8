"""The system optimum and first-best tolls on road networks (issue 18, section 3).

References (closed forms):

* Pigou (1920): one unit of demand, a link of time 1 and a link of time ``x``. The
  equilibrium puts everyone on the ``x`` link (TSTT 1); the system optimum splits the
  demand in halves (TSTT 3/4), supported by the marginal-cost toll ``x t'(x) = 1/2`` on
  the ``x`` link.
* Braess (1968): s -> v -> t and s -> w -> t, each an ``x`` link and a link of time 1, and
  v -> w free; one unit of demand. Equilibrium: everyone zigzags, TSTT 2; system optimum:
  halves on the two outer routes, TSTT 3/2.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml

from crowdsteer.config import build_game, load_config
from crowdsteer.metaagent.evaluation import setup
from crowdsteer.metaagent.gradient import start_hint
from tests.test_cli import cli
from tests.test_network import DATA, write_net, write_trips

PIGOU = [(1, 2, 1, 1, 0, 1), (1, 3, 1, 0, 0, 1), (3, 2, 1, 1e-9, 1e9, 1)]
BRAESS = [(1, 3, 1, 1e-9, 1e9, 1), (3, 2, 1, 1, 0, 1), (1, 4, 1, 1, 0, 1),
          (4, 2, 1, 1e-9, 1e9, 1), (3, 4, 1, 0, 0, 1)]


def files(tmp_path, links, nodes):
    write_net(tmp_path / "t_net.tntp", links, 2, nodes)
    write_trips(tmp_path / "t_trips.tntp", 2, {1: {2: 1.0}})
    return "{net: t_net.tntp, trips: t_trips.tntp}"


def test_solve_writes_the_system_optimum_and_its_first_best_tolls(tmp_path):
    cfg = tmp_path / "so.yaml"
    cfg.write_text(f"game: {{name: routing, network: {files(tmp_path, PIGOU, 3)}}}\n"
                   "learner: {name: exact, relative_gap: 1e-10, solve_for: system_optimum}\n")
    r = cli("solve", cfg, "--out", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["solved_for"] == "system_optimum"
    assert summary["total_travel_time"] == pytest.approx(0.75, abs=1e-6)
    rows = list(csv.DictReader((tmp_path / "run" / "flows.csv").read_text().splitlines()))
    np.testing.assert_allclose([float(x["flow"]) for x in rows], [0.5, 0.5, 0.5], atol=1e-5)
    np.testing.assert_allclose(float(rows[2]["toll"]), 0.5, atol=1e-5)  # x t'(x) = 1/2
    assert "T" not in summary and "agents" not in summary  # no grid fields


def test_system_optimum_is_refused_off_networks_and_with_tolls(tmp_path):
    from crowdsteer.errors import ConfigError
    from crowdsteer.learners.exact import ExactConfig, ExactSolver

    so = ExactSolver(ExactConfig(solve_for="system_optimum"))
    game = build_game(load_config({"game": {"name": "crowd", "height": 3, "width": 3}}))
    with pytest.raises(ConfigError, match="learner.solve_for: system_optimum applies to road"):
        so.solve(game)
    net = build_game(load_config({"game": {"name": "routing", "network": yaml.safe_load(
        files(tmp_path, PIGOU, 3))}}, base_dir=tmp_path))
    with pytest.raises(ConfigError, match="the system optimum takes no tolls"):
        so.solve(net, np.ones(3))


def test_first_best_tolls_make_the_equilibrium_the_system_optimum():
    """On Sioux Falls (no closed form): the equilibrium under the first-best tolls has the
    system optimum's TSTT, solved independently as the marginal-social-cost equilibrium."""
    game = build_game(load_config({"game": {"name": "routing", "network": {
        "net": str(DATA / "SiouxFalls_net.tntp"), "trips": str(DATA / "SiouxFalls_trips.tntp")}}}))
    so = game.system_optimum(1e-10)
    tolled = game.solve_equilibrium(game.first_best_tolls(1e-10), relative_gap=1e-10)
    assert so.total_travel_time == pytest.approx(7.1942e6, rel=1e-4)  # BENCHMARKS, issue 18
    assert tolled.total_travel_time == pytest.approx(so.total_travel_time, rel=1e-8)


def run_braess(tmp_path, links_line="", bounds="[0, 5]"):
    cfg = tmp_path / "braess.yaml"
    cfg.write_text(f"seed: 0\ngame: {{name: routing, network: {files(tmp_path, BRAESS, 4)}}}\n"
                   "learner: {name: exact}\n"
                   f"modifier: {{name: tolls, bounds: {bounds}{links_line}}}\n"
                   "objective: {name: welfare}\noptimiser: {name: gradient, evaluations: 6}\n")
    return cfg


def test_a_routing_run_reports_the_share_of_the_gap_closed(tmp_path):
    cfg = run_braess(tmp_path)
    r = cli("run", cfg, "--out", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    nw = result["network"]
    assert nw["tstt_baseline"] == pytest.approx(2.0, abs=1e-6)
    assert nw["tstt_system_optimum"] == pytest.approx(1.5, abs=1e-6)
    assert nw["gap_closed"] == pytest.approx((2.0 - nw["tstt_best"]) / 0.5)
    assert nw["gap_closed"] >= 0.99
    assert "of the UE-to-SO gap closed" in r.stdout
    for name in ("flows_baseline.csv", "flows_best.csv"):
        rows = list(csv.DictReader((tmp_path / "run" / name).read_text().splitlines()))
        assert len(rows) == 5
    html = (tmp_path / "run" / "report.html").read_text()
    assert "share of the UE-to-SO gap closed" in html and "Where the agents go" not in html


def test_the_descent_starts_from_the_first_best_tolls_clipped_to_the_modifier(tmp_path):
    """The hint is the marginal-cost tolls at the SO, on the modifier's links only and
    clipped to its bounds; evaluated second, after the baseline."""
    cfg = run_braess(tmp_path, ", links: [[1, 3], [4, 2]]", "[0, 0.3]")
    s = setup(load_config(cfg))
    so = s.game.system_optimum()
    mc = so.flow * s.game.travel_time_derivative(so.flow)
    np.testing.assert_allclose(mc[[0, 3]], [0.5, 0.5], atol=1e-5)  # x t'(x) at x = 1/2
    np.testing.assert_allclose(start_hint(s, 0.0, 0.3), [0.3, 0.3])
    maxmin = load_config({**yaml.safe_load(cfg.read_text()),
                           "objective": {"name": "maxmin"}}, base_dir=tmp_path)
    assert start_hint(setup(maxmin), 0.0, 0.3) is None  # a hint for TSTT only


@pytest.mark.slow
def test_every_link_of_sioux_falls_tolled_closes_99_percent_in_60_evaluations(tmp_path):
    """Issue 18's must-reach, with the default optimiser (auto: gradient)."""
    cfg = tmp_path / "sf.yaml"
    cfg.write_text(f"seed: 0\ngame: {{name: routing, network: {{net: {DATA}/SiouxFalls_net.tntp, "
                   f"trips: {DATA}/SiouxFalls_trips.tntp}}}}\nlearner: {{name: exact}}\n"
                   "modifier: {name: tolls, bounds: [0, 100]}\nobjective: {name: welfare}\n"
                   "optimiser: {evaluations: 60}\n")
    r = cli("run", cfg, "--out", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "run" / "result.json").read_text())["network"][
        "gap_closed"] >= 0.99


def test_a_network_run_where_nothing_converged_names_the_network_fields(tmp_path):
    """On a road network the solve stops at ``learner.relative_gap`` (1e-10 under the
    gradient optimiser), not at ``tolerance``, and has no agents: the one line says which
    fields to change. Pigou with ``max_iterations: 1``: the all-or-nothing start is not
    an equilibrium (the flow splits), so no evaluation converges."""
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"seed: 0\ngame: {{name: routing, network: {files(tmp_path, PIGOU, 3)}}}\n"
                   "learner: {name: exact, max_iterations: 1}\n"
                   "modifier: {name: tolls, bounds: [0, 1]}\nobjective: {name: welfare}\n"
                   "optimiser: {evaluations: 2}\n")
    r = cli("run", cfg, "--out", tmp_path / "run")
    assert r.returncode == 3, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert "max_iterations = 1" in line and "relative gap 1e-10" in line
    assert "tolerance" not in line and "agents" not in line
