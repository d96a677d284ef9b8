"""The exact solver's methods (newton, omd, fp), its warm starts and its passes.

References: the log-congestion closed form (one shot, any move: mu proportional to
exp((d + Theta) / (c + tau)), derived in tests/test_exact.py), brute-force policy
evaluation through the public functions of crowdsteer.equilibrium, finite differences,
and the dense transition kernel.
"""

import numpy as np
import pytest

from crowdsteer.equilibrium import (
    best_response, evaluate, exploitability, mean_field, state_before,
)
from crowdsteer.errors import ConfigError
from crowdsteer.games.base import SparseMoves, reward_table
from crowdsteer.games.matrix import MatrixConfig, build as build_matrix
from crowdsteer.learners.base import Solution
from crowdsteer.learners.exact import ExactConfig, ExactSolver
from crowdsteer.learners.passes import Passes, to_action_major, to_state_major
from tests.conftest import crowd
from tests.test_crowd import loop_local_kernel


def solve(game, theta=None, init=None, **kw):
    kw.setdefault("tolerance", 1e-10)
    kw.setdefault("max_iterations", 20000)
    return ExactSolver(ExactConfig(**kw)).solve(game, theta, init=init)


def dynamic_game(kind="log", c=0.8):
    return crowd(height=3, width=4, horizon=3, moves="local", noise=0.2,
                 congestion={"kind": kind, "strength": c, "radius": 1.0},
                 desirability={"bumps": [{"center": [[0, 0], [1, 2], [2, 3]], "height": 1.0,
                                          "width": 1.0}]})


# ------------------------------------------------------------------ closed form


@pytest.mark.parametrize("c", [0.5, 3.0])
@pytest.mark.parametrize("method, tau", [("newton", 0.0), ("newton", 0.3), ("newton", 1e-3),
                                         ("omd", 0.0), ("omd", 0.3), ("fp", 0.3)])
def test_each_method_matches_the_log_congestion_closed_form(c, method, tau):
    """One shot, any move, log congestion: mu proportional to exp((d + Theta) / (c + tau))
    (derivation in tests/test_exact.py::test_log_congestion_closed_form)."""
    game = crowd(height=3, width=3, congestion={"kind": "log", "strength": c})
    field = np.linspace(-0.6, 0.4, game.S)
    theta = np.broadcast_to(field[None, None, :], (1, game.S, game.A))
    sol = solve(game, theta, temperature=tau, method=method, tolerance=1e-12)
    want = np.exp((game.d[0] + field) / (c + tau))
    np.testing.assert_allclose(sol.mu[0], want / want.sum(), atol=1e-5)
    assert sol.converged


# ------------------------------------------------------------------ certificates


def _routing():
    from crowdsteer.config import build_game, load_config
    from tests.test_routing import TWO_PAIRS

    return build_game(load_config({"game": TWO_PAIRS}))


def games_and_modifiers():
    kernel = dynamic_game("kernel", 1.5)
    rng = np.random.default_rng(3)
    return [
        ("crowd log", dynamic_game("log", 0.8), None),
        ("routing, two pairs", _routing(), None),
        ("crowd kernel + theta", kernel, rng.normal(0, 0.3, (kernel.T, kernel.S, kernel.A))),
        ("stag hunt", build_matrix(MatrixConfig(preset="stag_hunt", players=2)), None),
    ]


@pytest.mark.parametrize("tau", [0.0, 0.05])
@pytest.mark.parametrize("case", games_and_modifiers(), ids=lambda c: c[0])
def test_certificate_is_exact_and_within_tolerance(case, tau):
    """The returned exploitability is the public function's at the returned policy, >= 0,
    and <= tolerance when converged."""
    _, game, theta = case
    sol = solve(game, theta, temperature=tau, tolerance=1e-6, method="auto",
                learning_rate=10.0 if case[0].startswith("routing") else None)
    assert sol.converged
    again = exploitability(game, sol.pi, tau, theta)
    assert sol.exploitability == pytest.approx(again, abs=1e-11)
    assert 0 <= sol.exploitability <= 1e-6
    np.testing.assert_allclose(sol.mu, mean_field(game, sol.pi), atol=1e-12)
    np.testing.assert_allclose(sol.pi.sum(axis=2), 1.0, atol=1e-12)
    assert np.all(sol.pi >= 0)


