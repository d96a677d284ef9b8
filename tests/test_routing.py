"""Nonatomic routing (Wardrop equilibria) and the ``tolls`` modifier on the classic networks.

Reference values, all closed forms:

* Pigou (1920): one unit over latencies ``1`` and ``x``. Wardrop equilibrium: everyone on
  ``x``, cost 1. Optimum: half and half, cost 3/4, so the price of anarchy is 4/3
  (Roughgarden & Tardos 2002, the worst case for affine latencies). Marginal-cost toll
  ``x* l'(x*) = 1/2`` on the ``x`` link.
* Pigou with ``x^p``: equilibrium cost 1 (``x^p <= 1`` on [0, 1]); the optimum puts
  ``x* = (p + 1)^(-1/p)`` on the variable link (``d/dx [x^(p+1) + 1 - x] = 0``), cost
  ``1 - p (p + 1)^(-(p + 1)/p)``; marginal-cost toll ``p x*^p = p / (p + 1)``.
* Braess (1968): s-v: x, v-t: 1, s-w: 1, w-t: x, v-w: 0. Equilibrium: everyone on
  s-v-w-t, cost 2; optimum: half on s-v-t, half on s-w-t, cost 3/2; marginal-cost tolls
  1/2 on s-v and on w-t.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import minimize

import crowdsteer
from crowdsteer.config import build_game, load_config, validate_section
from crowdsteer.equilibrium import exploitability, mean_field, welfare
from crowdsteer.errors import ConfigError
from crowdsteer.games.base import theta_at
from crowdsteer.learners import learners
from crowdsteer.learners.exact import ExactConfig, ExactSolver
from crowdsteer.modifiers import modifiers
from crowdsteer.objectives import ObjectiveConfig, build as build_objective
from tests.conftest import crowd

ROOT = Path(__file__).resolve().parents[1]
# Large mirror-descent steps suit these networks (as in examples/pigou.yaml): a boundary
# equilibrium (all flow on one path) is then certified to 1e-10 in about a thousand steps.
LEARNER = {"name": "exact", "tolerance": 1e-10, "learning_rate": 10, "max_iterations": 20000}


def pigou(p=1, amount=1.0):
    variable = ({"kind": "affine", "a": 0, "b": 1} if p == 1 else
                {"kind": "polynomial", "a": 0, "b": 1, "p": p})
    return {"name": "routing", "demand": [{"from": "s", "to": "t", "amount": amount}],
            "edges": [{"name": "constant", "from": "s", "to": "t",
                       "latency": {"kind": "constant", "a": 1}},
                      {"name": "variable", "from": "s", "to": "t", "latency": variable}]}


BRAESS = {"name": "routing", "demand": [{"from": "s", "to": "t", "amount": 1.0}],
          "edges": [{"from": "s", "to": "v", "latency": {"kind": "affine", "a": 0, "b": 1}},
                    {"from": "v", "to": "t", "latency": {"kind": "constant", "a": 1}},
                    {"from": "s", "to": "w", "latency": {"kind": "constant", "a": 1}},
                    {"from": "w", "to": "t", "latency": {"kind": "affine", "a": 0, "b": 1}},
                    {"from": "v", "to": "w", "latency": {"kind": "constant", "a": 0}}]}
BRAESS_PATHS = ("s->v + v->t", "s->v + v->w + w->t", "s->w + w->t")

# Two origin-destination pairs sharing a bottleneck b->c, polynomial latencies, demand 3.
TWO_PAIRS = {"name": "routing",
             "demand": [{"from": "a", "to": "c", "amount": 2.0},
                        {"from": "b", "to": "c", "amount": 1.0}],
             "edges": [{"from": "a", "to": "b", "latency": {"kind": "affine", "a": 0.5, "b": 1}},
                       {"from": "b", "to": "c", "latency": {"kind": "polynomial", "a": 0.2,
                                                            "b": 0.5, "p": 2}},
                       {"from": "a", "to": "c", "latency": {"kind": "affine", "a": 1.0, "b": 0.7}},
                       {"from": "b", "to": "c", "latency": {"kind": "polynomial", "a": 0.1,
                                                            "b": 1.0, "p": 3}}]}


def pigou_optimum(p):
    """Closed form ``1 - p (p + 1)^(-(p + 1)/p)`` (3/4 at p = 1)."""
    return 1 - p * (p + 1) ** (-(p + 1) / p)


def game_of(cfg):
    return build_game(load_config({"game": cfg}))


def solve(game, theta=None, **kw):
    return ExactSolver(ExactConfig(**{**LEARNER, **kw})).solve(game, theta)


def tolls(game, **kw):
    return modifiers.get("tolls")(validate_section("modifier", {"name": "tolls", **kw}), game)


def flows_to_mu(game, f):
    """Path flows ``(P,)`` of one-unit demand to the ``(S,)`` landing distribution."""
    return np.concatenate([np.zeros(game.K), np.asarray(f) / game.D])


# --- independent total travel times, written from the networks by hand ----------------

def pigou_travel_time(f, p):
    """``f = (constant link, variable link)``."""
    return f[0] * 1.0 + f[1] * f[1] ** p


def braess_travel_time(f):
    """``f = (s-v-t, s-v-w-t, s-w-t)``; edge flows summed by hand."""
    x_sv, x_wt = f[0] + f[1], f[1] + f[2]
    return x_sv * x_sv + f[0] * 1.0 + f[2] * 1.0 + x_wt * x_wt + 0.0 * f[1]


def simplex_minimum(cost, n):
    res = minimize(cost, np.full(n, 1 / n), method="SLSQP", bounds=[(0, 1)] * n,
                   constraints=[{"type": "eq", "fun": lambda f: f.sum() - 1}],
                   options={"ftol": 1e-15, "maxiter": 500})
    assert res.success
    return res.fun, res.x


# --- the game ---------------------------------------------------------------------------

def test_layout_of_states_actions_and_paths():
    game = game_of(BRAESS)
    assert game.path_names == BRAESS_PATHS
    assert (game.K, game.P, game.E, game.S, game.A, game.T) == (1, 3, 5, 4, 3, 1)
    np.testing.assert_array_equal(game.edge_path, [[1, 1, 0], [1, 0, 0], [0, 0, 1],
                                                   [0, 1, 1], [0, 1, 0]])
    np.testing.assert_array_equal(game.mu0, [1, 0, 0, 0])
    assert game.allowed[0].all() and game.allowed[1:].sum() == 3  # a path state: its own path
    pi = np.zeros((1, 4, 3))
    pi[0, :, 1] = 1.0
    np.testing.assert_array_equal(mean_field(game, pi)[0], [0, 0, 1, 0])


def test_two_pairs_layout():
    game = game_of(TWO_PAIRS)
    # a->c: a->b then either b->c edge, or the direct a->c edge; b->c: either b->c edge
    assert game.od_names == ("a->c", "b->c")
    assert game.path_names == ("a->b + b->c", "a->b + b->c#2", "a->c", "b->c", "b->c#2")
    np.testing.assert_array_equal(game.path_od, [0, 0, 0, 1, 1])
    np.testing.assert_allclose(game.mu0, [2 / 3, 1 / 3, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(game.allowed[:2], [[1, 1, 1, 0, 0], [0, 0, 0, 1, 1]])


def plain_loop_rewards(cfg, game, mu):
    """Landing rewards by explicit loops over paths and their edges (differential test)."""
    D = sum(d["amount"] for d in cfg["demand"])
    f = D * mu[game.K:]
    x = [sum(f[p] for p in range(game.P) if game.edge_path[e, p]) for e in range(game.E)]

    def latency(e):
        lat = cfg["edges"][e]["latency"]
        return lat.get("a", 0.0) + lat.get("b", 0.0) * x[e] ** lat.get("p", 1.0)

    r = np.zeros(game.S)
    for p in range(game.P):
        r[game.K + p] = -D * sum(latency(e) for e in range(game.E) if game.edge_path[e, p])
    total = sum(x[e] * latency(e) for e in range(game.E))
    return r, total


@pytest.mark.parametrize("cfg", [TWO_PAIRS, BRAESS, pigou(3, amount=2.0)])
def test_vectorised_rewards_match_a_plain_loop(cfg, rng):
    game = game_of(cfg)
    for _ in range(5):
        pi = np.zeros((1, game.S, game.A))
        pi[0] = np.where(game.allowed, rng.uniform(0.1, 1, (game.S, game.A)), 0)
        pi[0] /= pi[0].sum(axis=1, keepdims=True)
        mu = mean_field(game, pi)[0]
        r, total = plain_loop_rewards(cfg, game, mu)
        np.testing.assert_allclose(game.reward(0, mu), r, rtol=1e-12)
        # welfare is exactly minus the total travel time, whatever the demand
        assert welfare(game, mu[None]) == pytest.approx(-total, rel=1e-12)
        assert game.total_travel_time(mu) == pytest.approx(total, rel=1e-12)


@pytest.mark.parametrize("cfg", [TWO_PAIRS, pigou(4, amount=2.5)])
def test_potential_gradient_is_the_landing_reward(cfg, rng):
    """Minus Beckmann's potential: d Phi / d mu(s) = r(s) for every state (central
    differences), so the game is a potential game in the reward's own scaling."""
    game = game_of(cfg)
    mu = np.concatenate([np.zeros(game.K), rng.dirichlet(np.ones(game.P))])
    h = 1e-6
    grad = [(game.potential(0, mu + h * e) - game.potential(0, mu - h * e)) / (2 * h)
            for e in np.eye(game.S)]
    np.testing.assert_allclose(grad, game.reward(0, mu), rtol=1e-6, atol=1e-8)


