"""Forward and backward passes of the exact solver, in action-major layout.

The public functions of :mod:`crowdsteer.equilibrium` take policies shaped ``(T, S, A)``.
Inside the solver every array is ``(T, A, S)`` instead, so that ``x[t, a]`` is a
contiguous ``(S,)`` vector: each step of a solver reduces, broadcasts or takes a softmax
over the few actions of every state, and NumPy does that several times faster along a
long leading axis than along a short last one (``max`` over ``A = 5``: 0.16 ms instead of
1.5 ms for 100,000 rows). The transitions of :mod:`crowdsteer.games.base` provide
``expect_as`` / ``push_as`` for this layout; any other transition is transposed.

The quantities are those of :mod:`crowdsteer.equilibrium` (same notation):

.. math::

    \\mu_t = P^\\top m_t,\\quad m_t(s, a) = \\beta_t(s)\\,\\pi_t(s, a),\\quad
    \\beta_0 = \\mu_0,\\ \\beta_{t+1} = \\mu_t

    Q_t(s, a) = R_t(s, a) + \\sum_{s'} P(s'|s, a) V_{t+1}(s'),\\qquad
    V_t(s) = \\sum_a \\pi_t(s, a) Q_t(s, a) + \\tau H(\\pi_t(s, \\cdot))

with ``beta_t`` the distribution before step ``t`` (``state_before``) and ``m_t`` the
occupation measure. The tangent (forward) and adjoint (backward) passes are the
derivatives the Newton method needs (:mod:`crowdsteer.learners.newton`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from crowdsteer.equilibrium import TAU_MIN
from crowdsteer.games.base import Game, ThetaLike, push_mass
from crowdsteer.learners.base import Progress, check_finite

Array = np.ndarray
LOG_MIN = -600.0
"""Log-probabilities are floored here (``e^-600 ~ 1e-261``): far below anything that can
change a value, and above the subnormal range, where NumPy's arithmetic is ~10x slower."""


def certified(tau: float) -> float:
    """The temperature a certificate uses: ``tau``, or 0 at or below ``TAU_MIN`` (as the
    public :func:`~crowdsteer.equilibrium.exploitability` does)."""
    return tau if tau > TAU_MIN else 0.0


def to_action_major(x: Array) -> Array:
    """``(..., S, A)`` -> contiguous ``(..., A, S)``."""
    return np.ascontiguousarray(np.swapaxes(x, -1, -2))


def to_state_major(x: Array) -> Array:
    """``(..., A, S)`` -> contiguous ``(..., S, A)`` (the public layout)."""
    return np.ascontiguousarray(np.swapaxes(x, -1, -2))


