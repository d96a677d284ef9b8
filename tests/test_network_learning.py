"""Travellers who learn their routes from experienced travel times (``learner: routes``).

Reference: the Wardrop equilibrium itself: the learners' flows must certify a relative
gap <= 1e-3 on Sioux Falls with one simulated traveller per trip (360,600), and approach
the exact equilibrium's total travel time accordingly.
"""

import numpy as np
import pytest

import crowdsteer
from crowdsteer.config import build, load_config
from crowdsteer.errors import ConfigError
from crowdsteer.learners.routes import allocate
from tests.conftest import crowd
from tests.test_network import DATA, network


def test_allocation_is_proportional_and_exact():
    rng = np.random.default_rng(0)
    d = rng.uniform(0, 10, 50)
    n = allocate(d, 1234)
    assert n.sum() == 1234
    assert np.all(np.abs(n - d / d.sum() * 1234) < 1)


def sioux_falls(**learner):
    return {"game": {"name": "routing", "network": {
        "net": str(DATA / "SiouxFalls_net.tntp"), "trips": str(DATA / "SiouxFalls_trips.tntp")}},
        "learner": {"name": "routes", **learner}}


def test_every_trip_a_traveller_reaches_gap_1e_3_on_sioux_falls():
    result = crowdsteer.solve(sioux_falls())
    sol = result.solution
    assert sol.agents == 360_600
    assert sol.converged and sol.relative_gap <= 1e-3
    exact = network("SiouxFalls").solve_equilibrium(relative_gap=1e-10)
    # a gap g bounds the potential's excess; TSTT is within a few g of the equilibrium here
    assert sol.total_travel_time == pytest.approx(exact.total_travel_time, rel=1e-2)
    # the certificate recomputed from the learners' flows
    g = result.game
    c = g.generalised_cost(sol.flow)
    _, sptt, _ = g.graph.all_or_nothing(c)
    assert (c @ sol.flow - sptt) / (c @ sol.flow) == pytest.approx(sol.relative_gap, rel=1e-9)


def test_a_small_population_learns_and_is_reproducible():
    a = crowdsteer.solve({**sioux_falls(agents=5000, relative_gap=1e-2), "seed": 3}).solution
    b = crowdsteer.solve({**sioux_falls(agents=5000, relative_gap=1e-2), "seed": 3}).solution
    assert a.relative_gap <= 1e-2 and a.agents == 5000
    np.testing.assert_array_equal(a.flow, b.flow)
    assert a.flow.sum() > 0


def test_routes_refuse_a_game_without_routes():
    learner = build(load_config({"learner": {"name": "routes"}}, required=()), "learner")
    with pytest.raises(ConfigError, match="routing game"):
        learner.solve(crowd(height=2, width=2))


def test_route_learners_on_pigou_paths_reach_the_equilibrium():
    """Pigou in the ``edges`` form with 10,000 travellers: everyone ends on the x link
    (Wardrop: cost 1). Near this boundary equilibrium the gap is ``(1 - x)^2`` (and the
    switching slows like it), so a gap of 2e-4 leaves at most 1.5% on the constant link."""
    pigou = {"name": "routing", "demand": [{"from": "s", "to": "t", "amount": 1.0}],
             "edges": [{"from": "s", "to": "t", "latency": {"kind": "constant", "a": 1}},
                       {"from": "s", "to": "t", "latency": {"kind": "affine", "a": 0, "b": 1}}]}
    result = crowdsteer.solve({"game": pigou, "learner": {"name": "routes", "agents": 10_000,
                                                           "relative_gap": 2e-4}})
    sol = result.solution
    assert sol.converged and sol.mu[0, 2] >= 0.985
    assert result.welfare == pytest.approx(-1.0, abs=0.015)
    assert sol.exploitability <= 1e-2