# --- Wardrop equilibria -------------------------------------------------------------------

@pytest.mark.parametrize("p", [1, 2, 3, 4])
def test_pigou_wardrop_equilibrium_costs_one(p):
    """Pigou (1920), latencies 1 and x^p: all flow on the variable link, cost 1. The
    equilibrium is on the boundary; the default mirror-descent step still certifies it."""
    game = game_of(pigou(p))
    sol = solve(game, learning_rate=None, tolerance=1e-8)
    assert sol.converged and sol.exploitability <= 1e-8
    assert exploitability(game, sol.pi) == pytest.approx(sol.exploitability, abs=1e-14)
    assert sol.mu[0, 2] > 1 - 1e-3
    assert game.total_travel_time(sol.mu[0]) == pytest.approx(1.0, abs=1e-3)
    assert welfare(game, sol.mu) == pytest.approx(-1.0, abs=1e-3)


def test_braess_wardrop_equilibrium_costs_two():
    """Braess (1968): everyone takes s-v-w-t, cost 2 (each route costs 2)."""
    game = game_of(BRAESS)
    sol = solve(game, learning_rate=None, tolerance=1e-8)
    assert sol.converged and sol.exploitability <= 1e-8
    assert sol.mu[0, 1 + BRAESS_PATHS.index("s->v + v->w + w->t")] > 1 - 1e-3
    assert game.total_travel_time(sol.mu[0]) == pytest.approx(2.0, abs=1e-3)
    np.testing.assert_allclose(game.path_cost(sol.mu[0]), 2.0, atol=1e-3)


