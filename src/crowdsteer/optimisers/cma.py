"""``cmaes``: CMA-ES from a given start point and step size, with IPOP restarts.

CMA-ES (Hansen's covariance matrix adaptation, the ``cmaes`` library) samples a
generation of ``lambda`` points from ``N(m, sigma^2 C)``, moves the mean ``m`` towards the
best ones and adapts ``sigma`` and ``C``. Here the mean starts at ``x0`` (``w = 0``, the
agents left alone, unless given) and ``sigma`` at ``radius`` (default 1/6 of the box's
width, as Optuna's sampler); a small ``radius`` keeps the search near the start. When a
run stops (its step size or spread of J collapses) it restarts from the best point with
a doubled population (IPOP; Auger and Hansen, 2005).

A generation is one request of ``lambda`` points, so a ``batch`` of up to ``lambda``
candidates is evaluated together. Driven by
:class:`~crowdsteer.optimisers.replay.ReplaySampler`: the state is the replay of the
study's finished evaluations.
"""

from __future__ import annotations

import cmaes
import numpy as np

from crowdsteer.optimisers.replay import Search


def search(s: Search, sigma: float) -> None:
    """Run CMA-ES (unit cube) with IPOP restarts until the driver stops asking."""
    bounds = np.tile([0.0, 1.0], (s.d, 1))
    mean, popsize = s.x0, None
    seeds = s.rng.integers(0, 2**31 - 1, size=1 << 16)
    for restart in range(len(seeds)):
        opt = cmaes.CMA(mean=mean, sigma=sigma, bounds=bounds, seed=int(seeds[restart]),
                        population_size=popsize)
        while not opt.should_stop():
            X = np.array([opt.ask() for _ in range(opt.population_size)])
            y = s.evaluate(X)
            opt.tell(list(zip(X, y)))
        mean = s.X[int(np.argmin(s.y))]
        popsize = 2 * opt.population_size
