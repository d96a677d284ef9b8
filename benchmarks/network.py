"""The ``network`` suite: Wardrop equilibria of Sioux Falls, Anaheim and Chicago Sketch,
crowdsteer side by side with AequilibraE's bi-conjugate Frank-Wolfe, and route-learning
travellers.

Each (network, target gap, tool) runs in a fresh worker process, one after the other, so
both tools share the load of the moment; each is repeated and the minimum and median wall
times are kept. Every tool's relative gap is recomputed here from the flows it returns
(crowdsteer's certificate: ``(c.x - SPTT) / c.x`` at those flows), never taken from the
tool; TSTT and flows are compared with the ``_flow`` file's best-known equilibrium.

Data: Sioux Falls and Anaheim from ``examples/data/tntp``; Chicago Sketch from
``$CROWDSTEER_TNTP`` or ``../shared/data/tntp`` (skipped, and said so, when missing).
AequilibraE is optional (``benchmarks/peers/requirements-aequilibrae.txt``); without it
only crowdsteer is timed.

Run: ``.venv/bin/python benchmarks/run.py --only network`` (``--quick``: Sioux Falls only).
"""

from __future__ import annotations

import common

common.pin_threads()

import importlib.util  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

NETWORKS = {  # name: (toll_weight, distance_weight), as the _flow files were computed
    "SiouxFalls": (0.0, 0.0),
    "Anaheim": (0.0, 0.0),
    "ChicagoSketch": (0.02, 0.04),
    "BerlinCenter": (0.0, 0.0),  # duplicate links (its README) kept: both carry flow
    "SiouxFalls, BPR power 0.5": (0.0, 0.0),  # a network AequilibraE refuses
}
GAPS = (1e-4, 1e-6)
PRECISE = {"SiouxFalls": 1e-10, "ChicagoSketch": 1e-10}
"""Networks also solved to this gap, crowdsteer alone (bfw would need many thousands of
iterations)."""
POWER_SUFFIX = ", BPR power "
ISSUE_AEQ = {  # the issue's AequilibraE figures (single core, loaded machine)
    ("SiouxFalls", 1e-4): "118 it, 0.7 s", ("SiouxFalls", 1e-6): "976 it, 9.1 s",
    ("Anaheim", 1e-4): "14 it, 0.2 s", ("Anaheim", 1e-6): "81 it, 1.1 s",
    ("ChicagoSketch", 1e-4): "45 it, 6.1 s", ("ChicagoSketch", 1e-6): "446 it, 46.5 s",
    ("BerlinCenter", 1e-4): "19 it, 18.8 s", ("BerlinCenter", 1e-6): "130 it, 124 s",
}


data_dir = common.tntp_dir


def load(name: str):
    """The game and its data folder; ``"<file>, BPR power p"`` sets every link's power."""
    import dataclasses

    import numpy as np

    from crowdsteer.games.network import NetworkConfig, NetworkGame, build_network

    base, _, power = name.partition(POWER_SUFFIX)
    d = data_dir(base)
    tw, dw = NETWORKS[name]
    game = build_network(NetworkConfig(net=str(d / f"{base}_net.tntp"),
                                       trips=str(d / f"{base}_trips.tntp"),
                                       toll_weight=tw, distance_weight=dw))
    if power:
        net = dataclasses.replace(game.net, power=np.full(game.E, float(power)))
        game = NetworkGame(net, game.demand, tw, dw)
    return game, d


def quality(game, d: Path, name: str, x) -> dict:
    """True relative gap at ``x``, and its distance to the ``_flow`` file's equilibrium."""
    import numpy as np

    from crowdsteer.games.tntp import read_flow

    c = game.generalised_cost(x)
    _, sptt, _ = game.graph.all_or_nothing(c)
    out = {"gap": float((c @ x - sptt) / (c @ x))}
    if POWER_SUFFIX not in name and (d / f"{name}_flow.tntp").is_file():
        v, _ = read_flow(d / f"{name}_flow.tntp", game.net)
        out["tstt_err"] = float(x @ c / (v @ game.generalised_cost(v)) - 1)
        out["flow_err"] = float(np.abs(x - v).sum() / v.sum())
    return out