def test_equilibrium_of_two_pairs_is_wardrop():
    """Wardrop's condition checked directly: every used path of a pair costs the pair's least."""
    game = game_of(TWO_PAIRS)
    sol = solve(game, tolerance=1e-12)
    assert sol.converged
    cost, f = game.path_cost(sol.mu[0]), game.path_flow(sol.mu[0])
    for k in range(game.K):
        mine = game.path_od == k
        np.testing.assert_allclose(f[mine].sum(), game.demand[k], rtol=1e-12)
        used = mine & (f > 1e-4)
        assert used.any()
        np.testing.assert_allclose(cost[used], cost[mine].min(), atol=1e-5)


@pytest.mark.parametrize("name", learners.names())
def test_every_learner_runs_on_braess(name):
    """Any learner's outcome is a feasible flow: one unit on the paths, total travel time
    between the optimum 3/2 and the worst flow's 2."""
    result = crowdsteer.solve({"seed": 0, "game": BRAESS, "learner": {"name": name}})
    mu = result.solution.mu
    assert mu.shape == (1, 4) and mu[0, 0] == 0 and mu.sum() == pytest.approx(1)
    assert -2 - 1e-9 <= result.welfare <= -1.5 + 1e-9


# --- system optima and tolls -------------------------------------------------------------

