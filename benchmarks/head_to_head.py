"""Head to head on MFGLib's own game: its best algorithm against crowdsteer's default.

MFGLib's ``crowd_motion`` at 40x40, ``T = 10`` (rebuilt in crowdsteer by
``benchmarks/peers/games.py``, agreement checked by the ``peers`` suite): seconds to
exploitability ``1e-4`` for each of MFGLib's iterative algorithms (default parameters,
float64) and for ``ExactSolver(method='auto')``. Each side runs in a fresh worker
(``benchmarks/peers/worker.py``), one after the other. Needs MFGLib (``--no-deps``),
``osqp`` and ``opt_einsum`` as ``benchmarks/peers/requirements*.txt`` say; OpenSpiel is
not needed.

Run through ``benchmarks/run.py --only head_to_head``.
"""

from __future__ import annotations

import importlib.util
import time

import common

TOLERANCE = 1e-4
GAME = {"id": "mf40", "peer": "mfglib", "n": 40, "T": 10,
        "label": "MFGLib crowd_motion 40x40, T=10"}
QUICK_GAME = {"id": "mf20", "peer": "mfglib", "n": 20, "T": 3,
              "label": "MFGLib crowd_motion 20x20, T=3"}
REQUIRED = ("mfglib", "opt_einsum", "torch", "osqp")
OURS = ("newton", "omd")
"""crowdsteer's methods timed; at ``tau = 0`` its default (``auto``) is ``newton`` on this
game (a concave potential; ``omd`` before the proximal stage of issue 10)."""


def plan(quick: bool) -> list[dict]:
    game = QUICK_GAME if quick else GAME
    knobs = {"tolerance": TOLERANCE, "budget_s": 0.1 if quick else 0.5,
             "repeats": 2 if quick else 3, "tol_repeats": 1 if quick else 3,
             "tol_budget_s": 30.0 if quick else 120.0, "max_iterations": 100_000,
             "peer_cap_s": 30.0 if quick else 600.0}
    return [{"kind": "ours", "game": game, "method": m, "knobs": knobs} for m in OURS] + [
        {"kind": "peer_best", "game": game, "knobs": knobs}]


def run_suite(opts) -> str | None:
    gone = [m for m in REQUIRED if importlib.util.find_spec(m) is None]
    if gone:
        print(f"[head_to_head] skipped: {', '.join(gone)} not installed (see "
              "benchmarks/peers/requirements.txt)", flush=True)
        return None
    started = time.perf_counter()
    info = common.machine_info()
    results = []
    for case in plan(opts.quick):
        print(f"[head_to_head] {case['kind']} ...", flush=True)
        results.append((case, common.run_worker("peers/worker.py", case, timeout=7200)))
    note = ("crowdsteer: the median of up to 3 identical solves per method; MFGLib: one run "
            "per algorithm from the uniform policy, capped at "
            f"{common.fmt_time(plan(opts.quick)[-1]['knobs']['peer_cap_s'])} of wall time, its "
            "exploitability evaluated (untimed) after every update")
    return render(results, opts.command, info, started, note, opts.quick)


def render(results, command: str, info: dict, started: float, note: str, quick: bool) -> str:
    case, res = results[-1]
    ours = {c["method"]: r for c, r in results[:-1]}
    title = (f"## Head to head on {case['game']['label']}: time to exploitability "
             f"{TOLERANCE:g}" + (" (quick run)" if quick else ""))
    parts = [title, "", common.provenance(command, info, started, note),
             "- Peer: " + ", ".join(f"{k} {v}" for k, v in sorted(res["versions"].items())),
             "",
             "MFGLib's iterative algorithms with their default parameters, in float64 "
             "(`torch.set_default_dtype(torch.float64)`: in float32 MFGLib's own score of this "
             "game is rounded at about 1e-4), scored by `mfglib.scoring.exploitability_score`; "
             "crowdsteer: `ExactSolver(ExactConfig(method=..., tolerance=1e-4))` on the game "
             "rebuilt by `benchmarks/peers/games.py` (the `peers` suite checks that both compute "
             "the same exploitability), its iterations including the certificate.", ""]
    rows = []
    fastest = None
    for name, r in res["best"].items():
        if r["reached"] is not None:
            reached = r["reached"]
            cell = (f"**{reached['iterations']} it, {common.fmt_time(reached['wall'])}** "
                    f"(CPU {common.fmt_time(reached['cpu'])})")
            if fastest is None or reached["wall"] < fastest[1]:
                fastest = (name, reached["wall"])
        else:
            cell = (f"not reached: {r['exploitability']:.1e} after {r['iterations']} it, "
                    f"{common.fmt_time(r['wall'])}")
        rows.append([f"MFGLib {name}", cell])
    for method, r in ours.items():
        tt = r["to_tol"]
        rows.append([f"crowdsteer `{method}`" + (" (the default at tau = 0)"
                                                  if method == "newton" else ""),
                     f"**{tt['iterations']} it, {common.fmt_time(tt['wall']['median'])}** (CPU "
                     f"{common.fmt_time(tt['cpu']['median'])}, exploitability "
                     f"{tt['exploitability']:.1e}, n={len(tt['runs'])})" if tt["converged"] else
                     f"not reached: {tt['exploitability']:.1e} after {tt['iterations']} it"])
    parts.append(common.md_table(["solver", f"to {TOLERANCE:g}: iterations, wall time"], rows))
    for method, r in ours.items():
        tt = r["to_tol"]
        if not tt["converged"]:
            continue
        ours_s = tt["wall"]["median"]
        if fastest is not None:
            parts += ["", f"Ratio, MFGLib's best ({fastest[0]}) / crowdsteer `{method}`: "
                      f"**{common.fmt_ratio(fastest[1] / ours_s)}**."]
        else:
            capped = min(r["wall"] for r in res["best"].values())
            parts += ["", f"No MFGLib algorithm reached the tolerance within its cap: ratio to "
                      f"crowdsteer `{method}` **> {common.fmt_ratio(capped / ours_s)}** (the "
                      "time each ran, over crowdsteer's)."]
    return "\n".join(parts) + "\n"
