"""Hypergradients in the meta-agent: ``dJ/dw`` of one evaluation, and the ``gradient``
optimiser that follows it.

:func:`value_and_grad` solves the game modified at ``w`` (the exact learner), measures J
and differentiates it through the equilibrium (:mod:`crowdsteer.adjoint`): one equilibrium
solve plus one adjoint solve per evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from crowdsteer.adjoint import GradientError, accepts_mu, adjoint
from crowdsteer.learners.base import Solution
from crowdsteer.metaagent.evaluation import (
    Sample, Setup, WarmStarts, lineage, measured, requires_convergence, solve_at,
)

Array = np.ndarray


@dataclass(frozen=True)
class Hypergradient:
    """One evaluation with its gradient.

    Attributes
    ----------
    sample
        J and the diagnostics, as :func:`~crowdsteer.metaagent.evaluation.evaluate_once`.
    grad
        ``(n_params,)`` ``dJ / dw`` (in J's own direction: minimised for ``kl``, maximised
        for ``welfare``).
    solution
        The equilibrium (warm start for the next evaluation).
    residual
        Relative residual of the adjoint linear solve.
    products
        Vector-Jacobian products the adjoint solve used.
    adjoint_seconds
        Wall time of the adjoint (included in ``sample.seconds``).
    """

    sample: Sample
    grad: Array
    solution: Solution
    residual: float
    products: int
    adjoint_seconds: float


def value_and_grad(s: Setup, w: Array, repeat: int = 0,
                   init: Solution | None = None) -> Hypergradient:
    """Evaluate J at ``w`` and its exact gradient through the equilibrium.

    Raises
    ------
    GradientError
        The learner is not the exact one, the temperature is 0, the objective or game has
        no derivative, or the adjoint solve did not converge.
    """
    w = np.asarray(w, dtype=float)
    sample, sol, theta = measured(s, w, repeat, init)
    start = time.perf_counter()
    if sol.mu_sample is not None:
        raise GradientError("hypergradients need the exact learner (learner: {name: exact}): "
                            "a model-free learner's J is noisy and has no exact gradient")
    if not sol.converged and requires_convergence(s.optimiser):
        # not an equilibrium: the descent counts it as no better than the worst and takes
        # no gradient from it, so none is computed (on a road network the sensitivity
        # analysis would first re-solve path-based to 1e-10: minutes on a city)
        return Hypergradient(sample, np.zeros(s.modifier.n_params), sol, float("nan"), 0,
                             time.perf_counter() - start)
    g_mu = s.objective.gradient(s.game, sol.mu)
    own = getattr(s.game, "equilibrium_vjp", None)
    if own is not None:
        g_theta, residual = own(sol, theta, g_mu)
        products = 0
    else:
        theta_mu = (lambda R: s.modifier.theta_mu_vjp(w, R)) if callable(theta) else None
        adj = adjoint(s.game, sol.mu, theta, s.tau, g_mu, theta_mu)
        g_theta, residual, products = adj.g_theta, adj.residual, adj.iterations
    vjp = getattr(s.modifier, "theta_vjp", None)
    if vjp is None:
        raise GradientError(f"modifier {type(s.modifier).__name__} has no derivative in w; "
                            "use optimiser bo")
    grad = vjp(w, g_theta, mu=sol.mu) if accepts_mu(vjp) else vjp(w, g_theta)
    seconds = time.perf_counter() - start
    sample = Sample(**{**sample.__dict__, "seconds": sample.seconds + seconds})
    return Hypergradient(sample, np.asarray(grad, dtype=float), sol, residual, products, seconds)


# ------------------------------------------------------------------ the gradient optimiser


def gradient_support(s: Setup) -> str | None:
    """Why hypergradients do not apply to this setup, or ``None`` when they do."""
    from crowdsteer.equilibrium import TAU_MIN
    from crowdsteer.adjoint import reward_vjp

    if s.config["learner"].name != "exact":
        return (f"learner {s.config['learner'].name} is model-free: J is seen only through "
                "noisy samples")
    own = getattr(s.game, "equilibrium_vjp", None) is not None
    if not own and s.tau <= TAU_MIN:
        what = "0" if s.tau == 0 else f"{s.tau:g}, at or below {TAU_MIN:g}, where it counts as 0"
        return f"learner.temperature is {what}: the equilibrium is not differentiable in w"
    if s.objective.name not in ("kl", "welfare"):
        return f"objective {s.objective.name} has no gradient"
    if getattr(s.modifier, "theta_vjp", None) is None:
        return f"modifier {s.config['modifier'].name} has no derivative in w"
    if not own:
        try:
            reward_vjp(s.game, 0, s.game.mu0, np.zeros(s.game.S))
        except GradientError as exc:
            return str(exc)
    return None


class _Budget(Exception):
    """Every evaluation the run may use has been used."""


class _Stalled(Exception):
    """L-BFGS-B asked for a ``w`` it has all but evaluated already."""


STALL_STEP = 1e-6
"""A descent ends (and the run restarts) when L-BFGS-B asks for a ``w`` within this
fraction of the box width of one it has evaluated: J is known only to the solve's
precision, and below that scale L-BFGS-B asks the same ``w`` again and again (measured on
``examples/dynamic.yaml``: 50 of 60 evaluations at its optimum without this test)."""


GRADIENT_TOLERANCE = 1e-8
"""Exploitability every equilibrium is solved to under the gradient optimiser (or the
learner's own ``tolerance`` if tighter): the error of ``mu`` grows like the square root of
the exploitability, and L-BFGS-B's line searches need J and its gradient to agree."""


REFINE = 1e-10
"""Exploitability ``newton`` steps on towards past :data:`GRADIENT_TOLERANCE` under the
gradient optimiser (at most two steps, each roughly squaring it). On ``examples/dynamic.yaml``
J at exploitability 5e-9 is 2e-6 below its value at 3e-13: near a KL of 0 that error
is the whole of J, and L-BFGS-B chased it. Measured on the steering suite's tabular tasks
(``J* = 0``): best J after 200 evaluations 4.7e-7 instead of 1.0e-5 (kernel congestion),
for 20% more inner iterations."""


NETWORK_GAP = 1e-10
"""Relative gap every road-network equilibrium is solved to under the gradient optimiser
(the one the hypergradient needs, :data:`crowdsteer.learners.wardrop.VJP_GAP`): J is then
measured at the flows the gradient is taken at."""


def for_gradients(s: Setup) -> Setup:
    """``s`` with the exact learner's tolerance tightened to :data:`GRADIENT_TOLERANCE`
    and refined towards :data:`REFINE`."""
    import dataclasses

    from crowdsteer.learners.exact import ExactSolver

    cfg = s.config["learner"]
    tol = getattr(cfg, "tolerance", None)
    if not isinstance(s.learner, ExactSolver) or tol is None:
        return s
    if hasattr(s.game, "solve_equilibrium"):  # road networks: J and its gradient at one gap
        gap = min(cfg.relative_gap or NETWORK_GAP, NETWORK_GAP)
        return dataclasses.replace(s, learner=ExactSolver(cfg.model_copy(
            update={"relative_gap": gap})))
    return dataclasses.replace(s, learner=ExactSolver(cfg.model_copy(
        update={"tolerance": min(tol, GRADIENT_TOLERANCE)}), refine=min(tol, REFINE)))


def start_hint(s: Setup, lo: float, hi: float) -> Array | None:
    """A ``w`` to start the descent from besides ``w = 0``, where the game knows one for the
    objective: on road networks with the welfare objective (minus the total travel
    time), the first-best (marginal-cost) tolls at the system optimum, as the modifier
    can charge them (its links only), scaled down to fit the bounds when they exceed
    them. ``None`` elsewhere.

    Why: J(w) has local minima that are system optima restricted to the paths in use
    (measured on Sioux Falls with every link tolled: the descent from ``w = 0`` stalls at
    82.1% of the UE-to-SO gap where the used paths' marginal social costs agree to 6e-4
    while unused paths are up to 30 minutes cheaper in marginal social cost; J is
    smooth and quadratic around that point (one-sided differences shrink with the step)
    and the hypergradient matches central differences to 1e-3, so no precision, scaling
    or restart escapes it: a toll change has no first-order effect on a path nobody uses).
    Scaled rather than clipped: with bounds [0, 20] (first-best tolls up to 58 minutes)
    the scaled tolls close 68.9% of the gap at once and the descent from them 97.3% in 40
    evaluations; clipped, 11.8% and 44.9%; from w = 0, 73.7%.
    """
    first_best = getattr(s.game, "first_best_tolls", None)
    project = getattr(s.modifier, "w_from_tolls", None)
    if first_best is None or project is None or s.objective.name != "welfare":
        return None
    w = project(first_best())
    scale = 1.0
    for extreme, bound in ((w.max(initial=0.0), hi), (w.min(initial=0.0), lo)):
        if extreme * bound > 0 and abs(extreme) > abs(bound):  # same sign, out of the box
            scale = min(scale, bound / extreme)
    return np.clip(w * scale, lo, hi)


def descend(s: Setup, study: Any, out: Any = None, progress: Any = None) -> int:
    """The ``gradient`` optimiser: bounded L-BFGS-B on exact hypergradients, with restarts.

    1. Start at ``w = 0`` (the baseline, the first evaluation), or at the game's hint
       (:func:`start_hint`, the second evaluation) when that is better.
    2. L-BFGS-B (SciPy) in the box ``bounds^n``; every call of J is one equilibrium solve
       (warm-started from the closest ``w`` solved so far) plus one adjoint solve, recorded
       as a trial of the study (its gradient in the trial's ``grad`` attribute).
    3. When L-BFGS-B stops (its line search can no longer decrease J, or it asks for a
       ``w`` within :data:`STALL_STEP` of one it has evaluated: a stationary point, to J's
       precision) and evaluations remain, restart from the best ``w`` so far plus a
       Gaussian step of a quarter of the box width (seeded by the run's seed and the
       restart number).

    ``evaluations`` counts equilibrium solves; the adjoint's cost shows in ``seconds``.
    Resuming replays the stored evaluations in order (L-BFGS-B is deterministic, so it asks
    the same ``w`` again) and continues where the run stopped. Returns the number of
    restarts.
    """
    import optuna

    if isinstance(study._storage, optuna.storages.InMemoryStorage):  # this process's alone
        return _descend(s, study, out, progress)
    drive_alone(study)
    try:
        return _descend(s, study, out, progress)
    finally:
        study.set_user_attr(DRIVER, None)


DRIVER = "crowdsteer:gradient_driver"
"""Study user attribute: the process (:func:`crowdsteer.rundir.holder`) running a gradient
descent on the study, ``None`` when none does."""


def drive_alone(study: Any, settle: float = 0.2) -> None:
    """Claim ``study`` for this process's descent; refuse one another live process drives.

    A descent is one sequence (each ``w`` depends on the last): two processes on one study
    would ask the same ``w`` in lock-step and leave a study no replay can follow. The claim
    is written, then read again after ``settle`` seconds: of two that claim at once, the
    one whose claim was overwritten stops.
    """
    from crowdsteer import rundir
    from crowdsteer.errors import CrowdsteerError

    def refuse(who: dict[str, Any]) -> None:
        where = "this host" if who.get("host") == rundir.holder()["host"] else who.get("host")
        raise CrowdsteerError(
            f"another process (pid {who.get('pid')} on {where}, since {who.get('since')}) "
            "runs the gradient optimiser on this study; a gradient descent is one sequence "
            "and cannot be shared: wait for it to finish, then --resume continues it")

    me = rundir.holder()
    driver = study.user_attrs.get(DRIVER)
    if driver and driver != me and rundir.alive(driver) is not False:
        refuse(driver)
    study.set_user_attr(DRIVER, me)
    time.sleep(settle)
    driver = study.user_attrs.get(DRIVER)  # re-read from the storage
    if driver != me:
        refuse(driver)


@contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Stop what runs inside after ``seconds`` (``optimiser.timeout``) with a
    :class:`~crowdsteer.executors.TaskTimeout`: a real-time alarm (``SIGALRM``) in this
    process, which the gradient optimiser's in-process evaluations run in. Outside the
    main thread (no signals there) nothing is stopped."""
    import signal
    import threading

    from crowdsteer.executors import TaskTimeout

    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise TaskTimeout(seconds)

    before = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)


def _descend(s: Setup, study: Any, out: Any = None, progress: Any = None) -> int:
    from scipy.optimize import minimize

    from crowdsteer.errors import ConfigError, CrowdsteerError
    from crowdsteer.executors import TaskTimeout
    from crowdsteer.metaagent.evaluation import combine
    from crowdsteer.metaagent.study import (
        attrs, best_or_none, best_trial_of, finished, infeasible_value, reason, record,
        trial_w, worst_value,
        write_evaluations,
    )

    s = for_gradients(s)
    opt = s.optimiser
    required = requires_convergence(opt)
    n = s.modifier.n_params
    lo, hi = (float(b) for b in s.config["modifier"].bounds)
    sign = 1.0 if s.objective.direction == "minimize" else -1.0
    total = 1 + opt.evaluations
    records = finished(study)
    warm = WarmStarts(s.learner, enabled=opt.warm_starts)
    used = 0

    def stored(rec: Any, w: Array) -> tuple[float, Array]:
        w_rec = np.array(trial_w(rec, n))
        if not np.array_equal(w_rec, w):
            raise CrowdsteerError("cannot resume this gradient run: the optimiser asked a "
                                  "different w than the stored run at evaluation "
                                  f"{used} (was the config changed?); start it again with --force")
        if rec.value is None:  # a failed baseline: the run stopped there
            raise CrowdsteerError(f"the baseline (w = 0) failed: {rec.user_attrs.get('error')}"
                                  "; nothing to resume: change the config and start again "
                                  "with --force")
        grad = np.asarray(rec.user_attrs.get("grad") or np.zeros(n), dtype=float)
        return sign * float(rec.value), sign * grad

    seen: list[Array] = []  # the w of the current descent
    known: list[tuple[Array, float, Array]] = []  # evaluations made before the descent

    def fun(x: Array) -> tuple[float, Array]:
        nonlocal used
        w = np.clip(np.asarray(x, dtype=float), lo, hi)
        for v, value, grad in known:  # the start's own evaluation, not asked twice
            if np.array_equal(v, w) and not seen:
                seen.append(w)
                return value, grad
        if seen and min(np.linalg.norm(w - v) for v in seen) <= STALL_STEP * (hi - lo):
            raise _Stalled
        seen.append(w)
        if used < len(records):
            out_ = stored(records[used], w)
            used += 1
            return out_
        if used >= total:
            raise _Budget
        used += 1
        first = {"baseline": True} if used == 1 else {}
        src, chain = lineage(finished(study), w, n) if warm.enabled else (-1, [])
        try:
            with deadline(opt.timeout):
                init = warm.start(chain, 0, lambda v, i: solve_at(s, v, 0, i))
                hg = value_and_grad(s, w, 0, init)
        except (CrowdsteerError, TaskTimeout) as exc:  # diverged, no gradient, costs < 0
            if isinstance(exc, ConfigError) and used == 1:  # not the evaluation: the config
                raise
            worst = worst_value(study, s.objective.direction)
            record(study, list(w), worst,
                   {**first, "error": reason(exc), "failed": True, "warm_from": src})
            _after()
            if used == 1:
                raise CrowdsteerError(f"the baseline (w = 0) failed: {reason(exc)}") from None
            return sign * float(worst), np.zeros(n)
        res = combine(w, [hg.sample])
        value, grad = res.objective, hg.grad
        if required and not res.converged:  # not an equilibrium: no better than the worst
            value, grad = infeasible_value(study, value, s.objective.direction), np.zeros(n)
        record(study, list(w), value,
               {**first, **attrs(res), "grad": [float(g) for g in grad],
                "adjoint_residual": hg.residual, "warm_from": src})
        warm.add(study.get_trials(deepcopy=False)[-1].number, hg.solution)
        _after()
        return sign * value, sign * grad

    def _after() -> None:
        if out is not None:
            write_evaluations(study, n, out / "evaluations.csv")
        if progress is not None:
            progress(min(used, total), total,
                     best_or_none(study, s.objective.direction, False, required))

    x0 = np.zeros(n)
    hint = start_hint(s, lo, hi)
    if hint is not None and np.linalg.norm(hint - x0) > STALL_STEP * (hi - lo):
        # the baseline, then the hint (unless it is the baseline); the descent starts at
        # the better of the two
        try:
            for v in (x0, hint):
                seen.clear()
                known.append((v, *fun(v)))
            seen.clear()
        except _Budget:
            return 0
        if known[1][1] < known[0][1]:
            x0 = known[1][0]
    restarts = 0
    while True:
        seen.clear()
        try:
            # no stop on the size of the gradient or of J's decrease: both are absolute in
            # SciPy, and a KL near 0 has tiny ones while it still falls fast relative to
            # itself (measured: the tabular steering tasks stopped at J = 1.2e-5 and
            # restarted far away; without the tests they reach 4.2e-7); a descent ends when
            # its line search fails or when it stalls (STALL_STEP)
            minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=[(lo, hi)] * n,
                     options={"maxfun": 10**9, "maxiter": 10**9, "gtol": 0.0, "ftol": 0.0})
        except _Budget:
            break
        except _Stalled:
            pass
        if used >= total:
            break
        restarts += 1
        try:
            best = best_trial_of(study, s.objective.direction, False, required)
        except ValueError:  # nothing has converged yet: restart around the best J seen
            best = best_trial_of(study, s.objective.direction, False)
        center = np.array(trial_w(best, n))
        rng = np.random.default_rng(np.random.SeedSequence([s.config.seed, 7, restarts]))
        x0 = np.clip(center + rng.normal(0.0, 0.25 * (hi - lo), n), lo, hi)
    return restarts
