"""Tolls found by the meta-agent on road networks, against the system optimum.

Writes a config per case into a scratch folder, runs ``crowdsteer run`` on it (the default
optimiser, fresh process) and reports the share of the gap between the untolled
equilibrium and the system optimum that the best tolls close, with the wall time:

* Sioux Falls, tolls on every link, bounds [0, 100], 60 evaluations (issue 18: at least
  99%; the descent alone from w = 0 stopped at 82.1%);
* the same with bounds [0, 20], 40 evaluations;
* Chicago Sketch (generalised cost: toll 0.02 min/cent, distance 0.04 min/mile), tolls on
  its 100 busiest links (by the ``_flow`` file's best-known volumes), bounds [0, 100],
  ``--chicago-evaluations`` evaluations (default 60) of the default optimiser (issue 18:
  a run within 10 minutes); each equilibrium is solved to 1e-10 by the bush engine and
  differentiated on its bushes' paths.

Data: ``examples/data/tntp`` (Sioux Falls) and ``$CROWDSTEER_TNTP`` or
``../shared/data/tntp`` (Chicago; the case is skipped, and says so, when missing).

    .venv/bin/python benchmarks/network_tolls.py [--only sioux|chicago] [--write]

``--write`` rewrites this suite's section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import machine_info, md_table, provenance, tntp_dir, update_section  # noqa: E402

EXAMPLES = ROOT / "examples" / "data" / "tntp"


def busiest_links(flow_file: Path, net_file: Path, n: int) -> list[list[int]]:
    """The ``n`` links with the largest best-known volumes, as ``[from, to]`` ids."""
    from crowdsteer.games.tntp import read_flow, read_net

    net = read_net(net_file)
    volume, _ = read_flow(flow_file, net)
    top = np.argsort(-volume)[:n]
    return [[int(net.ids[net.tail[e]]), int(net.ids[net.head[e]])] for e in top]


def run_case(name: str, network: dict, modifier: dict, evaluations: int,
             optimiser: dict | None = None, learner: dict | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="crowdsteer-tolls-") as tmp:
        cfg = {"seed": 0, "game": {"name": "routing", "network": network},
               "learner": {"name": "exact", **(learner or {})},
               "modifier": {"name": "tolls", **modifier}, "objective": {"name": "welfare"},
               "optimiser": {"evaluations": evaluations, **(optimiser or {})}}
        path = Path(tmp) / "c.json"  # JSON is YAML
        path.write_text(json.dumps(cfg))
        start = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "crowdsteer", "run", str(path), "--out",
                            str(Path(tmp) / "run")], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        seconds = time.perf_counter() - start
        if r.returncode != 0:
            return {"name": name, "error": r.stderr.strip()[-300:], "seconds": seconds}
        result = json.loads((Path(tmp) / "run" / "result.json").read_text())
    nw = result["network"]
    return {"name": name, "seconds": seconds, "evaluations": result["evaluations"],
            "best_trial": result["best"]["trial"], "optimiser": result["optimiser"], **nw}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--only", choices=("sioux", "chicago"))
    p.add_argument("--chicago-evaluations", type=int, default=60)
    p.add_argument("--write", action="store_true")
    opts = p.parse_args()
    started, info = time.perf_counter(), machine_info()
    rows, notes = [], []
    sf = {"net": str(EXAMPLES / "SiouxFalls_net.tntp"),
          "trips": str(EXAMPLES / "SiouxFalls_trips.tntp")}
    cases = []
    if opts.only in (None, "sioux"):
        cases += [("Sioux Falls, every link, [0, 100]", sf, {"bounds": [0, 100]}, 60),
                  ("Sioux Falls, every link, [0, 20]", sf, {"bounds": [0, 20]}, 40)]
    if opts.only in (None, "chicago"):
        shared = tntp_dir("ChicagoSketch")
        if shared is not None and (shared / "ChicagoSketch_flow.tntp").is_file():
            net = shared / "ChicagoSketch_net.tntp"
            links = busiest_links(shared / "ChicagoSketch_flow.tntp", net, 100)
            cases.append(("Chicago Sketch, 100 busiest links, [0, 100]",
                          {"net": str(net), "trips": str(shared / "ChicagoSketch_trips.tntp"),
                           "toll_weight": 0.02, "distance_weight": 0.04},
                          {"bounds": [0, 100], "links": links}, opts.chicago_evaluations))
        else:
            notes.append("Chicago Sketch skipped: no ChicagoSketch net, trips and flow files "
                         "in $CROWDSTEER_TNTP or ../shared/data/tntp")
    for case in cases:
        r = run_case(*case)
        r["optimiser"] = r.get("optimiser", "?")
        print(json.dumps(r), flush=True)
        if "error" in r:
            rows.append([r["name"], "-", "-", "-", "-", f"failed: {r['error']}",
                         f"{r['seconds']:.0f}"])
            continue
        rows.append([r["name"], f"{r['evaluations'] - 1} (+ baseline), {r['optimiser']}",
                     f"{r['tstt_baseline']:.6g}",
                     f"{r['tstt_best']:.6g} (trial {r['best_trial']})",
                     f"{r['tstt_system_optimum']:.6g}", f"{100 * r['gap_closed']:.2f}%",
                     f"{r['seconds']:.0f}"])
    body = ("## Tolls against the system optimum\n\n"
            + provenance(".venv/bin/python benchmarks/network_tolls.py --write", info,
                         started, "one run per case, fresh process, seed 0") + "\n\n"
            + "Share closed = (TSTT without tolls - TSTT with the best tolls) / (TSTT without "
            "tolls - TSTT at the system optimum); the optimiser is the default (auto: "
            "gradient), whose descent starts at the better of w = 0 and the first-best "
            "(marginal-cost) tolls as the modifier can charge them.\n\n"
            + md_table(["case", "evaluations", "TSTT, no tolls", "TSTT, best tolls",
                        "TSTT, system optimum", "share closed", "wall s"], rows)
            + "".join(f"\n\n{n}" for n in notes) + "\n")
    print(body)
    if opts.write:
        update_section(ROOT / "BENCHMARKS.md", "network_tolls", body, "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
