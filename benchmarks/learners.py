"""Issue 17, section 5: every registered learner on four games, and every learner steered.

Learners table: each learner registered in ``crowdsteer.learners`` (the optional ones,
``policy_gradient`` and ``ppo``, when their module imports; a row says why when not) with
its defaults at ``N = 2000`` agents and temperature 0.1, seed 0, on four crowd games: the
two shipped examples' games (``examples/oneshot.yaml``, ``examples/dynamic.yaml``) and two
that no test or example uses (a 7 x 9 grid, ``T = 2``, local moves, log congestion with two
bumps; a 12 x 12 one-shot grid with kernel congestion). Each row: the certified
(model-based) exploitability of the returned policy, the learner's tolerance, whether it
converged, the agent-steps it took (``N * T * rounds``; the exact learner simulates no
agents) and the seconds.

Steering table: each learner steered on ``examples/dynamic.yaml`` (power series of order
2, KL to the drifting target): the meta-agent's best ``w`` re-evaluated on fresh seeds,
the share of evaluations that converged (``require_convergence`` on: only those could be
the best), and beside them the mean-field optimum of the same modifier family (the exact
learner with exact gradients). Model-free learners run ``bo`` from the mean-field warm
start; the exact learner runs the ``gradient`` optimiser.

Run through ``benchmarks/run.py --only learners``; ``python benchmarks/learners.py --case
JSON`` is the worker.
"""

from __future__ import annotations

import common

common.pin_threads()

import importlib  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

OPTIONAL = {"policy_gradient": "crowdsteer.learners.policy_gradient",
            "ppo": "crowdsteer.learners.ppo"}
"""Learners other branches add; imported when present so that they register."""
AGENTS = 2000
TAU = 0.1
GAMES = (
    {"id": "oneshot.yaml: 10x10 T1 any, log", "example": "oneshot"},
    {"id": "dynamic.yaml: 6x6 T3 local, log", "example": "dynamic"},
    {"id": "7x9 T2 local, log, two bumps (new)", "game": {
        "name": "crowd", "height": 7, "width": 9, "horizon": 2, "moves": "local",
        "desirability": {"bumps": [{"center": [1, 7], "height": 1.5, "width": 1.5},
                                   {"center": [5, 2], "height": 1.0, "width": 2.0}]},
        "congestion": {"kind": "log", "strength": 0.7}}},
    {"id": "12x12 T1 any, kernel (new)", "game": {
        "name": "crowd", "height": 12, "width": 12, "horizon": 1, "moves": "any",
        "desirability": {"bumps": [{"center": [9, 3], "height": 2.0, "width": 2.5},
                                   {"center": [2, 10], "height": 1.0, "width": 1.5}]},
        "congestion": {"kind": "kernel", "strength": 1.0}}},
)
STEER = {"example": "dynamic", "evaluations": 12, "validation": 3}
"""Steering budget (the independent learner's run, ~16 solves, is the long one)."""
QUICK_STEER = {"example": "dynamic", "evaluations": 4, "validation": 2}


def registered() -> dict[str, str | None]:
    """Every learner name: ``None`` if it is registered, else why it is not."""
    import crowdsteer.learners  # noqa: F401  (the shipped learners register)

    missing = {}
    for name, module in OPTIONAL.items():
        try:
            importlib.import_module(module)
        except Exception as err:  # noqa: BLE001 (reported in the section)
            missing[name] = f"not installed ({type(err).__name__}: {err})"
    from crowdsteer.learners.base import learners

    out: dict[str, str | None] = {name: None for name in learners.names()}
    for name, why in missing.items():
        out.setdefault(name, why)
    return out


def example(name: str) -> dict:
    from crowdsteer.config import load_config

    return load_config(common.REPO / "examples" / f"{name}.yaml").resolved()


def learner_section(name: str, **fields) -> dict:
    """The ``learner`` section of ``name`` with those ``fields`` its config declares."""
    from crowdsteer.learners.base import learners

    known = learners.get(name).config.model_fields
    return {"name": name, **{k: v for k, v in fields.items() if k in known}}


def run_case(case: dict) -> dict:
    from crowdsteer.errors import CrowdsteerError

    registered()
    try:
        return (steer if case["kind"] == "steer" else solve)(case)
    except CrowdsteerError as err:
        return {"refused": str(err)}


def solve(case: dict) -> dict:
    """One learner on one game, defaults, seed 0."""
    from crowdsteer.config import build, build_game, load_config
    from crowdsteer.objectives import kl_floor

    spec = case["game"]
    game_cfg = example(spec["example"])["game"] if "example" in spec else spec["game"]
    raw = {"game": game_cfg,
           "learner": learner_section(case["learner"], agents=AGENTS, temperature=TAU)}
    cfg = load_config(raw)
    game = build_game(cfg)
    learner = build(cfg, "learner")
    t0 = time.perf_counter()
    sol = learner.solve(game, rng=np.random.default_rng(0))
    seconds = time.perf_counter() - t0
    tol = getattr(cfg["learner"], "tolerance", None)
    if tol is None:
        tol = kl_floor(game.S, AGENTS, game.T)
    return {"S": game.S, "A": game.A, "T": game.T, "agents": sol.agents,
            "iterations": sol.iterations, "agent_steps": sol.agents * game.T * sol.iterations,
            "exploitability": sol.exploitability, "tolerance": tol,
            "converged": bool(sol.converged), "seconds": seconds}


