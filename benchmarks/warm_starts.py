"""Inner iterations of a meta-agent run with and without warm starts (issue 10).

``examples/dynamic.yaml`` with ``learner: {name: exact, temperature: 0.1}``, 60
evaluations, for each optimiser and exact method: the run's ``inner_iterations`` (and
newton's conjugate-gradient steps, counted apart) with ``optimiser.warm_starts`` false and
true, and the best J of each run. Then, for the default method under the gradient
optimiser, the evaluations of each run by their distance in ``w`` to the closest earlier
one (the warm start's source), with the mean inner iterations in each band.

Run: ``.venv/bin/python benchmarks/warm_starts.py`` (a few seconds).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

import crowdsteer
import crowdsteer.metaagent.evaluation as evaluation
import crowdsteer.metaagent.gradient as gradient

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "dynamic.yaml"
COUNT = {"cg": 0}
SOLVES: list[tuple[np.ndarray, int]] = []
"""``(w, iterations)`` of every inner solve of the current run, in order."""
BANDS = (0.0, 1e-4, 1e-2, 0.1, 1.0, np.inf)


def _counting(real):
    def solve_at(s, w, *args, **kwargs):
        sol = real(s, w, *args, **kwargs)
        COUNT["cg"] += getattr(sol, "inner_steps", 0) or 0
        SOLVES.append((np.asarray(w, dtype=float).copy(), int(sol.iterations)))
        return sol
    return solve_at


def _by_distance() -> dict[int, list[int]]:
    """Iterations of the current run's solves by band of distance to the closest earlier
    ``w`` (band -1: the first solve)."""
    out: dict[int, list[int]] = {}
    for i, (w, its) in enumerate(SOLVES):
        if i == 0:
            band = -1
        else:
            d = min(float(np.linalg.norm(w - v)) for v, _ in SOLVES[:i])
            band = int(np.searchsorted(BANDS, d, side="right")) - 1
        out.setdefault(band, []).append(its)
    return out


def main() -> None:
    evaluation.solve_at = _counting(evaluation.solve_at)
    gradient.solve_at = _counting(gradient.solve_at)
    base = yaml.safe_load(EXAMPLE.read_text())
    print("| method | optimiser | cold: iterations (+ CG), best J | warm: iterations (+ CG), "
          "best J | cold / warm iterations |")
    print("| --- | --- | --- | --- | --- |")
    bands: dict[bool, dict[int, list[int]]] = {}
    for method in ("auto", "omd"):
        for opt in ("gradient", "bo"):
            cells = []
            for warm in (False, True):
                COUNT["cg"] = 0
                SOLVES.clear()
                cfg = {**base, "learner": {"name": "exact", "temperature": 0.1,
                                           "method": method},
                       "optimiser": {"name": opt, "evaluations": 60, "warm_starts": warm}}
                r = crowdsteer.run(crowdsteer.load_config(cfg, EXAMPLE.parent))
                cells.append((r.inner_iterations, COUNT["cg"], r.best.objective))
                if method == "auto" and opt == "gradient":
                    bands[warm] = _by_distance()
            (ci, cc, cj), (wi, wc, wj) = cells
            print(f"| {method} | {opt} | {ci} (+ {cc}), {cj:.5g} | {wi} (+ {wc}), {wj:.5g} | "
                  f"{ci / wi:.2f}x |", flush=True)
    print("\n| distance to the closest earlier w | cold: evaluations, mean iterations | "
          "warm: evaluations, mean iterations |")
    print("| --- | --- | --- |")
    for b in sorted(set(bands[False]) | set(bands[True])):
        label = "first" if b < 0 else f"[{BANDS[b]:g}, {BANDS[b + 1]:g})"
        cells = [f"{len(v)}, {np.mean(v):.2f}" if (v := bands[warm].get(b)) else "0"
                 for warm in (False, True)]
        print(f"| {label} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
