"""One measurement of the peers suite, in a fresh process.

``python benchmarks/peers/worker.py --case JSON``; run by :mod:`peers.suite`.

Kinds: ``check`` (exploitability of fixed policies, peer and crowdsteer), ``peer`` (the
peer's fictitious play), ``peer_best`` (each of MFGLib's iterative algorithms to the
tolerance), ``ours`` (crowdsteer's ``ExactSolver`` on the rebuilt game).
"""

from __future__ import annotations

import os
import sys

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, BENCH_DIR)

import common  # noqa: E402

common.pin_threads()  # before NumPy (and PyTorch) are imported

import numpy as np  # noqa: E402


def peer_module(spec: dict):
    if spec["peer"] == "openspiel":
        from peers import peer_openspiel as mod
    else:
        from peers import peer_mfglib as mod
    common.limit_torch_threads()
    return mod


def run_case(case: dict) -> dict:
    from peers.games import random_policy

    spec = case["game"]
    mod = peer_module(spec)
    out: dict = {"loadavg": os.getloadavg(), "versions": mod.versions()}
    if case["kind"] == "check":
        _, game = mod.build(spec)
        policies = {"uniform": np.full((game.T, game.S, game.A), 1.0 / game.A),
                    "random (seed 1)": random_policy(game.T, game.S, game.A, seed=1)}
        out["rows"] = mod.check(spec, policies)
        out["T"], out["S"], out["A"] = game.T, game.S, game.A
    elif case["kind"] == "peer":
        out |= mod.time_fp(spec, case["knobs"])
    elif case["kind"] == "peer_best":
        out |= mod.time_best(spec, case["knobs"])
    else:
        from peers import timing

        _, game = mod.build(spec)
        k = case["knobs"]
        out |= timing.ours(game, case["method"], k["tolerance"], k["budget_s"], k["repeats"],
                           k["tol_repeats"], k["tol_budget_s"], k["max_iterations"])
    return out


if __name__ == "__main__":
    common.worker_main(run_case)
