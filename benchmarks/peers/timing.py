"""Timing loops shared by the peer workers: one fixed-length run, a run to a tolerance.

Every loop reports wall time (``perf_counter``) and the CPU time of this single-threaded
process (``process_time``): on a loaded 2-core machine the CPU time is the steadier of
the two, and the same load hits the peer and crowdsteer alike because they are measured
in the same suite run, one after the other.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np

from crowdsteer.learners.exact import ExactConfig, ExactSolver


def stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "all": list(values)}


def per_iteration(run: Callable[..., int | None], iterations: int, repeats: int,
                  setup: Callable[[], object] | None = None) -> dict:
    """Seconds per iteration of ``run(iterations)`` (a fresh solve each time), repeated.

    ``run`` returns the number of iterations it made if that can be fewer than asked.
    With ``setup``, ``run(setup(), iterations)``: the setup (e.g. constructing the peer's
    solver, which computes its first mean field) is left out of the timing.
    """
    wall, cpu = [], []
    for _ in range(repeats):
        args = () if setup is None else (setup(),)
        c0, w0 = time.process_time(), time.perf_counter()
        done = run(*args, iterations) or iterations
        wall.append((time.perf_counter() - w0) / done)
        cpu.append((time.process_time() - c0) / done)
    return {"wall": stats(wall), "cpu": stats(cpu), "iterations": iterations,
            "repeats": repeats}


def until(step: Callable[[], None], evaluate: Callable[[], float], tolerance: float,
          cap_s: float, max_iterations: int = 100_000) -> dict:
    """Iterate ``step`` until ``evaluate() <= tolerance`` or ``cap_s`` seconds of wall time.

    Only ``step`` is timed: the exploitability evaluation is the benchmark's, not part of
    the peer's algorithm (crowdsteer's iterations, by contrast, include their certificate).
    ``history[k]`` is the exploitability after ``k`` updates (``history[0]``: the start).
    """
    history = [evaluate()]
    wall = cpu = 0.0
    started = time.perf_counter()
    reached = None
    k = 0
    while history[-1] > tolerance and k < max_iterations:
        if time.perf_counter() - started > cap_s:
            break
        c0, w0 = time.process_time(), time.perf_counter()
        step()
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0
        k += 1
        history.append(evaluate())
    if history[-1] <= tolerance:
        reached = {"iterations": k, "wall": wall, "cpu": cpu}
    return {"iterations": k, "wall": wall, "cpu": cpu, "exploitability": history[-1],
            "reached": reached, "history": history, "elapsed": time.perf_counter() - started}


def ours(game, method: str, tolerance: float, budget_s: float, repeats: int,
         tol_repeats: int, tol_budget_s: float, max_iterations: int) -> dict:
    """crowdsteer's ``ExactSolver``: seconds per iteration and a solve to ``tolerance``."""
    def solve(k: int, tol: float):
        cfg = ExactConfig(method=method, tolerance=tol, max_iterations=k)
        return ExactSolver(cfg).solve(game)

    first = solve(5, 1e-300)  # warm-up and a first estimate
    k = int(np.clip(budget_s / max(first.seconds / first.iterations, 1e-7), 5, 20_000))
    out = {"per_iter": per_iteration(lambda n: solve(n, 1e-300).iterations, k, repeats)}
    runs = []
    while len(runs) < tol_repeats:
        c0 = time.process_time()
        sol = solve(max_iterations, tolerance)
        runs.append({"wall": sol.seconds, "cpu": time.process_time() - c0,
                     "iterations": sol.iterations, "converged": sol.converged,
                     "exploitability": sol.exploitability})
        if not sol.converged or sol.seconds * (len(runs) + 1) > tol_budget_s:
            break
    out["to_tol"] = {"runs": runs, "wall": stats([r["wall"] for r in runs]),
                     "cpu": stats([r["cpu"] for r in runs]), "iterations": runs[0]["iterations"],
                     "converged": runs[0]["converged"],
                     "exploitability": runs[0]["exploitability"]}
    if method == "fp":
        out["history"] = [float(x) for x in sol.history]
    return out
