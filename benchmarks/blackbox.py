"""Black-box optimisers compared on steering tasks: J after 25/50/100/200 evaluations.

Each candidate is an Optuna sampler factory ``(seed, index) -> BaseSampler`` driven by
:func:`run_candidate`, a copy of the meta-agent's outer loop for ``batch: 1, repeats: 1``
(the baseline ``w = 0`` enqueued first, a fresh sampler per ask, a failed evaluation told
as the worst J so far), which times the optimiser (ask + tell) apart from the
evaluations. The registered optimisers run through
:func:`crowdsteer.optimisers.make_sampler`; the other candidates (TuRBO-style trust-region
BO, L-BFGS-B on finite differences, SPSA, ``bo`` with its local run first) exist only here,
as replayed algorithms, so they are measured by the same loop.

Tasks (:func:`tasks`): issue 9's KL and welfare tasks (15 weights, exact learner, 13 ms
an evaluation), the KL task with 2,000 agents learning by sampled fictitious play (J
noisy; every ``w`` sees the same seed, i.e. common random numbers), a noisy
15-dimensional ellipsoid whose minimiser is known, and ``examples/oneshot.yaml`` as shipped
(6 weights, 2,000 agents, 60 evaluations: where the old global GP was at home).

Run through ``benchmarks/run.py --only blackbox`` (``--quick``: 2 seeds, 50 evaluations).
The functions are reusable: ``run_candidate(tasks()["kl15"], factory_for("bo", t), 200, 0)``;
``python benchmarks/blackbox.py TASK CANDIDATE --seeds 5`` runs one cell.
"""

from __future__ import annotations

import common

common.pin_threads()

import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from functools import cache  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

TASK_DIR = common.BENCH_DIR / "tasks"
MARKS = (25, 50, 100, 200)


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class Task:
    """A black box: ``evaluate(w, seed) -> J`` as the optimiser sees it.

    Attributes
    ----------
    fresh
        ``fresh(w) -> J`` measured on other seeds than the tuning one (noisy tasks), or the
        noise-free value; ``None`` when J is deterministic.
    reference
        ``(label, value)``: the best reachable J computed independently of the optimisers,
        when known.
    budget
        Evaluations after the baseline.
    costly
        Evaluations take a sizeable fraction of a second (model-free learners): the suite
        runs the main candidates only.
    """

    name: str
    label: str
    n: int
    bounds: tuple[float, float]
    direction: str
    evaluate: Callable[[np.ndarray, int], float]
    fresh: Callable[[np.ndarray], float] | None = None
    reference: tuple[str, float] | None = None
    budget: int = 200
    costly: bool = False


@cache
def _setup(path: str, learner: tuple | None, seed: int):
    import yaml

    from crowdsteer.config import load_config
    from crowdsteer.metaagent import setup

    raw = yaml.safe_load(Path(path).read_text())
    raw["seed"] = seed
    if learner is not None:
        raw["learner"] = dict(learner)
    return setup(load_config(raw, Path(path).parent))


def config_task(name: str, label: str, file: str | Path, learner: dict | None = None,
                reference: tuple[str, float] | None = None, budget: int = 200) -> Task:
    """A task from a config (a name in ``benchmarks/tasks`` or a path); the run's seed is the
    benchmark seed, and every ``w`` of a run is evaluated with that seed (repeat 0)."""
    import yaml

    path = str(TASK_DIR / file)
    raw = yaml.safe_load(Path(path).read_text())
    frozen = None if learner is None else tuple(sorted(learner.items()))
    s = _setup(path, frozen, 0)

    def evaluate(w: np.ndarray, seed: int) -> float:
        from crowdsteer.metaagent import evaluate_once

        return evaluate_once(_setup(path, frozen, seed), w, 0).objective

    def fresh(w: np.ndarray) -> float:
        from crowdsteer.metaagent import evaluate_once

        return float(np.mean([evaluate_once(_setup(path, frozen, 1000 + k), w, 0).objective
                              for k in range(5)]))

    model_free = (learner or raw["learner"])["name"] != "exact"
    return Task(name, label, s.modifier.n_params, tuple(raw["modifier"]["bounds"]),
                s.objective.direction, evaluate, fresh if model_free else None, reference,
                budget, model_free)