def test_newton_and_omd_reach_the_same_mean_field():
    """At tau > 0 the regularised equilibrium is unique: two methods must agree on mu."""
    game = dynamic_game("log", 0.8)
    a = solve(game, temperature=0.2, method="newton", tolerance=1e-11)
    b = solve(game, temperature=0.2, method="omd", tolerance=1e-11)
    np.testing.assert_allclose(a.mu, b.mu, atol=1e-5)
    assert a.inner_steps > 0 and b.inner_steps == 0


def test_auto_uses_newton_only_where_it_applies():
    game = dynamic_game()
    solver = ExactSolver(ExactConfig(temperature=0.1))
    assert solver.method_for(game) == "newton"
    assert solver.method_for(game, lambda t, mu: np.zeros((game.S, game.A))) == "omd"
    assert ExactSolver(ExactConfig(temperature=0.0)).method_for(game) == "newton"
    for tau in (1.0, 3.0):  # where the convergence benchmark measures omd ahead
        assert ExactSolver(ExactConfig(temperature=tau)).method_for(game) == "omd"
    no_potential = build_matrix(MatrixConfig(payoffs=[[0, 1], [1, 0]], column_payoffs=[[1, 0],
                                                                                      [0, 1]],
                                             players=2))  # matching pennies
    assert not hasattr(no_potential, "potential")
    assert solver.method_for(no_potential) == "omd"
    with pytest.raises(ConfigError, match="learner.method"):
        ExactSolver(ExactConfig(method="newton")).solve(no_potential)
    # the fallback still certifies: matching pennies' equilibrium is (1/2, 1/2) each
    sol = solve(no_potential, temperature=0.1, tolerance=1e-9)
    np.testing.assert_allclose(sol.pi[0, :2], 0.5, atol=1e-4)


# ------------------------------------------------------------------ warm starts


@pytest.mark.parametrize("method, tau", [("newton", 0.1), ("newton", 0.0), ("omd", 0.1),
                                         ("fp", 0.3)])
def test_warm_start_from_a_perturbed_equilibrium_reaches_the_same_mean_field(method, tau):
    game = dynamic_game("log", 0.8)
    tol = 1e-8 if method != "fp" else 1e-6
    ref = solve(game, temperature=tau, method=method, tolerance=tol)
    rng = np.random.default_rng(0)
    noise = rng.dirichlet(np.ones(game.A), size=(game.T, game.S))
    pi = 0.8 * ref.pi + 0.2 * noise
    start = Solution(pi, mean_field(game, pi), 1.0, ref.iterations, 0.0, False,
                     dual=None, stage_temperature=ref.stage_temperature)
    warm = solve(game, init=start, temperature=tau, method=method, tolerance=tol)
    assert warm.converged
    # the equilibrium mean field is unique (strictly concave potential in mu); a gap of
    # tol bounds the distance to it by about sqrt(tol)
    np.testing.assert_allclose(warm.mu, ref.mu, atol=30 * np.sqrt(tol))
    assert exploitability(game, warm.pi, tau) <= tol


def test_warm_start_from_the_solution_itself_is_immediate_and_deterministic():
    game = dynamic_game("kernel", 1.0)
    ref = solve(game, temperature=0.1, method="omd", tolerance=1e-9)
    again = solve(game, init=ref, temperature=0.1, method="omd", tolerance=1e-9)
    assert again.iterations == 1
    twice = solve(game, init=ref, temperature=0.1, method="omd", tolerance=1e-9)
    np.testing.assert_array_equal(again.pi, twice.pi)


@pytest.mark.parametrize("method", ["newton", "omd"])
def test_warm_start_of_a_nearby_game_is_deterministic_and_cheaper(method):
    near = dynamic_game("log", 0.8)
    far = dynamic_game("log", 0.9)
    base = solve(near, tolerance=1e-6, method=method)
    cold = solve(far, tolerance=1e-6, method=method)
    warm = solve(far, init=base, tolerance=1e-6, method=method)
    warm2 = solve(far, init=base, tolerance=1e-6, method=method)
    np.testing.assert_array_equal(warm.pi, warm2.pi)
    assert warm.converged and warm.iterations <= cold.iterations
    np.testing.assert_allclose(warm.mu, cold.mu, atol=1e-3)


