"""The meta-agent's inner-outer loop: reaching targets and optima, run folders, resume."""

import csv
import json
from pathlib import Path

import numpy as np
import optuna
import pytest
from scipy.optimize import minimize

import crowdsteer
from crowdsteer.errors import ConfigError
from crowdsteer.games.crowd import CrowdConfig, build
from crowdsteer.optimisers import OptimiserConfig, distributions, make_sampler

KL_RUN = {
    "seed": 0,
    "game": {"name": "crowd", "height": 2, "width": 2,
             "congestion": {"kind": "log", "strength": 1.0},
             "desirability": {"bumps": [{"center": [0, 0], "height": 1.0, "width": 1.0}]}},
    "learner": {"name": "exact", "tolerance": 1e-9},
    "modifier": {"name": "tabular", "bounds": [-3, 3]},
    "objective": {"name": "kl", "target": {"bumps": [{"center": [1, 1], "width": 1.5}]}},
    "optimiser": {"name": "bo", "evaluations": 40, "initial": 5},
}


def test_tabular_bo_drives_kl_to_the_target():
    result = crowdsteer.run(KL_RUN)
    assert result.baseline.objective > 0.05  # the agents alone are far from the target
    assert result.best.objective < 1e-3
    assert result.best.exploitability <= 1e-9


def welfare_optimum(game):
    """max_mu d.mu - c mu'K mu over the simplex (SciPy SLSQP; independent of the solver)."""
    K, d, c = game.kernel_matrix(), game.d[0], game.c
    res = minimize(lambda m: -(d @ m - c * m @ K @ m), np.full(game.S, 1 / game.S),
                   method="SLSQP", bounds=[(0, 1)] * game.S,
                   constraints=[{"type": "eq", "fun": lambda m: m.sum() - 1}],
                   options={"ftol": 1e-14})
    return -res.fun


def test_welfare_reaches_the_optimum_where_agents_alone_fall_short():
    # a 1 x 3 strip, crowding only in one's own cell: the equilibrium equalises d - c mu,
    # the optimum d - 2 c mu (the agents ignore the cost they impose on others)
    game_cfg = {"name": "crowd", "height": 1, "width": 3,
                "congestion": {"kind": "kernel", "strength": 1.0, "radius": 0.0},
                "desirability": {"bumps": [{"center": [0, 0], "height": 2.0, "width": 1.0}]}}
    cfg = {"seed": 0, "game": game_cfg, "learner": {"name": "exact", "tolerance": 1e-9},
           "modifier": {"name": "tabular", "bounds": [-3, 3]},
           "objective": {"name": "welfare"},
           "optimiser": {"name": "bo", "evaluations": 40, "initial": 5}}
    best = welfare_optimum(build(CrowdConfig(**game_cfg)))
    result = crowdsteer.run(cfg)
    assert result.baseline.welfare < 0.97 * best  # the equilibrium is clearly inefficient
    assert result.best.welfare >= 0.99 * best


SMALL = {**KL_RUN, "optimiser": {"name": "bo", "evaluations": 6, "initial": 3}}


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_run_folder_contents(tmp_path):
    crowdsteer.run(SMALL, out=tmp_path / "r")
    out = tmp_path / "r"
    res = json.loads((out / "result.json").read_text())
    for key in ("baseline", "best"):
        for field in ("w", "objective", "kl", "welfare", "exploitability"):
            assert field in res[key]
    assert res["baseline"]["w"] == [0.0] * 4
    assert res["evaluations"] == 7
    assert np.load(out / "best_mu.npy").shape == (1, 2, 2)
    assert (out / "config.yaml").exists() and (out / "study.db").exists()
    table = rows(out / "evaluations.csv")
    assert len(table) == 7
    assert float(table[0]["J"]) == pytest.approx(res["baseline"]["objective"])
    best_j = min(float(r["J"]) for r in table)
    assert res["best"]["objective"] == pytest.approx(best_j)


class Kill(Exception):
    pass


def test_resume_repeats_nothing_and_matches_an_uninterrupted_run(tmp_path):
    crowdsteer.run(SMALL, out=tmp_path / "full")

    def stop_after_three(done, total, best):
        if done == 3:
            raise Kill

    with pytest.raises(Kill):
        crowdsteer.run(SMALL, out=tmp_path / "cut", progress=stop_after_three)
    # a kill in the middle of the 4th evaluation leaves a RUNNING trial behind, asked as
    # the run asks (seeded by its evaluation index)
    study = optuna.load_study(study_name="crowdsteer",
                              storage=f"sqlite:///{tmp_path / 'cut' / 'study.db'}")
    cfg = OptimiserConfig(**SMALL["optimiser"])
    study.sampler = make_sampler(cfg, SMALL["seed"], 3)
    study.ask(distributions(4, (-3, 3)))
    with pytest.raises(ConfigError, match="--resume"):
        crowdsteer.run(SMALL, out=tmp_path / "cut")
    crowdsteer.run(SMALL, out=tmp_path / "cut", resume=True)
    full, cut = rows(tmp_path / "full" / "evaluations.csv"), rows(tmp_path / "cut" / "evaluations.csv")
    keys = ["J"] + [f"w_{i}" for i in range(4)]
    assert [[r[k] for k in keys] for r in cut] == [[r[k] for k in keys] for r in full]


