"""The ``peers`` suite: OpenSpiel and MFGLib fictitious play against crowdsteer, same run.

For every peer game: (1) rebuild it in crowdsteer and check that both compute the same
exploitability for fixed policies; (2) time crowdsteer's ``ExactSolver`` (``fp`` and
``omd``) on the rebuilt game; (3) time the peer's fictitious play on its own game.
Each step is a fresh worker process (``benchmarks/peers/worker.py``), one after the
other, so the peer and crowdsteer share the machine's load of the moment.

Run through ``benchmarks/run.py --only peers``; needs ``benchmarks/peers/requirements.txt``.
"""

from __future__ import annotations

import importlib.util
import time

import common

TOLERANCE = 1e-3
AGREE = 1e-4

# The peers' games. `uniform` mu0 is OpenSpiel's default; with it and no positional
# reward the uniform policy is already an exact equilibrium (every policy keeps the
# torus uniform), so the `blob` start is what makes fictitious play work for its result.
# crowdsteer's solvers stop at once on those (exploitability 0 at the start), so their
# cost per iteration is taken from the blob game of the same size: the same arrays.
GAMES = (
    {"id": "os10u", "peer": "openspiel", "size": 10, "horizon": 10, "mu0": "uniform",
     "peer_iterations": 2, "ours_from": "os10b",
     "label": "OpenSpiel 10x10, horizon 10, uniform mu0 (default)"},
    {"id": "os10b", "peer": "openspiel", "size": 10, "horizon": 10, "mu0": "blob",
     "peer_iterations": 2, "label": "OpenSpiel 10x10, horizon 10, blob mu0"},
    {"id": "os20u", "peer": "openspiel", "size": 20, "horizon": 10, "mu0": "uniform",
     "peer_iterations": 1, "ours_from": "os20b",
     "label": "OpenSpiel 20x20, horizon 10, uniform mu0 (default)"},
    {"id": "os20b", "peer": "openspiel", "size": 20, "horizon": 10, "mu0": "blob",
     "peer_iterations": 1, "label": "OpenSpiel 20x20, horizon 10, blob mu0"},
    {"id": "mf20", "peer": "mfglib", "n": 20, "T": 3, "peer_iterations": 100,
     "plain_einsum_iterations": 10, "label": "MFGLib crowd_motion 20x20, T=3"},
    {"id": "mf40", "peer": "mfglib", "n": 40, "T": 10, "peer_iterations": 2,
     "label": "MFGLib crowd_motion 40x40, T=10"},
)
PEER_NAME = {"openspiel": "OpenSpiel fictitious play (Python, C++ game)",
             "mfglib": "MFGLib fictitious play (PyTorch + opt_einsum)"}
REQUIRED = ("pyspiel", "mfglib", "opt_einsum", "torch")


def knobs(quick: bool) -> dict:
    if quick:
        return {"tolerance": TOLERANCE, "budget_s": 0.1, "repeats": 2, "tol_repeats": 1,
                "tol_budget_s": 5.0, "max_iterations": 20_000, "peer_repeats": 2,
                "peer_cap_s": 10.0}
    return {"tolerance": TOLERANCE, "budget_s": 0.5, "repeats": 5, "tol_repeats": 3,
            "tol_budget_s": 30.0, "max_iterations": 20_000, "peer_repeats": 3,
            "peer_cap_s": 120.0}


def plan(quick: bool) -> list[dict]:
    games = [g for g in GAMES if not quick or g["id"] in ("os10u", "os10b", "mf20")]
    k = knobs(quick)
    cases = []
    for g in games:
        cases.append({"kind": "check", "game": g})
        for method in () if "ours_from" in g else ("fp", "omd"):
            cases.append({"kind": "ours", "game": g, "method": method, "knobs": k})
        cases.append({"kind": "peer", "game": g,
                      "knobs": k | {"peer_iterations": g["peer_iterations"]}})
        if "plain_einsum_iterations" in g:  # the other MFGLib figure: no opt_einsum
            cases.append({"kind": "peer", "game": g, "plain": True,
                          "knobs": k | {"peer_iterations": g["plain_einsum_iterations"],
                                        "opt_einsum": False, "to_tol": False}})
    return cases


def missing() -> list[str]:
    return [m for m in REQUIRED if importlib.util.find_spec(m) is None]