def welfare_optimum(file: str) -> float:
    """The social optimum of a one-shot ``any``-moves crowd game with kernel congestion:
    ``max_mu d.mu - c mu' K mu`` over the simplex, a concave QP (SciPy SLSQP)."""
    from scipy.optimize import minimize

    s = _setup(str(TASK_DIR / file), None, 0)
    g = s.game
    K, d, c = g.kernel_matrix(), g.d[0], g.c
    res = minimize(lambda m: -(d @ m - c * m @ K @ m), np.full(g.S, 1 / g.S),
                   jac=lambda m: -(d - 2 * c * K @ m), method="SLSQP",
                   bounds=[(0, 1)] * g.S, options={"ftol": 1e-15, "maxiter": 2000},
                   constraints=[{"type": "eq", "fun": lambda m: m.sum() - 1,
                                 "jac": lambda m: np.ones_like(m)}])
    return float(-res.fun)


ELLIPSOID_C = np.linspace(-0.6, 0.6, 15)
ELLIPSOID_SCALE = np.logspace(0, 2, 15)


def ellipsoid_task(noise: float = 0.05) -> Task:
    """``sum_i a_i (w_i - c_i)^2 + noise`` on [-2, 2]^15, ``a_i`` from 1 to 100, minimiser
    ``c`` near (not at) 0: minimum 0, baseline ``sum a_i c_i^2``."""
    def true(w: np.ndarray) -> float:
        return float(np.sum(ELLIPSOID_SCALE * (w - ELLIPSOID_C) ** 2))

    def evaluate(w: np.ndarray, seed: int) -> float:
        rng = np.random.default_rng([seed, *np.frombuffer(np.asarray(w, float).tobytes(),
                                                          np.uint32)])
        return true(w) + noise * rng.standard_normal()

    return Task("ellipsoid15", f"noisy 15-D ellipsoid (noise sd {noise})", 15, (-2.0, 2.0),
                "minimize", evaluate, true, ("minimum", 0.0))


@cache
def tasks() -> dict[str, Task]:
    fp = {"name": "fictitious_play", "agents": 2000, "temperature": 0.1}
    return {
        "kl15": config_task("kl15", "KL task (kl12.yaml), exact learner", "kl12.yaml"),
        "welfare15": config_task("welfare15", "welfare task (welfare12.yaml), exact learner",
                                 "welfare12.yaml",
                                 reference=("social optimum", welfare_optimum("welfare12.yaml"))),
        "kl15_fp": config_task("kl15_fp", "KL task, 2,000 agents (fictitious play), noisy",
                               "kl12.yaml", learner=fp),
        "ellipsoid15": ellipsoid_task(),
        "oneshot6_fp": config_task("oneshot6_fp", "examples/oneshot.yaml as shipped: 6 weights, "
                                   "2,000 agents (fictitious play), noisy",
                                   common.REPO / "examples" / "oneshot.yaml", budget=60),
    }


# --------------------------------------------------------------------------- the loop


@dataclass
class Trace:
    """One run of one candidate on one task.

    Attributes
    ----------
    best
        Best J after each evaluation, ``(1 + budget,)`` (index 0: the baseline alone).
    best_w
        ``w`` of the best evaluation.
    """

    best: np.ndarray
    best_w: np.ndarray
    ask_seconds: float
    eval_seconds: float
    wall: float
    failures: int = 0
    notes: dict = field(default_factory=dict)


