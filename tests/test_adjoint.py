"""Hypergradients: dJ/dw through the equilibrium (crowdsteer.adjoint, metaagent.gradient).

References, each independent of the adjoint code:

* central finite differences of J itself (two full equilibrium solves per component, to an
  exploitability of 1e-14, where the mean field is accurate to about 1e-7);
* the closed form of the one-shot log-congestion game: ``mu = softmax((d + F w)/(c + tau))``
  (see tests/test_crowd.py for its derivation), so
  ``dJ/dw = F^T (diag(mu) - mu mu^T) (log(mu / M) + 1) / (c + tau)`` for the KL to ``M``;
* potential-based shaping leaves the equilibrium unchanged (Ng et al. 1999), so its
  gradient is zero.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from crowdsteer import load_config, run
from crowdsteer.adjoint import GradientError, adjoint
from crowdsteer.errors import ConfigError
from crowdsteer.metaagent import setup
from crowdsteer.metaagent.evaluation import evaluate_once
from crowdsteer.metaagent.gradient import gradient_support, value_and_grad

TIGHT = {"name": "exact", "tolerance": 1e-14, "max_iterations": 200_000}

CROWD_ANY = {"name": "crowd", "height": 6, "width": 7, "horizon": 1,
             "congestion": {"kind": "kernel", "strength": 1.0, "radius": 1.0},
             "desirability": {"bumps": [{"center": [2, 2], "height": 1.0, "width": 2.0}]}}
CROWD_LOCAL = {"name": "crowd", "height": 4, "width": 5, "horizon": 3, "moves": "local",
               "noise": 0.1, "congestion": {"kind": "log", "strength": 0.5},
               "desirability": {"bumps": [{"center": [[0, 0], [1, 2], [3, 4]], "height": 1.0,
                                           "width": 1.5}]}}
BRAESS = {"name": "routing", "demand": [{"from": "s", "to": "t", "amount": 1.0}], "edges": [
    {"from": "s", "to": "a", "latency": {"kind": "affine", "b": 1.0}},
    {"from": "s", "to": "b", "latency": {"kind": "constant", "a": 1.0}},
    {"from": "a", "to": "t", "latency": {"kind": "constant", "a": 1.0}},
    {"from": "b", "to": "t", "latency": {"kind": "affine", "b": 1.0}},
    {"from": "a", "to": "b", "latency": {"kind": "constant", "a": 0.0}}]}
KL_CROWD = {"name": "kl", "target": {"bumps": [{"center": [1, 4], "width": 1.5}]}}

CASES = {
    # id: (game, temperature, modifier, objective)
    "crowd-any-power-kl": (CROWD_ANY, 0.1, {"name": "power_series", "order": 2}, KL_CROWD),
    "crowd-any-rbf-welfare": (CROWD_ANY, 0.05, {"name": "rbf", "centers": 2},
                              {"name": "welfare"}),
    "crowd-local-perstep-balanced-kl": (CROWD_LOCAL, 0.2, {
        "name": "power_series", "order": 1, "per_step": True, "budget_balanced": True},
        KL_CROWD),
    "crowd-local-tabular-welfare": (CROWD_LOCAL, 0.2, {"name": "tabular"}, {"name": "welfare"}),
    "crowd-local-kernel-rbf-perstep-welfare": (
        {**CROWD_LOCAL, "congestion": {"kind": "kernel", "strength": 2.0, "radius": 1.0}}, 0.1,
        {"name": "rbf", "centers": 2, "per_step": True}, {"name": "welfare"}),
    "braess-tolls-welfare": (BRAESS, 0.05, {"name": "tolls", "bounds": [-1, 2]},
                             {"name": "welfare"}),
    "braess-tolls-balanced-kl": (BRAESS, 0.05, {"name": "tolls", "budget_balanced": True,
                                                "bounds": [-1, 2]},
                                 {"name": "kl", "target": {"values": [
                                     0.01, 0.3, 0.3, 0.39]}}),
    "pd-transfers-welfare": ({"name": "matrix", "preset": "prisoners_dilemma"}, 0.3,
                             {"name": "transfers", "bounds": [-4, 4]}, {"name": "welfare"}),
    "pd2-balanced-transfers-welfare": (
        {"name": "matrix", "preset": "prisoners_dilemma", "players": 2}, 0.3,
        {"name": "transfers", "budget_balanced": True, "bounds": [-4, 4]},
        {"name": "welfare"}),
    "stag-hunt-repeated-tabular-welfare": (
        {"name": "matrix", "preset": "stag_hunt", "horizon": 2}, 0.5,
        {"name": "tabular", "per_step": True}, {"name": "welfare"}),
    "congestion-tolls-welfare": (
        {"name": "congestion", "players": 3, "resources": [
            {"name": "x", "a": 0.0, "b": 1.0}, {"name": "y", "a": 1.0, "b": 0.5},
            {"name": "z", "a": 2.0, "b": 0.0}]}, 0.2, {"name": "tolls"}, {"name": "welfare"}),
    # strategies sharing a resource: the strategy-resource incidence is not square-symmetric
    # (one resource per strategy makes it the identity, where a transposed product hides)
    "congestion-overlapping-tolls-welfare": (
        {"name": "congestion", "players": 3, "strategies": [["x"], ["x", "y"], ["z"]],
         "resources": [{"name": "x", "a": 0.0, "b": 1.0}, {"name": "y", "a": 0.2, "b": 0.5},
                       {"name": "z", "a": 1.5, "b": 0.3}]}, 0.2, {"name": "tolls"},
        {"name": "welfare"}),
}


def _setup(case: str, learner: dict | None = None):
    game, tau, modifier, objective = CASES[case]
    cfg = {"game": copy.deepcopy(game), "learner": {**(learner or TIGHT), "temperature": tau},
           "modifier": copy.deepcopy(modifier), "objective": copy.deepcopy(objective)}
    return setup(load_config(cfg))


def central_differences(s, w: np.ndarray, h: float = 2e-3) -> np.ndarray:
    """dJ/dw by the five-point central stencil on full equilibrium solves (the reference).

    Its truncation error is O(h^4); its noise is that of J, about 1e-8 at an exploitability
    of 1e-14 (the mean field is then accurate to ~1e-7), divided by ~h: h = 2e-3 keeps both
    near 1e-5 of the gradient's scale.
    """
    def J(x: np.ndarray) -> float:
        return evaluate_once(s, x, 0).objective

    out = np.empty_like(w)
    for i in range(w.size):
        e = np.zeros_like(w)
        e[i] = h
        out[i] = (-J(w + 2 * e) + 8 * J(w + e) - 8 * J(w - e) + J(w - 2 * e)) / (12 * h)
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradient_matches_central_differences(case):
    s = _setup(case)
    lo, hi = s.config["modifier"].bounds
    rng = np.random.default_rng(3)
    w = rng.uniform(lo, hi, s.modifier.n_params) * 0.3
    hg = value_and_grad(s, w)
    fd = central_differences(s, w)
    scale = np.abs(fd).max()
    assert scale > 1e-4, "the case should move J"
    assert np.abs(hg.grad - fd).max() <= 1e-4 * scale
    assert hg.residual <= 1e-6
    assert hg.sample.objective == pytest.approx(evaluate_once(s, w, 0).objective, rel=1e-10)


def test_gradient_matches_the_closed_form_of_the_log_game():
    """One shot, any moves, log congestion: mu = softmax((d + F w) / (c + tau))."""
    c, tau = 0.7, 0.2
    s = setup(load_config({
        "game": {"name": "crowd", "height": 5, "width": 6, "congestion": {"kind": "log",
                                                                         "strength": c},
                 "desirability": {"bumps": [{"center": [1, 2], "height": 1.0, "width": 1.5}]}},
        "learner": {**TIGHT, "temperature": tau}, "modifier": {"name": "power_series",
                                                               "order": 3},
        "objective": {"name": "kl", "target": {"bumps": [{"center": [4, 4], "width": 2.0}]}}}))
    w = np.random.default_rng(1).uniform(-1, 1, s.modifier.n_params)
    F, d, M = s.modifier.features, s.game.d[0], s.objective.target[0]
    z = (d + F @ w) / (c + tau)
    mu = np.exp(z - z.max())
    mu /= mu.sum()
    g = np.log(mu / M) + 1
    expected = F.T @ ((mu * g - mu * (mu @ g)) / (c + tau))
    hg = value_and_grad(s, w)
    assert np.abs(hg.grad - expected).max() <= 1e-6 * np.abs(expected).max()


def test_potential_based_shaping_has_zero_gradient():
    """Shaping keeps the equilibrium (Ng et al. 1999): J cannot move, its gradient is 0."""
    game, tau, _, objective = CASES["crowd-local-perstep-balanced-kl"]
    s = setup(load_config({"game": game, "learner": {**TIGHT, "temperature": tau},
                           "modifier": {"name": "potential_based",
                                        "potential": {"name": "rbf", "centers": 2}},
                           "objective": objective}))
    w = np.random.default_rng(0).uniform(-2, 2, s.modifier.n_params)
    J0 = evaluate_once(s, np.zeros_like(w), 0).objective
    assert evaluate_once(s, w, 0).objective == pytest.approx(J0, abs=1e-9)
    assert np.abs(value_and_grad(s, w).grad).max() <= 1e-9


@pytest.fixture(scope="module")
def tabular_welfare_equilibrium():
    s = _setup("crowd-local-tabular-welfare")
    theta = s.modifier.theta(np.zeros(s.modifier.n_params))
    sol = s.learner.solve(s.game, theta)
    return s, theta, sol, s.objective.gradient(s.game, sol.mu)


@pytest.mark.parametrize("scale", [1e-9, 1.0, 1e6])
def test_the_adjoint_refuses_a_solve_that_did_not_converge(tabular_welfare_equilibrium, scale):
    """The residual check is relative: at any scale of dJ/dmu one product is refused, and a
    full budget is accepted with a gradient that scales with dJ/dmu (the adjoint is linear
    in it). An absolute check would accept one product at 1e-9 and refuse all at 1e6."""
    s, theta, sol, g = tabular_welfare_equilibrium
    with pytest.raises(GradientError, match="did not converge"):
        adjoint(s.game, sol.mu, theta, s.tau, scale * g, max_products=1)
    full = adjoint(s.game, sol.mu, theta, s.tau, g)
    scaled = adjoint(s.game, sol.mu, theta, s.tau, scale * g)
    assert scaled.residual <= 1e-8 and scaled.residual == pytest.approx(full.residual, rel=0.1,
                                                                        abs=1e-12)
    np.testing.assert_allclose(scaled.g_theta, scale * full.g_theta, rtol=1e-8,
                               atol=1e-12 * scale * np.abs(full.g_theta).max())


@pytest.mark.parametrize("change, reason", [
    ({"learner": {"name": "exact", "temperature": 0.0}}, "temperature is 0"),
    ({"objective": {"name": "maxmin"}}, "maxmin has no gradient"),
    ({"learner": {"name": "fictitious_play", "agents": 100, "temperature": 0.1}},
     "model-free"),
])
def test_where_gradients_do_not_apply_auto_picks_bo_and_gradient_is_refused(change, reason):
    game, _, modifier, objective = CASES["crowd-any-power-kl"]
    cfg = {"game": game, "learner": {"name": "exact", "temperature": 0.1},
           "modifier": modifier, "objective": objective, **change}
    s = setup(load_config(cfg))
    assert reason in gradient_support(s)
    with pytest.raises(ConfigError, match="optimiser.name: gradient does not apply"):
        run({**cfg, "optimiser": {"name": "gradient", "evaluations": 2}})
    result = run({**cfg, "optimiser": {"name": "auto", "evaluations": 2, "initial": 2}})
    assert result.evaluations == 3


def test_projected_gradient_vanishes_at_the_optimum_found():
    """L-BFGS-B in the box stops where the projected gradient is ~0 (first-order optimality
    of the bound-constrained problem), checked with a fresh gradient at the best w."""
    game, tau, _, objective = CASES["crowd-any-power-kl"]
    cfg = {"game": game, "learner": {"name": "exact", "temperature": tau},
           "modifier": {"name": "power_series", "order": 2, "bounds": [-2, 2]},
           "objective": objective, "optimiser": {"name": "gradient", "evaluations": 60}}
    result = run(cfg)
    s = setup(load_config({**cfg, "learner": {**TIGHT, "temperature": tau}}))
    w = np.asarray(result.best.w)
    g = value_and_grad(s, w).grad
    lo, hi = s.config["modifier"].bounds
    projected = np.where((w <= lo + 1e-9) & (g > 0) | (w >= hi - 1e-9) & (g < 0), 0.0, g)
    g0 = value_and_grad(s, np.zeros_like(w)).grad
    assert result.best.objective < 0.5 * result.baseline.objective
    assert np.abs(projected).max() <= 1e-3 * np.abs(g0).max()


def _rows(path):
    import csv

    with open(path) as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


@pytest.mark.parametrize("case, evaluations, kill_at", [
    ("crowd-any-power-kl", 12, 7),
    pytest.param("dynamic example", 30, 15,  # past the first descent's end and its restart
                 marks=pytest.mark.slow),
])
@pytest.mark.parametrize("warm_starts", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_a_killed_gradient_run_resumes_to_the_same_evaluations(tmp_path, monkeypatch, case,
                                                               evaluations, kill_at,
                                                               warm_starts):
    """Resume replays the stored evaluations (L-BFGS-B asks the same w again, and a descent
    ends where it ended) and goes on, repeating an uninterrupted run bit for bit, with warm
    starts or without."""
    from pathlib import Path

    import yaml

    import crowdsteer.metaagent.gradient as gradient_module

    if case == "dynamic example":
        example = Path(__file__).resolve().parents[1] / "examples" / "dynamic.yaml"
        cfg = {**yaml.safe_load(example.read_text()),
               "learner": {"name": "exact", "temperature": 0.1}}
    else:
        game, tau, _, objective = CASES[case]
        cfg = {"game": game, "learner": {"name": "exact", "temperature": tau},
               "modifier": {"name": "power_series", "order": 2}, "objective": objective}
    cfg["optimiser"] = {"name": "gradient", "evaluations": evaluations,
                        "warm_starts": warm_starts}
    run(cfg, out=tmp_path / "whole")
    real = gradient_module.value_and_grad
    calls = {"n": 0}

    def dies(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == kill_at:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(gradient_module, "value_and_grad", dies)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, out=tmp_path / "killed")
    assert len(_rows(tmp_path / "killed" / "evaluations.csv")) == kill_at - 1
    monkeypatch.setattr(gradient_module, "value_and_grad", real)
    run(cfg, out=tmp_path / "killed", resume=True)
    whole = _rows(tmp_path / "whole" / "evaluations.csv")
    resumed = _rows(tmp_path / "killed" / "evaluations.csv")
    assert len(resumed) == len(whole) == evaluations + 1
    # warm starts too: the resumed run solves again, cold then warm, the chain of earlier
    # evaluations the next one starts from, so it starts from the same point
    assert resumed == whole


@pytest.mark.parametrize("congestion, reach", [
    ({"kind": "log", "strength": 1.0}, 1e-9),
    ({"kind": "kernel", "strength": 1.0, "radius": 1.0}, 1e-7),
])
def test_gradient_optimiser_drives_a_reachable_kl_towards_zero(congestion, reach):
    """One shot, any moves, tabular modifier: the target is itself the equilibrium under
    the closed-form field ``w* = tau log M - d + c K M`` (the soft-max condition; ``K M``
    is ``log M`` for log congestion), inside the box, so ``J* = 0`` (checked here by
    solving at ``w*``). L-BFGS-B's default stops (absolute gradient and decrease
    thresholds) ended these runs at J ~ 1e-7 and restarted far away; now it keeps
    descending."""
    game = {"name": "crowd", "height": 6, "width": 6, "horizon": 1, "moves": "any",
            "desirability": {"bumps": [{"center": [3, 3], "height": 1.0, "width": 2.0}]},
            "congestion": congestion}
    cfg = {"seed": 0, "game": game, "learner": {"name": "exact", "temperature": 0.1},
           "modifier": {"name": "tabular", "bounds": [-10, 10]},
           "objective": {"name": "kl", "target": {"bumps": [{"center": [1, 4], "height": 1.0,
                                                            "width": 1.5}]}},
           "optimiser": {"name": "gradient", "evaluations": 100}}
    s = setup(load_config({**cfg, "learner": {**TIGHT, "temperature": 0.1}}))
    M, d, g = s.objective.target[0], s.game.d[0], s.game
    crowding = np.log(M) if congestion["kind"] == "log" else g.crowding(M)
    w_star = s.tau * np.log(M) - d + g.c * crowding
    w_star -= 0.5 * (w_star.max() + w_star.min())
    assert np.abs(w_star).max() < 10
    assert evaluate_once(s, w_star, 0).objective < 1e-12
    result = run(cfg)
    assert result.best.objective <= reach


def test_a_gradient_run_asks_no_w_twice(tmp_path):
    """Near a stationary point L-BFGS-B asked the same w (to 1e-9) again and again, J being
    known only to the solve's precision: 50 of 60 evaluations on this example. A descent
    now ends there and the run restarts elsewhere."""
    from pathlib import Path

    import yaml

    from crowdsteer.metaagent.gradient import STALL_STEP

    example = Path(__file__).resolve().parents[1] / "examples" / "dynamic.yaml"
    cfg = {**yaml.safe_load(example.read_text()),
           "learner": {"name": "exact", "temperature": 0.1},
           "optimiser": {"name": "gradient", "evaluations": 40}}
    result = run(cfg, out=tmp_path)
    table = _rows(tmp_path / "evaluations.csv")
    ws = np.array([[float(r[f"w_{i}"]) for i in range(6)] for r in table])
    assert len(ws) == 41
    lo, hi = cfg["modifier"]["bounds"]
    gaps = np.linalg.norm(ws[:, None, :] - ws[None, :, :], axis=2)
    np.fill_diagonal(gaps, np.inf)
    assert gaps.min() > STALL_STEP * (hi - lo)
    assert result.best.objective < 0.1 * result.baseline.objective


def test_gradient_optimiser_climbs_a_maximised_welfare_to_the_social_optimum():
    """``welfare`` is maximised: the first step from the baseline must go up, and the run end
    at the optimum. One-shot kernel crowd, a tabular modifier (every interior mean field is
    an equilibrium of some table): the optimum is max over the simplex of the concave
    ``d . mu - c mu^T K mu``, solved here by SciPy's SLSQP (measured: reached to 1e-7)."""
    from scipy.optimize import minimize

    cfg = {"seed": 0, "game": copy.deepcopy(CROWD_ANY),
           "learner": {"name": "exact", "temperature": 0.05},
           "modifier": {"name": "tabular", "bounds": [-3, 3]}, "objective": {"name": "welfare"},
           "optimiser": {"name": "gradient", "evaluations": 30}}
    result = run(cfg)
    g = setup(load_config(cfg)).game
    d = g.d[0]
    opt = minimize(lambda m: -(d @ m - g.c * m @ g.crowding(m)), np.full(g.S, 1 / g.S),
                   jac=lambda m: -(d - 2 * g.c * g.crowding(m)), bounds=[(0, 1)] * g.S,
                   constraints=[{"type": "eq", "fun": lambda m: m.sum() - 1}],
                   method="SLSQP", options={"ftol": 1e-14, "maxiter": 1000})
    J_star, J0 = -opt.fun, result.baseline.objective
    assert opt.success and J_star > J0 + 1e-2
    assert result.history[1] > J0 + 1e-3  # the first step goes uphill
    assert J0 + 0.99 * (J_star - J0) <= result.best.objective <= J_star + 1e-9