@pytest.mark.parametrize("tau, c", [(1e-6, 0.9), (3e-6, 0.85)])
def test_a_warm_start_at_a_small_temperature_resumes_the_path_at_warm_restart(tau, c):
    """newton's WARM_RESTART: a warm start at a target temperature of 1e-6 resumes the
    temperature path at 1e-3, not at 4x the tiny stage it had reached (measured on this
    game: from 4e-6 it does not converge in 300 iterations, from 1.2e-5 it takes 80; cold
    22-33, warm from 1e-3 20-22). The defaults of the other tests (temperature 0) take
    proximal steps and never read the constant."""
    near = dynamic_game("log", 0.8)
    far = dynamic_game("log", c)
    base = solve(near, temperature=tau, tolerance=1e-8, method="newton")
    assert base.stage_temperature == pytest.approx(tau)
    cold = solve(far, temperature=tau, tolerance=1e-8, method="newton")
    warm = solve(far, init=base, temperature=tau, tolerance=1e-8, method="newton",
                 max_iterations=300)
    assert warm.converged and warm.iterations <= cold.iterations
    np.testing.assert_allclose(warm.mu, cold.mu, atol=1e-3)


def test_a_warm_start_at_temperature_1e_5_on_kernel_congestion_converges():
    """Found for issue 21: from a nearby game's equilibrium at target temperature 1e-5,
    kernel congestion, newton's warm start climbs from 3e-3 to an exploitability of 0.3 and
    stalls. The solver then starts again cold; the result is the cold solve's (reference:
    the cold solve itself, converged in 25 iterations), and both attempts' iterations
    count."""
    near = dynamic_game("kernel", 0.8)
    far = dynamic_game("kernel", 0.9)
    base = solve(near, temperature=1e-5, tolerance=1e-8, method="newton")
    cold = solve(far, temperature=1e-5, tolerance=1e-8, method="newton", max_iterations=100)
    warm = solve(far, init=base, temperature=1e-5, tolerance=1e-8, method="newton",
                 max_iterations=100)
    assert cold.converged and warm.converged
    np.testing.assert_array_equal(warm.mu, cold.mu)
    assert warm.iterations == 100 + cold.iterations


def test_refine_moves_a_warm_start_already_within_the_tolerance_with_the_game():
    """A warm start from a nearby game's equilibrium can already be within the tolerance:
    without ``refine`` it is returned unchanged (one certificate), so the solution, and J,
    do not move with the game; with it, newton steps on and lands nearer the new game's
    equilibrium (reference: a cold solve to 1e-13)."""
    near = dynamic_game("log", 0.8)
    far = dynamic_game("log", 0.8 + 1e-4)
    cfg = ExactConfig(temperature=0.1, tolerance=1e-6, method="newton")
    base = solve(near, temperature=0.1, tolerance=1e-13, method="newton")
    ref = solve(far, temperature=0.1, tolerance=1e-13, method="newton")
    plain = ExactSolver(cfg).solve(far, init=base)
    refined = ExactSolver(cfg, refine=1e-12).solve(far, init=base)
    assert plain.iterations == 1 and plain.exploitability <= 1e-6
    np.testing.assert_array_equal(plain.mu, base.mu)
    assert 2 <= refined.iterations <= 3 and refined.converged  # at most two steps past
    assert refined.exploitability <= plain.exploitability
    # the error in mu is of the order of the square root of the exploitability (4e-9
    # before the step, about 3e-13 after it): more than 100x smaller
    err_plain = np.abs(plain.mu - ref.mu).max()
    assert np.abs(refined.mu - ref.mu).max() <= 0.02 * err_plain
    assert exploitability(far, refined.pi, 0.1) == pytest.approx(refined.exploitability,
                                                                 abs=1e-14)


def test_mismatched_warm_start_is_refused():
    game = dynamic_game()
    other = crowd(height=2, width=2, horizon=3, moves="local")
    sol = solve(other, temperature=0.5, tolerance=1e-3)
    with pytest.raises(ConfigError, match=r"init: .*\(T, S, A\) = \(3, 12, 5\)"):
        solve(game, init=sol)


def test_model_free_learners_accept_and_ignore_init():
    from crowdsteer.learners import learners

    game = dynamic_game()
    prev = solve(game, temperature=0.3, tolerance=1e-4)
    for name in ("fictitious_play", "independent"):
        builder = learners.get(name)
        learner = builder(builder.config(agents=50, max_iterations=2))
        a = learner.solve(game, rng=np.random.default_rng(1))
        b = learner.solve(game, rng=np.random.default_rng(1), init=prev)
        np.testing.assert_array_equal(a.pi, b.pi)