def run_candidate(task: Task, factory: Callable, budget: int, seed: int) -> Trace:
    """The outer loop (baseline + ``budget`` evaluations), the optimiser timed apart."""
    import optuna

    from crowdsteer.errors import CrowdsteerError
    from crowdsteer.optimisers import distributions, param_names

    names = param_names(task.n)
    dists = distributions(task.n, task.bounds)
    study = optuna.create_study(direction=task.direction)
    study.enqueue_trial({k: 0.0 for k in names})
    sign = 1.0 if task.direction == "minimize" else -1.0
    values, ws = [], []
    t_ask = t_eval = 0.0
    failures = 0
    start = time.perf_counter()
    for i in range(1 + budget):
        t0 = time.perf_counter()
        study.sampler = factory(seed, i)
        trial = study.ask(dists)
        t1 = time.perf_counter()
        w = np.array([trial.params[k] for k in names])
        try:
            v = float(task.evaluate(w, seed))
        except CrowdsteerError:  # told as the worst J so far, as the meta-agent does
            failures += 1
            v = max(values, key=lambda x: sign * x) if values else float("nan")
        t2 = time.perf_counter()
        study.tell(trial, v)
        t3 = time.perf_counter()
        t_ask += (t1 - t0) + (t3 - t2)
        t_eval += t2 - t1
        values.append(v)
        ws.append(w)
    y = sign * np.array(values)
    best = sign * np.minimum.accumulate(y)
    return Trace(best, ws[int(np.argmin(y))], t_ask, t_eval, time.perf_counter() - start,
                 failures)


# --------------------------------------------------------------------------- candidates


def registered(name: str, **fields) -> Callable:
    """A factory for a registered optimiser (``make_sampler``)."""
    from crowdsteer.optimisers import OptimiserConfig, make_sampler

    cfg = OptimiserConfig(name=name, **fields)
    return lambda seed, index: make_sampler(cfg, seed, index)


def replayed(algorithm: Callable, key: str) -> Callable:
    """A factory for a benchmark-only algorithm written against ``Search``."""
    from crowdsteer.optimisers.replay import ReplaySampler, Search

    def factory(seed: int, index: int):
        return ReplaySampler(algorithm, Search, seed, seed * 100003 + index, None, key=key)

    return factory


def turbo(s, length0: float = 0.8, n_init: int = 10, candidates: int = 2048) -> None:
    """TuRBO-1 (Eriksson et al., NeurIPS 2019), with expected improvement in place of
    Thompson sampling: a box of side ``L`` (scaled by the GP's length scales) around the
    best point, doubled after 3 successes in a row, halved after ``max(4, d)`` failures,
    restarted from a fresh design when ``L < 2^-7``. The design is Sobol over the box."""
    from scipy.stats import norm, qmc

    from crowdsteer.optimisers.gp import GP, fit_hyper
    from crowdsteer.optimisers.trust_region import normal_scores

    d = s.d
    s.evaluate(s.x0[None])
    while True:
        start = len(s.y)
        s.evaluate(qmc.Sobol(d, seed=s.rng).random(n_init))
        L, succ, fail = length0, 0, 0
        while L >= 0.5**7:
            X, y = s.X[start:], s.y[start:]
            z = normal_scores(y)
            h = fit_hyper(X, z)
            gp = GP.condition(X, z, h)
            c = X[int(np.argmin(y))]
            wts = h.lengthscales / np.exp(np.mean(np.log(h.lengthscales)))
            lo, hi = np.clip(c - L * wts / 2, 0, 1), np.clip(c + L * wts / 2, 0, 1)
            sob = lo + (hi - lo) * qmc.Sobol(d, seed=s.rng).random(candidates)
            mask = s.rng.random((candidates, d)) <= min(1.0, 20.0 / d)
            cand = np.where(mask, sob, c)
            mu, var = gp.predict(cand)
            sd = np.sqrt(var)
            u = (np.min(gp.predict(X)[0]) - mu) / sd
            ei = sd * (u * norm.cdf(u) + norm.pdf(u))
            before = float(np.min(y))
            v = s.evaluate(cand[int(np.argmax(ei))][None])[0]
            if v < before - 1e-3 * abs(before):
                succ, fail = succ + 1, 0
            else:
                succ, fail = 0, fail + 1
            if succ == 3:
                L, succ = min(2 * L, 1.6), 0
            elif fail >= max(4, d):
                L, fail = L / 2, 0


