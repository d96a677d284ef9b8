"""Every Wardrop engine, checked from outside: its reported relative gap against one
recomputed from scratch, with tolls and at the system optimum; the engines against each
other; networks where some zone cannot reach another.

References:

* The relative gap ``(c.x - SPTT) / c.x`` (Boyce, Ralevic-Dekic & Bar-Gera 2004) is
  recomputed here independently of the engines: ``c`` from the BPR formula written out
  below (plus ``x t'(x)`` at the system optimum, whose equilibrium it is: Beckmann,
  McGuire & Winsten 1956), SPTT from SciPy's Dijkstra on a graph built here from the
  net file's columns.
* The BPR derivatives: central differences of the function one order below.

The engines are found, not listed: every public function of a ``crowdsteer.learners``
module with the engine signature ``(game, toll, relative_gap, max_iterations, progress,
system_optimum)``, so a new engine is checked as soon as it exists.
"""

from pathlib import Path

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from crowdsteer.games.tntp import read_trips
from crowdsteer.learners.wardrop import bfw, gradient_projection
from tests.test_network import network, small, write_trips

def engines():
    """``{name: function}``: every engine road networks can be solved with (the registry
    ``wardrop.METHODS`` that ``learner.method`` names), so a new one is tested here too."""
    from crowdsteer.learners.wardrop import METHODS

    return dict(METHODS)


ENGINES = engines()


def test_the_known_engines_are_found():
    assert ENGINES["bfw"] is bfw and ENGINES["gradient_projection"] is gradient_projection


# --- the gap recomputed from scratch ----------------------------------------------------------

def bpr(game, x):
    """``(t, t')`` by the formula ``t = fft (1 + b (x / cap)^p)``."""
    n = game.net
    t = n.free_flow_time * (1 + n.b * (x / n.capacity) ** n.power)
    dt = n.free_flow_time * n.b * n.power * x ** (n.power - 1) / n.capacity ** n.power
    return t, dt


def recomputed_gap(game, x, toll, system_optimum):
    """``(c.x - SPTT) / c.x`` at flows ``x``, with nothing of the engines' code."""
    n = game.net
    t, dt = bpr(game, x)
    c = t + game.toll_weight * n.toll + game.distance_weight * n.length
    if toll is not None:
        c = c + toll
    if system_optimum:
        c = c + x * dt
    assert game.net.first_thru_node <= 1  # every node passable: a plain shortest path
    G = csr_matrix((c, (n.tail, n.head)), shape=(n.nodes, n.nodes))
    dist = dijkstra(G, directed=True)[:n.zones, :n.zones]
    pairs = game.demand > 0
    sptt = game.demand[pairs] @ dist[pairs]
    return (c @ x - sptt) / (c @ x)


BUDGET = 20_000
"""Iterations any engine may take to a gap of 1e-6, a tenth of them to 1e-4 (measured:
bi-conjugate Frank-Wolfe 3,074 and 169 at the system optimum; gradient projection 55)."""


def sioux_falls_tolls(game):
    rng = np.random.default_rng(0)
    toll = np.zeros(game.E)
    toll[rng.choice(game.E, 12, replace=False)] = rng.uniform(1.0, 5.0, 12)
    return toll


@pytest.fixture(scope="module")
def sioux_falls():
    return network("SiouxFalls")


