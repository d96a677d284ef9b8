"""Size and time guards: refuse what cannot fit before allocating it, and say up front what
will take long.

Memory is estimated from the array shapes each part allocates, with coefficients measured
with ``tracemalloc`` (peak of one solve, crowd games from 4 to 1600 states, 1 to 10 steps):

=================  ==============================================================
part               peak bytes
=================  ==============================================================
crowd game         ``3 * 8 T S`` (desirability, its grid, rewards) + ``80 S A K``
``exact``          ``12 * 8 T S A`` (policy, logits, rewards, values, best response,
                   softmax scratch, the modifier's table): measured 10-11x
``fictitious_play``  ``100 N`` + ``(12 + 3 K) 8 T S A`` (measured 73-99 B per agent)
``independent``    the above + ``5.4 N T S A`` (a float32 value and a visit count per
                   agent and entry: measured 5.34)
``policy_gradient``  ``150 N`` + ``(8 + K) 8 T S A``; ``sharing: none`` adds ``4 N T S A``
                   (float32 logits per agent), ``9 N T S A`` with ``critic: agent``
                   (estimated from the arrays, not measured)
CMA-ES             ``3 * 8 d^2`` (covariance, its eigenvectors, a scratch copy)
=================  ==============================================================

with ``K`` successors per move. A part that needs more than the machine has (physical
memory, or the cgroup's limit when lower) is refused with one line giving the estimate
and what to change; nothing is allocated.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from crowdsteer.errors import ConfigError, CrowdsteerWarning

FLOAT = 8
SLOW_PASS = 10.0
"""Seconds of one pass through the horizon above which :func:`check_horizon` warns."""
PROBE_STEPS = 50
"""Steps timed to estimate a pass through the horizon."""
WRITE_SECONDS = (0.003, 0.025)
"""Seconds Optuna takes to store one weight of a candidate, each in its own transaction,
in a local SQLite study: about 3 ms (CPU) to 25 ms (with the commit's fsync), measured
with 200 weights (``benchmarks`` machine, load 12); the range is quoted in warnings."""
MANY_WEIGHTS = 200
"""Weights above which every optimiser's asks are slow (storing them one by one)."""
GP_WEIGHTS = 100
"""Weights above which ``gp`` warns: a Gaussian process needs far more evaluations than
weights to model J, and fits and optimises in as many dimensions; and above which ``bo``
warns when its first local run, ``2 n + 1`` probes, cannot finish within the evaluations."""
ROUTE_BYTES = 16
"""Bytes per traveller of the ``routes`` learner: peak of a solve under ``tracemalloc``,
Braess network, 10**5 and 10**6 travellers: 16.1 and 16.0 (an origin-destination index
and a route per traveller, and a day's temporaries)."""
CMA_WEIGHTS = 2000
"""Weights above which ``cmaes`` warns: each generation decomposes a ``d x d`` matrix."""


def memory_limit() -> int:
    """Bytes this process may use: physical memory, or the cgroup's limit or the address
    space limit (``ulimit -v``) when lower."""
    import resource

    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    if soft != resource.RLIM_INFINITY:
        total = min(total, soft)
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def size(n: float) -> str:
    """``n`` bytes for people: ``'7.5 GiB'``.

    >>> size(3 * 2**30), size(1536), size(2.5e15)
    ('3.0 GiB', '1.5 KiB', '2.2 PiB')
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024:
            return f"{n:.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1024
    return f"{n:.1f} PiB"


def check_memory(need: float, field: str, what: str, change: str) -> None:
    """Refuse ``need`` bytes if the machine does not have them.

    Raises
    ------
    ConfigError
        Naming ``field``, the estimate, the machine's memory and ``change`` (what to do).
    """
    limit = memory_limit()
    if need > limit:
        raise ConfigError(field, f"{what} needs about {size(need)} of memory, more than the "
                          f"{size(limit)} this machine has; {change}")


def check_crowd(height: int, width: int, T: int, moves: str, noise: float) -> None:
    """The crowd game's own arrays, from its config, before they are built."""
    S = height * width
    K = 5 if noise > 0 else 1
    A = S if moves == "any" else 5
    need = 3 * FLOAT * T * S + (0 if moves == "any" else 80 * S * A * K)
    check_memory(need, "game", f"a {height} x {width} grid over {T} steps",
                 "use a smaller grid or a shorter horizon")


def solve_bytes(game: Any, learner: Any) -> tuple[float, str, str]:
    """Peak memory of one solve of ``game`` by a learner with config ``learner``:
    ``(bytes, field to change, advice)``."""
    T, S, A = game.T, game.S, game.A
    K = getattr(getattr(game, "transition", None), "K", 1)
    tables = 12 * FLOAT * T * S * A
    name = getattr(learner, "name", "exact")
    N = getattr(learner, "agents", 0) or 0
    any_move = A == S and S > 5
    smaller = ("use moves: local (5 actions instead of S) or a smaller grid" if any_move
               else "use a smaller grid or a shorter horizon")
    if name == "fictitious_play":
        return (100 * N + (12 + 3 * K) * FLOAT * T * S * A, "learner.agents",
                f"use fewer agents, or: {smaller}")
    if name == "independent":
        return (5.4 * N * T * S * A + 100 * N + tables, "learner.agents",
                "use fewer agents or the fictitious_play learner (memory N + T*S*A)")
    if name == "routes":  # one traveller per trip unless agents says otherwise
        N = N or max(int(round(float(getattr(game, "D", 1.0)))), 1)
        return (ROUTE_BYTES * N, "learner.agents",
                "use fewer agents (learner.agents; by default one per trip)")
    if name == "policy_gradient":  # logits + critic tables; sharing: none adds float32
        # logits per agent and entry (critic: agent a float32 value and a count besides)
        own = 0.0 if getattr(learner, "sharing", "population") == "population" else (
            9.0 if getattr(learner, "critic", "joint") == "agent" else 4.0)
        return (own * N * T * S * A + 150 * N + (8 + K) * FLOAT * T * S * A, "learner.agents",
                "use fewer agents or sharing: population (memory N + T*S*A)")
    if name == "exact" and _exact_method(game, learner) == "newton":
        # Newton-CG keeps tangents, adjoints and its line search's trial policies besides:
        # measured 18-19 T S A floats (tests/test_guards.py)
        tables = 24 * FLOAT * T * S * A
    return tables, "game", smaller


EXACT_METHOD: list[Any] = []
"""``[method_for(game, learner_config) -> str]``, registered by ``crowdsteer.learners.exact``
(guards sit below the learners: they do not import them)."""


def _exact_method(game: Any, learner: Any) -> str:
    """The method the exact learner runs on ``game`` (``auto`` resolved; ``omd`` if unknown)."""
    if not EXACT_METHOD:
        return "omd"
    try:
        return EXACT_METHOD[0](game, learner)
    except ConfigError:  # newton asked for where it does not apply: the solve says so
        return "omd"


def check_solve(game: Any, learner: Any) -> None:
    """Refuse a solve that cannot fit (see the module docstring for the estimates)."""
    need, field, change = solve_bytes(game, learner)
    N = getattr(learner, "agents", 0) or 0
    what = (f"the {getattr(learner, 'name', 'exact')} learner on T={game.T}, S={game.S}, "
            f"A={game.A}" + (f" with {N:,} agents" if N else "")
            + (" with one traveller per trip" if not N and field == "learner.agents" else ""))
    check_memory(need, field, what, change)


def check_horizon(game: Any, field: str = "game.horizon") -> None:
    """Warn when one pass of a solver through the horizon will take long.

    The solvers walk the horizon step by step in Python; the cost of a pass is measured on
    :data:`PROBE_STEPS` steps of this game (a push, an expectation, a reward) and
    extrapolated to ``T`` steps. Only long horizons are probed; only the main process
    warns (workers build the same game).
    """
    T = game.T
    if T <= 10 * PROBE_STEPS or multiprocessing.parent_process() is not None:
        return
    mu = np.asarray(game.mu0, dtype=float)
    pi = np.full((game.S, game.A), 1.0 / game.A)

    def steps(n: int) -> float:
        nonlocal mu
        start = time.perf_counter()
        for t in range(n):
            mu = game.transition.push(mu, pi)
            game.transition.expect(game.reward(t, mu))
        return (time.perf_counter() - start) / n

    steps(5)  # warm-up: first calls pay for caches and lazy set-up
    per_step = min(steps(PROBE_STEPS // 2), steps(PROBE_STEPS // 2))
    # a solver iteration makes about 5 passes: mean field, rewards, values, best response
    seconds = 5 * per_step * T
    if seconds > SLOW_PASS:
        warn(f"{field}: {T:,} steps, walked in Python: each solver iteration takes about "
             f"{duration(seconds)} here ({per_step * 1e6:.3g} us per step, measured), so "
             "expect that long before the first progress update", ("horizon", T, game.S))


def check_optimiser(name: str, n_params: int, evaluations: int, in_memory: bool,
                    field: str = "modifier") -> None:
    """Warn, with numbers, when an optimiser gets more weights than it handles well;
    refuse a CMA-ES whose covariance cannot fit (``field``: where the weights come from)."""
    if name == "cmaes":
        check_memory(3 * FLOAT * n_params**2, field, f"cmaes with {n_params:,} weights "
                     f"(a {n_params:,} x {n_params:,} covariance)", "use fewer weights")
    if n_params > MANY_WEIGHTS and not in_memory:
        lo, hi = (n_params * s for s in WRITE_SECONDS)
        warn(f"{field}: {n_params:,} weights: every ask stores them one by one (Optuna "
             "writes each in its own transaction, 3-25 ms in a local SQLite study), about "
             f"{duration(lo)} to {duration(hi)} per ask, {duration(lo * (evaluations + 1))} "
             f"to {duration(hi * (evaluations + 1))} for the run; fewer weights (e.g. an rbf "
             "or power_series modifier) make asks faster", ("weights", n_params))
    if name == "gp" and n_params > GP_WEIGHTS:
        warn(f"optimiser.name: gp with {n_params:,} weights: a Gaussian process needs many "
             f"more evaluations than weights to model J ({evaluations} asked for), and fits "
             "and optimises in as many dimensions; bo or cmaes handle many weights better",
             ("gp", n_params))
    if name == "bo" and n_params > GP_WEIGHTS and 2 * n_params + 1 > evaluations:
        warn(f"optimiser.name: bo with {n_params:,} weights: its local run probes "
             f"2 n + 1 = {2 * n_params + 1:,} points around the start before its first "
             f"model step, more than the {evaluations} evaluations asked for; give more "
             "evaluations, fewer weights, or use cmaes (or auto, which takes gradient where "
             "hypergradients exist)", ("bo", n_params))
    if name == "cmaes" and n_params > CMA_WEIGHTS:
        warn(f"optimiser.name: cmaes with {n_params:,} weights: every generation decomposes "
             f"a {n_params:,} x {n_params:,} matrix (about {n_params**3 / 1e9:.3g} GFLOP)",
             ("cmaes", n_params))


def duration(seconds: float) -> str:
    """Seconds for people.

    >>> duration(0.4), duration(95), duration(5400), duration(3e5)
    ('0.4 s', '1.6 min', '1.5 h', '3.5 days')
    """
    for unit, length in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= length:
            return f"{seconds / length:.2g} {unit}"
    return f"{seconds:.2g} s"


_warned: set[tuple[Any, ...]] = set()


def warn(message: str, key: tuple[Any, ...]) -> None:
    """A :class:`~crowdsteer.errors.CrowdsteerWarning`, once per process for ``key`` (a run
    builds its game more than once); the CLI prints it as one line."""
    if key in _warned:
        return
    _warned.add(key)
    warnings.warn(message, CrowdsteerWarning, stacklevel=3)
