"""Atomic congestion and spectrum games: Rosenthal's potential, the exact Nash gap, the
equilibrium the learners reach against a brute-force optimum, and what tolls recover.

Independent references: costs, loads and potentials are recomputed here with plain loops
over players and resources; optima and pure equilibria by enumerating every assignment.
"""

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, strategies as st

import crowdsteer
from crowdsteer.config import load_config, validate_section
from crowdsteer.equilibrium import exploitability, mean_field, state_before, welfare
from crowdsteer.errors import ConfigError
from crowdsteer.games.base import theta_at
from crowdsteer.games.congestion import (
    CongestionConfig, SpectrumConfig, build, build_spectrum,
)
from crowdsteer.games.matrix import all_profiles, pure_nash
from crowdsteer.learners.exact import ExactConfig, ExactSolver
from crowdsteer.metaagent import setup
from crowdsteer.modifiers import modifiers
from crowdsteer.solving import solve
from crowdsteer.theory import lemma1_violation
from tests.conftest import assert_potential_gradient_is_reward

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXACT = ExactSolver(ExactConfig(tolerance=1e-9, max_iterations=20000))


def pigou(N=4):
    """Atomic Pigou: x costs its load, the other resource N whatever its load."""
    return build(CongestionConfig(players=N, resources=[{"name": "x", "a": 0, "b": 1},
                                                        {"name": "fixed", "a": N, "b": 0}]))


def random_congestion(rng, N=4):
    """Three affine resources; strategies: each alone and two pairs (paths)."""
    res = [{"name": n, "a": float(a), "b": float(b)}
           for n, a, b in zip("uvw", rng.uniform(0, 3, 3), rng.uniform(0.2, 2, 3))]
    return build(CongestionConfig(players=N, resources=res,
                                  strategies=[["u"], ["v"], ["w"], ["u", "v"], ["v", "w"]]))


def star(channels=2):
    """A hub radio at the origin and four leaves at distance 1, 2 apart from each other."""
    return build_spectrum(SpectrumConfig(positions=[[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]],
                                         channels=channels, radius=1.2))


# Plain-loop references -----------------------------------------------------------------


def loop_costs(game, profile):
    """Each player's cost in a pure profile, one player and one resource at a time."""
    if hasattr(game, "adjacency"):
        return [game.base[c] + sum(game.adjacency[i, j] for j, cj in enumerate(profile)
                                   if cj == c) for i, c in enumerate(profile)]
    load = {r: 0 for r in range(len(game.a))}
    for k in profile:
        for r in np.flatnonzero(game.G[k]):
            load[r] += 1
    return [sum(game.a[r] + game.b[r] * load[r] for r in np.flatnonzero(game.G[k]))
            for k in profile]


def loop_potential(game, profile):
    """Rosenthal: sum_r sum_{l=1}^{L_r} c_r(l); spectrum: base costs + interfering pairs."""
    if hasattr(game, "adjacency"):
        pairs = sum(game.adjacency[i, j] for i, j in itertools.combinations(range(game.N), 2)
                    if profile[i] == profile[j])
        return pairs + sum(game.base[c] for c in profile)
    total = 0.0
    for r in range(len(game.a)):
        L = sum(game.G[k, r] for k in profile)
        total += sum(game.a[r] + game.b[r] * users for users in range(1, int(L) + 1))
    return total


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize("raw, words", [
    ({"name": "congestion", "resources": [{"name": "a"}]}, "Field required"),
    ({"name": "congestion", "players": 2, "resources": []}, "at least 1"),
    ({"name": "congestion", "players": 2, "resources": [{"name": "a"}]}, "at least 2 strat"),
    ({"name": "congestion", "players": 2, "resources": [{"name": "a"}, {"name": "a"}]},
     "unique"),
    ({"name": "congestion", "players": 2, "resources": [{"name": "a"}, {"name": "b"}],
      "strategies": [["a"], ["c"]]}, "unknown resource 'c'"),
    ({"name": "congestion", "players": 2, "resources": [{"a": -1}, {}]},
     "greater than or equal"),
    ({"name": "spectrum", "channels": 2}, "exactly one"),
    ({"name": "spectrum", "radios": 3, "channels": 1}, "greater than or equal to 2"),
    ({"name": "spectrum", "positions": [[0, 0, 1]]}, "[x, y]"),
    ({"name": "spectrum", "radios": 3, "channels": 2, "channel_cost": [1]}, "one per channel"),
])
def test_bad_configs(raw, words):
    with pytest.raises(ConfigError) as info:
        validate_section("game", raw)
    assert words in str(info.value) and info.value.field.startswith("game")