def social_optimum(game, n_paths):
    """crowdsteer's total travel time of the game, minimised over path flows by SciPy's
    SLSQP; returns the optimum, its flows and minus crowdsteer's welfare there."""
    best, f = simplex_minimum(lambda f: game.total_travel_time(flows_to_mu(game, f)), n_paths)
    return best, f, -welfare(game, flows_to_mu(game, f)[None])


@pytest.mark.parametrize("p", [1, 2, 3, 4])
def test_pigou_optimum_closed_form(p):
    """The system optimum of crowdsteer's Pigou game is 1 - p (p+1)^(-(p+1)/p) at
    x* = (p+1)^(-1/p), both as its total travel time and as minus its welfare."""
    best, f, cost = social_optimum(game_of(pigou(p)), 2)
    assert best == pytest.approx(pigou_optimum(p), abs=1e-8)
    assert cost == pytest.approx(pigou_optimum(p), abs=1e-8)
    assert f[1] == pytest.approx((p + 1) ** (-1 / p), abs=1e-4)
    if p == 1:
        assert best == pytest.approx(0.75, abs=1e-8) and 1 / best == pytest.approx(4 / 3)


def test_braess_optimum_closed_form():
    """crowdsteer's Braess game: optimum 3/2, half on each outer path, none on the shortcut."""
    best, f, cost = social_optimum(game_of(BRAESS), 3)
    assert best == pytest.approx(1.5, abs=1e-8) and cost == pytest.approx(1.5, abs=1e-8)
    np.testing.assert_allclose(f, [0.5, 0, 0.5], atol=1e-4)


def test_travel_time_agrees_with_the_hand_written_networks(rng):
    for _ in range(5):
        f = rng.dirichlet(np.ones(3))
        game = game_of(BRAESS)
        assert game.total_travel_time(flows_to_mu(game, f)) == pytest.approx(
            braess_travel_time(f), rel=1e-12)
        game = game_of(pigou(3))
        assert game.total_travel_time(flows_to_mu(game, f[:2] / f[:2].sum())) == pytest.approx(
            pigou_travel_time(f[:2] / f[:2].sum(), 3), rel=1e-12)


@pytest.mark.parametrize("cfg, optimum_flows, want_tolls, optimum", [
    (pigou(1), [0.5, 0.5], [0, 0.5], 0.75),
    (pigou(2), [1 - 3 ** -0.5, 3 ** -0.5], [0, 2 / 3], pigou_optimum(2)),
    (pigou(3), [1 - 4 ** (-1 / 3), 4 ** (-1 / 3)], [0, 3 / 4], pigou_optimum(3)),
    (pigou(4), [1 - 5 ** -0.25, 5 ** -0.25], [0, 4 / 5], pigou_optimum(4)),
    (BRAESS, [0.5, 0, 0.5], [0.5, 0, 0, 0.5, 0], 1.5),
], ids=["pigou", "pigou-x2", "pigou-x3", "pigou-x4", "braess"])
def test_marginal_cost_tolls_make_the_optimum_an_equilibrium(cfg, optimum_flows, want_tolls,
                                                              optimum):
    """Tolls x_e l_e'(x_e) at the optimum, charged as a fixed w, give the optimal cost."""
    game = game_of(cfg)
    w = game.marginal_cost_tolls(flows_to_mu(game, optimum_flows))
    np.testing.assert_allclose(w, want_tolls, atol=1e-12)
    sol = solve(game, tolls(game).theta(w), tolerance=1e-10)
    assert sol.converged
    assert game.total_travel_time(sol.mu[0]) == pytest.approx(optimum, abs=1e-4)
    assert welfare(game, sol.mu) == pytest.approx(-optimum, abs=1e-4)


