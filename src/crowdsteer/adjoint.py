"""Hypergradients: the exact derivative of J through the equilibrium (implicit differentiation).

At temperature ``tau > 0`` the regularised mean-field equilibrium is the fixed point of

.. math::

    \\mu = G(\\mu, w) = \\Gamma\\big(\\mathrm{BR}_\\tau(R(\\mu) + \\Theta(\\mu; w))\\big),

where ``R(mu)`` is the ``(T, S, A)`` table of expected intrinsic rewards against the mean
field, ``BR_tau`` the soft best response (backward induction with
``pi_t = softmax(Q_t / tau)``) and ``Gamma`` the forward pass (the mean field a policy
induces from ``mu0``). For ``J(mu)`` (KL to a target, welfare) the implicit-function theorem
gives

.. math::

    \\frac{dJ}{dw} = \\lambda^\\top \\frac{\\partial G}{\\partial w}, \\qquad
    (I - \\partial_\\mu G)^\\top \\lambda = \\nabla_\\mu J,

a linear solve in ``T S`` unknowns (the adjoint equation), done matrix-free with GMRES
on vector-Jacobian products of ``G``: one reverse pass through the forward pass, the
softmax backward induction and the rewards, the cost of about one solver iteration.
No ``(T S A)^2`` or ``(T S)^2`` matrix is ever formed. The residual of the linear solve is
checked; a gradient whose solve did not converge raises :class:`GradientError`.

The pieces each game and modifier contributes:

* ``reward_vjp(game, t, mu_t, g)``: ``(d r_t / d mu_t)^T g`` (crowd, routing paths, the
  player games here; any game may define its own ``reward_vjp`` method);
* ``modifier.theta_vjp(w, g_theta, mu)``: the derivative of ``Theta`` in ``w`` (and, for
  modifiers that move with the crowd, ``theta_mu_vjp`` in ``mu``);
* ``objective.gradient(game, solution)``: ``dJ / d mu``.

Games with an equilibrium of their own (road networks) provide
``game.equilibrium_vjp(solution, theta, g_mu) -> (g_theta, residual)`` instead of the
mean-field adjoint.

References: the implicit-function theorem for equilibria of games (Dafermos 1988; Tobin &
Friesz 1988 for traffic); bilevel incentive design through mirror-descent equilibria
(AMID, arXiv 2510.21442), which unrolls the solver instead of solving the adjoint equation.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse.linalg import LinearOperator, gmres

from crowdsteer.equilibrium import TAU_MIN, best_response, mean_field, state_before
from crowdsteer.errors import CrowdsteerError
from crowdsteer.games.base import Game, ThetaLike, power_derivative, reward_table

Array = np.ndarray

RESIDUAL_TOL = 1e-6
"""Largest relative residual ``|(I - A^T) lambda - g| / |g|`` accepted for the adjoint."""


class GradientError(CrowdsteerError):
    """A hypergradient could not be computed to the required accuracy, or does not exist."""


# --------------------------------------------------------------------------- transitions


def expect_T(game: Game, X: Array) -> Array:
    """Adjoint of ``transition.expect``: ``(S, A) -> (S,)``, ``sum_{s,a} X(s,a) P(s'|s,a)``.

    ``push(1, X)`` computes exactly this for every transition (``push`` is linear in the
    policy argument and never normalises it).
    """
    return game.transition.push(np.ones(game.S), X)


# ------------------------------------------------------------------------------- rewards


def reward_vjp(game: Game, t: int, mu_t: Array, g: Array) -> Array:
    """``(d r_t / d mu_t)^T g`` for the landing reward ``r_t(mu_t)`` ``(S,)``.

    Games may define ``reward_vjp(t, mu_t, g)`` themselves; the games of this package are
    handled here (all derivatives exact, from the formulas in each game's docstring).
    """
    own = getattr(game, "reward_vjp", None)
    if own is not None:
        return np.asarray(own(t, mu_t, g), dtype=float)
    from crowdsteer.games.crowd import LOG_FLOOR, CrowdGame
    from crowdsteer.games.matrix import PlayerGame
    from crowdsteer.games.routing import RoutingGame

    if isinstance(game, CrowdGame):
        if game.kind == "log":  # r = d - c log(max(mu, floor))
            return np.where(mu_t > LOG_FLOOR, -game.c * g / np.maximum(mu_t, LOG_FLOOR), 0.0)
        return -game.c * game.crowding(g)  # r = d - c K mu, K symmetric
    if isinstance(game, RoutingGame):
        # r = [0; -D Delta^T l(x)], x = Delta f, f = D mu[K:]
        x = game.edge_flow(mu_t)
        slope = game.b * power_derivative(x, game.p)
        x_bar = slope * (game.edge_path @ (-game.D * g[game.K:]))
        out = np.zeros(game.S)
        out[game.K:] = game.D * (game.edge_path.T @ x_bar)
        return out
    if isinstance(game, PlayerGame):
        x_bar = payoffs_vjp(game, game.mixed(mu_t), np.asarray(g)[game.N:].reshape(game.N, game.K))
        out = np.zeros(game.S)
        out[game.N:] = game.N * x_bar.ravel()
        return out
    raise GradientError(f"no hypergradient for {type(game).__name__}: it defines no "
                        "reward_vjp; use an optimiser without gradients (bo)")


def payoffs_vjp(game: Any, x: Array, g: Array) -> Array:
    """``(d u / d x)^T g`` for the (affine) expected payoffs ``u(x)`` ``(N, K)`` of a player game."""
    from crowdsteer.games.congestion import CongestionGame, SpectrumGame
    from crowdsteer.games.matrix import MatrixGame

    if isinstance(game, MatrixGame):
        if game.N == 1:  # u = M x
            return (game.M.T @ g[0])[None, :]
        # u_row = M x_col, u_col = B^T x_row
        return np.stack([game.B @ g[1], game.M.T @ g[0]])
    if isinstance(game, CongestionGame):
        # u = -(a + b (1 + others)) G^T with others = p.sum(0) - p, p = x G
        o_bar = -(g @ game.G) * game.b                     # (N, R)
        p_bar = o_bar.sum(axis=0, keepdims=True) - o_bar
        return p_bar @ game.G.T
    if isinstance(game, SpectrumGame):  # u = -(base + Adj x)
        return -(game.adjacency.T @ g)
    raise GradientError(f"no hypergradient for {type(game).__name__}: its payoffs have no "
                        "vector-Jacobian product here")


def opponents_vjp(game: Any, g: Array) -> Array:
    """``(d o / d mu_t)^T g`` for ``o = game.opponents(mu_t)`` ``(S, K)`` (linear in ``mu_t``)."""
    N, K = game.N, game.K
    other_bar = np.zeros((N, K))
    np.add.at(other_bar, game.player_of, g)
    x_bar = other_bar if N == 1 else (other_bar.sum(axis=0, keepdims=True) - other_bar) / (N - 1)
    out = np.zeros(game.S)
    out[N:] = N * x_bar.ravel()
    return out


# ------------------------------------------------------------------ the fixed-point map G


@dataclass(frozen=True)
class Linearisation:
    """The fixed-point map ``G`` linearised at an equilibrium ``mu``.

    Attributes
    ----------
    mu
        ``(T, S)`` the equilibrium mean field (after each move).
    pi
        ``(T, S, A)`` the soft best response to ``mu`` (``= pi`` at the fixed point).
    before
        ``(T, S)`` mass before each step under ``pi``.
    """

    game: Any
    tau: float
    mu: Array
    pi: Array
    before: Array
    theta_mu_vjp: Any

    def vjp_rewards(self, g_mu: Array) -> Array:
        """``R_bar = (dG / dR)^T g_mu``, ``(T, S, A)``: how the output mean field moves with
        the reward table (the modifier's table enters ``R`` additively)."""
        game, tau, pi = self.game, self.tau, self.pi
        T = game.T
        # reverse of the forward pass  mu'_t = push(m_t, pi_t),  m_{t+1} = mu'_t
        pi_bar = np.empty_like(pi)
        carry = np.zeros(game.S)  # cotangent of m_{t+1} from later steps
        for t in range(T - 1, -1, -1):
            E = game.transition.expect(g_mu[t] + carry)          # (S, A)
            pi_bar[t] = self.before[t][:, None] * E
            carry = (pi[t] * E).sum(axis=1)
        # reverse of the backward induction  Q_t = R_t + P V_{t+1},  pi_t = softmax(Q_t/tau),
        # V_t = tau logsumexp(Q_t/tau);  V_0 feeds nothing
        R_bar = np.empty_like(pi)
        V_bar = np.zeros(game.S)
        for t in range(T):
            inner = pi_bar[t] - (pi[t] * pi_bar[t]).sum(axis=1, keepdims=True)
            Q_bar = pi[t] * inner / tau + pi[t] * V_bar[:, None]
            R_bar[t] = Q_bar
            V_bar = expect_T(game, Q_bar)
        return R_bar

    def vjp_mu(self, g_mu: Array) -> Array:
        """``(dG / d mu)^T g_mu``, ``(T, S)``."""
        R_bar = self.vjp_rewards(g_mu)
        out = np.stack([reward_vjp(self.game, t, self.mu[t], expect_T(self.game, R_bar[t]))
                        for t in range(self.game.T)])
        if self.theta_mu_vjp is not None:
            out += self.theta_mu_vjp(R_bar)
        return out


def linearise(game: Game, mu: Array, theta: ThetaLike, tau: float,
              theta_mu_vjp: Any = None) -> Linearisation:
    """Linearise ``G`` at ``mu`` (the soft best response and the masses it induces)."""
    if tau <= TAU_MIN:
        raise GradientError("hypergradients need learner.temperature > 0: at temperature 0 "
                            "the best response jumps, so the equilibrium is not differentiable "
                            "in w; set e.g. temperature: 0.01, or use optimiser: bo")
    pi = best_response(game, reward_table(game, mu, theta), tau).pi
    before = state_before(game, mean_field(game, pi))
    return Linearisation(game, tau, mu, pi, before, theta_mu_vjp)


@dataclass(frozen=True)
class Adjoint:
    """The solution of the adjoint equation at one equilibrium.

    Attributes
    ----------
    g_theta
        ``(T, S, A)`` (or the game's own shape): ``dJ / d Theta``.
    residual
        Relative residual of the linear solve.
    iterations
        Matrix-vector products (vector-Jacobian products of ``G``) used.
    seconds
        Wall time of the adjoint.
    """

    g_theta: Array
    residual: float
    iterations: int
    seconds: float


def adjoint(game: Game, mu: Array, theta: ThetaLike, tau: float, g_mu: Array,
            theta_mu_vjp: Any = None, tol: float = 1e-10, max_products: int = 2000) -> Adjoint:
    """Solve ``(I - dG/dmu)^T lambda = g_mu`` and return ``dJ/dTheta = (dG/dTheta)^T lambda``.

    Parameters
    ----------
    mu
        ``(T, S)`` the equilibrium.
    g_mu
        ``(T, S)`` ``dJ / d mu`` at the equilibrium.
    theta_mu_vjp
        For modifiers that depend on ``mu``: ``R_bar (T, S, A) -> (T, S)``.

    Raises
    ------
    GradientError
        The relative residual of the solve is above :data:`RESIDUAL_TOL`.
    """
    start = time.perf_counter()
    lin = linearise(game, mu, theta, tau, theta_mu_vjp)
    shape = mu.shape
    n = mu.size
    products = 0

    def matvec(v: Array) -> Array:
        nonlocal products
        products += 1
        v = v.reshape(shape)
        return (v - lin.vjp_mu(v)).ravel()

    g = np.asarray(g_mu, dtype=float).ravel()
    scale = float(np.linalg.norm(g))
    if scale == 0.0:
        return Adjoint(np.zeros_like(lin.pi), 0.0, 0, time.perf_counter() - start)
    op = LinearOperator((n, n), matvec=matvec, dtype=float)
    restart = max(1, min(n, 20, max_products))
    lam, _ = gmres(op, g, x0=g.copy(), rtol=tol, atol=0.0, restart=restart,
                   maxiter=max(1, max_products // restart))
    residual = float(np.linalg.norm(matvec(lam) - g)) / scale
    if not np.isfinite(residual) or residual > RESIDUAL_TOL:
        raise GradientError(f"the adjoint linear solve did not converge (relative residual "
                            f"{residual:.2e} after {products} products); the equilibrium may "
                            "be degenerate here: tighten learner.tolerance or raise the "
                            "temperature")
    g_theta = lin.vjp_rewards(lam.reshape(shape))
    return Adjoint(g_theta, residual, products, time.perf_counter() - start)


def accepts_mu(fn: Any) -> bool:
    """Whether a ``theta_vjp`` takes the mean field as a third argument."""
    try:
        return "mu" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return False
