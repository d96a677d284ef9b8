"""The exact solver's ``newton`` method: Newton steps on the game's potential, with the
temperature followed down to the target (an interior-point path).

A potential game's equilibria maximise its potential over the occupation measures ``m``
of the agents' policies (Lavigne & Pfeiffer, arXiv 2209.12772, for the continuous
analogue); with temperature ``tau`` the regularised equilibrium is the unique maximiser
of

.. math::

    F_\\tau(\\pi) = \\sum_t \\Phi_t(\\mu_t) + \\langle \\Theta, m \\rangle
        + \\tau \\sum_t \\sum_s \\beta_t(s) H(\\pi_t(s, \\cdot)),
    \\qquad \\nabla_\\mu \\Phi_t = r_t,

and at ``tau = 0`` every maximiser is an equilibrium. Fictitious play is Frank-Wolfe on
``F``; online mirror descent a first-order step on it. Both slow to a crawl at small
``tau``: the equilibrium of a crowd game is massively degenerate (most agents are
indifferent between several moves, and the mass each move must carry is set by the
whole population's flow), so the error lives in directions of tiny curvature. This
method takes second-order steps instead:

1. ``beta, mu`` = forward pass of ``pi``; ``Q`` = soft values at the stage temperature;
   the gradient in ``pi`` is ``G = beta (Q - tau log pi)`` (policy-gradient theorem).
2. Newton direction ``z``: conjugate gradients on
   ``(J^T (-d r/d mu) J + tau beta / pi) z = G`` within each state's simplex, where ``J``
   maps a policy change to the change of the occupation measure. A product with the
   matrix costs one tangent (forward) and one adjoint (backward) pass
   (:class:`~crowdsteer.learners.passes.Passes`); the preconditioner is the diagonal
   curvature accumulated along each action's expected path.
3. Step in log-policy space ``log pi + alpha z / pi`` (probabilities stay positive),
   ``alpha`` by backtracking on ``F_tau`` (the game's ``potential``).
4. When the step is a full one and the Newton decrement ``G . z`` is small against
   ``tau``, the stage is centred: ``tau <- tau / 2``, down to the target temperature.

At a target of 0 the path does not chase ``tau`` towards 0 (the regularised
equilibrium's exploitability is a few times ``tau``, and the Newton systems grow too
ill-conditioned for conjugate gradients long before 1e-4 is reached). It is a
*proximal* path instead: each stage's entropy is taken relative to the previous stage's
centre, ``- tau KL(pi || pi_ref)`` weighted by the occupation measure, and at
``PROX_TAU`` the reference becomes the previous iterate, one Newton step per proximal
step. A proximal step is a mirror-ascent step of size ``1 / tau`` taken implicitly,
which does not cycle on a congestion game as the explicit one does, and the proximal
iterates converge to the temperature-0 equilibrium (proximal point on the concave
potential). A warm start at a target of 0 takes proximal steps from the earlier
equilibrium.

The conjugate gradients run in compiled kernels on the crowd games' transitions
(:mod:`crowdsteer.learners.kernels`: three fused sweeps per iteration, single-precision
vectors, double-precision residual) while the certificate is above ``SINGLE_ABOVE``, and
in NumPy otherwise.

Every iteration certifies the current policy with the exploitability at the *target*
temperature, computed exactly (policy evaluation and best response), and the solve stops
when it is at most ``tolerance``.

Needs a potential game (``game.potential``) and a modifier that is ``None`` or an array;
:mod:`crowdsteer.learners.exact` falls back to mirror descent otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from crowdsteer.learners import kernels
from crowdsteer.learners.base import Progress, Solution
from crowdsteer.learners.passes import (
    LOG_MIN, Passes, certified, record, to_action_major, to_state_major,
)

if TYPE_CHECKING:
    from crowdsteer.games.base import Game, ThetaLike

Array = np.ndarray
TAU_START = 0.1
"""First stage temperature (when the target is below it): large enough that the regularised
problem is well conditioned from the uniform policy, for rewards of order 1."""
WARM_RESTART = 1e-3
"""At a target above 0, a warm start resumes the temperature path at ``max(4 x`` the stage
it had reached ``, WARM_RESTART)``: resuming at the tiny stage of a nearby game's solution
leaves Newton far from that stage's centre (measured: 5x more iterations than a cold
start), resuming at 1e-3 saves about a third of them (BENCHMARKS.md). Tested at targets
1e-6 and 3e-6 (from 4x the stage: 300+ and 80 iterations; cold 22-33) in
tests/test_solver_methods.py, ``test_a_warm_start_at_a_small_temperature_resumes...``."""
FLOOR = 1e-3
"""Stage temperatures never go below ``FLOOR`` times the tolerance."""
PROX_TAU = 2e-3
"""At a target temperature of 0 the path stops here and proximal steps take over (see the
module docstring). Measured on the issue's 100x100 game (seconds to 1e-4 over runs):
1e-3 10.3-10.7, 1.5e-3 9.5, 2e-3 9.5-10.1, 3e-3 10.9, 5e-3 16.0; the convergence suite's
other temperature-0 games reach 1e-4 with 1e-3 and 2e-3 alike (2.5 s in all)."""
PROX_CG = 60
"""Cap on conjugate-gradient iterations per Newton step at a target of 0: each step only
needs to be a good ascent direction (measured on the issue's game: 60 reaches 1e-4 in
~20% less time than 100; 40 and 50 take more Newton steps, and more time)."""
SINGLE_ABOVE = 1e-6
"""The compiled conjugate gradients (single-precision sweeps) are used while the
certificate is above this; below it their rounding shows in the steps (measured: a 5x5
game stalled between 1e-10 and 1e-7), and the double-precision NumPy path takes over."""
FROZEN = 1e-30
"""Preconditioner entries below this (a metric above ``1e30``) are kept out of the
single-precision conjugate gradients of the compiled path and take the diagonal step."""
MAX_LOG_FALL = 2.0
MAX_LOG_RISE = 5.0
"""At a target of 0, a Newton step lowers no log-probability by more than
``MAX_LOG_FALL`` and raises none by more than ``MAX_LOG_RISE`` (a trust region: the
quadratic model misjudges large multiplicative changes, and uniform backtracking would
then shorten the whole step). Not above 0: there it lengthened the cold solves of
``benchmarks/warm_starts.py`` by a fifth (267 to 322 Newton steps in 60 evaluations).
Rises are allowed further, so that an action a warm start had nearly dropped can come
back. Measured (convergence suite, newton): the issue's 100x100 game at tau = 0 from 60
to 53 Newton steps (9.7 s to 8.4 s), the suite's other games 12.2 s to 11.3 s in all; a
symmetric limit of 2 did as well there but tripled a warm start's stall on a nearby game
(tests/test_solver_methods.py)."""
REFINE_STEPS = 2
"""Most Newton steps taken past the tolerance towards ``refine`` (:func:`solve`)."""
SHRINK = 0.5
"""Factor by which the stage temperature falls once a stage is centred."""
CG_ITERATIONS = 100
"""Cap on conjugate-gradient iterations per Newton direction."""
CG_TOLERANCE = 1e-2
"""Relative (preconditioned) residual at which conjugate gradients stop."""


def supports(game: Game, theta: ThetaLike) -> bool:
    """Whether the method applies: a potential game and a modifier independent of ``mu``."""
    return hasattr(game, "potential") and not callable(theta)


def suits(game: Game, theta: ThetaLike, tau: float) -> bool:
    """Whether ``auto`` picks the method: it applies, the game declares its potential
    concave in ``mu`` (``concave_potential = True``: Newton steps head for the maximum; the
    player games' potentials are multilinear in the mixed strategies, saddles rather than
    maxima) and ``tau < 1``, where the convergence benchmark measures it ahead of mirror
    descent (at ``tau = 0`` through the proximal stage: the issue's 100x100 game in ~10 s
    against mirror descent's ~145 s); at ``tau >= 1`` mirror descent converges in ~10
    cheaper iterations."""
    return (supports(game, theta) and bool(getattr(game, "concave_potential", False))
            and tau < 1)


def reward_jvp(game: Game) -> Callable[[int, Array, Array], Array]:
    """``(t, mu_t, dmu_t) -> d r_t``: the derivative of the landing reward in ``mu``.

    Games may define ``reward_jvp(t, mu_t, dmu_t)``; otherwise a central finite
    difference of :meth:`reward` (step ``1e-6`` of ``mu``'s scale).
    """
    direct = getattr(game, "reward_jvp", None)
    if direct is not None:
        return direct

    def finite_difference(t: int, mu_t: Array, dmu_t: Array) -> Array:
        size = float(np.max(np.abs(dmu_t)))
        if size == 0:
            return np.zeros_like(mu_t)
        h = 1e-6 * max(float(np.max(np.abs(mu_t))), 1e-3) / size
        return (game.reward(t, mu_t + h * dmu_t) - game.reward(t, mu_t - h * dmu_t)) / (2 * h)

    return finite_difference


class _Problem:
    """One game at one stage temperature: the merit, the gradient and the Newton matrix."""

    def __init__(self, passes: Passes, game: Game) -> None:
        self.p = passes
        self.game = game
        self.jvp = reward_jvp(game)
        self.allowed = passes.allowed  # (A, S) or None
        self.n_allowed = (passes.A if self.allowed is None
                          else self.allowed.sum(axis=0).astype(float))
        self.fused = (kernels.FusedCG(game.transition)
                      if kernels.applies(game.transition) else None)

    def merit(self, pi: Array, mu: Array, before: Array, tau: float,
              logref: Array | None = None, logp: Array | None = None) -> float:
        """``F_tau(pi)``: potential, modifier payments and ``tau`` times the entropy
        (relative to ``exp(logref)`` when given: minus ``tau`` times the KL divergence)."""
        p = self.p
        total = sum(float(self.game.potential(t, mu[t])) for t in range(p.T))
        if p.theta is not None:
            total += float(np.sum(p.theta * pi * before[:, None, :]))
        if tau > 0:
            logs = _safe_log(pi) if logp is None else logp
            if logref is not None:
                logs = logs - logref
            total -= tau * float(np.sum(before[:, None, :] * pi * logs))
        return total

    def project(self, v: Array) -> Array:
        """Onto each state's simplex tangent (sum over allowed actions zero)."""
        if self.allowed is None:
            return v - v.mean(axis=1, keepdims=True)
        v = v * self.allowed
        return (v - v.sum(axis=1, keepdims=True) / self.n_allowed) * self.allowed

    def curvature(self, mu: Array, dmu: Array) -> Array:
        """``-(d r / d mu) dmu`` per step, ``(T, S)`` (positive for a concave potential)."""
        return -np.stack([self.jvp(t, mu[t], dmu[t]) for t in range(self.p.T)])

    def direction(self, pi: Array, G: Array, mu: Array, before: Array,
                  tau: float, cap: int = 0, exact: bool = False
                  ) -> tuple[Array, float, int]:
        """Newton direction ``z`` ``(T, A, S)`` by preconditioned conjugate gradients.

        Returns ``(z, G . z, iterations)``; stops early on negative curvature (a potential
        that is not concave there), keeping the last ascent direction.
        """
        p = self.p
        b = before[:, None, :]
        fisher = tau * b / np.maximum(pi, 1e-300)
        # preconditioner: the curvature one unit of mass meets along each action's expected
        # path (diagonal of J^T (-dr/dmu) J, ignoring how paths spread) plus the entropy's
        h = np.abs(self.curvature(mu, np.ones_like(mu)))
        diag = np.empty_like(pi)
        ahead = np.zeros(p.S)
        for t in range(p.T - 1, -1, -1):
            diag[t] = p.expect(h[t] + ahead)
            ahead = (pi[t] * diag[t]).sum(axis=0)
        diag *= b * b
        diag += fisher
        inv = 1.0 / np.maximum(diag, 1e-300)
        if self.allowed is not None:
            inv *= self.allowed
        inv_total = np.maximum(inv.sum(axis=1, keepdims=True), 1e-300)

        # Residuals may carry any per-state constant: the preconditioner removes it, and it is
        # orthogonal to every direction (each sums to zero over a state's actions), so the
        # products below need no projection.
        def precondition(r: Array) -> Array:
            # the diagonal inverse, projected on the simplex tangent in its own metric
            s = inv * r
            s -= inv * (s.sum(axis=1, keepdims=True) / inv_total)
            return s

        if self.fused is not None and not exact:
            return self._fused_cg(pi, G, mu, before, fisher, inv, cap)

        def matvec(v: Array) -> Array:
            dmu, _ = p.tangent(pi, before, v)
            out = p.adjoint(pi, self.curvature(mu, dmu))
            out *= b
            out += fisher * v
            return out

        z = np.zeros_like(pi)
        r = G.copy()
        d = precondition(r)
        rd = float(np.vdot(r, d))
        target = CG_TOLERANCE**2 * rd
        it = 0
        while it < (cap or CG_ITERATIONS) and rd > target and rd > 0:
            it += 1
            Ad = matvec(d)
            dAd = float(np.vdot(d, Ad))
            if dAd <= 0:
                if it == 1:
                    z = d  # no curvature information: the preconditioned gradient
                break
            step = rd / dAd
            z += step * d
            Ad *= step
            r -= Ad
            s = precondition(r)
            rs = float(np.vdot(r, s))
            d *= rs / rd
            d += s
            rd = rs
        return z, float(np.vdot(G, z)), it

    def _fused_cg(self, pi: Array, G: Array, mu: Array, before: Array, fisher: Array,
                  inv: Array, cap: int) -> tuple[Array, float, int]:
        """The same conjugate gradients as :meth:`direction`, with the compiled kernels of
        :mod:`crowdsteer.learners.kernels` (three sweeps through memory per iteration)."""
        k = self.fused
        # The sweeps are bound by memory traffic: the policy, the metric and the
        # conjugate-gradient vectors travel in single precision (the direction needs ~2
        # digits, CG_TOLERANCE); the residual and every sum stay in double (a single-
        # precision residual drifts, and stalled the tail at tight tolerances). Coordinates
        # whose metric overflows single precision (probabilities below ~1e-30 of tau)
        # take the diagonal step.
        frozen = inv < FROZEN
        pi32 = pi.astype(np.float32)
        fisher32 = np.minimum(fisher, 1.0 / FROZEN).astype(np.float32)
        inv32 = np.where(frozen, 0.0, np.minimum(inv, 1.0 / FROZEN)).astype(np.float32)
        inv_total = np.maximum(inv32.sum(axis=1, dtype=float), 1e-300)
        z = np.zeros(pi.shape, np.float32)
        r = G.copy()
        d = np.zeros(pi.shape, np.float32)
        Ad = np.zeros(pi.shape, np.float32)
        s = np.empty(pi.shape, np.float32)
        dmu = np.empty((self.p.T, self.p.S))
        # a diagonal reward Jacobian (log congestion) is applied inside the adjoint kernel;
        # any other is applied to dmu here, with a scale of 1
        diag = self.curvature_diagonal(mu)
        scale = np.ones_like(dmu) if diag is None else diag
        # the first preconditioned residual: an update with a zero step
        rd = k.update(z, r, d, Ad, 0.0, inv32, inv_total, s)
        beta = 0.0
        target = CG_TOLERANCE**2 * rd
        it = 0
        while it < (cap or CG_ITERATIONS) and rd > target and rd > 0:
            it += 1
            k.tangent(pi32, before, d, s, beta, dmu)
            w = dmu if diag is not None else self.curvature(mu, dmu)
            dAd = k.matvec_tail(pi32, w, scale, before, fisher32, d, Ad)
            if dAd <= 0:
                if it == 1:
                    z = d.copy()
                break
            rs = k.update(z, r, d, Ad, rd / dAd, inv32, inv_total, s)
            beta = rs / rd
            rd = rs
        z = z.astype(float)
        if frozen.any():  # the diagonal (Jacobi) step where the metric is huge
            c = (inv * G).sum(axis=1, keepdims=True) / np.maximum(
                inv.sum(axis=1, keepdims=True), 1e-300)
            z = np.where(frozen, inv * (G - c), z)
        return z, float(np.vdot(G, z)), it

    def curvature_diagonal(self, mu: Array) -> Array | None:
        """``(T, S)`` diagonal of ``-d r / d mu`` when the game's reward Jacobian is
        diagonal (``game.reward_jacobian_diagonal``), else ``None``."""
        fn = getattr(self.game, "reward_jacobian_diagonal", None)
        if fn is None:
            return None
        rows = [fn(t, mu[t]) for t in range(self.p.T)]
        if any(r is None for r in rows):
            return None
        return -np.stack(rows)


def _safe_log(pi: Array) -> Array:
    return np.log(np.maximum(pi, np.exp(LOG_MIN)))


def solve(game: Game, theta: ThetaLike, cfg: Any, progress: Progress | None,
          init: Solution | None = None, refine: float | None = None) -> Solution:
    """Run the method (see the module docstring); ``init`` warm-starts it.

    ``refine``: once the tolerance is met, up to :data:`REFINE_STEPS` more Newton steps
    towards this exploitability (each roughly squares it); the best certified iterate is
    returned, so rounding cannot undo the tolerance already met."""
    start = time.perf_counter()
    p = Passes(game, theta)
    prob = _Problem(p, game)
    goal = certified(cfg.temperature)
    # at a target of 0 the path stops at PROX_TAU and proximal steps take over
    floor = PROX_TAU if goal == 0 else FLOOR * cfg.tolerance
    tau = max(goal, TAU_START)
    if init is None:
        pi = p.uniform()
    else:
        # keep every allowed action alive (a step can only rescale probabilities): mix in
        # the uniform policy only where an allowed action has lost all its mass, so that a
        # warm start at an equilibrium of the same game is already certified
        pi = to_action_major(init.pi)
        dead = pi <= 1e-300 if p.allowed is None else (pi <= 1e-300) & (p.allowed > 0)
        if dead.any():
            pi = 0.999999 * pi + 1e-6 * p.uniform()
        if goal == 0:  # proximal steps from the earlier equilibrium
            tau = floor
        elif init.stage_temperature is not None:
            tau = max(goal, min(tau, max(4.0 * init.stage_temperature, WARM_RESTART)))
    history: list[float] = []
    cg_total = 0
    mu, before = p.forward(pi)
    logp = _safe_log(pi)
    # the entropy is taken relative to ``ref`` (uniform: the plain entropy, up to a
    # constant); on a path to 0 each stage's ref is the previous stage's centre, and on
    # the proximal stage the previous iterate
    logref: Array | None = logp if (init is not None and goal == 0) else None
    met: tuple[float, Array, Array] | None = None  # the last iterate within the tolerance
    past = 0  # steps taken since the tolerance was met
    for k in range(1, cfg.max_iterations + 1):
        R = p.table(mu)
        Q, V = p.evaluate(pi, R if logref is None else R + tau * logref, tau)
        record(gap := p.certify(pi, R, goal, V if tau == goal else None), k, history, progress)
        if gap <= cfg.tolerance:
            if (refine is None or gap <= refine or past >= REFINE_STEPS
                    or (met is not None and met[0] <= gap)):
                break
            past += 1
            met = (gap, pi, mu)
        if k == cfg.max_iterations:
            break
        G = prob.project(before[:, None, :] * (Q - tau * logp))
        proximal = goal == 0 and tau <= floor  # _next_stage stops at floor exactly
        cap = PROX_CG if goal == 0 else CG_ITERATIONS
        single = gap >= SINGLE_ABOVE and prob.fused is not None
        z, slope, its = prob.direction(pi, G, mu, before, tau, cap, exact=not single)
        cg_total += its
        if slope <= 0 and single:  # single precision's limit: again in double
            z, slope, its = prob.direction(pi, G, mu, before, tau, cap, exact=True)
            cg_total += its
        if slope <= 0:  # rounding at the optimum of this stage
            if goal == 0:
                logref = logp
            if tau > (goal or floor):  # go down a stage
                tau = _next_stage(tau, goal, floor)
                continue
            # the last stage: a mirror-ascent direction (advantages) for the line search
            z = prob.project(pi * (Q - (pi * Q).sum(axis=1, keepdims=True)))
            slope = float(np.vdot(G, z))
            if slope <= 0:  # stationary: the certificate above is final
                break
        decrement = slope  # the Newton decrement, for the stage test below
        dy = z / np.maximum(pi, 1e-300)
        if goal == 0 and (dy.min() < -MAX_LOG_FALL or dy.max() > MAX_LOG_RISE):
            np.clip(dy, -MAX_LOG_FALL, MAX_LOG_RISE, out=dy)
            slope = float(np.vdot(G, pi * dy))
        F0 = prob.merit(pi, mu, before, tau, logref, logp)
        slack = 1e-12 * (abs(F0) + 1.0)
        alpha = 1.0
        for _ in range(40):
            trial = p.softmax(logp + alpha * dy)
            mu_t, before_t = p.forward(trial)
            log_t = _safe_log(trial)
            if slope < slack or prob.merit(trial, mu_t, before_t, tau, logref, log_t) >= (
                    F0 + 1e-4 * alpha * slope - slack):
                break
            alpha *= 0.5
        pi, mu, before, logp = trial, mu_t, before_t, log_t
        if proximal:
            logref = logp  # one Newton step per proximal step
        elif tau > goal and (decrement < 0.01 * tau
                             or (alpha == 1.0 and decrement < 0.1 * tau)):
            if goal == 0:  # a path to 0: each stage's entropy is relative to the last centre
                logref = logp
            tau = _next_stage(tau, goal, floor)
    if met is not None and met[0] < gap:  # a refining step that rounding made worse
        gap, pi, mu = met
    return Solution(to_state_major(pi), mu, gap, k, time.perf_counter() - start,
                    gap <= cfg.tolerance, history=np.asarray(history),
                    stage_temperature=tau, inner_steps=cg_total)


def _next_stage(tau: float, goal: float, floor: float) -> float:
    return max(tau * SHRINK, goal if goal > 0 else floor)