def run_case(case: dict) -> dict:
    game, d = load(case["network"])
    times, result = [], None
    if case["tool"] == "crowdsteer":
        game.solve_equilibrium(relative_gap=1e-2)  # warm-up (imports, first allocations)
        for _ in range(case["repeats"]):
            t0 = time.perf_counter()
            sol = game.solve_equilibrium(relative_gap=case["gap"], max_iterations=100_000)
            times.append(time.perf_counter() - t0)
            result = (sol.flow, sol.iterations)
        from crowdsteer.learners.wardrop import engine

        engine = engine("auto").__name__
    elif case["tool"] == "aequilibrae":
        sys.path.insert(0, str(common.BENCH_DIR / "peers"))
        from peer_aequilibrae import assign

        try:
            assign(game, 1e-2, max_iter=2)  # warm-up
        except Exception as exc:  # noqa: BLE001 - the peer's refusal, reported as such
            return {"refused": f"{type(exc).__name__}: {str(exc).splitlines()[0][:90]}"}
        for _ in range(case["repeats"]):
            r = assign(game, case["gap"])
            times.append(r["seconds"])
            result = (r["flows"], r["iterations"])
        engine = "bfw"
    else:  # route learners
        from crowdsteer.learners.routes import RouteLearners, RoutesConfig
        import numpy as np

        t0 = time.perf_counter()
        sol = RouteLearners(RoutesConfig(relative_gap=case["gap"])).solve(
            game, rng=np.random.default_rng(0))
        times.append(time.perf_counter() - t0)
        return {"seconds": times, "days": sol.iterations, "agents": sol.agents,
                "gap": sol.relative_gap, "steps_per_s": sol.agents * sol.iterations / times[0]}
    flows, iterations = result
    solve_peak = common.peak_rss_mib()  # before the checks below, which need their own memory
    return {"seconds": times, "iterations": iterations, "engine": engine,
            "solve_peak_mib": solve_peak, **quality(game, d, case["network"], flows)}