def test_toll_field_charges_each_path_its_edges(rng):
    game = game_of(TWO_PAIRS)
    m = tolls(game)
    assert m.n_params == game.E
    w = rng.uniform(0, 2, game.E)
    f = m.field(w)[0]
    np.testing.assert_allclose(f[:game.K], 0)
    for p in range(game.P):  # a path pays the sum of its edges' tolls, times D (reward units)
        want = -game.D * sum(w[e] for e in range(game.E) if game.edge_path[e, p])
        assert f[game.K + p] == pytest.approx(want)
    assert np.all(m.theta(np.zeros(game.E)) == 0)  # w = 0 changes nothing


def test_budget_balanced_tolls_refund_the_revenue_and_keep_the_equilibrium(rng):
    game = game_of(TWO_PAIRS)
    w = rng.uniform(0, 1, game.E)
    plain = solve(game, tolls(game).theta(w), tolerance=1e-10)
    theta = tolls(game, budget_balanced=True).theta(w)
    balanced = solve(game, theta, tolerance=1e-10)
    np.testing.assert_allclose(balanced.mu, plain.mu, atol=1e-6)
    th = theta_at(theta, 0, balanced.mu[0], (game.S, game.A))
    paid = np.sum(game.mu0[:, None] * balanced.pi[0] * th)
    assert paid == pytest.approx(0, abs=1e-12)


def test_tolls_refuse_a_game_without_edges():
    with pytest.raises(ConfigError) as info:
        tolls(crowd(height=2, width=2))
    assert info.value.field == "modifier.name" and "edges" in info.value.message


# --- objectives ----------------------------------------------------------------------------

def test_objectives_kl_welfare_maxmin(tmp_path):
    """kl to a target over states (origin states get a negligible mass: targets may not
    have zeros), welfare and maxmin (per-pair worst cost; one pair here) on Pigou."""
    game = game_of(pigou())
    np.save(tmp_path / "split.npy", np.array([1e-12, 0.5, 0.5]))
    payoff = build_objective(ObjectiveConfig(name="kl", target={"file": "split.npy"}), game,
                             tmp_path)
    alone = payoff.measure(game, solve(game))
    tolled = payoff.measure(game, solve(game, tolls(game).theta(np.array([0.0, 0.5]))))
    assert alone.kl > 0.5  # ~log 2: everyone on one link
    assert tolled.kl == pytest.approx(0, abs=1e-8)
    assert alone.welfare == pytest.approx(-1, abs=1e-4)
    assert tolled.welfare == pytest.approx(-0.75, abs=1e-8)
    assert alone.maxmin == pytest.approx(-1, abs=1e-4)
    assert tolled.maxmin == pytest.approx(-0.75, abs=1e-8)


# --- the meta-agent --------------------------------------------------------------------------

def meta(game, evaluations, **modifier):
    return {"seed": 0, "game": game, "learner": LEARNER,
            "modifier": {"name": "tolls", **modifier}, "objective": {"name": "welfare"},
            "optimiser": {"name": "bo", "evaluations": evaluations, "initial": 5}}


def test_meta_agent_tolls_pigou_to_the_optimum(tmp_path):
    """Welfare from -1 (equilibrium) to within 1% of -3/4; the tolls it finds charge the
    variable link about 1/2 more than the constant one (the marginal-cost toll)."""
    result = crowdsteer.run(meta(pigou(), 25), out=tmp_path / "run")
    assert result.baseline.welfare == pytest.approx(-1.0, abs=1e-4)
    assert result.best.welfare >= -0.75 * 1.01
    assert result.best.w[1] - result.best.w[0] == pytest.approx(0.5, abs=0.1)
    assert result.best.exploitability <= 1e-10
    assert (tmp_path / "run" / "report.html").is_file()
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["modifier"] == "tolls"


@pytest.mark.parametrize("p", [2, 3, 4])
def test_meta_agent_tolls_pigou_powers_to_the_optimum(p):
    result = crowdsteer.run(meta(pigou(p), 20))
    assert result.baseline.welfare == pytest.approx(-1.0, abs=1e-3)
    assert result.best.welfare >= -pigou_optimum(p) * 1.01


