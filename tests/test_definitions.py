"""Welfare and exploitability recomputed from their definitions with plain Python loops.

Nothing here calls crowdsteer's mean field, rewards, values or best responses: the crowd
game's moves, desirability and kernel crowding are written out again below from the
README's definitions, and every sum is a loop over ``t``, ``s``, ``a`` (and ``s'``). The
vectorised code must agree to rounding.

* welfare: :math:`\\sum_t \\sum_s \\mu_t(s) r_t(s; \\mu_t)`, over *every* step (a multi-step
  game, so counting one step only cannot pass);
* exploitability: :math:`\\sum_s \\mu_0(s) (V^*_0(s) - V^\\pi_0(s))`, with the soft values of
  the equilibrium module's docstring.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from crowdsteer.equilibrium import exploitability, mean_field, welfare
from crowdsteer.learners.exact import ExactConfig, ExactSolver
from crowdsteer.objectives import Payoff
from tests.conftest import crowd

H, W, T = 3, 4, 3
NOISE = 0.2
BUMP = {"center": [[0, 0], [1, 2], [2, 3]], "height": 1.5, "width": 1.2}
C, RADIUS = 0.8, 1.0


def game_under_test(noise=NOISE):
    return crowd(height=H, width=W, horizon=T, moves="local", noise=noise,
                 desirability={"bumps": [BUMP]},
                 congestion={"kind": "kernel", "strength": C, "radius": RADIUS})


# ----------------------------------------------------------- the game, from the README


def cell(s):
    return divmod(s, W)


def moves(noise):
    """P[s][a] = {s': probability}: stay, up, down, left, right; off-grid stays put; with
    probability ``noise`` the move is replaced by one of the five drawn uniformly."""
    steps = [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)]

    def land(s, a):
        i, j = cell(s)
        ni, nj = i + steps[a][0], j + steps[a][1]
        return ni * W + nj if 0 <= ni < H and 0 <= nj < W else s

    P = []
    for s in range(H * W):
        row = []
        for a in range(5):
            out = {}
            for b in range(5):
                p = (1 - noise) * (a == b) + noise / 5
                out[land(s, b)] = out.get(land(s, b), 0.0) + p
            row.append(out)
        P.append(row)
    return P


def desirability(t, s):
    i, j = cell(s)
    ci, cj = BUMP["center"][t]
    return BUMP["height"] * math.exp(-((i - ci) ** 2 + (j - cj) ** 2) / (2 * BUMP["width"] ** 2))


def reward(t, s, mu_t):
    """``d_t(s) - c sum_s' K(s, s') mu_t(s')`` with the Gaussian kernel."""
    i, j = cell(s)
    crowding = 0.0
    for s2 in range(H * W):
        i2, j2 = cell(s2)
        crowding += math.exp(-((i - i2) ** 2 + (j - j2) ** 2) / (2 * RADIUS**2)) * mu_t[s2]
    return desirability(t, s) - C * crowding


def loop_mean_field(pi, P, mu0):
    mu, prev = [], list(mu0)
    for t in range(T):
        nxt = [0.0] * (H * W)
        for s in range(H * W):
            for a in range(5):
                for s2, p in P[s][a].items():
                    nxt[s2] += prev[s] * pi[t][s][a] * p
        mu.append(nxt)
        prev = nxt
    return mu


def loop_welfare(pi, P, mu0):
    mu = loop_mean_field(pi, P, mu0)
    return sum(mu[t][s] * reward(t, s, mu[t]) for t in range(T) for s in range(H * W))


def loop_exploitability(pi, P, mu0, tau, theta):
    """``sum_s mu0(s) (V*_0(s) - V^pi_0(s))``: both by backward induction, one number at a
    time. Rewards are paid where agents land, ``r_t(s'; mu_t)``, plus ``theta[t][s][a]``."""
    mu = loop_mean_field(pi, P, mu0)
    S = H * W
    v_best, v_pi = [0.0] * S, [0.0] * S
    for t in reversed(range(T)):
        r = [reward(t, s2, mu[t]) for s2 in range(S)]
        new_best, new_pi = [0.0] * S, [0.0] * S
        for s in range(S):
            q_best, q_pi = [], []
            for a in range(5):
                base = theta[t][s][a] + sum(p * r[s2] for s2, p in P[s][a].items())
                q_best.append(base + sum(p * v_best[s2] for s2, p in P[s][a].items()))
                q_pi.append(base + sum(p * v_pi[s2] for s2, p in P[s][a].items()))
            if tau > 0:
                top = max(q_best)
                new_best[s] = top + tau * math.log(sum(math.exp((q - top) / tau)
                                                       for q in q_best))
            else:
                new_best[s] = max(q_best)
            new_pi[s] = sum(pi[t][s][a] * q_pi[a] for a in range(5))
            new_pi[s] -= tau * sum(p * math.log(p) for p in pi[t][s] if p > 0)
        v_best, v_pi = new_best, new_pi
    return sum(mu0[s] * (v_best[s] - v_pi[s]) for s in range(S))


# ----------------------------------------------------------------------------- tests


def test_the_hand_written_game_is_the_game():
    """The loops above describe the same game (else the comparisons below mean nothing)."""
    game = game_under_test()
    P = moves(NOISE)
    dense = game.transition.dense()
    for s in range(H * W):
        for a in range(5):
            want = np.zeros(H * W)
            for s2, p in P[s][a].items():
                want[s2] = p
            np.testing.assert_allclose(dense[s, a], want, atol=1e-15)
    mu = np.random.default_rng(0).dirichlet(np.ones(H * W))
    for t in range(T):
        np.testing.assert_allclose(game.reward(t, mu), [reward(t, s, mu) for s in range(H * W)],
                                   atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_welfare_sums_every_step(seed):
    """A random policy on the 3-step game: welfare equals the from-definition sum over all
    steps (each step contributes: checked, so dropping one cannot pass), and so does the
    welfare the meta-agent's objective measures."""
    game = game_under_test()
    pi = np.random.default_rng(seed).dirichlet(np.ones(5), size=(T, H * W))
    P = moves(NOISE)
    want = loop_welfare(pi.tolist(), P, game.mu0.tolist())
    mu = mean_field(game, pi)
    per_step = [float(mu[t] @ game.reward(t, mu[t])) for t in range(T)]
    assert min(abs(x) for x in per_step) > 0.05  # every step matters
    assert welfare(game, mu) == pytest.approx(want, rel=1e-12)
    from crowdsteer.learners.base import Solution

    sol = Solution(pi, mu, 0.0, 1, 0.0, True)
    assert Payoff("welfare", None).measure(game, sol).objective == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("tau", [0.0, 0.3])
def test_exploitability_of_a_random_policy_with_a_modifier(tau):
    game = game_under_test()
    rng = np.random.default_rng(3)
    pi = rng.dirichlet(np.ones(5), size=(T, H * W))
    theta = rng.normal(scale=0.3, size=(T, H * W, 5))
    want = loop_exploitability(pi.tolist(), moves(NOISE), game.mu0.tolist(), tau,
                               theta.tolist())
    assert want > 0.1
    assert exploitability(game, pi, tau, theta) == pytest.approx(want, rel=1e-10)


def test_the_solvers_certificate_matches_the_definition():
    """test_exact.test_dynamic_plain_nash_reaches_tolerance's game and solve (4 x 4 there;
    here the 3 x 4 grid of this file, tau = 0, no noise): the certificate the solver
    returns equals the exploitability of its policy computed from the definition."""
    game = game_under_test(noise=0.0)
    sol = ExactSolver(ExactConfig(temperature=0.0, tolerance=1e-4, max_iterations=20000)).solve(
        game)
    assert sol.converged
    zero = np.zeros((T, H * W, 5)).tolist()
    want = loop_exploitability(sol.pi.tolist(), moves(0.0), game.mu0.tolist(), 0.0, zero)
    assert sol.exploitability == pytest.approx(want, abs=1e-12)
    assert want <= 1e-4