class Passes:
    """The model of one game (and modifier) in action-major layout.

    Parameters
    ----------
    game
        Any registered game.
    theta
        The modifier term: ``None``, a ``(T, S, A)`` array, or a callable
        ``(t, mu_t) -> (S, A)`` (evaluated at every reward table).
    """

    def __init__(self, game: Game, theta: ThetaLike = None) -> None:
        self.game = game
        self.T, self.S, self.A = game.T, game.S, game.A
        self.mu0 = np.asarray(game.mu0, dtype=float)
        tr = game.transition
        expect_as = getattr(tr, "expect_as", None)
        push_as = getattr(tr, "push_as", None)
        self.expect: Callable[[Array], Array] = expect_as or (
            lambda v: to_action_major(tr.expect(v)))
        self.push: Callable[[Array], Array] = push_as or (
            lambda m: push_mass(tr, to_state_major(m)))
        self.allowed = None if game.allowed is None else to_action_major(game.allowed)
        self.theta_fn: Callable[[int, Array], Array] | None = None
        self.theta: Array | None = None
        if callable(theta):
            self.theta_fn = theta
        elif theta is not None:
            th = np.broadcast_to(np.asarray(theta, dtype=float), (self.T, self.S, self.A))
            check_finite(th, "the modifier")
            self.theta = to_action_major(th)

    # ------------------------------------------------------------------ policies

    def uniform(self) -> Array:
        """``(T, A, S)``: uniform over the allowed actions."""
        if self.allowed is None:
            return np.full((self.T, self.A, self.S), 1.0 / self.A)
        p = self.allowed / self.allowed.sum(axis=0)
        return np.broadcast_to(p, (self.T, self.A, self.S)).copy()

    def softmax(self, y: Array) -> Array:
        """Softmax over actions of logits ``(T, A, S)``; disallowed actions get exactly 0."""
        z = y - y.max(axis=1, keepdims=True)
        np.maximum(z, LOG_MIN, out=z)  # also turns -inf (masked) into a finite number
        np.exp(z, out=z)
        if self.allowed is not None:
            z *= self.allowed
        z /= z.sum(axis=1, keepdims=True)
        return z

    # ------------------------------------------------------------------ forward

    def forward(self, pi: Array) -> tuple[Array, Array]:
        """Mean field and mass before each step: ``(mu, beta)``, both ``(T, S)``."""
        mu = np.empty((self.T, self.S))
        before = np.empty((self.T, self.S))
        prev = self.mu0
        for t in range(self.T):
            before[t] = prev
            prev = mu[t] = self.push(pi[t] * prev)
        return mu, before

    def tangent(self, pi: Array, before: Array, dpi: Array) -> tuple[Array, Array]:
        """Derivative of :meth:`forward` in the direction ``dpi`` ``(T, A, S)``:
        ``(dmu, dbeta)`` with ``dm_t = dbeta_t pi_t + beta_t dpi_t``, ``dmu_t = P^T dm_t``."""
        dmu = np.empty((self.T, self.S))
        dbefore = np.empty((self.T, self.S))
        prev = np.zeros(self.S)
        for t in range(self.T):
            dbefore[t] = prev
            prev = dmu[t] = self.push(pi[t] * prev + dpi[t] * before[t])
        return dmu, dbefore

    # ------------------------------------------------------------------ rewards

    def landing_rewards(self, mu: Array) -> Array:
        """``(T, S)`` intrinsic landing rewards ``r_t(s'; mu_t)``."""
        return np.stack([self.game.reward(t, mu[t]) for t in range(self.T)])

    def theta_at(self, t: int, mu_t: Array) -> Array | None:
        """``(A, S)`` modifier term of step ``t`` (``None`` when there is none)."""
        if self.theta is not None:
            return self.theta[t]
        if self.theta_fn is not None:
            th = np.broadcast_to(np.asarray(self.theta_fn(t, mu_t), dtype=float),
                                 (self.S, self.A))
            check_finite(th, "the modifier")
            return to_action_major(th)
        return None

    def table(self, mu: Array, r: Array | None = None) -> Array:
        """``(T, A, S)`` modified expected rewards ``R_t(s, a) + Theta_t(s, a)``."""
        if r is None:
            r = self.landing_rewards(mu)
        check_finite(r, "the rewards")  # e.g. an infinite congestion strength
        R = np.empty((self.T, self.A, self.S))
        for t in range(self.T):
            R[t] = self.expect(r[t])
            th = self.theta_at(t, mu[t])
            if th is not None:
                R[t] += th
        return R

    # ------------------------------------------------------------------ backward

    def evaluate(self, pi: Array, R: Array, tau: float) -> tuple[Array, Array]:
        """Soft values of ``pi`` against ``R``: ``Q`` ``(T, A, S)`` and ``V`` ``(T, S)``.

        Any ``tau > 0`` counts here (see :func:`certified` for the certificate's)."""
        Q = np.empty((self.T, self.A, self.S))
        V = np.empty((self.T, self.S))
        nxt = np.zeros(self.S)
        for t in range(self.T - 1, -1, -1):
            np.add(R[t], self.expect(nxt), out=Q[t])
            p = pi[t]
            q = Q[t] if self.allowed is None else np.where(p > 0, Q[t], 0.0)
            v = (p * q).sum(axis=0)
            if tau > 0:
                v -= tau * (p * np.log(np.where(p > 0, p, 1.0))).sum(axis=0)
            V[t] = nxt = v
        return Q, V

    def best_values(self, R: Array, tau: float) -> Array:
        """``(T, S)`` optimal (soft) values against ``R`` (max, or ``tau``-log-sum-exp)."""
        V = np.empty((self.T, self.S))
        nxt = np.zeros(self.S)
        for t in range(self.T - 1, -1, -1):
            Q = R[t] + self.expect(nxt)
            if self.allowed is not None:
                Q = np.where(self.allowed, Q, -np.inf)
            top = Q.max(axis=0)
            if tau > 0:
                top += tau * np.log(np.exp((Q - top) / tau).sum(axis=0))
            V[t] = nxt = top
        return V

    def adjoint(self, pi: Array, w: Array) -> Array:
        """Action values of ``pi`` for the landing reward ``w`` ``(T, S)`` (no entropy):
        the transpose of :meth:`tangent`, ``(T, A, S)``."""
        dQ = np.empty((self.T, self.A, self.S))
        nxt = np.zeros(self.S)
        for t in range(self.T - 1, -1, -1):
            dQ[t] = self.expect(w[t] + nxt)
            nxt = (pi[t] * dQ[t]).sum(axis=0)
        return dQ

    def gap(self, V_pi: Array, V_star: Array) -> float:
        """Exploitability ``mu0 . (V*_0 - V^pi_0)``, clipped at 0 from rounding only."""
        g = float(self.mu0 @ (V_star[0] - V_pi[0]))
        return max(g, 0.0) if g > -1e-12 else g

    def certify(self, pi: Array, R: Array, tau: float, V: Array | None = None) -> float:
        """Exploitability of ``pi`` against the table ``R`` of its own mean field, computed
        exactly: its values (``V`` when already evaluated at ``tau``) and the best ones."""
        if V is None:
            V = self.evaluate(pi, R, tau)[1]
        g = self.gap(V, self.best_values(R, tau))
        check_finite(g, "exploitability")
        return g


def record(gap: float, k: int, history: list[float], progress: Progress | None) -> None:
    """Append iteration ``k``'s certificate to ``history`` and report it."""
    history.append(gap)
    if progress:
        progress(k, gap)
