"""Steering suite: how close each optimiser of the meta-agent gets to the best reachable J.

Each task is a game, a modifier family and an objective, with its best reachable ``J*``
computed independently of the optimisers:

* KL with log congestion, one shot, any moves: the equilibrium is known in closed form,
  ``mu(w) = softmax((d + F w) / (c + tau))``, so ``J*`` is the minimum of a smooth function
  of ``w`` alone (SciPy L-BFGS-B from 20 starts, no equilibrium solver involved); with the
  tabular family the ideal field ``(c + tau) log M - d`` lies in the box and ``J* = 0``;
* a planted target (the equilibrium under a hidden ``w*`` of the same family): ``J* = 0``;
* tabular, one shot, kernel congestion: the target is itself the equilibrium under
  ``w* = tau log M - d + c K M``, inside the box, so ``J* = 0``;
* tolls on a road network: minus the system optimum's total travel time (every link
  tolled at its marginal cost), an upper bound for tolls on a few links;
* welfare, one shot, any moves: the social optimum ``max_mu d.mu - c mu'K mu`` over the
  simplex (SciPy SLSQP), an upper bound the family may not reach; the table reports the
  fraction of the gap between the agents left alone and that optimum;
* otherwise, the best of a long multi-start run (``gradient``, 1,000 evaluations).

For each optimiser: the best J after 25, 50, 100 and 200 evaluations (median over seeds),
the wall time and the optimiser's share of it (wall time not spent in evaluations).

Run through ``benchmarks/run.py --only steering`` (``--quick``: 2 tasks, 1 seed, 50
evaluations).
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from pathlib import Path

import common

BUDGETS = (25, 50, 100, 200)
BLACK_BOX = ("bo", "cmaes", "tpe", "random")

GRID12 = {"name": "crowd", "height": 12, "width": 12, "horizon": 1, "moves": "any"}
LOG12 = {**GRID12, "desirability": {"bumps": [{"center": [6, 6], "height": 1.0, "width": 3.0}]},
         "congestion": {"kind": "log", "strength": 1.0}}
KERNEL12 = {**GRID12, "desirability": {"bumps": [{"center": [6, 6], "height": 1.0,
                                                  "width": 3.0}]},
            "congestion": {"kind": "kernel", "strength": 1.0, "radius": 1.0}}
TARGET12 = {"name": "kl", "target": {"bumps": [{"center": [2, 8], "height": 1.0, "width": 2.5}]}}
WELFARE12 = {**GRID12, "desirability": {"bumps": [
    {"center": [3, 3], "height": 1.0, "width": 2.0}, {"center": [8, 9], "height": 0.8,
                                                      "width": 2.0}]},
    "congestion": {"kind": "kernel", "strength": 3.0, "radius": 1.5}}
DYNAMIC = {"name": "crowd", "height": 6, "width": 6, "horizon": 3, "moves": "local",
           "desirability": {"bumps": [{"center": [[1, 1], [1, 2], [2, 2]], "height": 2.0,
                                       "width": 2.0}]},
           "congestion": {"kind": "log", "strength": 1.0}}
DYNAMIC_TARGET = {"name": "kl", "target": {"bumps": [
    {"center": [[3, 3], [3, 4], [4, 4]], "height": 1.0, "width": 3.0}]}}
BIG = {"name": "crowd", "height": 100, "width": 100, "horizon": 10, "moves": "local",
       "noise": 0.1, "congestion": {"kind": "log", "strength": 0.5},
       "desirability": {"bumps": [{"center": [[20, 20], [30, 30], [40, 40], [50, 50], [60, 60],
                                              [70, 70], [75, 75], [80, 80], [80, 80], [80, 80]],
                                   "height": 1.0, "width": 10.0}]}}


TNTP = Path(__file__).resolve().parents[1] / "examples" / "data" / "tntp"


def exact(tau: float, **extra) -> dict:
    return {"name": "exact", "temperature": tau, **extra}


TASKS: dict[str, dict] = {
    "one-shot KL, log, 6 weights": {
        "game": LOG12, "learner": exact(0.1), "objective": TARGET12,
        "modifier": {"name": "power_series", "order": 2, "bounds": [-5, 5]},
        "reference": "closed form"},
    "one-shot KL, kernel, 15 weights (issue 9's KL task)": {
        "game": KERNEL12, "learner": exact(0.1), "objective": TARGET12,
        "modifier": {"name": "power_series", "order": 4, "bounds": [-5, 5]},
        "reference": "long run"},
    "one-shot welfare, 15 weights (issue 9's welfare task)": {
        "game": WELFARE12, "learner": exact(0.02), "objective": {"name": "welfare"},
        "modifier": {"name": "power_series", "order": 4, "bounds": [-3, 3]},
        "reference": "social optimum"},
    "one-shot KL, log, 28 weights": {
        "game": LOG12, "learner": exact(0.1), "objective": TARGET12,
        "modifier": {"name": "power_series", "order": 6, "bounds": [-5, 5]},
        "reference": "closed form"},
    "one-shot KL, log, 144 weights (tabular)": {
        "game": LOG12, "learner": exact(0.1), "objective": TARGET12,
        "modifier": {"name": "tabular", "bounds": [-10, 10]}, "reference": "closed form"},
    "one-shot KL, kernel, 144 weights (tabular; issue 9)": {
        "game": KERNEL12, "learner": exact(0.1), "objective": TARGET12,
        "modifier": {"name": "tabular", "bounds": [-5, 5]}, "reference": "ideal field"},
    "dynamic KL, T = 3, 18 weights": {
        "game": DYNAMIC, "learner": exact(0.1), "objective": DYNAMIC_TARGET,
        "modifier": {"name": "power_series", "order": 2, "per_step": True, "bounds": [-3, 3]},
        "reference": "long run"},
    "dynamic welfare, T = 3, 27 weights": {
        "game": {**DYNAMIC, "congestion": {"kind": "kernel", "strength": 2.0, "radius": 1.0}},
        "learner": exact(0.05), "objective": {"name": "welfare"},
        "modifier": {"name": "rbf", "centers": 3, "per_step": True, "bounds": [-3, 3]},
        "reference": "long run"},
    "100x100, T = 10, 250 weights, planted target": {
        "game": BIG, "learner": exact(0.1), "objective": "planted",
        "modifier": {"name": "rbf", "centers": 5, "per_step": True, "bounds": [-5, 5]},
        "reference": "planted", "optimisers": ("gradient", "cmaes"), "seeds": 1,
        "budget": 100},
    "Sioux Falls, tolls on 12 links (welfare = -TSTT)": {
        "game": {"name": "routing", "network": {
            "net": str(TNTP / "SiouxFalls_net.tntp"), "trips": str(TNTP / "SiouxFalls_trips.tntp")}},
        "learner": {"name": "exact", "relative_gap": 1e-6}, "objective": {"name": "welfare"},
        "modifier": {"name": "tolls", "bounds": [0, 20], "links": [
            [15, 10], [10, 15], [8, 6], [6, 8], [16, 10], [10, 16], [10, 11], [11, 10],
            [24, 13], [13, 24], [9, 5], [5, 9]]},
        "reference": "system optimum", "optimisers": ("gradient", "bo", "cmaes"), "seeds": 3,
        "budget": 100},
    "one-shot KL, 2,000 learning agents, 6 weights (noisy)": {
        "game": LOG12, "learner": {"name": "fictitious_play", "agents": 2000,
                                   "temperature": 0.1},
        "objective": TARGET12, "modifier": {"name": "power_series", "order": 2,
                                            "bounds": [-5, 5]},
        "reference": "closed form", "optimisers": BLACK_BOX},
}


# --------------------------------------------------------------------------- references


def _config(task: dict, optimiser: str, seed: int, evaluations: int, base: Path) -> dict:
    cfg = {"seed": seed, "game": copy.deepcopy(task["game"]), "learner": dict(task["learner"]),
           "modifier": dict(task["modifier"]), "objective": copy.deepcopy(task["objective"]),
           "optimiser": {"name": optimiser, "evaluations": evaluations}}
    if task["objective"] == "planted":
        cfg["objective"] = {"name": "kl", "target": {"file": str(planted_target(task, base))}}
    return cfg


def planted_target(task: dict, base: Path) -> Path:
    """The equilibrium under a hidden ``w* ~ U(-4, 4)`` of the task's family, saved as .npy."""
    import numpy as np

    from crowdsteer import load_config
    from crowdsteer.metaagent import setup

    path = base / "planted_target.npy"
    if path.exists():
        return path
    s = setup(load_config({"game": task["game"], "learner": task["learner"],
                           "modifier": task["modifier"], "objective": {"name": "welfare"}}))
    w_star = np.random.default_rng(12345).uniform(-4, 4, s.modifier.n_params)
    mu = s.learner.solve(s.game, s.modifier.theta(w_star)).mu
    np.save(path, mu.reshape(s.game.T, *s.game.shape))
    return path


