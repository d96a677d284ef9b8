"""The bush-based (Algorithm B) Wardrop engine, :mod:`crowdsteer.learners.bush`.

References:

* Pigou (1920) and Braess (1968) as TNTP files (``tests/test_network.py``): closed-form
  user equilibria; Pigou's system optimum splits the traveller in halves.
* Two parallel links with BPR power 1/2, ``t_1 = 1 + sqrt(x_1)``, ``t_2 = 2 + sqrt(x_2)``,
  5 trips: equal costs give ``sqrt(x_1) = 1 + sqrt(x_2)``, so ``x = (4, 1)``.
* Sioux Falls: the TNTP best-known flows (``examples/data/tntp/SiouxFalls_flow.tntp``,
  relative gap below 1e-14) and, under tolls, the path-based gradient projection engine.
* The certificate: recomputed here with SciPy's Dijkstra on the plain link graph and the
  generalised cost written out from the BPR formula, not with the engine's code.
"""

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from crowdsteer.config import build_game, load_config
from crowdsteer.errors import ConfigError
from crowdsteer.games.tntp import read_flow
from crowdsteer.learners.exact import ExactConfig, ExactSolver
from crowdsteer.learners.wardrop import bush_based, gradient_projection
from tests.test_network import DATA, braess, network, pigou, small


def independent_gap(game, x, toll):
    """``(c.x - SPTT) / c.x`` from the BPR formula and SciPy's Dijkstra (no twin nodes:
    every zone here is a through node), summed over the pairs with trips only."""
    n = game.net
    c = (n.free_flow_time * (1 + n.b * (x / n.capacity) ** n.power)
         + game.toll_weight * n.toll + game.distance_weight * n.length + toll)
    G = csr_matrix((c, (n.tail, n.head)), shape=(n.nodes, n.nodes))
    dist = dijkstra(G, indices=np.arange(n.zones))[:, :n.zones]
    has = game.demand > 0
    sptt = float(np.sum(game.demand[has] * dist[has]))
    return (c @ x - sptt) / (c @ x)


def test_pigou_and_braess_closed_forms(tmp_path):
    sol = bush_based(pigou(tmp_path), relative_gap=1e-10)
    np.testing.assert_allclose(sol.flow, [0, 1, 1], atol=1e-6)
    so = bush_based(pigou(tmp_path), relative_gap=1e-10, system_optimum=True)
    np.testing.assert_allclose(so.flow, [0.5, 0.5, 0.5], atol=1e-6)
    sol = bush_based(braess(tmp_path), relative_gap=1e-10)
    np.testing.assert_allclose(sol.flow, [1, 0, 0, 1, 1], atol=1e-6)
    assert sol.total_travel_time == pytest.approx(2.0, rel=1e-6)


def test_bpr_power_below_one_solves(tmp_path):
    """AequilibraE refuses powers below 1 (their derivative is infinite at no flow)."""
    g = small(tmp_path, [(1, 2, 1, 1, 1, 0.5), (1, 2, 1, 2, 0.5, 0.5)], 2, 2, {1: {2: 5.0}})
    sol = bush_based(g, relative_gap=1e-10)
    assert sol.converged
    np.testing.assert_allclose(sol.flow, [4, 1], atol=1e-6)


def test_sioux_falls_to_1e_10_matches_the_best_known_flows():
    g = network("SiouxFalls")
    sol = g.solve_equilibrium(relative_gap=1e-10)  # auto: the bush engine
    assert sol.relative_gap <= 1e-10
    v, _ = read_flow(DATA / "SiouxFalls_flow.tntp", g.net)
    assert np.abs(sol.flow - v).sum() / v.sum() <= 1e-6
    assert sol.total_travel_time == pytest.approx(g.total_travel_time(v), rel=1e-8)


def test_agrees_with_gradient_projection_and_its_gap_is_independent_under_tolls():
    g = network("SiouxFalls", distance_weight=0.3)
    toll = np.random.default_rng(3).uniform(0, 2, g.E)
    a = bush_based(g, toll, relative_gap=1e-10)
    b = gradient_projection(g, toll, relative_gap=1e-10)
    assert np.abs(a.flow - b.flow).sum() / b.flow.sum() <= 1e-6
    assert independent_gap(g, a.flow, toll) == pytest.approx(a.relative_gap, abs=1e-12)
    # and at a loose gap, where the two differ most
    c = bush_based(g, toll, relative_gap=1e-3)
    assert independent_gap(g, c.flow, toll) == pytest.approx(c.relative_gap, rel=1e-9)


