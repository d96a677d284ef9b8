"""Re-run every command the README quotes numbers from; print today's figures beside the
README's.

    python benchmarks/readme.py                 # every claim (10-20 min on 2 cores, by load)
    python benchmarks/readme.py --only demo gradient
    python benchmarks/readme.py --list

Each claim is a command (``crowdsteer run`` or ``solve`` on an example, as the README
gives it) and the figures read back from the files it writes (``result.json``,
``summary.json``). Values are printed with the README's figure beside them; times depend
on the machine and its load, so they are printed with the machine's core count and load
average, and the README quotes them as ranges. Run folders go to ``runs/readme/NAME``
(``--out``). ``make test`` is timed with ``--make-test`` (it takes minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SO_SIOUX_FALLS = 7.194e6
"""System-optimum TSTT of Sioux Falls quoted in the README (the UE-to-SO gap's far end)."""


@dataclass(frozen=True)
class Claim:
    """A README sentence's numbers and the command behind them."""

    name: str
    where: str
    """Where the README says it (section, words)."""
    args: list[str]
    """``crowdsteer`` arguments; ``{out}`` is the run folder."""
    readme: dict[str, str]
    """Figure -> what the README says."""
    read: Callable[[Path, float], dict[str, str]]
    """``read(out, wall_seconds)`` -> figure -> today's value."""
    edit: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    """Change the example's config before running (a variant the README quotes)."""


def _result(out: Path) -> dict[str, Any]:
    return json.loads((out / "result.json").read_text())


def _s(x: float) -> str:
    return f"{x:.0f} s" if x >= 10 else f"{x:.1f} s"


def _demo(out: Path, wall: float) -> dict[str, str]:
    r = _result(out)
    return {"KL left alone": f"{r['baseline']['objective']:.3g}",
            "KL best (tuning seed)": f"{r['best']['objective']:.3g}",
            "KL best (10 fresh seeds)": f"{r['best']['validation']['mean']:.3g}",
            "KL of 2,000 iid agents": f"{r['iid_sample_kl']['mean']:.3g}",
            "wall time": _s(wall)}


def _gradient(out: Path, wall: float) -> dict[str, str]:
    r = _result(out)
    return {"KL from": f"{r['baseline']['objective']:.3g}",
            "KL to": f"{r['best']['objective']:.2g}",
            "evaluations": str(r["evaluations"] - 1), "wall time": _s(wall)}


def _tolls(out: Path, wall: float) -> dict[str, str]:
    r = _result(out)
    ue, best = -r["baseline"]["welfare"], -r["best"]["welfare"]
    return {"evaluations": str(r["evaluations"]), "best at": str(r["best"]["trial"]),
            "best TSTT": f"{best:.5g}", "UE-to-SO gap closed":
            f"{100 * (ue - best) / (ue - SO_SIOUX_FALLS):.1f}%", "wall time": _s(wall)}


def _sioux_solve(out: Path, wall: float) -> dict[str, str]:
    s = json.loads((out / "summary.json").read_text())
    return {"iterations": str(s["iterations"]), "relative gap": f"{s['relative_gap']:.2g}"}


def _gradient_variant(cfg: dict[str, Any]) -> dict[str, Any]:
    return {**cfg, "optimiser": {"name": "gradient", "evaluations": 30}}


def _gap(gap: float) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def edit(cfg: dict[str, Any]) -> dict[str, Any]:
        return {**cfg, "learner": {**cfg["learner"], "relative_gap": gap}}
    return edit


CLAIMS = [
    Claim("demo", "top: make demo (30 s to 9 min); KL about 1.91 -> 0.012, 0.013 on 10 "
          "fresh seeds; 0.0245 iid", ["run", "examples/oneshot.yaml", "--out", "{out}",
                                      "--force"],
          {"KL left alone": "1.91", "KL best (tuning seed)": "0.012",
           "KL best (10 fresh seeds)": "0.013", "KL of 2,000 iid agents": "0.0245",
           "wall time": "30-524 s"}, _demo),
    Claim("gradient", "Gradients: KL from 1.66 to 0.016 in 60 evaluations, 13-145 s",
          ["run", "examples/gradient.yaml", "--out", "{out}", "--force"],
          {"KL from": "1.66", "KL to": "0.016", "evaluations": "60", "wall time": "10-145 s"},
          _gradient),
    Claim("siouxfalls_bo", "Tolls table, bo (the example as shipped)",
          ["run", "examples/siouxfalls_tolls.yaml", "--out", "{out}", "--force"],
          {"evaluations": "41", "best at": "40", "best TSTT": "7.4233e+06",
           "UE-to-SO gap closed": "19.9%", "wall time": "11-165 s"}, _tolls),
    Claim("siouxfalls_gradient", "Tolls table, gradient (hypergradients)",
          ["run", "{config}", "--out", "{out}", "--force"],
          {"evaluations": "31", "best at": "13", "best TSTT": "7.4171e+06",
           "UE-to-SO gap closed": "22.1%", "wall time": "8-139 s"}, _tolls,
          _gradient_variant),
    Claim("siouxfalls_1e-6", "Networks: Sioux Falls 29 iterations to a relative gap of 1e-6",
          ["solve", "{config}", "--out", "{out}", "--force"],
          {"iterations": "29", "relative gap": "1e-06"}, _sioux_solve, _gap(1e-6)),
    Claim("siouxfalls_1e-12", "Networks: Sioux Falls 59 iterations to 1e-12",
          ["solve", "{config}", "--out", "{out}", "--force"],
          {"iterations": "59", "relative gap": "1e-12"}, _sioux_solve, _gap(1e-12)),
]


def _config_variant(claim: Claim, out: Path) -> Path:
    """The example of ``claim`` changed by ``claim.edit``, written beside the run folder
    (its data paths made absolute)."""
    import yaml

    example = ROOT / "examples" / "siouxfalls_tolls.yaml"
    cfg = yaml.safe_load(example.read_text())
    net = cfg["game"]["network"]
    for key in ("net", "trips", "node"):
        net[key] = str((example.parent / net[key]).resolve())
    path = out.parent / f"{claim.name}.yaml"
    path.write_text(yaml.safe_dump(claim.edit(cfg), sort_keys=False))
    return path


def machine() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min)")