def steer(case: dict) -> dict:
    """The meta-agent on an example with this learner: fresh-seed J of its best, the share
    of converged evaluations, and the mean-field optimum of the same family."""
    import crowdsteer

    raw = example(case["example"])
    name = case["learner"]
    raw["learner"] = learner_section(name, agents=AGENTS, temperature=TAU)
    if name == "exact":
        raw["optimiser"] = {"name": "gradient", "evaluations": case["evaluations"]}
    else:
        raw["optimiser"] = {"name": "bo", "evaluations": case["evaluations"],
                            "warm_start": "mean_field", "validation": case["validation"]}
    t0 = time.perf_counter()
    r = crowdsteer.run(raw)
    fresh = r.best_validation["mean"] if r.best_validation else r.best.objective
    optimum = r.warm_start["objective"] if r.warm_start else r.best.objective
    return {"fresh": fresh, "best": r.best.objective, "optimum": optimum,
            "converged": r.converged_evaluations, "evaluations": r.evaluations,
            "seconds": time.perf_counter() - t0}


def run_suite(opts) -> str:
    started = time.perf_counter()
    info = common.machine_info()
    status = registered()
    names = [n for n, why in status.items() if why is None]
    games = GAMES[:2] if opts.quick else GAMES
    rows = []
    for name in names:
        for game in games:
            case = {"kind": "solve", "learner": name, "game": game}
            print(f"[learners] {name} on {game['id']} ...", flush=True)
            res = common.run_worker("learners.py", case, timeout=1800)
            print(f"  {res}", flush=True)
            rows.append((name, game["id"], res))
    steering = []
    refused = {n for n in names if all("refused" in r for m, _, r in rows if m == n)}
    for name in names:
        if name in refused:  # e.g. routes: it needs a routing game
            steering.append((name, next(r for m, _, r in rows if m == name)))
            continue
        case = {"kind": "steer", "learner": name, **(QUICK_STEER if opts.quick else STEER)}
        print(f"[learners] steering {name} on {case['example']}.yaml ...", flush=True)
        res = common.run_worker("learners.py", case, timeout=3600)
        print(f"  {res}", flush=True)
        steering.append((name, res))
    note = "one solve per cell (seed 0); seconds are wall time of the solve in its own process"
    missing = [f"- `{n}`: {why}" for n, why in status.items() if why is not None]
    return "\n".join([
        "## Learners: every learner on four games, and steered (issue 17)", "",
        common.provenance(opts.command, info, started, note), "",
        "Each registered learner with its defaults, `agents: 2000`, `temperature: 0.1`, "
        "seed 0. *certified* is the model-based exploitability of the policy it returns "
        "(what one agent would gain by deviating), *converged* whether it is at most the "
        "learner's tolerance (`T (S - 1) / (2 N)` for the model-free learners, 1e-4 for the "
        "exact one); *agent-steps* = `N * T * rounds` (the exact learner simulates no "
        "agents: its iterations are shown). The last two games appear in no test or "
        "example.", "",
        *(missing + [""] if missing else []),
        common.md_table(["learner", "game", "S x A x T", "tolerance", "certified",
                         "converged", "rounds", "agent-steps", "seconds"],
                        [_row(n, g, r) for n, g, r in rows]), "",
        "Steering on `examples/dynamic.yaml` (power series of order 2, KL to the target): "
        f"model-free learners run `bo` for {STEER['evaluations']} evaluations from the "
        "mean-field warm start, the exact learner the `gradient` optimiser; *fresh-seed J* "
        f"is the best w re-evaluated on {STEER['validation']} fresh seeds (the exact "
        "learner's J has no seed); *mean-field optimum* is J of the exact learner's best w "
        "of the same family (the warm start, 60 exact evaluations with gradients).", "",
        common.md_table(["learner", "fresh-seed J of the best", "J of the best (tuning seed)",
                         "converged evaluations", "mean-field optimum", "seconds"],
                        [_steer_row(n, r) for n, r in steering]),
    ])


def _row(name: str, game: str, r: dict) -> list:
    if "refused" in r:
        return [name, game, "-", "-", f"refused: {r['refused']}", "-", "-", "-", "-"]
    return [name, game, f"{r['S']} x {r['A']} x {r['T']}", f"{r['tolerance']:.3g}",
            f"{r['exploitability']:.3g}", "yes" if r["converged"] else "**no**",
            f"{r['iterations']:,}", f"{r['agent_steps'] / 1e6:.2f} M" if r["agents"] else "-",
            f"{r['seconds']:.1f}"]


def _steer_row(name: str, r: dict) -> list:
    if "refused" in r:
        return [name, f"refused: {r['refused']}", "-", "-", "-", "-"]
    return [name, f"{r['fresh']:.4g}", f"{r['best']:.4g}",
            f"{r['converged']} of {r['evaluations']}", f"{r['optimum']:.4g}",
            f"{r['seconds']:.0f}"]


if __name__ == "__main__":
    common.worker_main(run_case)