def test_layout_and_names():
    g = random_congestion(np.random.default_rng(0), N=3)
    assert (g.N, g.K, g.S, g.A, g.T) == (3, 5, 3 + 15, 5, 1)
    assert g.action_names[3] == "u+v" and g.edge_names == ("u", "v", "w")
    assert g.state_names[g.state(2, 4)] == "player2:v+w"
    np.testing.assert_allclose(g.mu0.sum(), 1)
    s = star(3)
    assert s.edge_names == ("ch0", "ch1", "ch2")
    np.testing.assert_array_equal(s.adjacency.sum(axis=1), [4, 1, 1, 1, 1])


# ------------------------------------------------------------------- costs and potential


@pytest.mark.parametrize("make", [random_congestion, lambda rng: star(3)])
def test_costs_and_potential_match_plain_loops(make, rng):
    g = make(rng)
    profiles = all_profiles(g.N, g.K)
    costs = g.pure_costs(profiles)
    pots = g.rosenthal(profiles)
    for m in rng.choice(len(profiles), 40, replace=False):
        np.testing.assert_allclose(costs[m], loop_costs(g, profiles[m]), atol=1e-12)
        assert pots[m] == pytest.approx(loop_potential(g, profiles[m]), abs=1e-12)


@pytest.mark.parametrize("make", [random_congestion, lambda rng: star(3)])
def test_rosenthal_potential_identity(make, rng):
    """Rosenthal (1973); the paper's Lemma 1: when one player deviates, its cost changes by
    exactly the change of the potential (all profiles, players and deviations)."""
    g = make(rng)
    profiles = all_profiles(g.N, g.K)
    costs, pots = g.pure_costs(profiles), g.rosenthal(profiles)
    index = {tuple(p): m for m, p in enumerate(profiles)}
    for m, p in enumerate(profiles):
        for i in range(g.N):
            for k in range(g.K):
                q = p.copy()
                q[i] = k
                n = index[tuple(q)]
                assert costs[n, i] - costs[m, i] == pytest.approx(pots[n] - pots[m], abs=1e-9)


@pytest.mark.parametrize("make", [random_congestion, lambda rng: star(2)])
def test_mixed_costs_are_exact_expectations(make, rng):
    """Affine costs: the expected cost of a strategy against independent mixed strategies
    (enumerating every profile of the others) equals the game's closed form, so the solver's
    exploitability is the exact Nash gap, averaged over players."""
    g = make(rng)
    x = rng.dirichlet(np.ones(g.K), size=g.N)
    profiles = all_profiles(g.N, g.K)
    prob = np.prod(x[np.arange(g.N), profiles], axis=1)        # (M,)
    want = np.zeros((g.N, g.K))
    for m, p in enumerate(profiles):
        for i in range(g.N):
            if p[i] == 0:                                        # weight of the others' play
                w = prob[m] / x[i, 0]
                for k in range(g.K):
                    q = p.copy()
                    q[i] = k
                    want[i, k] += w * loop_costs(g, q)[i]
    np.testing.assert_allclose(g.costs(x), want, atol=1e-10)
    gap = np.mean((x * want).sum(axis=1) - want.min(axis=1))   # cost above a best response
    assert exploitability(g, g.policy(x)) == pytest.approx(gap, abs=1e-10)


@pytest.mark.parametrize("make", [random_congestion, lambda rng: star(3)])
def test_potential_gradient_is_the_reward(make, rng):
    """d potential / d mu(i, k) = -C_i(k) up to a constant per player (central differences of
    the multilinear extension of the potential)."""
    g = make(rng)
    mu = g.landing(rng.dirichlet(np.ones(g.K), size=g.N))
    assert_potential_gradient_is_reward(g, mu, atol=1e-5)


# ---------------------------------------------------- equilibrium against the optimum


def test_atomic_pigou_closed_forms():
    """N = 4. Alone, x costs at most 4 = the fixed cost, so everyone takes x: total 16. By
    enumeration the optimum splits 2/2 (4 + 8 = 12) and the pure equilibria cost 13 (3 on x)
    or 16. Identical players stay identical: with a toll t on x each takes it with
    probability p = (3 - t)/3 (1 + 3p + t = 4) and the expected total is
    E[L^2] + 4 (4 - E[L]) = 12 p^2 - 12 p + 16, least at p = 1/2 (t = 3/2): 13."""
    g = pigou(4)
    profiles = all_profiles(g.N, g.K)
    cost = np.array([sum(loop_costs(g, p)) for p in profiles])
    assert cost.min() == 12
    assert sorted(set(cost[pure_nash(g, profiles)])) == [13, 16]
    alone = EXACT.solve(g)
    assert -g.N * welfare(g, alone.mu) == pytest.approx(16, abs=1e-3)
    assert alone.exploitability <= 1e-9
    tolls = modifiers.get("tolls")(validate_section("modifier", {"name": "tolls"}), g)
    for t in (0.5, 1.5, 2.0):
        sol = EXACT.solve(g, tolls.theta(np.array([t, 0.0])))
        p = (3 - t) / 3
        np.testing.assert_allclose(g.mixed(sol.mu[0])[:, 0], p, atol=1e-6)
        assert -g.N * welfare(g, sol.mu) == pytest.approx(12 * p**2 - 12 * p + 16, abs=1e-5)


