"""Several classes of traveller on a road network (issue 18, section 2).

References:

* Two identical classes, each with the whole trips file, against one class with twice
  the trips (an independent solve): the same link flows.
* A two-class Pigou network (closed form): one unit of cars (distance weight 0, PCE 1)
  and 0.4 of trucks (distance weight 0.4, PCE 2) between 1 and 2, on a constant link
  (time 1, length 1) and a variable link (time ``X``, length 0) where
  ``X = cars + 2 trucks``. Trucks pay 1.4 on the constant link, so all take the variable
  one (0.8 PCE); cars fill it to ``X = 1`` (0.2) and the other 0.8 take the constant link.
* Each class's relative gap, recomputed from the flows with a one-class game carrying only
  that class's demand and costs.
* The hypergradient in per-class tolls against central finite differences.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from crowdsteer.config import build, build_game, load_config
from crowdsteer.games.network import NetworkGame
from crowdsteer.games.tntp import read_trips
from tests.test_cli import cli
from tests.test_network import DATA

PIGOU_NET = ("<NUMBER OF ZONES> 2\n<NUMBER OF NODES> 3\n<FIRST THRU NODE> 1\n"
             "<NUMBER OF LINKS> 3\n<END OF METADATA>\n"
             "1 2 1 1 1 0 1 0 0 1 ;\n1 3 1 0 0 0 1 0 0 1 ;\n3 2 1 0 1e-9 1e9 1 0 0 1 ;\n")


def trips_text(demand: dict) -> str:
    blocks = "".join(f"Origin {o}\n" + "".join(f"  {d} : {a};" for d, a in ds.items()) + "\n"
                     for o, ds in demand.items())
    return f"<NUMBER OF ZONES> 2\n<END OF METADATA>\n{blocks}"


def pigou2(tmp_path, modifier=None):
    (tmp_path / "net.tntp").write_text(PIGOU_NET)
    (tmp_path / "cars.tntp").write_text(trips_text({1: {2: 1.0}}))
    (tmp_path / "trucks.tntp").write_text(trips_text({1: {2: 0.4}}))
    cfg = {"seed": 0, "game": {"name": "routing", "network": {"net": "net.tntp", "classes": [
        {"name": "cars", "trips": "cars.tntp"},
        {"name": "trucks", "trips": "trucks.tntp", "distance_weight": 0.4, "pce": 2}]}},
        "learner": {"name": "exact", "relative_gap": 1e-12}}
    if modifier:
        cfg["modifier"] = modifier
    return load_config(cfg, base_dir=tmp_path)


def test_two_class_pigou_has_its_closed_form(tmp_path):
    game = build_game(pigou2(tmp_path))
    sol = game.solve_equilibrium(relative_gap=1e-12)
    x = game.per_class(sol.flow)
    np.testing.assert_allclose(x[0], [0.8, 0.2, 0.2], atol=1e-6)  # cars
    np.testing.assert_allclose(x[1], [0.0, 0.4, 0.4], atol=1e-6)  # trucks
    np.testing.assert_allclose(game.total_flow(sol.flow), [0.8, 1.0, 1.0], atol=1e-6)
    assert sol.total_travel_time == pytest.approx(1.4, abs=1e-6)  # every vehicle: time 1


def test_two_identical_classes_give_the_single_class_flows(tmp_path):
    trips = read_trips(DATA / "SiouxFalls_trips.tntp", 24)
    lines = "".join(f"Origin {o + 1}\n" + "".join(
        f"  {d + 1} : {float(2 * a)!r};" for d, a in enumerate(row) if a > 0) + "\n"
        for o, row in enumerate(trips.demand))
    (tmp_path / "double.tntp").write_text(f"<NUMBER OF ZONES> 24\n<END OF METADATA>\n{lines}")
    net = str(DATA / "SiouxFalls_net.tntp")
    one = build_game(load_config({"game": {"name": "routing", "network": {
        "net": net, "trips": str(tmp_path / "double.tntp")}}}))
    two = build_game(load_config({"game": {"name": "routing", "network": {"net": net, "classes": [
        {"name": "a", "trips": str(DATA / "SiouxFalls_trips.tntp")},
        {"name": "b", "trips": str(DATA / "SiouxFalls_trips.tntp")}]}}}))
    x1 = one.solve_equilibrium(relative_gap=1e-10).flow
    sol = two.solve_equilibrium(relative_gap=1e-10)
    np.testing.assert_allclose(two.total_flow(sol.flow), x1, rtol=1e-5, atol=1e-3)
    assert sol.total_travel_time == pytest.approx(one.total_travel_time(x1), rel=1e-8)


def test_each_class_is_certified_by_its_own_relative_gap(tmp_path):
    game = build_game(pigou2(tmp_path))
    sol = game.solve_equilibrium(relative_gap=1e-10)
    gaps = game.class_gaps(sol.flow)
    X = game.total_flow(sol.flow)
    for k in range(2):  # a one-class game with only class k's demand, at the shared X
        alone = NetworkGame(game.net, game.classes.demands[k], 0.0,
                            float(game.classes.distance_weight[k]))
        c = alone.generalised_cost(X) * 0 + game.net.travel_time(X) + alone.fixed_cost
        xk = game.per_class(sol.flow)[k]
        _, sptt, _ = alone.graph.all_or_nothing(c)
        assert gaps[k] == pytest.approx((c @ xk - sptt) / (c @ xk), abs=1e-12)
        assert 0 <= gaps[k] <= 1e-9


def test_the_solve_command_writes_flows_per_class_and_the_gaps(tmp_path):
    pigou2(tmp_path)
    (tmp_path / "c.yaml").write_text(
        "game: {name: routing, network: {net: net.tntp, classes: [{name: cars, trips: "
        "cars.tntp}, {name: trucks, trips: trucks.tntp, distance_weight: 0.4, pce: 2}]}}\n"
        "learner: {name: exact, relative_gap: 1e-10}\n")
    r = cli("solve", tmp_path / "c.yaml", "--out", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader((tmp_path / "run" / "flows.csv").read_text().splitlines()))
    assert [round(float(x["flow_trucks"]), 6) for x in rows] == [0.0, 0.4, 0.4]
    assert [round(float(x["flow"]), 6) for x in rows] == [0.8, 1.0, 1.0]  # PCE-weighted
    assert float(rows[0]["cost_trucks"]) == pytest.approx(1.4)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(summary["classes"]) == {"cars", "trucks"}
    assert all(c["relative_gap"] <= 1e-10 for c in summary["classes"].values())


def test_classes_can_be_tolled_differently_and_the_gradient_is_right(tmp_path):
    """Per-class tolls on the variable link: ``w = (cars, trucks)``; the hypergradient of
    the total travel time against central differences."""
    cfg = pigou2(tmp_path, {"name": "tolls", "links": [[3, 2]], "per_class": True,
                            "bounds": [0, 1]})
    game = build_game(cfg)
    m = build(cfg, "modifier", game=game)
    assert m.n_params == 2
    np.testing.assert_allclose(m.theta(np.array([0.1, 0.3])), [0, 0, 0.1, 0, 0, 0.3])

    def tstt(w):
        return game.solve_equilibrium(m.theta(w), relative_gap=1e-13)

    w = np.array([0.05, 0.02])
    sol = tstt(w)
    # dJ/dmu of J = -TSTT = mu . reward(mu): reward + reward_vjp(mu)
    mu = sol.flow / game.D
    g_mu = game.reward(0, mu) + game.reward_vjp(0, mu, mu)
    g_theta, residual = game.equilibrium_vjp(sol, m.theta(w), g_mu)
    grad = m.theta_vjp(w, g_theta)
    h = 1e-5
    fd = [(-tstt(w + h * e).total_travel_time + tstt(w - h * e).total_travel_time) / (2 * h)
          for e in np.eye(2)]
    np.testing.assert_allclose(grad, fd, rtol=1e-4, atol=1e-7)
    assert np.abs(fd).max() > 1e-3  # the tolls do move the flows


def test_unknown_class_and_classes_on_one_class_networks_are_refused(tmp_path):
    from crowdsteer.errors import ConfigError

    cfg = pigou2(tmp_path, {"name": "tolls", "classes": ["bikes"]})
    with pytest.raises(ConfigError, match="modifier.classes: unknown class 'bikes'"):
        build(cfg, "modifier", game=build_game(cfg))
    one = load_config({"game": {"name": "routing", "network": {
        "net": "net.tntp", "trips": "cars.tntp"}}, "modifier": {"name": "tolls",
                                                             "per_class": True}},
                      base_dir=tmp_path)
    with pytest.raises(ConfigError, match="modifier.per_class: this network has one class"):
        build(one, "modifier", game=build_game(one))


def test_vehicle_distance_counts_vehicles_not_pce(tmp_path):
    """One link of length 2 carrying 1 car and 0.4 trucks of PCE 2.5: 1.4 vehicles drive
    2.8 vehicle x length (the PCE-weighted flow, 2.0, would give 4.0)."""
    (tmp_path / "net.tntp").write_text(
        "<NUMBER OF ZONES> 2\n<NUMBER OF NODES> 2\n<FIRST THRU NODE> 1\n"
        "<NUMBER OF LINKS> 1\n<END OF METADATA>\n1 2 1 2 1 0.15 4 0 0 1 ;\n")
    (tmp_path / "cars.tntp").write_text(trips_text({1: {2: 1.0}}))
    (tmp_path / "trucks.tntp").write_text(trips_text({1: {2: 0.4}}))
    (tmp_path / "c.yaml").write_text(
        "game: {name: routing, network: {net: net.tntp, classes: [{name: cars, trips: "
        "cars.tntp}, {name: trucks, trips: trucks.tntp, pce: 2.5}]}}\n")
    r = cli("solve", tmp_path / "c.yaml", "--out", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["vehicle_distance"] == pytest.approx(2.8)
    # the costs (and the excess cost) of several classes are scaled by their PCE: said so
    assert "PCE" in summary["units"]["average_excess_cost"]
    assert "PCE" in summary["units"]["cost"] and "PCE" not in summary["units"]["vehicle_distance"]
