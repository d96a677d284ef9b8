"""The ``ppo`` learner (deep agents on TorchRL): its equilibrium against a closed form and the
exact solver, bit-for-bit warm starts, SIGKILL and resume, PettingZoo training, and one-line
refusals. Skipped where the ``[deep]`` extra (torch, TorchRL) is not installed."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torchrl", reason="the ppo learner needs the [deep] extra (TorchRL)")

import crowdsteer as cs  # noqa: E402
from crowdsteer.envs import modify_rewards, parallel_env  # noqa: E402
from crowdsteer.errors import ConfigError  # noqa: E402
from crowdsteer.games.crowd import CrowdConfig, build  # noqa: E402
from crowdsteer.learners import learners  # noqa: E402
from crowdsteer.learners.exact import ExactConfig, ExactSolver  # noqa: E402
from crowdsteer.learners.ppo import PPOConfig, PPOLearner, train_ppo  # noqa: E402
from tests.test_cli import write_config  # noqa: E402
from tests.test_crash import crowdsteer, killed, one_line, table, trials  # noqa: E402

C, TAU = 1.0, 0.3


def one_shot():
    """3 x 3 grid, one step, moves anywhere, ``r = d - c log mu``."""
    return build(CrowdConfig(height=3, width=3, horizon=1, moves="any",
                             congestion={"kind": "log", "strength": C},
                             desirability={"bumps": [{"center": [0, 0], "height": 1.0,
                                                      "width": 1.0}]}))


def test_reaches_the_closed_form_equilibrium_of_the_log_game():
    """One-shot log game at temperature tau: mu* is proportional to exp(d / (c + tau)) (the
    maximiser of <d, mu> + (c + tau) H(mu), the game's regularised potential). For any
    policy, exploitability e >= (c + tau) KL(mu || mu*) (Jensen over start states, then
    tau log sum_a exp((d_a - c log mu_a) / tau) is smallest at mu = mu*), so by Pinsker
    ||mu - mu*||_1 <= sqrt(2 e / (c + tau)): the certificate bounds the distance."""
    game = one_shot()
    d = np.asarray(game.reward(0, np.ones(game.S)))  # log 1 = 0: the desirability itself
    mu_star = np.exp(d / (C + TAU))
    mu_star /= mu_star.sum()
    exact = ExactSolver(ExactConfig(temperature=TAU, tolerance=1e-10)).solve(game)
    assert np.abs(exact.mu[0] - mu_star).sum() < 1e-6  # the reference agrees with itself
    tol = 0.01
    sol = PPOLearner(PPOConfig(agents=1000, temperature=TAU, tolerance=tol)).solve(
        game, rng=np.random.default_rng(0))
    assert sol.converged and sol.exploitability <= tol
    assert cs.exploitability(game, sol.pi, TAU) == pytest.approx(sol.exploitability)
    gap = np.abs(sol.mu[0] - exact.mu[0]).sum()
    assert gap <= np.sqrt(2 * sol.exploitability / (C + TAU))
    assert sol.mu_sample.shape == (1, game.S) and sol.agents == 1000
    assert sol.params is not None and sol.estimate >= 0


@pytest.mark.slow
def test_dynamic_game_within_the_default_tolerance_against_the_exact_solver():
    """3 x 3 grid, T = 2, local moves, a modifier: the certificate reaches the default
    tolerance T (S - 1) / (2 N), and the exact solver (independent reference) agrees that
    the network's policy is that close to its equilibrium."""
    game = build(CrowdConfig(height=3, width=3, horizon=2, moves="local",
                             congestion={"kind": "log", "strength": 1.0}))
    theta = np.random.default_rng(3).normal(0, 0.3, (game.T, game.S, game.A))
    N = 1000
    sol = PPOLearner(PPOConfig(agents=N, temperature=TAU)).solve(
        game, theta, rng=np.random.default_rng(1))
    tol = game.T * (game.S - 1) / (2 * N)
    assert sol.converged and sol.exploitability <= tol
    exact = ExactSolver(ExactConfig(temperature=TAU, tolerance=1e-10)).solve(game, theta)
    # exploitability is the soft value gap; the exact equilibrium's is 0 and the network's
    # policy table against the exact solver's own machinery gives the same number
    assert exact.exploitability <= 1e-10
    assert cs.exploitability(game, sol.pi, TAU, theta) == pytest.approx(sol.exploitability)


def small_game():
    return build(CrowdConfig(height=2, width=2, horizon=2, moves="local",
                             congestion={"kind": "log"}))


def test_warm_start_is_bit_for_bit_and_leaves_its_source_alone():
    game = small_game()
    learner = PPOLearner(PPOConfig(agents=200, max_iterations=10, check_every=5, patience=None,
                                   tolerance=1e-9))
    cold = learner.solve(game, rng=np.random.default_rng(1))
    again = learner.solve(game, rng=np.random.default_rng(1))
    assert np.array_equal(cold.params, again.params) and np.array_equal(cold.pi, again.pi)
    kept = cold.params.copy()
    warm = learner.solve(game, rng=np.random.default_rng(2), init=cold)
    assert np.array_equal(cold.params, kept)  # training does not write into the warm start
    twice = learner.solve(game, rng=np.random.default_rng(2), init=cold)
    assert np.array_equal(warm.params, twice.params)
    fresh = learner.solve(game, rng=np.random.default_rng(2))
    assert not np.array_equal(warm.params, fresh.params)  # the warm start was used


def test_a_warm_start_of_another_shape_is_refused():
    game = small_game()
    sol = PPOLearner(PPOConfig(agents=50, max_iterations=5)).solve(
        game, rng=np.random.default_rng(0))
    other = PPOLearner(PPOConfig(agents=50, max_iterations=5, hidden=[8]))
    with pytest.raises(ConfigError, match="init"):
        other.solve(game, rng=np.random.default_rng(0), init=sol)


def test_masked_actions_are_never_taken():
    """Routing with two pairs: each traveller takes one of its own pair's paths
    (``game.allowed``), in the policy table and in play."""
    game = cs.solving.build_game(cs.load_config({"game": {
        "name": "routing", "demand": [{"from": "s", "to": "t"}, {"from": "s", "to": "u"}],
        "edges": [{"from": "s", "to": "t", "latency": {"kind": "constant", "a": 1}},
                  {"from": "s", "to": "t", "latency": {"kind": "affine", "b": 1}},
                  {"from": "s", "to": "u", "latency": {"kind": "affine", "b": 1}}]}}))
    assert game.allowed is not None and not game.allowed.all()
    sol = PPOLearner(PPOConfig(agents=200, max_iterations=10)).solve(
        game, rng=np.random.default_rng(0))
    assert np.all(sol.pi[:, ~game.allowed] == 0)
    assert np.allclose(sol.pi.sum(axis=-1), 1)
    # in play, a forbidden action would have stopped the solve: the env refuses it


FAST = {"temperature": 0.1, "learning_rate": 0.01, "epochs": 2, "minibatches": 1}


def test_trains_on_a_pettingzoo_env_with_the_reward_wrapper():
    """A PettingZoo env with a user's modifier (a bonus for action 1 of w[0]) through
    modify_rewards: with a large bonus the agents learn to take it."""
    env = parallel_env({"game": {"name": "crowd", "height": 1, "width": 2, "horizon": 1,
                                 "moves": "any", "congestion": {"kind": "log"}}}, agents=10)
    bonus = modify_rewards(env, lambda obs, action, w: w[0] * (action == 1), [3.0])
    out = train_ppo(bonus, FAST, rounds=40,
                    rng=np.random.default_rng(0))
    assert not out.certified and out.rounds == 40 and out.estimate >= 0
    p = out.probs(np.array([[1, 0, 1, 0], [0, 1, 1, 0]]))  # one-hot [s, t] of both cells
    assert np.all(p[:, 1] > 0.9)
    again = train_ppo(bonus, FAST, rounds=40,
                      rng=np.random.default_rng(0))
    assert np.array_equal(out.params, again.params)


BAD = [({"hidden": [0]}, "learner.hidden"), ({"epochs": -1}, "learner.epochs"),
       ({"temperature": "warm"}, "learner.temperature"), ({"layers": 3}, "learner.layers"),
       ({"clip": 1.5}, "learner.clip")]


@pytest.mark.parametrize("section, field", BAD)
def test_a_bad_config_names_the_field(section, field):
    with pytest.raises(ConfigError) as err:
        cs.load_config({"game": {"name": "crowd"}, "learner": {"name": "ppo", **section}})
    assert str(err.value).startswith(field) and "\n" not in str(err.value)


def test_a_bad_config_is_one_line_through_the_cli(tmp_path):
    cfg = write_config(tmp_path, {"game": {"name": "crowd", "height": 2, "width": 2},
                                  "learner": {"name": "ppo", "hidden": [0]}})
    assert "learner.hidden" in one_line(crowdsteer("solve", cfg, "--out", tmp_path / "run"))


def test_without_the_extra_the_config_says_what_to_install(tmp_path):
    cfg = write_config(tmp_path, {"game": {"name": "crowd", "height": 2, "width": 2},
                                  "learner": {"name": "ppo"}})
    code = ("import runpy, sys; sys.modules['torchrl'] = None; "
            "sys.argv = ['crowdsteer', *sys.argv[1:]]; "
            "runpy.run_module('crowdsteer', run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", code, "solve", str(cfg), "--out",
                        str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert "crowdsteer[deep]" in one_line(r)


def test_registered():
    assert "ppo" in learners
    assert learners.get("ppo").config is PPOConfig


KILL = {
    "seed": 5,
    "game": {"name": "crowd", "height": 2, "width": 2, "horizon": 2, "moves": "local",
             "congestion": {"kind": "log", "strength": 1.0}},
    "learner": {"name": "ppo", "agents": 200, "temperature": 0.3, "tolerance": 0.2,
                "max_iterations": 10, "check_every": 5, "hidden": [16]},
    "modifier": {"name": "power_series", "order": 1},
    "objective": {"name": "kl", "target": {"bumps": [{"center": [1, 1], "width": 1.0}]}},
    "optimiser": {"name": "random", "evaluations": 4},
}


@pytest.mark.slow
def test_kill_then_resume_with_warm_started_ppo_matches_the_uninterrupted_run(tmp_path):
    """SIGKILL before the last round's evaluation, whose warm start descends from earlier
    evaluations the resumed process never solved: it rebuilds them along the chain."""
    cfg = write_config(tmp_path, KILL)
    cs.run(KILL, out=tmp_path / "ref")
    rows = table(tmp_path / "ref")
    assert len(rows) == 5  # the baseline w = 0, then 4
    # the last evaluation started from an earlier one that itself started warm: a chain
    chain = {t.number: t.user_attrs.get("warm_from", -1) for t in trials(tmp_path / "ref")}
    assert chain[4] >= 0 and any(chain[n] >= 0 for n in range(1, 4))
    out = tmp_path / "run"
    killed(cfg, out, "evaluate:5")
    assert len(table(out)) == 4
    r = crowdsteer("run", cfg, "--out", out, "--resume")
    assert r.returncode == 0, r.stderr
    assert table(out) == rows


def test_the_pettingzoo_example_trains_and_steers_the_users_env(monkeypatch):
    """examples/ppo_pettingzoo.py: the user's own env passes PettingZoo's API test, and the
    meta-agent around PPO training reports the agents' own estimate, uncertified."""
    from pettingzoo.test import parallel_api_test

    path = Path(__file__).parent.parent / "examples" / "ppo_pettingzoo.py"
    spec = importlib.util.spec_from_file_location("ppo_pettingzoo", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "ppo_pettingzoo", module)
    spec.loader.exec_module(module)
    parallel_api_test(module.Commute(5), num_cycles=10)
    result = module.main(["--evaluations", "1", "--agents", "20", "--rounds", "8"])
    assert result.evaluations == 2
    best = result.best.diagnostics
    assert best["own_exploitability_estimate"] >= 0
    split = [best[f"road_{i}"] for i in (1, 2, 3)]
    assert sum(split) == pytest.approx(1.0)  # everyone leaves by the last slot