@pytest.mark.parametrize("system_optimum", [False, True], ids=["equilibrium", "optimum"])
@pytest.mark.parametrize("tolled", [False, True], ids=["untolled", "tolled"])
@pytest.mark.parametrize("name", sorted(ENGINES))
def test_the_reported_gap_is_the_gap_of_the_returned_flows(sioux_falls, name, tolled,
                                                           system_optimum):
    """A gap priced in travel time alone (not the generalised cost, tolls included, or not
    the marginal cost at the optimum) reports Sioux Falls "converged" far from it."""
    g = sioux_falls
    toll = sioux_falls_tolls(g) if tolled else None
    sol = ENGINES[name](g, toll, relative_gap=1e-4, max_iterations=BUDGET // 10,
                        system_optimum=system_optimum)
    gap = recomputed_gap(g, sol.flow, toll, system_optimum)
    assert sol.converged and gap <= 1e-4
    assert sol.relative_gap == pytest.approx(gap, rel=1e-6, abs=1e-12)
    # the total it is relative to, also from scratch
    t, dt = bpr(g, sol.flow)
    c = t + (0 if toll is None else toll) + (sol.flow * dt if system_optimum else 0)
    assert sol.total_cost == pytest.approx(c @ sol.flow, rel=1e-12)
    assert sol.total_travel_time == pytest.approx(t @ sol.flow, rel=1e-12)


@pytest.mark.parametrize("tolled, system_optimum", [
    (False, False), (True, False), (False, True),
    pytest.param(True, True, marks=pytest.mark.slow)],
    ids=["untolled-equilibrium", "tolled-equilibrium", "untolled-optimum", "tolled-optimum"])
def test_the_engines_agree_on_the_total_cost(sioux_falls, tolled, system_optimum):
    """At a relative gap of 1e-6 the totals of two engines differ by less than 1e-4
    (measured: 2e-5 and below). The system optimum's TSTT is below the equilibrium's."""
    g = sioux_falls
    toll = sioux_falls_tolls(g) if tolled else None
    sols = {name: f(g, toll, relative_gap=1e-6, max_iterations=BUDGET,
                    system_optimum=system_optimum) for name, f in ENGINES.items()}
    ref = sols["gradient_projection"]
    for name, sol in sols.items():
        assert sol.converged, name
        assert sol.total_cost == pytest.approx(ref.total_cost, rel=1e-4), name
        assert sol.total_travel_time == pytest.approx(ref.total_travel_time, rel=1e-4), name
    if system_optimum:  # the optimum of the same tolled network, by another engine
        ue = gradient_projection(g, toll, relative_gap=1e-8)
        assert ref.total_travel_time < ue.total_travel_time * 0.99


def test_bpr_second_derivative_is_the_slope_of_the_first(sioux_falls):
    """Central differences of ``t'`` (the system optimum's marginal cost uses ``t''``);
    powers other than 4 too, since a wrong exponent hides at one power."""
    g = sioux_falls
    rng = np.random.default_rng(1)
    x = g.net.capacity * rng.uniform(0.2, 2.0, g.E)
    h = 1e-6 * x
    d1 = g.travel_time_derivative
    t = g.travel_time
    np.testing.assert_allclose(d1(x), (t(x + h) - t(x - h)) / (2 * h), rtol=1e-6)
    np.testing.assert_allclose(d1(x, order=2), (d1(x + h) - d1(x - h)) / (2 * h), rtol=1e-6)
    for power in (1.0, 2.5, 6.0):
        links = [(1, 2, 3.0, 2.0, 0.5, power)]
        game = small_game(links)
        y = np.array([4.0])
        hy = 1e-5
        fd = (game.travel_time_derivative(y + hy) - game.travel_time_derivative(y - hy)) / (2 * hy)
        expected = 2.0 * 0.5 * power * (power - 1) * 4.0 ** (power - 2) / 3.0 ** power
        assert game.travel_time_derivative(y, order=2)[0] == pytest.approx(expected, rel=1e-12)
        assert fd[0] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("system_optimum", [False, True], ids=["equilibrium", "optimum"])