# ------------------------------------------------------------------ passes and kernels


@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_noisy_moves_equal_the_dense_kernel(noise, rng):
    game = crowd(height=3, width=4, horizon=2, moves="local", noise=noise)
    tr = game.transition
    P = loop_local_kernel(3, 4, noise)  # (S, A, S) by plain loops
    v = rng.normal(size=game.S)
    V2 = rng.normal(size=(game.S, 2))
    m = rng.normal(size=(game.S, game.A))
    mu = rng.dirichlet(np.ones(game.S))
    pi = rng.dirichlet(np.ones(game.A), size=game.S)
    np.testing.assert_allclose(tr.expect(v), P @ v)
    np.testing.assert_allclose(tr.expect(V2), np.einsum("saq,qk->sak", P, V2))
    np.testing.assert_allclose(tr.push_mass(m), np.einsum("sa,saq->q", m, P))
    np.testing.assert_allclose(tr.push(mu, pi), np.einsum("s,sa,saq->q", mu, pi, P))
    np.testing.assert_allclose(tr.expect_as(v), (P @ v).T)
    np.testing.assert_allclose(tr.push_as(np.ascontiguousarray(m.T)), np.einsum("sa,saq->q", m, P))
    generic = SparseMoves(tr.next_state, tr.prob)  # the general kernel, action-major too
    np.testing.assert_allclose(generic.expect_as(v), (P @ v).T)
    np.testing.assert_allclose(generic.push_as(np.ascontiguousarray(m.T)),
                               np.einsum("sa,saq->q", m, P))


@pytest.mark.parametrize("tau", [0.0, 0.4])
@pytest.mark.parametrize("moves", ["local", "any"])
def test_passes_match_the_public_functions(tau, moves, rng):
    game = crowd(height=2, width=3, horizon=2 if moves == "local" else 1, moves=moves,
                 noise=0.1 if moves == "local" else 0.0,
                 congestion={"kind": "log", "strength": 0.7})
    theta = rng.normal(size=(game.T, game.S, game.A))
    pi = rng.dirichlet(np.ones(game.A), size=(game.T, game.S))
    p = Passes(game, theta)
    pa = to_action_major(pi)
    mu, before = p.forward(pa)
    np.testing.assert_allclose(mu, mean_field(game, pi))
    np.testing.assert_allclose(before, state_before(game, mu))
    R = reward_table(game, mu, theta)
    Ra = p.table(mu)
    np.testing.assert_allclose(to_state_major(Ra), R)
    Q, V = p.evaluate(pa, Ra, tau)
    ev = evaluate(game, pi, R, tau)
    np.testing.assert_allclose(to_state_major(Q), ev.Q)
    np.testing.assert_allclose(V, ev.V)
    np.testing.assert_allclose(p.best_values(Ra, tau), best_response(game, R, tau).V)


def test_tangent_is_the_derivative_of_forward_and_adjoint_its_transpose(rng):
    game = dynamic_game()
    p = Passes(game)
    pi = to_action_major(rng.dirichlet(np.ones(game.A), size=(game.T, game.S)))
    dpi = rng.normal(size=pi.shape)
    dpi -= dpi.mean(axis=1, keepdims=True)  # stays on the simplex
    mu, before = p.forward(pi)
    dmu, _ = p.tangent(pi, before, dpi)
    h = 1e-6
    fd = (p.forward(pi + h * dpi)[0] - p.forward(pi - h * dpi)[0]) / (2 * h)
    np.testing.assert_allclose(dmu, fd, atol=1e-8)
    # <w, dmu> summed over steps = sum of beta * dpi * (values of pi for reward w)
    w = rng.normal(size=(game.T, game.S))
    dQ = p.adjoint(pi, w)
    assert np.sum(w * dmu) == pytest.approx(np.sum(before[:, None, :] * dpi * dQ), rel=1e-10)


@pytest.mark.parametrize("kind", ["log", "kernel"])
def test_crowd_reward_jvp_matches_finite_differences(kind, rng):
    game = dynamic_game(kind, 1.3)
    mu = rng.dirichlet(np.ones(game.S))
    d = rng.normal(size=game.S)
    h = 1e-7
    fd = (game.reward(0, mu + h * d) - game.reward(0, mu - h * d)) / (2 * h)
    np.testing.assert_allclose(game.reward_jvp(0, mu, d), fd, rtol=1e-5, atol=1e-6)
