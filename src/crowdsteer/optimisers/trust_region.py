"""``bo``: local model-based trust-region runs from the best point, global GP steps between.

Past a handful of weights a global Gaussian-process search spends its budget on the box's
far corners, where the agents are steered nowhere useful, and the improvement near the
agents' own equilibrium (``w = 0``) is in a small region it never probes (issue 9: 15
weights, KL 1.64 -> 1.33 in 100 evaluations). This search works the other way round:

1. evaluate the start point ``x0`` (``w = 0``, the baseline, unless given);
2. **local run** from the best point so far: COBYQA (Ragonneau and Zhang, the ``cobyqa``
   package, also SciPy's ``method="COBYQA"``), a derivative-free trust-region method. Its first ``2 d + 1``
   evaluations probe ``x +- radius e_i`` (a small box around the start); it then fits a
   quadratic model by minimum-Frobenius-norm interpolation, steps to the model's minimiser
   inside a trust region, and grows or shrinks the region by how well the model predicted
   the step. A local run ends when its region has shrunk to ``final_radius``, or at once
   when its first ``2 d + 1`` probes all returned the start's value (a flat neighbourhood:
   nothing to follow);
3. **global step**: where no local run is due (the best point is one a run already
   ended at), evaluate the maximiser of expected improvement of a GP fitted to every
   evaluation so far (:mod:`~crowdsteer.optimisers.gp`, on normal scores of the ranks of J,
   so a few huge values do not flatten the model) over the whole box; when a global step
   finds a new best point, a local run starts from it.

Coordinates are the unit cube (the box scaled), so ``radius`` is a fraction of the box's
width. With noisy J (model-free learners), give ``repeats`` > 1 or rely on common random
numbers (every ``w`` is evaluated with the same seeds), which keeps J(w) a deterministic,
if rough, function of ``w``.

The run is an ordinary deterministic function of the history of evaluations, driven by
:class:`~crowdsteer.optimisers.replay.ReplaySampler`: a resumed run replays it and asks
what an uninterrupted run would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import cobyqa
from scipy.optimize import Bounds
from scipy.stats import norm, qmc, rankdata

from crowdsteer.optimisers.gp import GP, fit_hyper
from crowdsteer.optimisers.replay import Search

Array = np.ndarray


@dataclass(frozen=True)
class Settings:
    """Settings of the trust-region search (unit-cube units).

    Attributes
    ----------
    radius
        Initial trust-region radius of a local run (fraction of the box width).
    final_radius
        A local run ends when its trust region is this small.
    candidates
        Sobol points scored by expected improvement in a global step (a power of 2).
    """

    radius: float = 0.1
    final_radius: float = 1e-6
    candidates: int = 2048


class _Flat(Exception):
    """The local run's first probes all returned the start's value."""


def search(s: Search, settings: Settings) -> None:
    """The ``bo`` algorithm (module docstring); runs until the driver stops asking."""
    d = s.d
    _value(s, s.x0)
    ended: list[Array] = []  # where local runs ended (or found nothing to follow)
    while True:
        best = s.X[int(np.argmin(s.y))]
        if any(_close(best, e) for e in ended):
            _global_step(s, settings)
            continue
        ended.append(_local_run(s, best, settings, d))


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


def _global_step(s: Search, settings: Settings) -> None:
    """Evaluate the maximiser of expected improvement over the box (GP on all points)."""
    X, y = s.X, s.y
    z = normal_scores(y)
    gp = GP.condition(X, z, fit_hyper(X, z))
    m = int(np.log2(settings.candidates))
    cand = qmc.Sobol(s.d, scramble=True, seed=s.rng).random_base2(m)
    mean, var = gp.predict(cand)
    sd = np.sqrt(var)
    best = float(np.min(gp.predict(X)[0]))
    u = (best - mean) / sd
    ei = sd * (u * norm.cdf(u) + norm.pdf(u))
    s.evaluate(cand[int(np.argmax(ei))][None])