def closed_form_reference(task: dict) -> float:
    """min_w KL(softmax((d + F w)/(c + tau)) || M) over the box: one-shot log congestion."""
    import numpy as np
    from scipy.optimize import minimize

    from crowdsteer import load_config
    from crowdsteer.metaagent import setup

    s = setup(load_config({"game": task["game"], "learner": exact(task["learner"][
        "temperature"]), "modifier": task["modifier"], "objective": task["objective"]}))
    F = s.modifier.features
    F = F.toarray() if hasattr(F, "toarray") else np.asarray(F)
    d, M = s.game.d[0], s.objective.target[0]
    scale = s.game.c + s.tau
    lo, hi = s.config["modifier"].bounds

    def f(w):
        z = (d + F @ w) / scale
        mu = np.exp(z - z.max())
        mu /= mu.sum()
        g = np.log(mu / M) + 1
        return float(mu @ np.log(mu / M)), F.T @ ((mu * g - mu * (mu @ g)) / scale)

    rng = np.random.default_rng(0)
    starts = [np.zeros(F.shape[1])] + [rng.uniform(lo, hi, F.shape[1]) for _ in range(19)]
    return min(minimize(f, x0, jac=True, method="L-BFGS-B", bounds=[(lo, hi)] * F.shape[1],
                        options={"maxiter": 20000, "ftol": 1e-15, "gtol": 1e-12}).fun
               for x0 in starts)