def run_suite(opts) -> str | None:
    gone = missing()
    if gone:
        print(f"[peers] skipped: {', '.join(gone)} not installed; install the optional "
              "benchmark dependencies as benchmarks/peers/requirements.txt says "
              "(`make bench-peers` does it)", flush=True)
        return None
    started = time.perf_counter()
    info = common.machine_info()
    results = []
    for case in plan(opts.quick):
        label = f"{case['game']['id']} {case['kind']} {case.get('method', '')}".strip()
        if case.get("plain"):
            label += " (no opt_einsum)"
        print(f"[peers] {label} ...", flush=True)
        res = common.run_worker("peers/worker.py", case, timeout=3600)
        results.append((case, res))
        print("  " + _summary_line(case, res) + f" ({res['wall_s']:.1f} s)", flush=True)
    k = knobs(opts.quick)
    note = (f"seconds per iteration = median (and min) over {k['repeats']} crowdsteer runs of "
            f"a fixed number of iterations lasting about {k['budget_s']} s each, and over "
            f"{k['peer_repeats']} peer runs of 1 to 100 iterations (from a fresh start each); "
            f"time to exploitability {TOLERANCE:g}: crowdsteer = median over up to "
            f"{k['tol_repeats']} identical solves, peers = one run capped at "
            f"{k['peer_cap_s']:g} s of wall time")
    return render(results, opts.command, info, started, note, opts.quick)


def _summary_line(case: dict, res: dict) -> str:
    if case["kind"] == "check":
        return "; ".join(f"{r['policy']} {r['precision']}: peer {r['peer']:.10g} ours "
                         f"{r['ours']:.10g}" for r in res["rows"])
    msg = f"{common.fmt_time(res['per_iter']['wall']['median'])}/iter"
    tt = res.get("to_tol")
    if tt is not None:
        msg += (f"; to {TOLERANCE:g}: {tt['iterations']} it, expl {tt['exploitability']:.2e}")
    return msg


# --------------------------------------------------------------------------- markdown


def _find(results, gid: str, kind: str, method: str | None = None, plain: bool = False):
    for case, res in results:
        if (case["game"]["id"] == gid and case["kind"] == kind
                and case.get("method") == method and bool(case.get("plain")) == plain):
            return res
    return None


def _updates(res: dict, ours: bool) -> int:
    """Policy updates made: crowdsteer counts its first certificate as iteration 1."""
    tt = res["to_tol"]
    return tt["iterations"] - 1 if ours else tt["iterations"]


def _peer_to_tol(case_game: dict, peer: dict, fp: dict | None) -> tuple[str, float | None, bool]:
    """Text for the peer's time to the tolerance, the seconds (reached or projected), projected?"""
    tt = peer["to_tol"]
    if tt["reached"] is not None:
        r = tt["reached"]
        return (f"**{r['iterations']} it, {common.fmt_time(r['wall'])}** (CPU "
                f"{common.fmt_time(r['cpu'])})", r["wall"], False)
    text = (f"not reached in {common.fmt_time(tt['elapsed'])}: {tt['exploitability']:.1e} "
            f"after {tt['iterations']} it ({common.fmt_time(tt['wall'])} of iterations)")
    if fp is None or not fp["to_tol"]["converged"]:
        return text, None, False
    n = _updates(fp, ours=True)
    projected = n * peer["per_iter"]["wall"]["median"]
    same = "same iterates as ours" if case_game["peer"] == "openspiel" else \
        "our fp's count; iterates differ by tie-breaking"
    return text + f"; projected {n} it x {common.fmt_time(peer['per_iter']['wall']['median'])}" \
        f" = **{common.fmt_time(projected)}** ({same})", projected, True