def run_claim(claim: Claim, root: Path) -> dict[str, str]:
    out = root / claim.name
    out.parent.mkdir(parents=True, exist_ok=True)
    config = str(_config_variant(claim, out)) if claim.edit else ""
    args = [a.format(out=out, config=config) for a in claim.args]
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "crowdsteer", *args], cwd=ROOT,
                       capture_output=True, text=True)
    wall = time.perf_counter() - start
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["?"])[-1]}
    return claim.read(out, wall)


def time_make_test() -> str:
    start = time.perf_counter()
    r = subprocess.run(["make", "test"], cwd=ROOT, capture_output=True, text=True)
    tail = (r.stdout.strip().splitlines() or ["?"])[-1]
    return f"{(time.perf_counter() - start) / 60:.1f} min ({tail})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", metavar="NAME", help="claims to re-run")
    p.add_argument("--list", action="store_true", help="list the claims and stop")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "readme")
    p.add_argument("--make-test", action="store_true", help="also time `make test`")
    args = p.parse_args(argv)
    if args.list:
        for c in CLAIMS:
            print(f"{c.name:22} {c.where}")
        return 0
    unknown = set(args.only or ()) - {c.name for c in CLAIMS}
    if unknown:
        print(f"error: unknown claim {sorted(unknown)}; see --list", file=sys.stderr)
        return 2
    print(f"machine: {machine()}")
    for claim in CLAIMS:
        if args.only and claim.name not in args.only:
            continue
        now = run_claim(claim, args.out)
        print(f"\n{claim.name}: {claim.where}")
        if "error" in now:
            print(f"  FAILED: {now['error']}")
            continue
        width = max(len(k) for k in claim.readme)
        print(f"  {'figure':{width}}  {'README':>12}  {'now':>12}")
        for key, said in claim.readme.items():
            print(f"  {key:{width}}  {said:>12}  {now.get(key, '?'):>12}")
    if args.make_test:
        print(f"\nmake test: {time_make_test()}")
    print(f"\nmachine after: {machine()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
