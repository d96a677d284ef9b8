"""Reward modifiers: conformance over the registry, closed forms, budget balance, shaping."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from pathlib import Path

from crowdsteer.config import build_game, load_config, validate_section
from crowdsteer.equilibrium import exploitability, mean_field, state_before
from crowdsteer.errors import ConfigError
from crowdsteer.games.base import theta_at
from crowdsteer.learners.exact import ExactConfig, ExactSolver
from crowdsteer.modifiers import modifiers
from tests.conftest import crowd

EXTRA = {"power_series": {"order": 2}, "rbf": {"centers": 2}, "tabular": {},
         "potential_based": {"potential": {"name": "rbf", "centers": 2}}}


def make(name, game, **kw):
    cfg = validate_section("modifier", {"name": name, **EXTRA[name], **kw})
    return modifiers.get(name)(cfg, game)


def table(theta, game, mu):
    return np.stack([np.broadcast_to(theta_at(theta, t, mu[t], (game.S, game.A)),
                                     (game.S, game.A)) for t in range(game.T)])


def game_and_modifier(name, **kw):
    """A local-move crowd game for the grid families; for a family made for other games,
    the game and modifier section of an example config that uses it."""
    if name in EXTRA:
        game = crowd(height=3, width=4, horizon=2, moves="local", noise=0.1)
        return game, make(name, game, **kw)
    for path in sorted(Path(__file__).parent.parent.joinpath("examples").glob("*.yaml")):
        cfg = load_config(path)
        if cfg["modifier"] is not None and cfg["modifier"].name == name:
            game = build_game(cfg)
            raw = {**cfg.resolved()["modifier"], **kw}
            return game, modifiers.get(name)(validate_section("modifier", raw), game)
    pytest.fail(f"no example config uses the modifier family {name!r}")


@pytest.mark.parametrize("name", modifiers.names())
@pytest.mark.parametrize("budget", [False, True])
@pytest.mark.parametrize("per_step", [False, True])
def test_every_family_conforms(name, budget, per_step, rng):
    game, m = game_and_modifier(name, budget_balanced=budget, per_step=per_step)
    T, S, A = game.T, game.S, game.A
    assert m.n_params > 0
    w = rng.uniform(0, 1, m.n_params)
    allowed = np.ones((S, A)) if game.allowed is None else game.allowed
    pi = rng.dirichlet(np.ones(A), size=(T, S)) * allowed
    pi /= pi.sum(axis=2, keepdims=True)
    mu = mean_field(game, pi)
    th = table(m.theta(w), game, mu)
    assert th.shape == (T, S, A) and np.all(np.isfinite(th))
    assert m.field(w).shape == (T, S)
    # w = 0 changes nothing
    assert np.all(table(m.theta(np.zeros(m.n_params)), game, mu) == 0)


def test_power_series_terms():
    # order 2 on a 3 x 5 grid: terms 1, u, v, u^2, uv, v^2 with u the column, v the row in [-1, 1]
    game = crowd(height=3, width=5)
    m = make("power_series", game)
    assert m.n_params == 6
    w = np.array([0.5, 1.0, -2.0, 0.25, 3.0, -1.0])
    f = m.field(w)[0]
    for i in range(3):
        for j in range(5):
            u, v = -1 + 2 * j / 4, -1 + 2 * i / 2
            want = 0.5 + u - 2 * v + 0.25 * u * u + 3 * u * v - v * v
            assert f[i * 5 + j] == pytest.approx(want)


@given(seed=st.integers(0, 2**31), name=st.sampled_from(["power_series", "rbf", "tabular"]))
def test_budget_balanced_transfers_sum_to_zero(seed, name):
    """Sum over the population (and steps) of Theta is zero for any w and any policy."""
    r = np.random.default_rng(seed)
    game = crowd(height=2, width=3, horizon=3, moves="local")
    m = make(name, game, budget_balanced=True, per_step=bool(seed % 2))
    w = r.uniform(-3, 3, m.n_params)
    pi = r.dirichlet(np.full(5, 0.5), size=(3, 6))
    mu = mean_field(game, pi)
    before = state_before(game, mu)
    th = table(m.theta(w), game, mu)
    per_step = np.einsum("ts,tsa,tsa->t", before, pi, th)
    np.testing.assert_allclose(per_step, 0, atol=1e-12)


def test_budget_balance_keeps_the_equilibrium(rng):
    game = crowd(height=3, width=3, horizon=2, moves="local")
    w = rng.uniform(-1, 1, 6)
    solver = ExactSolver(ExactConfig(temperature=0.3, tolerance=1e-10))
    a = solver.solve(game, make("power_series", game).theta(w))
    b = solver.solve(game, make("power_series", game, budget_balanced=True).theta(w))
    # the two solves may take different methods (the balanced modifier depends on the mean
    # field, so auto picks mirror descent for it); an exploitability of 1e-10 at tau = 0.3
    # bounds each mean field's distance to the unique equilibrium by about sqrt(2e-10 / 0.3)
    np.testing.assert_allclose(a.mu, b.mu, atol=3e-5)


@given(seed=st.integers(0, 2**31), tau=st.sampled_from([0.0, 0.4]))
def test_potential_shaping_leaves_best_responses_unchanged(seed, tau):
    """Shaping shifts Q_t(s, .) by -Phi_t(s), a state-only term: every policy's exploitability
    (and so the equilibrium set) is the same in the shaped game."""
    r = np.random.default_rng(seed)
    game = crowd(height=2, width=3, horizon=3, moves="local", noise=0.2)
    m = make("potential_based", game, per_step=True)
    theta = m.theta(r.uniform(-3, 3, m.n_params))
    pi = r.dirichlet(np.ones(5), size=(3, 6))
    assert exploitability(game, pi, tau, theta) == pytest.approx(exploitability(game, pi, tau),
                                                                 abs=1e-9)


def test_potential_shaping_keeps_the_solved_equilibrium(rng):
    game = crowd(height=3, width=3, horizon=2, moves="local")
    m = make("potential_based", game)
    solver = ExactSolver(ExactConfig(temperature=0.3, tolerance=1e-10))
    a = solver.solve(game)
    b = solver.solve(game, m.theta(rng.uniform(-2, 2, m.n_params)))
    np.testing.assert_allclose(a.mu, b.mu, atol=1e-6)


def test_budget_balanced_shaping_pays_nothing_net(rng):
    """Phi_0 = Phi_T = 0: every agent's transfers telescope to zero over the horizon."""
    game = crowd(height=2, width=2, horizon=3, moves="local")
    m = make("potential_based", game, budget_balanced=True, per_step=True)
    th = m.theta(rng.uniform(-2, 2, m.n_params))
    pi = rng.dirichlet(np.ones(5), size=(3, 4))
    mu = mean_field(game, pi)
    total = np.einsum("ts,tsa,tsa->", state_before(game, mu), pi, th)
    assert total == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("raw, field", [
    ({"name": "rbf", "bounds": [2, 1]}, "modifier.bounds"),
    ({"name": "rbff"}, "modifier.name"),
    ({"name": "power_series", "order": -1}, "modifier.order"),
    ({"name": "rbf", "centres": 3}, "modifier.centres"),
])
def test_bad_modifier_configs(raw, field):
    with pytest.raises(ConfigError) as info:
        validate_section("modifier", raw)
    assert info.value.field == field