def fd_lbfgsb(s, eps: float = 1e-3) -> None:
    """SciPy L-BFGS-B on forward differences of step ``eps`` (unit cube), restarted from the
    best point after a random probe when it stops."""
    from scipy.optimize import minimize

    from crowdsteer.optimisers.trust_region import _value

    x = s.x0
    while True:
        minimize(lambda z: _value(s, z), x, method="L-BFGS-B", bounds=[(0, 1)] * s.d,
                 options={"eps": eps, "maxfun": 10**9, "maxiter": 10**9})
        s.evaluate(s.rng.random(s.d)[None])
        x = s.X[int(np.argmin(s.y))]


def spsa(s, step: float = 0.02, c: float = 0.01) -> None:
    """SPSA (Spall, 1998): two evaluations ``x +- c_k Delta`` per iteration (Rademacher
    ``Delta``), gains ``a_k = a / (k + 1 + A)^0.602``, ``c_k = c / (k + 1)^0.101``, ``a`` set
    so that the first step moves each coordinate by about ``step``."""
    from crowdsteer.optimisers.trust_region import _value

    x = s.x0.copy()
    _value(s, x)
    A, a = 10.0, None
    for k in range(10**9):
        ck = c / (k + 1) ** 0.101
        delta = s.rng.choice([-1.0, 1.0], s.d)
        yp, ym = s.evaluate(np.clip([x + ck * delta, x - ck * delta], 0, 1))
        g = (yp - ym) / (2 * ck * delta)
        if a is None:
            a = step * (A + 1) ** 0.602 / max(float(np.mean(np.abs(g))), 1e-12)
        x = np.clip(x - a / (k + 1 + A) ** 0.602 * g, 0, 1)


CANDIDATES = {
    "bo": "registered `bo`: probes around w = 0, GP steps while they pay, then COBYQA local "
          "runs (radius 10% of the width): BO followed by local refinement",
    "bo local-first": "`bo` with `patience` 0: a COBYQA run from w = 0 at once, GP steps only "
                      "after it (benchmark only)",
    "bo r=3%": "`bo` with `radius` 3% of the width",
    "gp": "registered `gp`: Optuna's GPSampler over the whole box (the old `bo`)",
    "cmaes": "registered `cmaes`: x0 = 0, sigma0 = width/6",
    "cmaes s=5%": "`cmaes` with `radius` (sigma0) 5% of the width",
    "turbo": "TuRBO-1 with expected improvement (benchmark only)",
    "fd-lbfgsb": "SciPy L-BFGS-B on forward differences of step 1e-3 of the width (benchmark only)",
    "spsa": "SPSA, first step 2% of the width (benchmark only)",
    "tpe": "registered `tpe`",
    "random": "registered `random`",
}
MAIN = ("bo", "gp", "cmaes s=5%", "turbo", "random")
QUICK = ("bo", "gp", "cmaes", "turbo")


def local_first(seed: int, index: int):
    from crowdsteer.optimisers import trust_region
    from crowdsteer.optimisers.replay import ReplaySampler

    def algorithm(s):
        s.settings = trust_region.Settings(patience=0)
        trust_region.search(s, s.settings)

    return ReplaySampler(algorithm, trust_region.TrustSearch, seed, seed * 100003 + index, None,
                         key="local-first")


def factory_for(name: str, task: Task) -> Callable:
    """The candidate's factory (the radius variants depend on the task's box)."""
    lo, hi = task.bounds
    return {
        "bo": lambda: registered("bo"),
        "bo local-first": lambda: local_first,
        "bo r=3%": lambda: registered("bo", radius=0.03 * (hi - lo)),
        "gp": lambda: registered("gp"),
        "cmaes": lambda: registered("cmaes"),
        "cmaes s=5%": lambda: registered("cmaes", radius=0.05 * (hi - lo)),
        "turbo": lambda: replayed(turbo, "turbo"),
        "fd-lbfgsb": lambda: replayed(fd_lbfgsb, "fd"),
        "spsa": lambda: replayed(spsa, "spsa"),
        "tpe": lambda: registered("tpe"),
        "random": lambda: registered("random"),
    }[name]()


# --------------------------------------------------------------------------- the suite