def render(results, command: str, info: dict, started: float, note: str, quick: bool) -> str:
    versions: dict = {}
    for _, res in results:
        versions |= res.get("versions", {})
    title = "## Peers: OpenSpiel and MFGLib, measured side by side"
    title += " (quick run)" if quick else ""
    parts = [title, "", common.provenance(command, info, started, note),
             "- Peers: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
             + "; installed from `benchmarks/peers/requirements.txt` (MFGLib with `--no-deps`: "
             "it pins optuna < 4 and rich < 15, crowdsteer needs optuna >= 4.5; the parts of "
             "MFGLib used here run on the installed versions)",
             "- Reproduce: `make bench-peers` (installs the peers, then runs "
             "`.venv/bin/python benchmarks/run.py --only peers`)", ""]
    parts += [
        "Each peer game is rebuilt as a crowdsteer `crowd` game (`benchmarks/peers/games.py`): "
        "desirability from the config's `.npy` file, `log` congestion, the peer's initial "
        "distribution, and its transition as a 5-successor kernel swapped in after `build` "
        "(both peers add an independent random displacement to the chosen move, which the "
        "`local` noise of the config cannot say; OpenSpiel's grid is a torus, MFGLib clips "
        "the sum of the two moves to the grid). Timing: a peer pays a reward at every time "
        "point `t = 0..H` (OpenSpiel: decision nodes `t = 0..horizon-1`; MFGLib: `t = 0..T`); "
        "the one at `t = 0` comes before any move, is the same for every policy and cancels "
        "in the exploitability, and the rest are landing rewards, so crowdsteer's `T` is "
        "`horizon - 1` (OpenSpiel: the last move leads to the unrewarded terminal state) and "
        "`T` (MFGLib: `T + 1` time points, its action at `T` does nothing).",
        "",
        "- OpenSpiel `mfg_crowd_modelling_2d(size, horizon=10, only_distribution_reward=true)`: "
        "reward `-log(mu_t(x) + 1e-25)`, actions down/left/stay/right/up, then a uniform "
        "random displacement (`noise_intensity = 1`) on a torus; crowdsteer: zero "
        "desirability, `log` congestion of strength 1, `T = 9`. `blob` mu0 "
        "(`benchmarks/peers/games.py: blob_initial`, passed as `initial_distribution`) is a "
        "lopsided full-support start; OpenSpiel's default uniform start makes the uniform "
        "policy an exact equilibrium (exploitability 0 below), so only the blob games show "
        "how fast fictitious play converges.",
        "- MFGLib `Environment.crowd_motion(T, torus_l=n, torus_w=n)` (defaults: c = 10, "
        "log_eps = 1e-10, p_still = 0.5, seed 0, uniform mu0): reward "
        "`c (1 - |x - bar_t|_1 / 2n) - log(mu_t(x) + 1e-10)`; crowdsteer: desirability file "
        "= the bar term of `t = 1..T`, `log` congestion of strength 1, `T = T`. MFGLib "
        "computes in float32 (its default); the check also runs it in float64.",
        "",
        f"### Agreement: exploitability of fixed policies (tolerance {AGREE:g})",
        "",
        "`peers/<peer>.exploitability` of the peer (OpenSpiel `NashConv`, MFGLib "
        "`exploitability_score`) against `crowdsteer.equilibrium.exploitability` on the "
        "rebuilt game, for the uniform policy and a fixed random one "
        "(`games.random_policy(seed=1)`: Dirichlet rows, full support).",
        "",
    ]
    rows = []
    for case, res in results:
        if case["kind"] != "check":
            continue
        for r in res["rows"]:
            diff = abs(r["peer"] - r["ours"])
            rows.append([case["game"]["label"], f"T={res['T']}, S={res['S']}, A={res['A']}",
                         r["policy"], r["precision"], f"{r['peer']:.10f}", f"{r['ours']:.10f}",
                         f"{diff:.1e}", "yes" if diff <= AGREE else "**no**"])
    parts.append(common.md_table(["peer game", "crowdsteer game", "policy", "peer precision",
                                  "peer exploitability", "crowdsteer exploitability",
                                  "abs difference", f"<= {AGREE:g}"], rows))
    kernels = {case["game"]["label"]: max(r.get("kernel_diff", 0.0) for r in res["rows"])
               for case, res in results
               if case["kind"] == "check" and case["game"]["peer"] == "mfglib"}
    if kernels:
        parts += ["", "MFGLib transition kernels against the rebuilt ones, max abs difference: "
                  + "; ".join(f"{k}: {v:.1e}" for k, v in kernels.items()) + "."]
    parts += ["", "Fictitious play iterate by iterate (exploitability after each update, "
              "peer's capped run against crowdsteer's `fp`):", ""]
    for g in GAMES:
        peer, fp = _find(results, g["id"], "peer"), _find(results, g["id"], "ours", "fp")
        if peer is None or fp is None or "to_tol" not in peer:
            continue  # (the uniform-start games have no crowdsteer solve of their own)
        a, b = peer["to_tol"]["history"], fp["history"]
        n = min(len(a), len(b))
        worst = max(abs(x - y) for x, y in zip(a[:n], b[:n]))
        why = ("both take the first best action; the blob start leaves no exact ties"
               if g["peer"] == "openspiel" else
               "MFGLib splits exact ties in the best response evenly and computes in float32, "
               "crowdsteer takes the first best action")
        parts.append(f"- {g['label']}: {n - 1} updates compared, max difference {worst:.1e} "
                     f"(after update {n - 1}: peer {a[n - 1]:.4e}, crowdsteer "
                     f"{b[n - 1]:.4e}); {why}")
    parts += ["", "### Speed", "",
              "An iteration of crowdsteer includes its exploitability certificate (policy "
              "evaluation + best response); a peer iteration does not (the peers' "
              "exploitability is evaluated between iterations, untimed), so the comparison "
              "favours the peers. Iterations to the tolerance count policy updates.", ""]
    rows = []
    for g in GAMES:
        src = g.get("ours_from", g["id"])
        fp = _find(results, src, "ours", "fp")
        borrowed = " (per iteration: the blob game's run, same arrays)" if src != g["id"] else ""
        for label, res, kind in (
                (PEER_NAME[g["peer"]], _find(results, g["id"], "peer"), "peer"),
                ("MFGLib fictitious play, opt_einsum off",
                 _find(results, g["id"], "peer", plain=True), "plain"),
                ("crowdsteer `ExactSolver` fp" + borrowed, fp, "fp"),
                ("crowdsteer `ExactSolver` omd" + borrowed,
                 _find(results, src, "ours", "omd"), "omd")):
            if res is None:
                continue
            pi = res["per_iter"]
            wall = pi["wall"]
            row = [g["label"], label,
                   f"{common.fmt_time(wall['median'])} ({common.fmt_time(wall['min'])})",
                   common.fmt_time(pi["cpu"]["median"])]
            if kind == "peer":
                row.append(_peer_to_tol(g, res, fp)[0])
            elif kind == "plain":
                row.append("- (per iteration only)")
            elif borrowed:
                row.append("**0 it** (the uniform start has exploitability 0)")
            else:
                tt = res["to_tol"]
                if tt["converged"]:
                    row.append(f"**{_updates(res, True)} it, "
                               f"{common.fmt_time(tt['wall']['median'])}** (CPU "
                               f"{common.fmt_time(tt['cpu']['median'])}, n={len(tt['runs'])})")
                else:
                    row.append(f"not reached: {tt['exploitability']:.1e} after "
                               f"{_updates(res, True)} it")
            row.append(" / ".join(f"{x:.2f}" for x in res["loadavg"]))
            rows.append(row)
    parts.append(common.md_table(
        ["game", "solver", "wall s / iteration: median (min)", "CPU s / iteration (median)",
         f"to exploitability {TOLERANCE:g}: iterations, wall time", "load avg at its start"],
        rows))
    parts += ["", "### Ratios (peer / crowdsteer; above 1: crowdsteer is faster)", "",
              "Per iteration: medians of wall time (CPU time in brackets). To the tolerance: "
              "the peer's time when it got there within the cap, otherwise the projection "
              "above (marked *), against crowdsteer's median wall time.", ""]
    rows = []
    for g in GAMES:
        peer = _find(results, g["id"], "peer")
        src = g.get("ours_from", g["id"])
        fp, omd = _find(results, src, "ours", "fp"), _find(results, src, "ours", "omd")
        if peer is None or fp is None or omd is None:
            continue

        def per_it(ours: dict) -> str:
            w = peer["per_iter"]["wall"]["median"] / ours["per_iter"]["wall"]["median"]
            c = peer["per_iter"]["cpu"]["median"] / ours["per_iter"]["cpu"]["median"]
            return f"{common.fmt_ratio(w)} ({common.fmt_ratio(c)})"

        _, peer_s, projected = _peer_to_tol(g, peer, fp)

        def to_tol(ours: dict) -> str:
            if src != g["id"]:
                return "- (the start is an equilibrium)"
            if peer_s is None or not ours["to_tol"]["converged"]:
                return "-"
            ratio = peer_s / max(ours["to_tol"]["wall"]["median"], 1e-9)
            return common.fmt_ratio(ratio) + ("*" if projected else "")

        rows.append([g["label"], per_it(fp), per_it(omd), to_tol(fp), to_tol(omd)])
    parts.append(common.md_table(
        ["game", "s / iteration: peer FP / our fp", "s / iteration: peer FP / our omd",
         f"time to {TOLERANCE:g}: peer FP / our fp", f"time to {TOLERANCE:g}: peer FP / our omd"],
        rows))
    return "\n".join(parts) + "\n"