def test_meta_agent_tolls_braess_to_the_optimum():
    result = crowdsteer.run(meta(BRAESS, 25))
    assert result.baseline.welfare == pytest.approx(-2.0, abs=1e-4)
    assert result.best.welfare >= -1.5 * 1.01


def test_meta_agent_runs_budget_balanced_tolls():
    cfg = meta(pigou(), 3, budget_balanced=True)
    cfg["optimiser"] = {"name": "random", "evaluations": 3}
    result = crowdsteer.run(cfg)
    assert result.evaluations == 4
    assert result.best.net_transfer == pytest.approx(0, abs=1e-9)  # the revenue goes back


# --- configs and the command line ------------------------------------------------------------

def edit(cfg, path, value):
    """A deep copy of ``cfg`` with ``value`` at the key path (a tuple of keys/indices)."""
    out = json.loads(json.dumps(cfg))
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


@pytest.mark.parametrize("path, value, field, words", [
    (("demand", 0, "to"), "x", "game.demand.0.to", "unknown node 'x'"),
    (("edges", 1, "latency", "b"), -1.0, "game.edges.1.latency.b", "greater than or equal"),
    (("edges", 0, "latency", "a"), -0.5, "game.edges.0.latency.a", "greater than or equal"),
    (("edges", 1, "latency", "p"), 2.0, "game.edges.1.latency", "takes no 'p'"),
    (("edges", 1, "latency"), {"kind": "polynomial", "b": 1}, "game.edges.1.latency",
     "needs 'p'"),
    (("edges", 1, "latency", "kind"), "cubic", "game.edges.1.latency.kind", "cubic"),
    (("edges", 1, "name"), "constant", "game.edges.1.name", "twice"),
    (("edges", 0, "speed"), 3, "game.edges.0.speed", "unknown field"),
    (("demand", 0, "amount"), 0, "game.demand.0.amount", "greater than 0"),
    (("demand", 0, "to"), "s", "game.demand.0.to", "same node"),
    (("edges",), [], "game.edges", "at least 1"),
    (("max_paths",), 1, "game.max_paths", "more than 1 simple paths"),
])
def test_config_errors_name_the_field(path, value, field, words):
    with pytest.raises(ConfigError) as info:
        game_of(edit(pigou(), path, value))
    assert info.value.field == field
    assert words in info.value.message


def test_a_demand_without_a_path_is_refused():
    cfg = edit(BRAESS, ("demand", 0), {"from": "v", "to": "s"})  # edges are directed
    with pytest.raises(ConfigError) as info:
        game_of(cfg)
    assert info.value.field == "game.demand.0" and "no path from 'v' to 's'" in info.value.message


def test_resolved_config_round_trips():
    """The meta-agent's evaluations rebuild the game from the resolved config (from/to kept)."""
    cfg = load_config({"game": BRAESS})
    again = load_config(cfg.resolved())
    assert again.resolved() == cfg.resolved()
    assert cfg.resolved()["game"]["edges"][0]["from"] == "s"
    assert build_game(again).path_names == BRAESS_PATHS


@pytest.mark.parametrize("name, equilibrium", [("pigou", -1.0), ("braess", -2.0)])
def test_example_configs_solve_to_the_wardrop_equilibrium(name, equilibrium):
    result = crowdsteer.solve(ROOT / "examples" / f"{name}.yaml")
    assert result.solution.converged
    assert result.welfare == pytest.approx(equilibrium, abs=1e-4)


def test_cli_solves_the_pigou_example(tmp_path):
    r = subprocess.run([sys.executable, "-m", "crowdsteer", "solve",
                        str(ROOT / "examples" / "pigou.yaml"), "--out", str(tmp_path / "run")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["welfare"] == pytest.approx(-1.0, abs=1e-4)
    assert summary["exploitability"] <= 1e-10
    assert np.load(tmp_path / "run" / "mu.npy").shape == (1, 3)