def compare(task: Task, names: list[str], seeds: range, budget: int,
            log: Callable[[str], None] = print) -> dict[str, list[Trace]]:
    out: dict[str, list[Trace]] = {}
    for name in names:
        out[name] = []
        for seed in seeds:
            tr = run_candidate(task, factory_for(name, task), budget, seed)
            if task.fresh is not None:
                tr.notes["fresh"] = task.fresh(tr.best_w)
            out[name].append(tr)
            log(f"[blackbox] {task.name} {name} seed {seed}: "
                f"{[round(float(tr.best[m]), 4) for m in MARKS if m < budget] + [round(float(tr.best[budget]), 4)]} "
                f"ask {tr.ask_seconds:.1f}s eval {tr.eval_seconds:.1f}s"
                + (f" fresh {tr.notes['fresh']:.4f}" if "fresh" in tr.notes else ""))
    return out


def _fmt(x: float) -> str:
    return f"{x:.4g}" if abs(x) >= 1e-3 else f"{x:.2e}"


def table(task: Task, results: dict[str, list[Trace]], budget: int) -> str:
    base = float(next(iter(results.values()))[0].best[0])
    ref = task.reference
    marks = [m for m in MARKS if m < budget] + [budget]
    headers = ["optimiser", *(f"J after {m}" for m in marks)]
    if task.fresh is not None:
        headers.append("best w on fresh seeds" if task.name != "ellipsoid15"
                       else "true J of best w")
    if ref is not None and task.direction == "maximize":
        headers.append(f"gap closed at {budget}")
    headers += ["wall time", "optimiser's share", "failed evaluations"]
    rows = []
    for name, traces in results.items():
        med = [statistics.median(float(t.best[m]) for t in traces) for m in marks]
        row = [name, *(_fmt(v) for v in med)]
        if task.fresh is not None:
            row.append(_fmt(statistics.median(t.notes["fresh"] for t in traces)))
        if ref is not None and task.direction == "maximize":
            row.append(f"{100 * (med[-1] - base) / (ref[1] - base):.0f}%")
        wall = statistics.median(t.wall for t in traces)
        share = statistics.median(t.ask_seconds / t.wall for t in traces)
        row += [common.fmt_time(wall), f"{100 * share:.0f}%",
                str(sum(t.failures for t in traces))]
        rows.append(row)
    note = f"baseline J {_fmt(base)}" + (f"; {ref[0]} {_fmt(ref[1])}" if ref else "")
    return f"#### {task.label}\n\n{note}.\n\n" + common.md_table(headers, rows)


def run_suite(opts) -> str:
    info = common.machine_info()
    started = time.perf_counter()
    quick = opts.quick
    seeds = range(2 if quick else 5)
    sections = []
    for key, task in tasks().items():
        if quick and task.costly:
            continue
        budget = min(task.budget, 50) if quick else task.budget
        names = list(QUICK if quick else MAIN if task.costly else CANDIDATES)
        results = compare(task, names, seeds, budget)
        sections.append(table(task, results, budget))
    legend = common.md_table(["optimiser", "what"], [[k, v] for k, v in CANDIDATES.items()])
    note = (f"median over seeds {list(seeds)} of the best J after k evaluations (the "
            "baseline w = 0 first, then k asks); wall time = median of one run; the "
            "optimiser's share = time in ask + tell over the run's wall time")
    return "\n".join([
        "## Black-box optimisers", "",
        common.provenance(opts.command, info, started, note), "",
        "Issue 9, section 3. Every candidate is an Optuna sampler driven by the meta-agent's "
        "loop (batch 1, repeats 1, in-memory study). J is what the optimiser saw; for the "
        "model-free tasks that is J on the run's seed with common random numbers, and the "
        "column 'best w on fresh seeds' re-measures the final best w on 5 other seeds (for "
        "the ellipsoid: its noise-free value). Tasks with model-free learners run the main "
        "candidates only. (Unlike the other suites, the runs share one process: the "
        "optimisers are timed, not the memory.)", "",
        legend, "", *[s + "\n" for s in sections]])


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description="run one task x candidate x seed and print it")
    p.add_argument("task")
    p.add_argument("candidate")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--budget", type=int, default=None)
    a = p.parse_args()
    t = tasks()[a.task]
    compare(t, [a.candidate], range(a.seeds), a.budget or t.budget)
