"""Mean field, best response and exploitability against plain loops and brute force."""

import itertools

import numpy as np
from hypothesis import given, strategies as st

from crowdsteer.equilibrium import (
    best_response, evaluate, exploitability, mean_field, welfare,
)
from crowdsteer.games.base import reward_table
from tests.conftest import crowd
from tests.test_crowd import loop_local_kernel


def loop_mean_field(mu0, P, pi):
    T, S, A = pi.shape
    out = np.zeros((T, S))
    prev = mu0
    for t in range(T):
        for s in range(S):
            for a in range(A):
                for q in range(S):
                    out[t, q] += prev[s] * pi[t, s, a] * P[s, a, q]
        prev = out[t]
    return out


def test_mean_field_matches_loop(rng):
    game = crowd(height=2, width=3, horizon=3, moves="local", noise=0.2)
    pi = rng.dirichlet(np.ones(5), size=(3, 6))
    np.testing.assert_allclose(mean_field(game, pi), loop_mean_field(game.mu0,
                               loop_local_kernel(2, 3, 0.2), pi))


def deterministic_values(game, P, R):
    """Value of every deterministic Markov policy, by plain loops (independent of the code)."""
    T, S, A = R.shape
    best = -np.inf
    for choice in itertools.product(range(A), repeat=T * S):
        act = np.array(choice).reshape(T, S)
        V = np.zeros(S)
        for t in range(T - 1, -1, -1):
            V = np.array([R[t, s, act[t, s]] + P[s, act[t, s]] @ V for s in range(S)])
        best = max(best, float(game.mu0 @ V))
    return best


def test_best_response_equals_brute_force_over_deterministic_policies(rng):
    # 1x3 grid, T = 2, local moves with noise: 5^(T*S) = 15,625 deterministic policies.
    game = crowd(height=1, width=3, horizon=2, moves="local", noise=0.1,
                 desirability={"bumps": [{"center": [0, 2], "height": 1.0, "width": 1.0}]})
    pi = rng.dirichlet(np.ones(5), size=(2, 3))
    R = reward_table(game, mean_field(game, pi))
    brute = deterministic_values(game, loop_local_kernel(1, 3, 0.1), R)
    assert float(game.mu0 @ best_response(game, R).V[0]) == np_approx(brute)
    # exploitability: brute-force best value minus the policy's own value
    own = float(game.mu0 @ evaluate(game, pi, R).V[0])
    assert exploitability(game, pi) == np_approx(brute - own)


def np_approx(x, rel=1e-9):
    import pytest

    return pytest.approx(x, rel=rel, abs=1e-12)


@given(seed=st.integers(0, 2**31), tau=st.sampled_from([0.0, 0.1, 1.0]),
       kind=st.sampled_from(["kernel", "log"]), local=st.booleans())
def test_exploitability_nonnegative_and_mu_on_simplex(seed, tau, kind, local):
    r = np.random.default_rng(seed)
    game = crowd(height=2, width=3, horizon=2 if local else 1, moves="local" if local else "any",
                 congestion={"kind": kind, "strength": float(r.uniform(0, 2)), "radius": 1.0})
    pi = r.dirichlet(np.full(game.A, 0.3), size=(game.T, game.S))
    mu = mean_field(game, pi)
    assert np.all(mu >= 0)
    np.testing.assert_allclose(mu.sum(axis=1), 1.0)
    assert exploitability(game, pi, tau) >= 0


def test_soft_value_is_log_sum_exp_of_one_shot_rewards():
    # One shot, any move: V*(s) = tau log sum_a exp(r(a)/tau) (the soft maximum).
    game = crowd(height=2, width=2)
    mu = np.full((1, 4), 0.25)
    R = reward_table(game, mu)
    tau = 0.7
    r = game.reward(0, mu[0])
    want = tau * np.log(np.exp(r / tau).sum())
    np.testing.assert_allclose(best_response(game, R, tau).V[0], want)


def test_welfare_is_mass_weighted_reward():
    game = crowd(height=2, width=2, congestion={"kind": "kernel", "strength": 0.5, "radius": 0})
    mu = np.array([[0.1, 0.2, 0.3, 0.4]])
    # radius 0: K = I, so r(s) = d(s) - 0.5 mu(s)
    assert welfare(game, mu) == np_approx(float(mu[0] @ (game.d[0] - 0.5 * mu[0])))
