"""``bo``: probes around the baseline, global GP steps while they pay, local COBYQA runs.

A global Gaussian-process search over the whole box (``gp``) is hard to beat on a few
weights, but past about six it spends its budget in far corners of the box, where the
agents are steered nowhere useful, and the improvement near the agents' own equilibrium
(``w = 0``) lies in a small region it never probes (issue 9: 15 weights, KL 1.64 -> 1.33 in
100 evaluations; on the welfare task it never beat its baseline). This search:

1. evaluates the start ``x0`` (``w = 0``, the baseline, unless given) and the ``2 d``
   probes ``x0 +- radius e_i``: whatever the dimension, the neighbourhood of the baseline
   is looked at first;
2. takes **global steps**: the maximiser of expected improvement of a GP fitted to every
   evaluation so far (:mod:`~crowdsteer.optimisers.gp`, on normal scores of the ranks of J,
   so that a few huge values do not flatten the model), over Sobol points of the box and
   Gaussian steps around the best points; on a few smooth weights these steps keep
   improving, and the search stays here;
3. after ``patience`` global steps in a row without improvement, a **local run**:
   COBYQA (Ragonneau and Zhang; the ``cobyqa`` package, SciPy's ``method="COBYQA"``), a
   derivative-free trust-region method, from the best point (from ``x0`` while the best is
   one of its probes, which are then COBYQA's first interpolation points: no evaluation is
   repeated). It fits a quadratic model by minimum-Frobenius-norm interpolation, steps to
   the model's minimiser in a trust region of initial radius ``radius``, and grows or
   shrinks the region by how well the model predicted the step: on many weights this is
   what makes progress. A run ends when its region has shrunk to ``final_radius``, or at
   once when its first ``2 d + 1`` points returned the start's value (a flat
   neighbourhood: nothing to follow); global steps follow, and a new local run once they
   stall again at a point no run has started or ended at.

Coordinates are the unit cube (the box scaled), so ``radius`` is a fraction of the box's
width. With noisy J (model-free learners) every ``w`` is evaluated with the same seeds
(common random numbers), which keeps J(w) a deterministic, if rough, function of ``w``;
``repeats`` > 1 smooths it further.

The search is a deterministic function of the history of evaluations, driven by
:class:`~crowdsteer.optimisers.replay.ReplaySampler`: a resumed run replays it and asks
what an uninterrupted run would.
"""

from __future__ import annotations

from dataclasses import dataclass

import cobyqa
import numpy as np
from scipy.optimize import Bounds
from scipy.stats import norm, qmc, rankdata

from crowdsteer.optimisers.gp import GP, Hyper, fit_hyper
from crowdsteer.optimisers.replay import Search

Array = np.ndarray


@dataclass(frozen=True)
class Settings:
    """Settings of the trust-region search (unit-cube units).

    Attributes
    ----------
    radius
        Initial trust-region radius of a local run, and the step of the first probes
        (fraction of the box width).
    final_radius
        A local run ends when its trust region is this small.
    patience
        Global steps in a row without improvement before a local run takes over
        (default ``max(5, d // 2)``; 0: a local run as soon as one is due).
    reach
        Global steps look within this distance of the best point (per coordinate; 1: the
        whole box).
    candidates
        Sobol points scored by expected improvement in a global step (a power of 2).
    """

    radius: float = 0.1
    final_radius: float = 1e-6
    patience: int | None = None
    reach: float = 1.0
    candidates: int = 2048


class _Flat(Exception):
    """The local run's first probes all returned the start's value."""


class TrustSearch(Search):
    """:class:`~crowdsteer.optimisers.replay.Search` whose batch extras, during a global
    step, are further expected-improvement maximisers (the pending points told their
    predicted mean: "kriging believer")."""

    settings: Settings = Settings()
    hyper: Hyper | None = None  # of the global step under way, else None

    def extra(self, pending: Array, rng: np.random.Generator) -> Array | None:
        if self.hyper is None or self.request is None:
            return None
        X, z = self.X, normal_scores(self.y)
        gp = GP.condition(X, z, self.hyper)
        P = np.vstack([self.request, pending])
        gp = GP.condition(np.vstack([X, P]), np.concatenate([z, gp.predict(P)[0]]), self.hyper)
        return _ei_argmax(gp, X, self.settings, rng)