def test_learners_equilibrium_against_brute_force(rng):
    """Random instances: the learners reach an equilibrium (exploitability = average Nash gap
    <= tolerance) whose expected social cost, enumerated over every pure profile with the
    players' mixed probabilities and plain-loop costs, is what the game reports, at least
    the brute-force optimum, and at most

    * what every player would pay by its cheapest unilateral switch to a pure strategy
      against the others' mixes (the Nash condition, also enumerated with plain loops): a
      mixed equilibrium costs each player exactly its best response's expected cost;
    * 5/2 times the optimum: the price of anarchy of atomic congestion games with affine
      costs, which holds for mixed (even coarse correlated) equilibria too (Christodoulou
      and Koutsoupias 2005; Roughgarden 2009: affine costs are (5/3, 1/3)-smooth)."""
    for _ in range(3):
        g = random_congestion(rng)
        profiles = all_profiles(g.N, g.K)
        cost = np.array([sum(loop_costs(g, p)) for p in profiles])
        sol = EXACT.solve(g)
        assert sol.exploitability <= 1e-9
        learned = -g.N * welfare(g, sol.mu)
        x = g.mixed(sol.mu[0])  # (N, K)
        prob = np.array([np.prod([x[i, k] for i, k in enumerate(p)]) for p in profiles])
        assert learned == pytest.approx(float(prob @ cost), abs=1e-9)
        # E[cost of player i | i plays k], the others keeping their mixes: sum over the
        # profiles with p_i = k of prod_{j != i} x_j(p_j) times i's plain-loop cost there
        switch = np.zeros((g.N, g.K))
        for p in profiles:
            costs = loop_costs(g, p)
            for i in range(g.N):
                others = np.prod([x[j, k] for j, k in enumerate(p) if j != i])
                switch[i, p[i]] += others * costs[i]
        assert learned <= switch.min(axis=1).sum() + 1e-6
        assert learned >= cost.min() - 1e-6
        assert learned <= 2.5 * cost.min() + 1e-6
        assert pure_nash(g, profiles).any()         # potential games have pure equilibria


def test_meta_agent_tolls_recover_most_of_the_gap():
    """Atomic Pigou, N = 4: welfare (minus the average cost) -16/4 alone, -13/4 at the best
    anonymous toll (test_atomic_pigou_closed_forms), -12/4 at the optimum: 3/4 of the gap."""
    result = crowdsteer.run({
        "seed": 0, "game": {"name": "congestion", "players": 4,
                            "resources": [{"name": "x", "a": 0, "b": 1},
                                          {"name": "fixed", "a": 4, "b": 0}]},
        "learner": {"name": "exact", "tolerance": 1e-8, "max_iterations": 20000},
        "modifier": {"name": "tolls", "bounds": [0, 3]},
        "objective": {"name": "welfare"},
        "optimiser": {"name": "bo", "evaluations": 12, "initial": 5}})
    assert result.baseline.welfare == pytest.approx(-4, abs=1e-3)
    assert result.best.welfare == pytest.approx(-3.25, abs=0.01)
    recovered = (result.best.welfare - result.baseline.welfare) / (-3 - result.baseline.welfare)
    assert recovered >= 0.73
    assert result.best.exploitability <= 1e-8


def test_spectrum_alone_and_with_channel_prices():
    """Star: a hub with four leaves, two channels. From the uniform start every channel is
    equally crowded for everyone, so the learners stay at random channels (a mixed Nash
    equilibrium): the hub meets 4 x 1/2 interferers, each leaf 1/2, total 4 (two interfering
    pairs expected). A price t on channel 1 (0 < t < 4) first moves everyone to channel 0;
    the hub, with four neighbours, then gains most by leaving: hub on 1, leaves on 0, no
    interference, the brute-force optimum."""
    g = star(2)
    profiles = all_profiles(g.N, g.K)
    assert g.interference(profiles).min() == 0
    alone = EXACT.solve(g)
    assert alone.exploitability == 0 and alone.iterations == 1
    assert -g.N * welfare(g, alone.mu) == pytest.approx(4)
    tolls = modifiers.get("tolls")(validate_section("modifier", {"name": "tolls"}), g)
    sol = EXACT.solve(g, tolls.theta(np.array([0.0, 1.0])))
    x = g.mixed(sol.mu[0])
    assert x[0, 1] > 1 - 1e-4 and np.all(x[1:, 0] > 1 - 1e-4)
    assert -g.N * welfare(g, sol.mu) == pytest.approx(0, abs=1e-4)
    assert sol.exploitability <= 1e-9


