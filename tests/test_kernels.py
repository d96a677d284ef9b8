"""The compiled kernels of the ``newton`` method against the NumPy passes they replace,
and the temperature-0 proximal stage.

References: :class:`crowdsteer.learners.passes.Passes` (tangent and adjoint, themselves
tested against finite differences and the dense kernel in tests/test_solver_methods.py),
the NumPy conjugate gradients of ``newton`` (``CROWDSTEER_KERNELS=numpy``), mirror descent
(``omd``) for the unique equilibrium mean field, and the public ``exploitability``.
"""

import dataclasses

import numpy as np
import pytest

from crowdsteer.equilibrium import exploitability
from crowdsteer.games.base import SparseMoves
from crowdsteer.learners import kernels, newton
from crowdsteer.learners.exact import ExactConfig, ExactSolver
from crowdsteer.learners.passes import Passes
from tests.conftest import crowd

pytestmark = pytest.mark.skipif(not kernels.enabled(), reason="Numba is not installed")


def grid_game(kind="log", noise=0.1, moves="local", n=6, T=4):
    return crowd(height=n, width=n, horizon=T, moves=moves, noise=noise,
                 congestion={"kind": kind, "strength": 0.7, "radius": 1.0},
                 desirability={"bumps": [{"center": [[1, 1], [2, 3], [4, 4], [4, 4]][:T],
                                          "height": 1.0, "width": 1.5}]})


def sparse_game(rng, n=5, T=3, K=3):
    """A crowd game whose transition is a general SparseMoves: each (s, a) lands on K
    random cells with random probabilities (not the NoisyMoves structure)."""
    game = grid_game(n=n, T=T)
    S, A = game.S, game.A
    nxt = rng.integers(0, S, size=(S, A, K))
    prob = rng.dirichlet(np.ones(K), size=(S, A))
    return dataclasses.replace(game, transition=SparseMoves(nxt, prob))


def random_point(game, rng):
    p = Passes(game)
    pi = p.softmax(2.0 * rng.normal(size=(p.T, p.A, p.S)))
    mu, before = p.forward(pi)
    return p, pi, mu, before


@pytest.mark.parametrize("noise", [0.0, 0.3, "sparse"])
def test_fused_tangent_and_adjoint_equal_the_numpy_passes(noise, rng):
    game = sparse_game(rng) if noise == "sparse" else grid_game(noise=noise)
    p, pi, mu, before = random_point(game, rng)
    fused = kernels.FusedCG(game.transition)
    assert fused.noisy == (noise != "sparse")
    d = rng.normal(size=pi.shape)
    s_new = rng.normal(size=pi.shape)
    beta = 0.7
    want_d = s_new + beta * d
    dmu = np.empty((p.T, p.S))
    fused.tangent(pi, before, d, s_new, beta, dmu)
    np.testing.assert_allclose(d, want_d, rtol=1e-12)  # the direction update, in place
    np.testing.assert_allclose(dmu, p.tangent(pi, before, want_d)[0], rtol=1e-12,
                               atol=1e-15)
    w = rng.normal(size=(p.T, p.S))
    scale = rng.uniform(0.5, 2.0, size=(p.T, p.S))
    fisher = rng.uniform(0.0, 3.0, size=pi.shape)
    out = np.empty_like(pi)
    dot = fused.matvec_tail(pi, w, scale, before, fisher, want_d, out)
    want = p.adjoint(pi, scale * w) * before[:, None, :] + fisher * want_d
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-15)
    assert dot == pytest.approx(float(np.vdot(want_d, want)), rel=1e-12)


def test_fused_update_is_one_preconditioned_cg_update(rng):
    shape = (3, 5, 7)
    z, r, d, Ad = (rng.normal(size=shape) for _ in range(4))
    inv = rng.uniform(0.1, 2.0, size=shape)
    total = inv.sum(axis=1)
    z0, r0 = z.copy(), r.copy()
    s = np.empty(shape)
    rs = kernels.FusedCG.update(z, r, d, Ad, 0.3, inv, total, s)
    np.testing.assert_allclose(z, z0 + 0.3 * d)
    np.testing.assert_allclose(r, r0 - 0.3 * Ad)
    # the diagonal inverse projected on each state's simplex tangent in its own metric
    want = inv * r - inv * ((inv * r).sum(axis=1, keepdims=True) / total[:, None, :])
    np.testing.assert_allclose(s, want, atol=1e-12)
    np.testing.assert_allclose(s.sum(axis=1), 0.0, atol=1e-12)
    assert rs == pytest.approx(float(np.vdot(r, want)))


