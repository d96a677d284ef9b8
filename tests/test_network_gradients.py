"""Hypergradients through the Wardrop equilibrium of a road network.

References:

* Pigou as a network with a toll ``theta`` on the ``x`` link: the equilibrium puts
  ``1 - theta`` on it (``x + theta = 1``), so ``TSTT = theta + (1 - theta)^2`` and
  ``dJ/dtheta = -dTSTT/dtheta = 1 - 2 theta`` (closed form), for ``0 < theta < 1``.
* Braess as a network, a toll on the shortcut ``v -> w``: central finite differences of
  the full solve.
* Sioux Falls: central finite differences of the full solve (relative gap 1e-12) on a
  few links, relative error <= 1e-4.
"""

import numpy as np
import pytest

from crowdsteer.equilibrium import welfare
from tests.test_network import braess, network, pigou
from tests.test_network_tolls import tolls


def welfare_gradient(game, sol):
    """``dJ/dmu`` for ``J = welfare = mu . reward(mu)``, through ``reward_vjp``."""
    mu = sol.mu[0]
    return (game.reward(0, mu) + game.reward_vjp(0, mu, mu))[None]


def test_reward_vjp_matches_central_differences():
    g = network("SiouxFalls")
    rng = np.random.default_rng(0)
    mu = rng.uniform(0.001, 0.05, g.E)
    v = rng.normal(size=g.E)
    h = 1e-7
    for e in (0, 17, 50):
        step = np.zeros(g.E)
        step[e] = h
        fd = (g.reward(0, mu + step) - g.reward(0, mu - step)) @ v / (2 * h)
        assert g.reward_vjp(0, mu, v)[e] == pytest.approx(fd, rel=1e-6)


@pytest.mark.parametrize("theta", [0.25, 0.6])
def test_pigou_gradient_is_the_closed_form(tmp_path, theta):
    g = pigou(tmp_path)
    m = tolls(g, links=[[3, 2]], bounds=[0, 1])
    th = m.theta(np.array([theta]))
    sol = g.solve_equilibrium(th, relative_gap=1e-12)
    assert welfare(g, sol.mu) == pytest.approx(-(theta + (1 - theta) ** 2), abs=1e-8)
    g_theta, residual = g.equilibrium_vjp(sol, th, welfare_gradient(g, sol))
    assert residual <= 1e-8
    assert m.theta_vjp(np.array([theta]), g_theta)[0] == pytest.approx(1 - 2 * theta, rel=1e-6)


def central_difference(game, theta, e, h):
    def J(th):
        return welfare(game, game.solve_equilibrium(th, relative_gap=1e-12).mu)

    up, down = theta.copy(), theta.copy()
    up[e] += h
    down[e] -= h
    return (J(up) - J(down)) / (2 * h)


def test_braess_gradient_matches_finite_differences(tmp_path):
    g = braess(tmp_path)
    theta = np.array([0.0, 0.0, 0.0, 0.0, 0.3])  # a toll on the shortcut v -> w
    sol = g.solve_equilibrium(theta, relative_gap=1e-12)
    g_theta, residual = g.equilibrium_vjp(sol, theta, welfare_gradient(g, sol))
    assert residual <= 1e-8
    for e in (1, 4):
        assert g_theta[e] == pytest.approx(central_difference(g, theta, e, 1e-4), rel=1e-4)


def test_sioux_falls_gradient_matches_finite_differences():
    g = network("SiouxFalls")
    theta = np.zeros(g.E)
    theta[[0, 27, 10]] = [1.0, 2.0, 0.5]
    sol = g.solve_equilibrium(theta, relative_gap=1e-12)
    g_theta, residual = g.equilibrium_vjp(sol, theta, welfare_gradient(g, sol))
    assert residual <= 1e-6
    for e in (0, 27, 40):
        fd = central_difference(g, theta, e, 1e-3)
        assert g_theta[e] == pytest.approx(fd, rel=1e-4)


def test_a_loose_solution_is_resolved_before_differentiating():
    g = network("SiouxFalls")
    loose = g.solve_equilibrium(None, relative_gap=1e-3, method="gradient_projection")
    assert loose.paths is not None and loose.relative_gap > 1e-6
    tight = g.solve_equilibrium(None, relative_gap=1e-12)
    a, _ = g.equilibrium_vjp(loose, None, welfare_gradient(g, tight))
    b, _ = g.equilibrium_vjp(tight, None, welfare_gradient(g, tight))
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9 * np.abs(b).max())


def test_a_frank_wolfe_solution_is_resolved_with_paths(tmp_path):
    """Frank-Wolfe keeps no paths, however tight: ``equilibrium_vjp`` solves again with
    gradient projection. Braess with a toll of 0.3 on the shortcut (all three paths used),
    against central differences of full solves."""
    from crowdsteer.learners.wardrop import bfw

    g = braess(tmp_path)
    theta = np.array([0.0, 0.0, 0.0, 0.0, 0.3])
    sol = bfw(g, theta, relative_gap=1e-12)
    assert sol.paths is None and sol.relative_gap <= 1e-12
    g_theta, residual = g.equilibrium_vjp(sol, theta, welfare_gradient(g, sol))
    assert residual <= 1e-8
    for e in (1, 4):
        assert g_theta[e] == pytest.approx(central_difference(g, theta, e, 1e-4), rel=1e-4)


def test_a_non_equilibrium_gets_no_gradient_and_no_path_based_re_solve(monkeypatch):
    """Under the gradient optimiser (``require_convergence`` on) an evaluation whose solve
    stopped short of its gap (here ``max_iterations: 2`` against 1e-10) is counted no
    better than the worst and its gradient is never used: none is computed, and in
    particular the sensitivity analysis's path-based re-solve to 1e-10 (minutes on a city)
    does not run. With the requirement off the gradient is still taken."""
    from crowdsteer.config import load_config
    from crowdsteer.learners import wardrop
    from crowdsteer.metaagent.evaluation import setup
    from crowdsteer.metaagent.gradient import value_and_grad
    from tests.test_network import DATA

    raw = {"seed": 0, "game": {"name": "routing", "network": {
        "net": str(DATA / "SiouxFalls_net.tntp"), "trips": str(DATA / "SiouxFalls_trips.tntp")}},
        "learner": {"name": "exact", "max_iterations": 2},
        "modifier": {"name": "tolls", "bounds": [0, 10]}, "objective": {"name": "welfare"},
        "optimiser": {"name": "gradient", "evaluations": 2}}
    calls = []
    real = wardrop.gradient_projection
    monkeypatch.setattr(wardrop, "gradient_projection",
                        lambda *a, **k: calls.append(k) or real(*a, **k))
    w = np.full(76, 1.0)
    hg = value_and_grad(setup(load_config(raw)), w)
    assert not hg.solution.converged and not calls
    assert np.all(hg.grad == 0) and np.isnan(hg.residual)
    raw["optimiser"]["require_convergence"] = False
    hg = value_and_grad(setup(load_config(raw)), w)
    assert calls and np.abs(hg.grad).max() > 0
