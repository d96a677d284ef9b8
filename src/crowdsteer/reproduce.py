"""Reproduce the paper's two experiments: several independent meta-agent runs per
example, J of each evaluation averaged over many independent simulations of the
agents, and the mean best-so-far curve with its spread.

The paper's protocol (Figure 2): J averaged over 100 independent simulations per
evaluation, 4 independent runs. Here an evaluation learns once and then measures J
on ``simulations`` fresh populations of ``N`` agents playing what was learned
(``objective.simulations``); the runs differ in their seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crowdsteer import rundir
from crowdsteer.config import load_config
from crowdsteer.errors import ConfigError
from crowdsteer.metaagent import RunResult, run


@dataclass(frozen=True)
class Reproduction:
    """Results of the independent runs of one example."""

    name: str
    runs: tuple[RunResult, ...]
    plot: Path

    def summary(self) -> dict[str, Any]:
        base = [r.baseline.objective for r in self.runs]
        best = [r.best.objective for r in self.runs]
        return {"runs": len(self.runs), "baseline_mean": float(np.mean(base)),
                "best_mean": float(np.mean(best)), "best_min": float(np.min(best)),
                "best_max": float(np.max(best)),
                "seconds": float(sum(r.seconds for r in self.runs)),
                "iid_sample_kl": self.runs[0].iid_sample_kl}


def reproduce(configs: list[Path], out: Path, runs: int = 4, simulations: int | None = 100,
              evaluations: int | None = None, progress: Any = None,
              force: bool = False) -> list[Reproduction]:
    """Run every config ``runs`` times (seeds 0..runs-1) into ``out/NAME/run_K``."""
    from crowdsteer.report.plots import write_reproduction_plot

    out = Path(out)
    check_folders(configs, out, runs, force)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for path in configs:
        base = load_config(path, required=("game", "modifier"))
        raw = base.resolved()
        if simulations is not None:
            raw.setdefault("objective", {})["simulations"] = simulations
        if evaluations is not None:
            raw.setdefault("optimiser", {})["evaluations"] = evaluations
        name = Path(path).stem
        done = []
        for k in range(runs):
            cfg = load_config({**raw, "seed": k}, base.base_dir,
                              required=("game", "modifier"))
            target = out / name / f"run_{k}"
            cb = None if progress is None else (lambda d, t, b, k=k: progress(name, k, d, t, b))
            done.append(run(cfg, target, force=force, progress=cb))
        plot = write_reproduction_plot([np.asarray(r.history) for r in done],
                                       out / f"{name}.png", f"J ({raw['objective']['name']})",
                                       done[0].direction)
        results.append(Reproduction(name, tuple(done), plot))
    rundir.write_json(out / "summary.json", {r.name: r.summary() for r in results})
    return results


def check_folders(configs: list[Path], out: Path, runs: int, force: bool) -> None:
    """Refuse, before any run starts, run folders that hold another run (unless ``force``)
    and two configs whose runs would share folders (``out/NAME/run_K``, ``NAME`` the file
    name without its suffix). ``reproduce`` has no ``--resume``: a used folder is either
    overwritten (``--force``) or another ``--out`` is chosen."""
    seen: dict[str, Path] = {}
    for path in configs:
        name = Path(path).stem
        if name in seen:
            raise ConfigError("configs", f"{seen[name]} and {path} would both write "
                              f"{out / name}; give the configs different file names")
        seen[name] = Path(path)
        if force:
            continue
        for k in range(runs):
            folder = out / name / f"run_{k}"
            held = [m for m in rundir.MARKERS if (folder / m).exists()]
            if held:
                raise ConfigError("--out", f"{folder} already holds a run ({held[0]}); pass "
                                  "--force to overwrite it, or choose another --out")
