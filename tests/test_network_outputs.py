"""What `crowdsteer solve` writes for a road network (issue 18, section 4): flows.csv with
the link attributes, summary.json with TSTT, SPTT, average excess cost, demand,
vehicle-distance and units (no grid fields), GMNS link/node files and GeoJSON.

References: the net file's own columns (copied through), Sioux Falls' 76 links, 24
nodes and 360,600 trips; SPTT and the average excess cost from their definitions
(``(TSTT_c - SPTT) / D`` must equal ``relative_gap * total_cost / D``); Anaheim's
``<ORIGINAL HEADER>`` names minutes and feet.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from crowdsteer import cli as cli_mod
from crowdsteer.games.tntp import read_net
from tests.test_network import DATA


def solve(tmp_path, name, node=True):
    cfg = tmp_path / "c.yaml"
    files = f"net: {DATA}/{name}_net.tntp, trips: {DATA}/{name}_trips.tntp"
    if node:
        files += f", node: {DATA}/{name}_node.tntp"
    cfg.write_text(f"game: {{name: routing, network: {{{files}}}}}\n"
                   "learner: {name: exact, relative_gap: 1e-6}\n")
    r = CliRunner().invoke(cli_mod.app, ["solve", str(cfg), "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    return tmp_path / "run"


def rows(path):
    return list(csv.DictReader(path.read_text().splitlines()))


def test_flows_summary_gmns_and_geojson(tmp_path):
    out = solve(tmp_path, "SiouxFalls")
    net = read_net(DATA / "SiouxFalls_net.tntp")
    flows = rows(out / "flows.csv")
    assert list(flows[0]) == ["link_id", "from", "to", "capacity", "length", "free_flow_time",
                              "flow", "travel_time", "cost", "voc", "toll"]
    np.testing.assert_allclose([float(r["capacity"]) for r in flows], net.capacity)
    np.testing.assert_allclose([float(r["voc"]) for r in flows],
                               [float(r["flow"]) / float(r["capacity"]) for r in flows])
    s = json.loads((out / "summary.json").read_text())
    assert not {"agents", "T", "S", "A"} & set(s)
    assert s["total_demand"] == pytest.approx(360_600)
    x = np.array([float(r["flow"]) for r in flows])
    assert s["vehicle_distance"] == pytest.approx(x @ net.length)
    assert s["sptt"] == pytest.approx(s["total_cost"] * (1 - s["relative_gap"]))
    assert s["average_excess_cost"] == pytest.approx(
        s["relative_gap"] * s["total_cost"] / 360_600)
    assert s["units"]["time"] == "units of the input"  # Sioux Falls' header names none
    links = rows(out / "gmns" / "link.csv")
    assert len(links) == 76 and links[0]["from_node_id"] == "1" and links[0]["to_node_id"] == "2"
    assert float(links[0]["vdf_alpha"]) == net.b[0] and float(links[0]["volume"]) == x[0]
    nodes = rows(out / "gmns" / "node.csv")
    assert len(nodes) == 24 and nodes[0]["x_coord"] != "" and nodes[0]["zone_id"] == "1"
    geo = json.loads((out / "network.geojson").read_text())
    assert len(geo["features"]) == 76
    assert geo["features"][0]["properties"]["flow"] == pytest.approx(x[0])


def test_units_from_the_header_and_no_geojson_without_coordinates(tmp_path):
    out = solve(tmp_path, "Anaheim", node=False)
    s = json.loads((out / "summary.json").read_text())
    assert (s["units"]["time"], s["units"]["length"]) == ("min", "ft")
    assert s["units"]["vehicle_distance"] == "vehicle x ft"
    assert not (out / "network.geojson").exists()
    assert rows(out / "gmns" / "node.csv")[0]["x_coord"] == ""
    assert (out / "map.png").is_file()