def ideal_field(task: dict) -> float:
    """One shot, any moves, tabular: the target itself is the equilibrium under
    ``w* = tau log M - d + c K M`` (kernel congestion; the soft-max condition), so ``J* = 0``
    when ``w*`` (shifted by a constant) fits in the box; returns that ``J*``."""
    import numpy as np

    from crowdsteer import load_config
    from crowdsteer.metaagent import setup

    s = setup(load_config({"game": task["game"], "learner": task["learner"],
                           "modifier": task["modifier"], "objective": task["objective"]}))
    M, d, g = s.objective.target[0], s.game.d[0], s.game
    w = s.tau * np.log(M) - d + g.c * g.crowding(M)
    w -= 0.5 * (w.max() + w.min())
    lo, hi = s.config["modifier"].bounds
    if w.min() < lo or w.max() > hi:
        raise ValueError("the ideal field does not fit in the box")
    return 0.0


def social_optimum(task: dict) -> float:
    """max over the simplex of d.mu - c mu'K mu (one shot, any moves), SciPy SLSQP."""
    import numpy as np
    from scipy.optimize import minimize

    from crowdsteer.config import build_game, load_config

    g = build_game(load_config({"game": task["game"]}))
    K, d, c, S = g.kernel_matrix(), g.d[0], g.c, g.S
    res = minimize(lambda m: -(d @ m - c * m @ K @ m), np.full(S, 1 / S),
                   jac=lambda m: -(d - 2 * c * K @ m), method="SLSQP", bounds=[(0, 1)] * S,
                   constraints=[{"type": "eq", "fun": lambda m: m.sum() - 1,
                                 "jac": lambda m: np.ones(S)}],
                   options={"maxiter": 2000, "ftol": 1e-15})
    return float(-res.fun)


def system_optimum(task: dict) -> float:
    """Minus the total travel time of the network's system optimum (the equilibrium under
    marginal social costs, bi-conjugate Frank-Wolfe to relative gap 1e-8)."""
    from crowdsteer.config import build_game, load_config
    from crowdsteer.learners.wardrop import bfw

    g = build_game(load_config({"game": task["game"]}))
    return -float(g.total_travel_time(bfw(g, relative_gap=1e-8, system_optimum=True).flow))