def test_gradient_optimiser_finds_the_braess_toll(tmp_path):
    """Braess as a network with a shortcut costing 0.2: at equilibrium 0.6 of the trips
    take it (``1 = 0.2 + (1 + f)/2``), TSTT 1.8; a toll ``theta`` leaves ``f = 0.6 - 2
    theta``, TSTT ``(1 + f)^2 / 2 + 1 - 0.8 f``, falling to the system optimum 1.5 at
    ``theta >= 0.3``. Welfare is -TSTT, maximised: from ``theta = 0`` (the gradient there,
    ``+1.6``, points into the box, whose lower end subsidises the shortcut) the first step
    must climb."""
    from tests.test_network import small

    links = [(1, 3, 1, 1e-9, 1e9, 1), (3, 2, 1, 1, 0, 1), (1, 4, 1, 1, 0, 1),
             (4, 2, 1, 1e-9, 1e9, 1), (3, 4, 1, 0.2, 0, 1)]
    small(tmp_path, links, 2, 4, {1: {2: 1.0}})
    cfg = {"seed": 0, "game": {"name": "routing", "network": {
        "net": str(tmp_path / "t_net.tntp"), "trips": str(tmp_path / "t_trips.tntp")}},
        "learner": {"name": "exact", "relative_gap": 1e-10},
        "modifier": {"name": "tolls", "links": [[3, 4]], "bounds": [-0.2, 1]},
        "objective": {"name": "welfare"}, "optimiser": {"name": "gradient", "evaluations": 6}}
    result = run(cfg)
    assert result.baseline.objective == pytest.approx(-1.8, abs=1e-6)
    assert result.history[1] > -1.8 + 1e-3
    assert result.best.objective == pytest.approx(-1.5, abs=1e-6)