@pytest.mark.parametrize("kind", ["log", "kernel", "sparse"])
def test_fused_newton_direction_matches_the_numpy_one(kind, rng):
    """Single-precision sweeps, double-precision residual: the direction agrees to the
    precision conjugate gradients are asked for (CG_TOLERANCE = 1e-2)."""
    game = sparse_game(rng) if kind == "sparse" else grid_game(kind=kind)
    p, pi, mu, before = random_point(game, rng)
    prob = newton._Problem(p, game)
    assert prob.fused is not None
    R = p.table(mu)
    tau = 1e-2
    Q, _ = p.evaluate(pi, R, tau)
    G = prob.project(before[:, None, :] * (Q - tau * np.log(pi)))
    z1, slope1, _ = prob.direction(pi, G, mu, before, tau)
    prob.fused = None
    z2, slope2, _ = prob.direction(pi, G, mu, before, tau)
    assert slope1 > 0 and slope2 > 0
    assert slope1 == pytest.approx(slope2, rel=1e-3)
    assert np.linalg.norm(z1 - z2) <= 1e-3 * np.linalg.norm(z2)


def test_both_paths_reach_the_same_temperature_0_equilibrium(monkeypatch):
    """The compiled and the NumPy path certify the same equilibrium at tau = 0 (its mean
    field is unique: the potential is strictly concave in mu), and so does omd."""
    game = grid_game(n=5, T=3)
    cfg = ExactConfig(method="newton", temperature=0.0, tolerance=1e-7, max_iterations=500)
    fused = ExactSolver(cfg).solve(game)
    monkeypatch.setenv("CROWDSTEER_KERNELS", "numpy")
    assert not kernels.enabled()
    plain = ExactSolver(cfg).solve(game)
    ref = ExactSolver(ExactConfig(method="omd", temperature=0.0, tolerance=1e-7,
                                  max_iterations=200000)).solve(game)
    for sol in (fused, plain):
        assert sol.converged
        assert 0 <= exploitability(game, sol.pi, 0.0) <= 1e-7
        # a gap of eps bounds the distance of mu to the equilibrium by about sqrt(eps)
        np.testing.assert_allclose(sol.mu, ref.mu, atol=30 * np.sqrt(1e-7))


def test_proximal_stage_reaches_tight_tolerances_at_temperature_0():
    """The proximal steps converge to the temperature-0 equilibrium itself (not the
    regularised one at PROX_TAU, whose exploitability is a few times PROX_TAU)."""
    game = grid_game(n=5, T=3)
    sol = ExactSolver(ExactConfig(method="newton", temperature=0.0, tolerance=1e-8,
                                  max_iterations=500)).solve(game)
    assert sol.converged and sol.stage_temperature == newton.PROX_TAU
    assert 0 <= exploitability(game, sol.pi, 0.0) <= 1e-8
    assert sol.history[-1] < 1e-5 * newton.PROX_TAU
    # the reference, by another algorithm: mirror descent at temperature 0 (the mean field
    # is unique: strictly concave potential). Measured: 1e-9 from it, while the regularised
    # equilibrium at PROX_TAU is 1e-3 away (exploitability 2.4e-3 at temperature 0)
    ref = ExactSolver(ExactConfig(method="omd", temperature=0.0, tolerance=1e-9,
                                  max_iterations=200_000)).solve(game)
    regularised = ExactSolver(ExactConfig(method="newton", temperature=newton.PROX_TAU,
                                          tolerance=1e-10, max_iterations=500)).solve(game)
    assert ref.converged and regularised.converged
    assert np.abs(sol.mu - ref.mu).max() <= 1e-6
    assert np.abs(regularised.mu - ref.mu).max() >= 1e-4  # the check can tell them apart
    assert exploitability(game, regularised.pi, 0.0) >= 100 * 1e-8