def reference(task: dict, base: Path) -> tuple[float, str]:
    kind = task["reference"]
    if kind == "closed form":
        return closed_form_reference(task), "closed form, L-BFGS-B from 20 starts"
    if kind == "ideal field":
        return ideal_field(task), "closed form: the target is the equilibrium of a w in the box"
    if kind == "planted":
        return 0.0, "planted: the target is the equilibrium under a hidden w*"
    if kind == "system optimum":
        return system_optimum(task), ("minus the system optimum's TSTT (tolls on every link); "
                                      "an upper bound for tolls on a few")
    if kind == "social optimum":
        return social_optimum(task), "social optimum over the simplex (SLSQP); an upper bound"
    result = run_case({"task": name_of(task), "optimiser": "gradient", "seed": 0,
                       "evaluations": 1000, "base": str(base)})
    fn = min if result["direction"] == "minimize" else max
    return fn(v for v in result["history"] if v == v), "best of a 1,000-evaluation gradient run"


def name_of(task: dict) -> str:
    return next(k for k, v in TASKS.items() if v is task)


# --------------------------------------------------------------------------- one run


def run_case(case: dict) -> dict:
    """One optimiser, one seed, one task: J after every evaluation, wall and evaluation time."""
    import crowdsteer

    task = TASKS[case["task"]]
    cfg = _config(task, case["optimiser"], case["seed"], case["evaluations"], Path(case["base"]))
    evaluated = []

    def progress(done: int, total: int, best: float | None) -> None:
        evaluated.append(time.perf_counter())

    start = time.perf_counter()
    result = crowdsteer.run(cfg, progress=progress)  # study in memory: no report, no SQLite
    wall = (evaluated[-1] if evaluated else time.perf_counter()) - start
    inner = sum(seconds_of(result))
    return {"history": list(result.history), "wall": wall, "inner": inner,
            "direction": result.direction, "optimiser": result.optimiser,
            "baseline": result.baseline.objective}


def seconds_of(result) -> list[float]:
    """Seconds each evaluation spent solving (and differentiating) the equilibrium."""
    return [float(x) for x in result.evaluation_seconds]


def best_after(history: list[float], k: int, direction: str) -> float:
    """Best J among the baseline and the first ``k`` evaluations after it."""
    vals = [v for v in history[:k + 1] if v == v]
    return (min if direction == "minimize" else max)(vals)


def run_suite(opts) -> str:
    quick = opts.quick
    names = list(TASKS)[:2] if quick else list(TASKS)
    budgets = (25, 50) if quick else BUDGETS
    started = time.perf_counter()
    info = common.machine_info()
    lines = ["Best J after k evaluations (median over seeds; the baseline w = 0 counts as "
             "evaluation 0), wall time and the optimiser's share of it (time not spent "
             "solving equilibria). `J*` is the best reachable J, computed independently "
             "of the optimisers (module docstring of `benchmarks/steering.py`).", ""]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            task = TASKS[name]
            base = Path(tmp) / f"task{names.index(name)}"
            base.mkdir()
            ref, how = reference(task, base)
            seeds = 1 if quick else task.get("seeds", 5)
            cap = min(task.get("budget", max(budgets)), max(budgets))
            optimisers = task.get("optimisers", ("gradient", *BLACK_BOX))
            rows = []
            for opt in optimisers:
                runs = [common.run_worker("steering.py", {
                    "task": name, "optimiser": opt, "seed": seed, "evaluations": cap,
                    "base": str(base)}, timeout=7200) for seed in range(seeds)]
                d = runs[0]["direction"]
                cells = [f"{statistics.median(best_after(r['history'], k, d) for r in runs):.4g}"
                         if k <= cap else "-" for k in budgets]
                wall = statistics.median(r["wall"] for r in runs)
                share = statistics.median(max(0.0, 1 - r["inner"] / r["wall"]) for r in runs)
                rows.append([opt, *cells, f"{wall:.1f}", f"{100 * share:.0f}%"])
                print(f"[steering] {name} / {opt}: {rows[-1]}", flush=True)
            lines += [f"### {name}", "",
                      f"Baseline J = {runs[0]['baseline']:.4g}; J* = {ref:.4g} ({how}); "
                      f"{seeds} seed(s).", "",
                      common.md_table(["optimiser", *[f"J after {k}" for k in budgets],
                                             "wall s (median)", "optimiser share"], rows), ""]
    head = ["## Steering suite", "", common.provenance(
        opts.command, info, started, "one run per optimiser and seed, each in a fresh "
        "subprocess; medians over seeds"), ""]
    return "\n".join(head + lines)


if __name__ == "__main__":
    common.pin_threads()
    common.worker_main(run_case)
