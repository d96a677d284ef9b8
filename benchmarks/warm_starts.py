"""Inner iterations of a meta-agent run with and without warm starts (issue 10).

``examples/dynamic.yaml`` with ``learner: {name: exact, temperature: 0.1}``, 60
evaluations, for each optimiser and exact method: the run's ``inner_iterations`` (and
newton's conjugate-gradient steps, counted apart) with ``optimiser.warm_starts`` false and
true, and the best J of each run.

Run: ``.venv/bin/python benchmarks/warm_starts.py`` (about a minute).
"""

from __future__ import annotations

from pathlib import Path

import yaml

import crowdsteer
import crowdsteer.metaagent.evaluation as evaluation
import crowdsteer.metaagent.gradient as gradient

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "dynamic.yaml"
COUNT = {"cg": 0}


def _counting(real):
    def solve_at(*args, **kwargs):
        sol = real(*args, **kwargs)
        COUNT["cg"] += getattr(sol, "inner_steps", 0) or 0
        return sol
    return solve_at


def main() -> None:
    evaluation.solve_at = _counting(evaluation.solve_at)
    gradient.solve_at = _counting(gradient.solve_at)
    base = yaml.safe_load(EXAMPLE.read_text())
    print("| method | optimiser | cold: iterations (+ CG), best J | warm: iterations (+ CG), "
          "best J | cold / warm iterations |")
    print("| --- | --- | --- | --- | --- |")
    for method in ("auto", "omd"):
        for opt in ("gradient", "bo"):
            cells = []
            for warm in (False, True):
                COUNT["cg"] = 0
                cfg = {**base, "learner": {"name": "exact", "temperature": 0.1,
                                           "method": method},
                       "optimiser": {"name": opt, "evaluations": 60, "warm_starts": warm}}
                r = crowdsteer.run(crowdsteer.load_config(cfg, EXAMPLE.parent))
                cells.append((r.inner_iterations, COUNT["cg"], r.best.objective))
            (ci, cc, cj), (wi, wc, wj) = cells
            print(f"| {method} | {opt} | {ci} (+ {cc}), {cj:.5g} | {wi} (+ {wc}), {wj:.5g} | "
                  f"{ci / wi:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
