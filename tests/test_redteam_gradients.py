"""Issue 20, H6: hypergradients for latency powers below 1 (and between 1 and 2), against
central finite differences of full equilibrium solves (the reference, independent of the
derivative code); non-toll modifiers on a road network are refused at load."""

import numpy as np
import pytest

from crowdsteer import load_config
from crowdsteer.games.base import power_derivative
from crowdsteer.metaagent import setup
from crowdsteer.metaagent.gradient import for_gradients, value_and_grad
from tests.test_adjoint import central_differences
from tests.test_crash import crowdsteer
from tests.test_redteam_folders import BRAESS_NET, braess, one_line


@pytest.mark.parametrize("p", [0.3, 1.0, 2.5])
def test_power_derivative_is_the_calculus_one(p):
    u = np.array([0.05, 0.7, 3.0])
    h = 1e-6
    first = ((u + h) ** p - (u - h) ** p) / (2 * h)
    second = ((u + h) ** p - 2 * u ** p + (u - h) ** p) / h ** 2
    np.testing.assert_allclose(power_derivative(u, p), first, rtol=1e-7)
    np.testing.assert_allclose(power_derivative(u, p, 2), second, rtol=1e-3, atol=1e-6)
    assert np.all(np.isfinite(power_derivative(np.zeros(2), p, 2)))  # no flow: finite


def network_setup(tmp_path, power, trips=3000.0):
    text = BRAESS_NET.replace("\t0.15\t4\t", f"\t1.0\t{power}\t")
    braess(tmp_path)
    (tmp_path / "net.tntp").write_text(text)
    (tmp_path / "trips.tntp").write_text(f"<NUMBER OF ZONES> 2\n<END OF METADATA>\nOrigin 1\n"
                                         f"    2 : {trips};\n")
    cfg = {"game": {"name": "routing", "network": {"net": str(tmp_path / "net.tntp"),
                                                   "trips": str(tmp_path / "trips.tntp")}},
           "learner": {"name": "exact", "relative_gap": 1e-12},
           "modifier": {"name": "tolls", "bounds": [0, 5]}, "objective": {"name": "welfare"}}
    return for_gradients(setup(load_config(cfg)))


@pytest.mark.parametrize("power", [0.5, 0.8, 1.5])
def test_network_hypergradient_below_power_one_matches_finite_differences(tmp_path, power):
    """Was 10x off at power 0.5 and 2.4x at 0.8 (the slope's exponent clamped at 0)."""
    s = network_setup(tmp_path, power)
    w = np.array([0.3, 0.2, 0.1, 0.4, 0.05])
    hg = value_and_grad(s, w)

    def J(x):
        sol = s.game.solve_equilibrium(s.modifier.theta(x), relative_gap=1e-13)
        return -s.game.total_travel_time(sol.flow)

    h = 1e-4
    fd = np.array([(J(w + h * e) - J(w - h * e)) / (2 * h) for e in np.eye(5)])
    assert np.abs(fd).max() > 1.0  # the tolls move TSTT
    np.testing.assert_allclose(hg.grad, fd, rtol=1e-5, atol=1e-5 * np.abs(fd).max())


@pytest.mark.parametrize("p", [0.5, 0.8])
def test_edges_game_hypergradient_below_power_one_matches_finite_differences(p):
    """Was 47% off at p = 0.5 (the same clamp, in adjoint.py)."""
    poly = {"kind": "polynomial", "a": 0.2, "b": 1.0, "p": p}
    game = {"name": "routing", "demand": [{"from": "s", "to": "t", "amount": 1.0}], "edges": [
        {"from": "s", "to": "a", "latency": poly},
        {"from": "s", "to": "b", "latency": {"kind": "constant", "a": 1.0}},
        {"from": "a", "to": "t", "latency": {"kind": "constant", "a": 1.0}},
        {"from": "b", "to": "t", "latency": poly},
        {"from": "a", "to": "b", "latency": {"kind": "constant", "a": 0.1}}]}
    cfg = {"game": game, "learner": {"name": "exact", "tolerance": 1e-14,
                                     "max_iterations": 200_000, "temperature": 0.05},
           "modifier": {"name": "tolls", "bounds": [-1, 2]}, "objective": {"name": "welfare"}}
    s = setup(load_config(cfg))
    w = np.random.default_rng(3).uniform(-1, 2, s.modifier.n_params) * 0.3
    hg = value_and_grad(s, w)
    fd = central_differences(s, w)
    scale = np.abs(fd).max()
    assert scale > 1e-3
    assert np.abs(hg.grad - fd).max() <= 1e-4 * scale


@pytest.mark.parametrize("modifier", ["power_series", "rbf", "tabular"])
def test_a_non_toll_modifier_on_a_network_is_refused_at_load(tmp_path, modifier):
    cfg = braess(tmp_path, modifier={"name": modifier}, objective={"name": "welfare"},
                 optimiser={"name": "gradient", "evaluations": 2})
    line = one_line(crowdsteer("run", cfg, "--out", tmp_path / "o"))
    assert "modifier.name" in line and modifier in line and "allowed here: tolls" in line
    assert not (tmp_path / "o").exists()