def test_the_engines_cost_slope_is_the_derivative_of_the_cost(sioux_falls, system_optimum):
    """The slope the line searches and Newton steps use is d c / d x (central differences):
    at the system optimum ``c = t + x t'`` has slope ``2 t' + x t''``. A slope without
    ``x t''`` still converges, only slower, so no answer shows it."""
    from crowdsteer.learners.wardrop import _costs

    g = sioux_falls
    x = g.net.capacity * np.random.default_rng(2).uniform(0.2, 2.0, g.E)
    toll = sioux_falls_tolls(g)
    h = 1e-6 * x
    _, dc = _costs(g, x, toll, system_optimum)
    up, down = _costs(g, x + h, toll, system_optimum)[0], _costs(g, x - h, toll, system_optimum)[0]
    np.testing.assert_allclose(dc, (up - down) / (2 * h), rtol=1e-6)


def small_game(links):
    from crowdsteer.games.network import NetworkGame
    from crowdsteer.games.tntp import TntpNetwork

    a = np.array(links, dtype=float)
    n = TntpNetwork(path=Path("x"), zones=2, nodes=2, first_thru_node=1,
                    tail=a[:, 0].astype(int) - 1, head=a[:, 1].astype(int) - 1,
                    capacity=a[:, 2], length=np.ones(len(a)), free_flow_time=a[:, 3],
                    b=a[:, 4], power=a[:, 5], speed=np.zeros(len(a)), toll=np.zeros(len(a)),
                    link_type=np.ones(len(a), int))
    return NetworkGame(n, np.array([[0.0, 1.0], [0.0, 0.0]]))


# --- zones that cannot reach each other -------------------------------------------------------

def test_an_origin_no_link_enters(tmp_path):
    """Zone 3 only sends trips (no link enters it): the pairs (1, 3) and (2, 3) have no
    demand and no path. Two routes 3 -> 1 (t = 1 + x and 2): at equilibrium 1 + x = 2 with
    x + y = 3, so x = 1, y = 2, everyone pays 2 (TSTT 6); 1 -> 2: one link, t = 1 + x."""
    links = [(3, 1, 1, 1, 1, 1), (3, 2, 1, 1, 0, 1), (2, 1, 1, 1, 0, 1), (1, 2, 1, 1, 1, 1)]
    g = small(tmp_path, links, 3, 3, {3: {1: 3.0}, 1: {2: 1.0}})
    for name, engine in ENGINES.items():
        sol = engine(g, relative_gap=1e-10)
        assert sol.converged, name
        np.testing.assert_allclose(sol.flow, [1, 2, 2, 1], atol=1e-6)
        assert sol.total_travel_time == pytest.approx(3 * 2 + 1 * 2, abs=1e-6)


def test_one_way_links(tmp_path):
    """One-way links 1 -> 2 -> 3 (t = 1 + x each): zone 1 is unreachable from origin 2
    (a pair with no demand). Flows 1 and 1 + 2 = 3, TSTT 1 * 2 + 3 * 4 = 14."""
    links = [(1, 2, 1, 1, 1, 1), (2, 3, 1, 1, 1, 1)]
    g = small(tmp_path, links, 3, 3, {1: {3: 1.0}, 2: {3: 2.0}})
    for name, engine in ENGINES.items():
        sol = engine(g, relative_gap=1e-10)
        assert sol.converged, name
        np.testing.assert_allclose(sol.flow, [1, 3], atol=1e-9)
        assert sol.total_travel_time == pytest.approx(1 * 2 + 3 * 4, abs=1e-9)


# --- the trips file ---------------------------------------------------------------------------

def test_repeated_trips_entries_are_summed(tmp_path):
    """The same destination twice in a block, and a second block for the same origin: the
    trips add up (as when an origin's entries are split over several lines)."""
    path = write_trips(tmp_path / "t_trips.tntp", 3, {1: {2: 1.5, 3: 2.0}})
    text = path.read_text() + "Origin 1\n  2 : 4.0;  3 : 0.5;\nOrigin 2\n  1 : 1;  1 : 2;\n"
    path.write_text(text)
    demand = read_trips(path, 3).demand
    np.testing.assert_array_equal(demand, [[0, 5.5, 2.5], [3, 0, 0], [0, 0, 0]])
