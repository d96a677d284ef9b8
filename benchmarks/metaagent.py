"""Meta-agent benchmarks: wall time of the shipped examples and the optimiser's own share of
it, evaluations each optimiser needs to reach a KL, and a BO batch over 1 and 2 workers.

Run through ``benchmarks/run.py --only metaagent`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import csv
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import common

EXAMPLES = common.REPO / "examples"


def _load(name: str, **over) -> dict:
    from crowdsteer.config import load_config

    raw = load_config(EXAMPLES / name).resolved()
    for key, value in over.items():
        section, field = key.split("__")
        raw.setdefault(section, {})[field] = value
    return raw


def _eval_seconds(out: Path) -> float:
    with open(out / "evaluations.csv") as f:
        return sum(float(r["seconds"] or 0) for r in csv.DictReader(f))


def run_example(name: str, evaluations: int | None) -> dict:
    import crowdsteer

    over = {} if evaluations is None else {"optimiser__evaluations": evaluations}
    raw = _load(name, **over)
    with tempfile.TemporaryDirectory() as d:
        start = time.perf_counter()
        result = crowdsteer.run(raw, out=Path(d) / "run")
        wall = time.perf_counter() - start
        inner = _eval_seconds(Path(d) / "run")
    return {"example": name, "evaluations": result.evaluations, "wall": wall,
            "inner": inner, "baseline": result.baseline.objective,
            "best": result.best.objective, "floor": (result.iid_sample_kl or {}).get("mean"),
            "exploitability": result.best.exploitability}


def evaluations_to_reach(optimiser: str, seed: int, threshold: float, cap: int) -> float:
    """Evaluations (baseline excluded) until J <= threshold on the one-shot game solved
    exactly (cheap inner loop, so the optimisers alone are compared); inf if never."""
    import crowdsteer

    raw = _load("oneshot.yaml", optimiser__name=optimiser, optimiser__evaluations=cap)
    raw["learner"] = {"name": "exact", "temperature": 0.1, "tolerance": 1e-6}
    raw["seed"] = seed
    result = crowdsteer.run(raw)
    hits = [i for i, j in enumerate(result.history[1:], 1) if j <= threshold]
    return float(hits[0]) if hits else float("inf")


def batch_scaling(workers: int, evaluations: int) -> float:
    """A batch of q = 4 candidates per round with 2 repeats each: 8 tasks a round. The
    agents are 200,000 (tolerance 1e-3) so that a task (about 0.5 s) outweighs handing it to a process."""
    import crowdsteer

    raw = _load("oneshot.yaml", optimiser__evaluations=evaluations, optimiser__batch=4,
                optimiser__repeats=2, learner__agents=200_000,
                learner__tolerance=1e-3)
    raw["executor"] = {"name": "serial"} if workers == 1 else {"name": "local",
                                                                "workers": workers}
    start = time.perf_counter()
    crowdsteer.run(raw)
    return time.perf_counter() - start


# (example, overrides, known optimum of J (welfare), source)
GAMES = [
    ("pigou.yaml", {}, -0.75, "Pigou: 3/4"),
    ("pigou.yaml", {"x^p": 2}, -(1 - 2 * 3 ** -1.5), "Pigou x^2: 1 - 2*3^(-3/2)"),
    ("braess.yaml", {}, -1.5, "Braess: 3/2"),
    ("prisoners_dilemma.yaml", {}, 3.0, "PD: mutual cooperation R = 3"),
    ("stag_hunt.yaml", {}, 4.0, "stag hunt: (stag, stag) = 4"),
    ("congestion.yaml", {}, -4.5, "congestion: brute-force optimum"),
    ("spectrum.yaml", {}, 0.0, "spectrum: brute-force optimum"),
]


def evaluations_to_optimum(example: str, over: dict, optimum: float, optimiser: str, seed: int,
                           cap: int) -> tuple[float, float]:
    """Evaluations (baseline excluded) until welfare is within 1% of the optimum (0.01
    absolute when the optimum is 0); and the best welfare reached."""
    import crowdsteer

    raw = _load(example, optimiser__name=optimiser, optimiser__evaluations=cap)
    raw["seed"] = seed
    if "x^p" in over:
        edge = raw["game"]["edges"][1]
        edge["latency"] = {"kind": "polynomial", "a": 0, "b": 1, "p": over["x^p"]}
    result = crowdsteer.run(raw)
    tol = 0.01 * abs(optimum) if optimum != 0 else 0.01
    hits = [i for i, j in enumerate(result.history[1:], 1) if j >= optimum - tol]
    return (float(hits[0]) if hits else float("inf")), result.best.objective


def run_suite(opts) -> str:
    info = common.machine_info()
    started = time.perf_counter()
    quick = opts.quick
    lines = ["## Meta-agent", ""]

    rows = []
    for name in ("oneshot.yaml", "dynamic.yaml"):
        r = run_example(name, 8 if quick else None)
        share = 1 - r["inner"] / r["wall"]
        rows.append([name, r["evaluations"], common.fmt_time(r["wall"]),
                     common.fmt_time(r["wall"] / r["evaluations"]), f"{100 * share:.0f}%",
                     f"{r['baseline']:.3g} -> {r['best']:.3g}",
                     "-" if r["floor"] is None else f"{r['floor']:.3g}",
                     common.fmt_sci(r["exploitability"])])
        print(f"[metaagent] {name}: {r}", flush=True)
    lines += ["### The shipped examples", "",
              "`crowdsteer.run(examples/NAME)` as shipped (2,000 agents learning by sampled "
              "fictitious play in every evaluation). The optimiser's share is the wall time "
              "not spent inside evaluations (asking the GP, the study's SQLite commits, "
              "writing evaluations.csv), as a share of the run.", "",
              common.md_table(["example", "evaluations", "wall time", "per evaluation",
                               "optimiser's share", "KL: baseline -> best",
                               "KL of N iid agents from the target", "exploitability at best"], rows), ""]

    seeds = range(2 if quick else 5)
    cap, threshold = (15, 0.2) if quick else (60, 0.05)
    rows = []
    for opt in ("bo", "cmaes", "tpe", "random"):
        counts = [evaluations_to_reach(opt, s, threshold, cap) for s in seeds]
        med = float(np.median(counts))
        rows.append([opt, "never" if not np.isfinite(med) else f"{med:.0f}",
                     ", ".join("-" if not np.isfinite(c) else f"{c:.0f}" for c in counts)])
        print(f"[metaagent] {opt}: {counts}", flush=True)
    lines += ["### Evaluations to reach a KL", "",
              f"The one-shot example's game, target and modifier (power series, order 2: 6 "
              f"weights), agents solved exactly (`exact`, tau = 0.1) so that only the "
              f"optimisers differ; baseline KL 1.93. Evaluations after the baseline until "
              f"KL <= {threshold}, at most {cap}; seeds {list(seeds)}.", "",
              common.md_table(["optimiser", "median evaluations", "per seed"], rows), ""]

    seeds = range(1 if quick else 3)
    cap = 10 if quick else 30
    rows = []
    for example, over, optimum, label in GAMES[:2] if quick else GAMES:
        row = [label, f"{optimum:.4g}"]
        for opt in ("bo", "cmaes", "random"):
            got = [evaluations_to_optimum(example, over, optimum, opt, s, cap) for s in seeds]
            med = float(np.median([g[0] for g in got]))
            best = max(g[1] for g in got)
            row.append(("never" if not np.isfinite(med) else f"{med:.0f}") + f" ({best:.4g})")
        rows.append(row)
        print(f"[metaagent] {label}: {row}", flush=True)
    lines += ["### Evaluations to come within 1% of the known optimum", "",
              f"Each game's example (exact learner, welfare objective, its modifier), at most "
              f"{cap} evaluations after the baseline, seeds {list(seeds)}: the median number "
              "of evaluations until welfare is within 1% of the optimum (0.01 absolute where "
              "it is 0), and in brackets the best welfare any seed reached. Congestion: "
              "anonymous tolls cannot reach the optimum with identical players learning in "
              "lock-step (they stay identical; the rest of the gap is the cost of "
              "randomising), so 'never' there is the game, not the optimiser.", "",
              common.md_table(["game: optimum", "welfare optimum", "bo", "cmaes", "random"],
                              rows), ""]

    n_eval = 8 if quick else 16
    # each in a fresh interpreter, like the other suites' cases: nothing warm from above
    one = common.run_worker("metaagent.py", {"workers": 1, "evaluations": n_eval})["seconds"]
    two = common.run_worker("metaagent.py", {"workers": 2, "evaluations": n_eval})["seconds"]
    lines += ["### A BO batch of q = 4 over local workers", "",
              f"The one-shot example with `batch: 4`, `repeats: 2`, 200,000 agents and `tolerance: 1e-3` (a task: about 0.5 s), "
              f"{n_eval} evaluations after the baseline; `executor: local` with "
              "spawn-started processes (their start-up, about 2 s, is included).", "",
              common.md_table(["workers", "wall time", "speed-up"],
                              [[1, common.fmt_time(one), "1.0x"],
                               [2, common.fmt_time(two), f"{one / two:.2f}x"]]), ""]
    note = "one run per row (each is a whole meta-agent run); see the load average"
    return "\n".join([lines[0], "", common.provenance(opts.command, info, started, note),
                      *lines[1:]])


def run_case(case: dict) -> dict:
    return {"seconds": batch_scaling(case["workers"], case["evaluations"])}


if __name__ == "__main__":
    common.worker_main(run_case)