def test_spectrum_example_alone_and_optimum():
    """examples/spectrum.yaml: 7 random radios, 3 channels. Alone: random channels,
    cost deg_i / 3 per radio, 22/21 on average; the brute-force optimum is 0 (3-colourable)."""
    result = solve(EXAMPLES / "spectrum.yaml")
    g = result.game
    assert result.welfare == pytest.approx(-g.adjacency.sum() / 3 / g.N)
    assert result.welfare == pytest.approx(-22 / 21)
    assert g.interference(all_profiles(g.N, g.K)).min() == 0


@pytest.mark.slow
def test_spectrum_meta_agent_finds_a_colouring():
    cfg = load_config(EXAMPLES / "spectrum.yaml", required=("game", "modifier"))
    result = crowdsteer.run(cfg)
    assert result.baseline.welfare == pytest.approx(-22 / 21)
    assert result.best.welfare == pytest.approx(0, abs=1e-6)
    assert result.best.exploitability <= 1e-8


# ---------------------------------------------------------------- transfers, CLI, examples


@given(seed=st.integers(0, 2**31))
def test_budget_balanced_transfers_between_many_players(seed):
    """N = 3 players: each meets the average of the other two; antisymmetric W pays zero
    net, since sum over ordered pairs i != j of x_i^T W x_j = 0."""
    r = np.random.default_rng(seed)
    g = random_congestion(r, N=3)
    m = modifiers.get("transfers")(validate_section(
        "modifier", {"name": "transfers", "budget_balanced": True}), g)
    theta = m.theta(r.uniform(-3, 3, m.n_params))
    pi = r.dirichlet(np.ones(g.K), size=(1, g.S))
    mu = mean_field(g, pi)
    paid = np.sum(state_before(g, mu)[0][:, None] * pi[0] * theta_at(theta, 0, mu[0],
                                                                      (g.S, g.A)))
    assert paid == pytest.approx(0, abs=1e-12)


def test_cli_solves_the_congestion_example(tmp_path):
    r = subprocess.run([sys.executable, "-m", "crowdsteer", "solve",
                        str(EXAMPLES / "congestion.yaml"), "--out", str(tmp_path / "run")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["exploitability"] <= 1e-8
    assert summary["welfare"] == pytest.approx(-6, abs=1e-3)   # all six on x, each paying 6
    assert np.load(tmp_path / "run" / "mu.npy").shape == (1, 6 + 12)


def test_congestion_example_numbers():
    """examples/congestion.yaml, N = 6: alone 36 (6 each); optimum 3/3, 9 + 18 = 27; the best
    symmetric mix p = 1/2 costs E[L^2] + 6 (6 - E[L]) = 10.5 + 18 = 28.5."""
    g = solve(EXAMPLES / "congestion.yaml").game
    cost = np.array([sum(loop_costs(g, p)) for p in all_profiles(g.N, g.K)])
    assert cost.min() == 27
    sol = EXACT.solve(g, modifiers.get("tolls")(
        validate_section("modifier", {"name": "tolls"}), g).theta(np.array([2.5, 0.0])))
    assert -g.N * welfare(g, sol.mu) == pytest.approx(28.5, abs=1e-6)


@pytest.mark.parametrize("name", ["congestion", "spectrum", "prisoners_dilemma", "stag_hunt"])
def test_examples_load_and_build(name):
    s = setup(load_config(EXAMPLES / f"{name}.yaml", required=("game", "modifier")))
    assert s.modifier.n_params > 0


@pytest.mark.parametrize("example", ["congestion", "spectrum"])
def test_lemma1_of_the_tolled_game(example, rng):
    """The paper's Lemma 1 as crowdsteer.theory checks it: with tolls the game keeps a
    potential (Rosenthal's with a_r + w_r); moving a small mass from one strategy to another
    changes it by the mass times the change in modified reward."""
    s = setup(load_config(EXAMPLES / f"{example}.yaml", required=("game", "modifier")))
    theta = s.modifier.theta(rng.uniform(0, 2, s.modifier.n_params))
    worst, scale = lemma1_violation(s.game, theta, rng, pairs=30)
    assert scale > 0.1 and worst <= 1e-6 * scale