def run_suite(opts) -> str:
    info = common.machine_info()
    started = time.perf_counter()
    names = ["SiouxFalls"] if opts.quick else list(NETWORKS)
    missing = [n for n in names if data_dir(n.partition(POWER_SUFFIX)[0]) is None]
    names = [n for n in names if n not in missing]
    if os.environ.get("CROWDSTEER_NETWORKS"):  # a subset, e.g. "ChicagoSketch,BerlinCenter"
        names = [n for n in names if n.partition(POWER_SUFFIX)[0]
                 in os.environ["CROWDSTEER_NETWORKS"].split(",")]
    peer = importlib.util.find_spec("aequilibrae") is not None
    tools = ["crowdsteer"] + (["aequilibrae"] if peer else [])
    rows = []
    for name in names:
        for gap in GAPS + ((PRECISE[name],) if name in PRECISE else ()):
            res = {}
            for tool in tools if gap in GAPS else ["crowdsteer"]:
                repeats = (1 if opts.quick or name == "BerlinCenter"
                           or (name == "ChicagoSketch" and tool == "aequilibrae") else 3)
                print(f"[network] {name} to {gap:g}: {tool}", flush=True)
                try:
                    res[tool] = common.run_worker("network.py", {
                        "network": name, "gap": gap, "tool": tool, "repeats": repeats},
                        timeout=3600)
                except (RuntimeError, OSError) as exc:  # one failed case must not lose the rest
                    print(f"[network] {name} {gap:g} {tool} failed: {exc}", flush=True)
            rows.append((name, gap, res))
    print("[network] route learners on Sioux Falls", flush=True)
    learners = common.run_worker("network.py", {"network": "SiouxFalls", "gap": 1e-3,
                                                "tool": "routes"})

    def cell(r: dict) -> str:
        if "refused" in r:
            return f"refused ({r['refused']})"
        t = r["seconds"]
        spread = "" if len(t) == 1 else f" (median {common.fmt_time(statistics.median(t))})"
        return f"{r['iterations']} it, {common.fmt_time(min(t))}{spread}"

    table = []
    for name, gap, res in rows:
        if "crowdsteer" not in res:
            table.append([name, f"{gap:g}", "failed (see the log)"] + ["-"] * 9)
            continue
        ours = res["crowdsteer"]
        theirs = res.get("aequilibrae")
        ran = theirs and "seconds" in theirs
        ratio = (min(theirs["seconds"]) / min(ours["seconds"])) if ran else None
        absent = ("not installed" if not peer else "not run" if gap not in GAPS else "failed")
        table.append([name, f"{gap:g}", f"{cell(ours)} ({ours['engine']})",
                      common.fmt_sci(ours["gap"]), common.fmt_sci(ours.get("tstt_err")),
                      common.fmt_sci(ours.get("flow_err")), f"{ours['solve_peak_mib']:.0f}",
                      cell(theirs) if theirs else absent,
                      common.fmt_sci(theirs["gap"]) if ran else "-",
                      f"{theirs['solve_peak_mib']:.0f}" if ran else "-",
                      common.fmt_ratio(ratio), ISSUE_AEQ.get((name, gap), "-")])
    parts = [
        "## Road networks: Wardrop equilibrium (crowdsteer vs AequilibraE)",
        "",
        common.provenance(opts.command, info, started, "minimum (median) wall time of the "
                          "solve after a warm-up solve in the same worker, 3 repeats; Berlin-Center "
                          "and AequilibraE on Chicago once"),
        "",
        "Each tool stops at its own test for the target relative gap; the gap shown is "
        "recomputed here from the returned flows (AequilibraE's own report mixes the "
        "flows after a step with the costs before it). TSTT and flow errors are against "
        "the `_flow` file's best-known equilibrium (Chicago: generalised cost, toll 0.02 "
        "min/cent, distance 0.04 min/mile; AequilibraE gets 1e-9 min in place of its "
        "connectors' zero free-flow times, which it refuses). `speed-up` = AequilibraE's "
        "time / crowdsteer's, both measured in this run; the last column is the issue's "
        "AequilibraE measurement on this machine, for scale. crowdsteer runs Algorithm B "
        "(`bush_based`, both threads); AequilibraE one core, as the issue measured it. "
        "`peak MiB`: the worker's peak resident memory after the solves (reading, warm-up "
        "and solves; the checks after them excluded). "
        "Berlin-Center has no `_flow` file; `SiouxFalls, BPR power 0.5` is Sioux Falls "
        "with every power set to 0.5 (a refused network is said so in its cell).",
        "",
        common.md_table(["network", "target gap", "crowdsteer", "its gap", "TSTT error",
                         "flow error", "peak MiB", "AequilibraE bfw", "its gap", "peak MiB",
                         "speed-up", "issue's AequilibraE"], table),
    ]
    if missing:
        parts += ["", f"Not measured (files not found; set `CROWDSTEER_TNTP` or put them in "
                  f"`../shared/data/tntp`): {', '.join(missing)}."]
    if not peer:
        parts += ["", "AequilibraE is not installed: `pip install -c constraints.txt -r "
                  "benchmarks/peers/requirements-aequilibrae.txt`."]
    if learners:
        parts += ["", "Route-learning travellers (`learner: {name: routes}`), Sioux Falls, "
                  f"one traveller per trip: {learners['agents']:,} travellers reach a relative "
                  f"gap of {learners['gap']:.2e} in {learners['days']} days, "
                  f"{common.fmt_time(learners['seconds'][0])}: "
                  f"{learners['steps_per_s']:.3g} agent-steps per second, peak RSS "
                  f"{learners['peak_rss_mib']:.0f} MiB."]
    return "\n".join(parts)


if __name__ == "__main__":
    common.worker_main(run_case)