def search(s: Search, settings: Settings) -> None:
    """The ``bo`` algorithm (module docstring); runs until the driver stops asking."""
    d, r = s.d, settings.radius
    _value(s, s.x0)
    design = [s.x0]
    for i in range(d):  # COBYQA's first interpolation points around x0: a run from x0 reuses them
        e = np.zeros(d)
        e[i] = r if s.x0[i] + r <= 1 else -r
        design += [np.clip(s.x0 + e, 0, 1), np.clip(s.x0 - e, 0, 1)]
    for x in design:
        _value(s, x)
    patience = max(5, d // 2) if settings.patience is None else settings.patience
    ended: list[Array] = []  # where local runs ended (or found nothing to follow)
    fails, plateau = 0, False
    while True:
        best = s.X[int(np.argmin(s.y))]
        start = s.x0 if any(_close(best, x) for x in design) else best
        if fails >= patience and not any(_close(start, e) for e in ended):
            ended.append(_local_run(s, start, settings, d))
            ended.append(start)
            fails = 0
            continue
        before = float(np.min(s.y))
        _global_step(s, settings, explore=plateau)
        fails = 0 if s.y[-1] < before - 1e-3 * abs(before) else fails + 1
        # a step that lands on the best value (to within the solver's tolerance) is on a
        # plateau, where expected improvement keeps sampling: the next step explores
        plateau = not plateau and bool(_ties(np.array([before, s.y[-1]]))[1])


def _local_run(s: Search, start: Array, settings: Settings, d: int) -> Array:
    """COBYQA from ``start``; returns the best point it reached."""
    y_start = _value(s, start)
    probes: list[float] = []

    def f(x: Array) -> float:
        v = _value(s, x)
        if len(probes) <= 2 * d:
            probes.append(v)
            if len(probes) == 2 * d + 1 and np.all(_ties(np.array(probes + [y_start]))):
                raise _Flat
        return v

    try:
        res = cobyqa.minimize(f, start, bounds=Bounds(np.zeros(d), np.ones(d)),
                              options={"radius_init": settings.radius,
                                       "radius_final": settings.final_radius,
                                       "maxfev": 10**9, "maxiter": 10**9})
        return np.clip(res.x, 0.0, 1.0)
    except _Flat:
        return start
    except (ArithmeticError, ValueError, np.linalg.LinAlgError, RuntimeWarning):
        # COBYQA's linear algebra gave up on these values (or warned, with warnings as
        # errors): the run ends at its best point, and global steps go on
        return s.X[int(np.argmin(s.y))]


def _value(s: Search, x: Array) -> float:
    """J at ``x``: from the history when ``x`` was evaluated already, else asked."""
    X = s.X
    if len(X):
        same = np.flatnonzero(np.all(np.abs(X - x) <= 1e-12, axis=1))
        if len(same):
            return float(s.y[same[-1]])
    return float(s.evaluate(x[None])[0])


def _close(a: Array, b: Array) -> bool:
    return bool(np.max(np.abs(a - b)) <= 1e-9)


FLAT = 1e-6
"""Values within this fraction of their magnitude count as equal: an inner solve's
tolerance, not a signal to follow."""


def _ties(y: Array) -> Array:
    """``(N,)`` whether each value equals the first one to within :data:`FLAT`."""
    return np.abs(y - y[0]) <= FLAT * np.max(np.abs(y)) + 1e-300


def normal_scores(y: Array) -> Array:
    """Normal quantiles of the mid-ranks of ``y``: a monotone, outlier-proof rescaling.

    Values equal to within :data:`FLAT` of the largest magnitude tie (a plateau stays flat).

    Examples
    --------
    >>> normal_scores(np.array([3.0, 100.0, 1.0])).round(3).tolist()
    [0.0, 0.967, -0.967]
    >>> normal_scores(np.array([2.0, 2.0 + 1e-9, 2.0 - 1e-9])).tolist()
    [0.0, 0.0, 0.0]
    """
    q = FLAT * max(float(np.max(np.abs(y))), 1e-300)
    return norm.ppf((rankdata(np.round(y / q)) - 0.5) / len(y))


def _global_step(s: Search, settings: Settings, explore: bool = False) -> None:
    """Evaluate the maximiser of expected improvement of a GP fitted to every evaluation (of
    the posterior variance with ``explore``)."""
    X, z = s.X, normal_scores(s.y)
    hyper = fit_hyper(X, z)
    x = _ei_argmax(GP.condition(X, z, hyper), X, settings, s.rng, explore)
    if isinstance(s, TrustSearch):
        s.hyper = hyper
    try:
        s.evaluate(x[None])
    finally:
        if isinstance(s, TrustSearch):
            s.hyper = None


def _ei_argmax(gp: GP, X: Array, settings: Settings, rng: np.random.Generator,
               explore: bool = False) -> Array:
    """The candidate of largest expected improvement (over the best posterior mean at the
    points ``X``; of largest variance with ``explore``) among Sobol points of the box within
    ``reach`` of the best point and Gaussian steps of several sizes around the best four."""
    d = X.shape[1]
    mean_obs = gp.predict(X)[0]
    order = np.argsort(mean_obs)
    lo = np.clip(X[order[0]] - settings.reach, 0.0, 1.0)
    hi = np.clip(X[order[0]] + settings.reach, 0.0, 1.0)
    m = int(np.log2(settings.candidates))
    sob = lo + (hi - lo) * qmc.Sobol(d, scramble=True, seed=rng).random_base2(m)
    top = X[order[:4]]
    scales = np.array([0.1, 0.03, 0.01, 0.003])
    steps = rng.standard_normal((len(top), len(scales), 64, d)) * scales[None, :, None, None]
    near = np.clip(top[:, None, None, :] + steps, lo, hi).reshape(-1, d)
    cand = np.vstack([sob, near])
    mu, var = gp.predict(cand)
    if explore:
        return cand[int(np.argmax(var))]
    sd = np.sqrt(var)
    u = (float(mean_obs[order[0]]) - mu) / sd
    ei = sd * (u * norm.cdf(u) + norm.pdf(u))
    return cand[int(np.argmax(ei))]