def test_unreachable_pairs_without_trips_cost_nothing(tmp_path):
    """One-way links 1 -> 2 -> 3, nothing enters zone 1 and nothing leaves zone 3: the
    pairs 2 -> 1, 3 -> 1, 3 -> 2 have no path and no trips (0 * inf must not be NaN)."""
    links = [(1, 2, 1, 1, 1, 1), (2, 3, 1, 1, 1, 1)]
    g = small(tmp_path, links, 3, 3, {1: {2: 1.0, 3: 2.0}, 2: {3: 1.0}})
    sol = bush_based(g, relative_gap=1e-8)
    assert np.isfinite(sol.relative_gap) and sol.converged
    np.testing.assert_allclose(sol.flow, [3, 3])  # a single route per pair
    assert independent_gap(g, sol.flow, np.zeros(2)) == pytest.approx(0, abs=1e-12)


def test_zones_that_are_not_through_nodes_are_not_crossed(tmp_path):
    """The cheap route 1 -> 2 -> 3 crosses zone 2, which ``<FIRST THRU NODE> 3`` forbids:
    the trips 1 -> 3 take the bypass through node 4 (cost 10 against 2)."""
    links = [(1, 2, 1, 1, 0, 1), (2, 3, 1, 1, 0, 1), (1, 4, 1, 5, 0, 1), (4, 3, 1, 5, 0, 1)]
    g = small(tmp_path, links, 3, 4, {1: {3: 1.0}}, first_thru=4)
    np.testing.assert_allclose(bush_based(g, relative_gap=1e-10).flow, [0, 0, 1, 1])


def test_learner_method_names_the_engine(tmp_path):
    g = pigou(tmp_path)
    for method in ("bush", "bfw", "gradient_projection"):
        sol = ExactSolver(ExactConfig(method=method, relative_gap=1e-9)).solve(g)
        assert sol.relative_gap <= 1e-9 and (sol.paths is not None) == (method != "bfw")
    with pytest.raises(ConfigError, match="does not run on road networks"):
        ExactSolver(ExactConfig(method="omd")).solve(g)
    grid = build_game(load_config({"game": {"name": "crowd", "width": 3, "height": 3, "horizon": 3}}))
    with pytest.raises(ConfigError, match="solves road networks"):
        ExactSolver(ExactConfig(method="bush")).solve(grid)


def test_two_solves_give_the_same_flows():
    """Reproducible to the last bit (a run's seed must fix its results)."""
    g = network("Anaheim")
    a, b = (bush_based(g, relative_gap=1e-8) for _ in range(2))
    np.testing.assert_array_equal(a.flow, b.flow)


def test_tight_solves_come_with_paths_that_carry_the_flows_on_shortest_routes():
    """At the gap a sensitivity analysis needs, the bushes are decomposed into paths: per
    pair they carry the trips, together the link flows, and each costs at most its pair's
    shortest distance (SciPy's Dijkstra on the plain graph) plus the gap's share; looser
    solves keep none (Berlin-Center's would take gigabytes)."""
    g = network("SiouxFalls", distance_weight=0.3)
    toll = np.random.default_rng(5).uniform(0, 2, g.E)
    sol = bush_based(g, toll, relative_gap=1e-10)
    paths = sol.paths
    Z = g.demand.shape[1]
    rows, dest = np.divmod(paths.od, Z)
    per_pair = np.bincount(paths.od, weights=paths.flow, minlength=g.graph.od.size)
    np.testing.assert_allclose(per_pair.reshape(g.graph.od.shape), g.graph.od, atol=1e-9)
    np.testing.assert_allclose(paths.link_flow(), sol.flow, rtol=1e-9, atol=1e-9)
    n = g.net
    c = (n.free_flow_time * (1 + n.b * (sol.flow / n.capacity) ** n.power)
         + g.toll_weight * n.toll + g.distance_weight * n.length + toll)
    dist = dijkstra(csr_matrix((c, (n.tail, n.head)), shape=(n.nodes, n.nodes)),
                    indices=g.graph.origins)
    excess = paths.delta @ c - dist[rows, dest]
    assert excess.min() >= -1e-9 and excess.max() <= 1e-6 * dist[rows, dest].max()
    assert bush_based(g, toll, relative_gap=1e-6).paths is None