def test_resume_refuses_a_different_config(tmp_path):
    crowdsteer.run(SMALL, out=tmp_path / "r")
    other = {**SMALL, "seed": 5}
    with pytest.raises(ConfigError, match="differs"):
        crowdsteer.run(other, out=tmp_path / "r", resume=True)


def test_budget_balanced_run_pays_nothing_net():
    cfg = {**SMALL, "modifier": {"name": "rbf", "centers": 2, "budget_balanced": True}}
    result = crowdsteer.run(cfg)
    assert abs(result.best.net_transfer) < 1e-9


def test_bounds_must_contain_zero():
    with pytest.raises(ConfigError, match="modifier.bounds"):
        crowdsteer.run({**SMALL, "modifier": {"name": "tabular", "bounds": [0.5, 2]}})


def test_final_numbers_are_validated_on_fresh_seeds(tmp_path):
    """A model-free run re-evaluates baseline and best on seeds never used in tuning (repeat
    indices 1_000_000 + k), and the best w once more at the exact equilibrium."""
    from crowdsteer.learners.exact import ExactConfig, ExactSolver
    from crowdsteer.metaagent import evaluate_once, setup

    cfg = {"seed": 2, "game": {"name": "crowd", "height": 3, "width": 3,
                               "congestion": {"kind": "log", "strength": 0.5}},
           "learner": {"name": "fictitious_play", "agents": 300, "temperature": 0.3},
           "modifier": {"name": "power_series", "order": 1},
           "objective": {"name": "kl", "target": {"bumps": [{"center": [0, 2], "width": 1.0}]}},
           "optimiser": {"name": "random", "evaluations": 3, "validation": 4}}
    result = crowdsteer.run(cfg, out=tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    s = setup(crowdsteer.load_config(cfg))
    for key, w in (("baseline", np.zeros(3)), ("best", np.asarray(result.best.w))):
        v = saved[key]["validation"]
        assert v["seeds"] == [1_000_000 + k for k in range(4)]
        fresh = [evaluate_once(s, w, r).objective for r in v["seeds"]]
        assert v["values"] == pytest.approx(fresh, rel=1e-12)
        assert v["mean"] == pytest.approx(np.mean(fresh)) and v["std"] == pytest.approx(
            np.std(fresh))
        assert saved[key]["objective"] not in fresh  # the tuning seed is not among them
    sol = ExactSolver(ExactConfig(temperature=0.3)).solve(s.game, s.modifier.theta(
        np.asarray(result.best.w)))
    from crowdsteer.objectives import kl_divergence

    expected = float(kl_divergence(sol.mu, s.objective.target).sum())
    assert saved["best"]["mean_field"]["objective"] == pytest.approx(expected, rel=1e-9)
    iid = saved["iid_sample_kl"]
    assert iid["agents"] == 300 and 0 < iid["mean"] < 0.05  # ~ (9 - 1) / 600 = 0.013
    assert saved["inner_iterations"] >= 4  # baseline + 3 evaluations, >= 1 round each


def test_mean_field_warm_start_seeds_the_search_with_the_exact_optimum(tmp_path):
    """warm_start: mean_field runs the gradient optimiser on the exact learner first (same
    game, modifier, objective, temperature) and evaluates its best w right after the
    baseline; the recorded start is what an independent exact run finds."""
    cfg = {"seed": 1, "game": {"name": "crowd", "height": 3, "width": 3,
                               "congestion": {"kind": "log", "strength": 0.5}},
           "learner": {"name": "fictitious_play", "agents": 500, "temperature": 0.3},
           "modifier": {"name": "power_series", "order": 1},
           "objective": {"name": "kl", "target": {"bumps": [{"center": [0, 2], "width": 1.0}]}},
           "optimiser": {"name": "bo", "evaluations": 4, "warm_start": "mean_field",
                         "warm_start_evaluations": 20, "validation": 0}}
    result = crowdsteer.run(cfg, out=tmp_path / "run")
    exact = crowdsteer.run({**cfg, "learner": {"name": "exact", "temperature": 0.3},
                            "optimiser": {"name": "gradient", "evaluations": 20}})
    start = result.warm_start
    assert start["w"] == pytest.approx(exact.best.w, abs=1e-12)
    assert start["objective"] == pytest.approx(exact.best.objective, rel=1e-12)
    with open(tmp_path / "run" / "evaluations.csv") as f:
        rows = list(csv.DictReader(f))
    first = [float(rows[1][f"w_{i}"]) for i in range(3)]
    assert first == pytest.approx(start["w"], abs=1e-9)  # x0 evaluated right after w = 0
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["warm_start"]["evaluations"] == 21
    assert "warm start" in (tmp_path / "run" / "run.log").read_text()


def test_warm_starts_save_inner_iterations_and_change_no_evaluation(tmp_path):
    """Each evaluation starts from the equilibrium of the closest earlier w (chosen from the
    study, so every process picks the same): the same evaluations, bit for bit, serial or on
    two worker processes; against cold starts, J agrees to the solver's precision
    (exploitability <= 1e-10: the error in mu is of order its square root, 1e-5, and J is
    smooth in mu) and the total inner
    iterations fall."""
    # examples/dynamic.yaml's game on the exact learner; bo's first probes step 0.05 from w = 0
    import yaml

    example = Path(__file__).resolve().parents[1] / "examples" / "dynamic.yaml"
    cfg = {**yaml.safe_load(example.read_text()),
           "learner": {"name": "exact", "temperature": 0.1, "method": "omd", "tolerance": 1e-10},
           "optimiser": {"name": "bo", "evaluations": 8, "batch": 2, "radius": 0.05}}
    keys = ["J", "kl", "exploitability"] + [f"w_{i}" for i in range(6)]
    got = {}
    for name, extra in {"serial": {}, "local": {"executor": {"name": "local", "workers": 2}},
                        "cold": {"optimiser": {**cfg["optimiser"], "warm_starts": False}}}.items():
        res = crowdsteer.run({**cfg, **extra}, out=tmp_path / name)
        got[name] = ([[r[k] for k in keys] for r in rows(tmp_path / name / "evaluations.csv")],
                     res.inner_iterations)
    assert got["local"][0] == got["serial"][0]
    assert got["local"][1] == got["serial"][1]
    warm_J = [float(r[0]) for r in got["serial"][0]]
    cold_J = [float(r[0]) for r in got["cold"][0]]
    assert [r[3:] for r in got["serial"][0]] == [r[3:] for r in got["cold"][0]]  # same w asked
    assert warm_J == pytest.approx(cold_J, rel=1e-4)
    assert got["serial"][1] < 0.8 * got["cold"][1]


@pytest.mark.parametrize("learner, order, x0, expected", [
    ({"name": "fictitious_play", "agents": 200}, 1, False, "gp"),   # 3 weights, noisy J
    ({"name": "fictitious_play", "agents": 200}, 4, False, "bo"),   # 15 weights
    ({"name": "fictitious_play", "agents": 200}, 1, True, "bo"),    # a start point: local
    ({"name": "exact", "temperature": 0.1}, 1, False, "bo"),        # exact J: no noise
])
def test_bo_on_a_noisy_j_with_few_weights_runs_the_global_gp(learner, order, x0, expected):
    from crowdsteer.metaagent.evaluation import setup
    from crowdsteer.metaagent.runner import choose_optimiser

    opt = {"name": "bo", "evaluations": 5}
    if x0:
        opt["x0"] = [0.1] * 3
    cfg = {**KL_RUN, "learner": learner, "optimiser": opt,
           "modifier": {"name": "power_series", "order": order, "bounds": [-3, 3]}}
    choice, why = choose_optimiser(setup(crowdsteer.load_config(cfg)))
    assert choice == expected
    assert ("noisy" in why) == (expected == "gp")


def test_a_warm_start_chain_solved_again_gives_the_same_solution_bit_for_bit():
    """A process that lacks the equilibria an evaluation descends from (evicted, or never
    held) solves the chain again, cold at the root: the starting point, and so the solution,
    is the one the first process computed, to the last bit."""
    from crowdsteer.metaagent.evaluation import WarmStarts, setup, solve_at

    cfg = {**KL_RUN, "learner": {"name": "exact", "temperature": 0.1, "method": "omd"}}
    s = setup(crowdsteer.load_config(cfg))
    ws = [np.zeros(4), np.array([0.3, 0.0, -0.2, 0.1]), np.array([0.35, 0.05, -0.2, 0.1])]
    chain = [(k, list(w)) for k, w in enumerate(ws[:2])]
    first = WarmStarts(s.learner)
    sols = [solve_at(s, ws[0], 0)]
    first.add(0, sols[0])
    sols.append(solve_at(s, ws[1], 0, sols[0]))
    first.add(1, sols[1])
    calls = []

    def solve(w, init):
        calls.append(init is None)
        return solve_at(s, w, 0, init)

    assert first.start(chain, 0, solve) is sols[1] and calls == []  # held: nothing solved
    fresh = WarmStarts(s.learner)
    again = fresh.start(chain, 0, solve)
    assert calls == [True, False]  # the root cold, then warm from it
    assert np.array_equal(again.pi, sols[1].pi) and np.array_equal(again.mu, sols[1].mu)
    tiny = WarmStarts(s.learner, keep_bytes=0)  # keeps only the two newest
    for k, sol in enumerate(sols):
        tiny.add(k, sol)
    tiny.add(2, solve_at(s, ws[2], 0, sols[1]))
    calls.clear()
    assert np.array_equal(tiny.start(chain, 0, solve).pi, sols[1].pi) and calls == []
    assert WarmStarts(s.learner, enabled=False).start(chain, 0, solve) is None
