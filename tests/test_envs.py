"""PettingZoo / Gymnasium adapters: conformance over the game registry, rewards by hand,
the N-agent env against the mean field, the reward-modifier wrapper, the BYO example.

References: PettingZoo's own conformance checks (``parallel_api_test``,
``parallel_seed_test``, the parallel state test); rewards derived by hand for Pigou
(Pigou 1920: latencies 1 and x) and Braess (Braess 1968: everyone on the shortcut pays 2);
and the model-based expectation of the reward under a fixed policy
(``crowdsteer.equilibrium.mean_field`` + ``reward_table``), which the N-agent average
must approach like ``1 / sqrt(N)``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

pettingzoo = pytest.importorskip("pettingzoo")
pytest.importorskip("gymnasium")

from pettingzoo.test import parallel_api_test, parallel_seed_test  # noqa: E402
from pettingzoo.test.state_test import test_parallel_env as parallel_state_check  # noqa: E402

from crowdsteer.config import build, build_game, load_config, validate_section  # noqa: E402
from crowdsteer.envs import (  # noqa: E402
    CrowdParallelEnv, CrowdVectorEnv, modify_rewards, parallel_env, population_step, vector_env,
)
from crowdsteer.equilibrium import mean_field, state_before  # noqa: E402
from crowdsteer.errors import ConfigError  # noqa: E402
from crowdsteer.games.base import games, reward_table  # noqa: E402
from crowdsteer.learners.simulate import sample_actions  # noqa: E402
from crowdsteer.modifiers import modifiers  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
GAMES = games.names()  # every registered game, whoever registered it


def game_config(name: str):
    """The game's default config if it builds, else the first ``examples/*.yaml`` naming it
    (its ``game`` section only), else skip: some games need data no default provides."""
    try:
        cfg = load_config({"game": {"name": name}})
        build_game(cfg)
        return cfg
    except ConfigError as err:
        reason = f"{name}: its default config does not build ({err})"
    for path in sorted(EXAMPLES.glob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        game = data.get("game") or {}
        if isinstance(game, dict) and game.get("name") == name:
            return load_config({"game": game}, base_dir=EXAMPLES)
    pytest.skip(f"{reason}, and no examples/*.yaml names it")


def tabular(game, **kw):
    """``Theta_t(s, a) = E[w(s') | s, a]``: one weight per landing state (any game)."""
    return modifiers.get("tabular")(validate_section("modifier", {"name": "tabular", **kw}), game)


def policy(game, rng):
    """A fixed random ``(T, S, A)`` policy on the allowed actions."""
    pi = rng.dirichlet(np.full(game.A, 0.3), size=(game.T, game.S))
    if game.allowed is not None:
        pi = pi * game.allowed
        pi /= pi.sum(axis=-1, keepdims=True)
    return pi


def valid_actions(env, obs, rng):
    """A random allowed action per live agent (masked games: from the observed mask)."""
    out = {}
    for a in env.agents:
        o = obs[a]
        mask = o["action_mask"] if isinstance(o, dict) else np.ones(env.action_space(a).n)
        out[a] = int(rng.choice(np.flatnonzero(mask)))
    return out


# --------------------------------------------------------------------------- conformance


@pytest.mark.parametrize("name", GAMES)
def test_parallel_env_passes_pettingzoo_checks(name):
    cfg = game_config(name)
    env = parallel_env(cfg, agents=7)
    parallel_api_test(env, num_cycles=50)
    parallel_state_check(parallel_env(cfg, agents=7))
    game = env.game
    if game.allowed is None:  # the seed test samples actions without looking at masks
        parallel_seed_test(lambda: parallel_env(cfg, agents=5))
    # with a modifier, and through the wrapper
    w = np.random.default_rng(0).uniform(-1, 1, game.S)
    parallel_api_test(parallel_env(cfg, agents=7, w=w, modifier="tabular"), num_cycles=50)
    parallel_api_test(modify_rewards(parallel_env(cfg, agents=7), "tabular", w), num_cycles=50)


def _observations(obs):
    return np.stack([o["observation"] if isinstance(o, dict) else o for o in obs.values()])


@pytest.mark.parametrize("name", GAMES)
def test_episode_and_seeding(name):
    cfg = game_config(name)
    env = parallel_env(cfg, agents=9)
    game = env.game
    rng = np.random.default_rng(1)
    traces, played = [], []
    for run in range(2):
        obs, infos = env.reset(seed=3)
        trace = [_observations(obs)]
        for t in range(game.T):
            assert not any("reward_modifier" in v for v in infos.values())
            if run == 0:
                played.append(valid_actions(env, obs, rng))
            obs, rew, term, trunc, infos = env.step(played[t])
            trace.append(_observations(obs))
            trace.append(np.array(list(rew.values())))
            assert all(term.values()) == (t == game.T - 1) and not any(trunc.values())
            assert all(env.observation_space(a).contains(o) for a, o in obs.items())
        traces.append(trace)
        assert env.agents == []
        with pytest.raises(RuntimeError, match="reset"):
            env.step({})
    assert traces[0][-2][:, 1].tolist() == [game.T] * 9  # t = T after the last move
    for x, y in zip(*traces):  # same seed, same actions: the same episode
        assert np.array_equal(x, y)


@pytest.mark.parametrize("name", GAMES)
def test_vector_env_conforms(name):
    cfg = game_config(name)
    N = 50
    env = vector_env(cfg, agents=N)
    game = env.game
    assert env.num_envs == N and env.observation_space.shape == (N, 2)
    obs, infos = env.reset(seed=5)
    assert env.observation_space.contains(obs) and obs.dtype == np.int64
    again, _ = vector_env(cfg, agents=N).reset(seed=5)
    assert np.array_equal(obs, again)
    rng = np.random.default_rng(0)
    pi = policy(game, rng)
    for t in range(game.T):
        if game.allowed is not None:
            assert np.array_equal(infos["action_mask"], game.allowed[obs[:, 0]])
        actions = sample_actions(pi[t], obs[:, 0], rng)
        obs, rew, term, trunc, infos = env.step(actions)
        assert env.observation_space.contains(obs) and np.all(obs[:, 1] == t + 1)
        assert rew.shape == (N,) and np.all(np.isfinite(rew))
        assert np.all(term == (t == game.T - 1)) and not trunc.any()
    # next-step autoreset: the actions are ignored, all agents restart at t = 0
    obs, rew, term, trunc, _ = env.step(np.zeros(N, dtype=np.int64))
    assert np.all(obs[:, 1] == 0) and np.all(rew == 0) and not term.any() and not trunc.any()


@pytest.mark.parametrize("name", GAMES)
def test_parallel_and_vector_envs_take_the_same_steps(name):
    """The dict API is an adapter of the array API: same seed, same actions, same numbers."""
    cfg = game_config(name)
    w = np.linspace(-1, 1, build_game(cfg).S)
    par = parallel_env(cfg, agents=11, w=w, modifier="tabular")
    vec = vector_env(cfg, agents=11, w=w, modifier="tabular")
    obs_p, _ = par.reset(seed=2)
    obs_v, _ = vec.reset(seed=2)
    rng = np.random.default_rng(4)
    for _ in range(par.game.T):
        assert np.array_equal(par.states, obs_v[:, 0])
        actions = valid_actions(par, obs_p, rng)
        obs_p, rew_p, _, _, info_p = par.step(actions)
        obs_v, rew_v, _, _, info_v = vec.step(np.array(list(actions.values())))
        assert np.array_equal(list(rew_p.values()), rew_v)
        assert np.array_equal([i["reward_modifier"] for i in info_p.values()],
                              info_v["reward_modifier"])


# --------------------------------------------------------------------------- rewards by hand


def test_pigou_step_by_hand():
    # one of 4 travellers on the constant link pays 1; 3 on the x link pay x = 3/4
    env = parallel_env(EXAMPLES / "pigou.yaml", agents=4)
    obs, _ = env.reset(seed=0)
    assert obs["agent_0"]["action_mask"].tolist() == [1, 1]  # both paths serve s->t
    _, rew, term, _, infos = env.step({"agent_0": 0, "agent_1": 1, "agent_2": 1, "agent_3": 1})
    assert rew == {"agent_0": -1.0, "agent_1": -0.75, "agent_2": -0.75, "agent_3": -0.75}
    assert all(term.values())
    # afterwards each traveller sits on its path state, where only its own path is open
    assert infos["agent_0"]["action_mask"].tolist() == [1, 0]


def test_braess_everyone_on_the_shortcut_pays_two():
    env = parallel_env(EXAMPLES / "braess.yaml", agents=5)
    env.reset(seed=0)
    zigzag = env.game.path_names.index("s->v + v->w + w->t")
    _, rew, *_ = env.step(dict.fromkeys(env.agents, zigzag))
    assert set(rew.values()) == {-2.0}


def test_invalid_actions_are_refused():
    # two pairs, one path each: a traveller from u may not take s's path
    two = {"game": {"name": "routing",
                    "edges": [{"from": "s", "to": "t", "latency": {"kind": "constant", "a": 1}},
                              {"from": "u", "to": "t", "latency": {"kind": "constant", "a": 1}}],
                    "demand": [{"from": "s", "to": "t"}, {"from": "u", "to": "t"}]}}
    env = parallel_env(two, agents=3)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="missing: agent_2"):
        env.step({"agent_0": 0, "agent_1": 0})
    with pytest.raises(ValueError, match="agent 1 .* took action 2"):
        env.step({"agent_0": 0, "agent_1": 2, "agent_2": 0})
    vec = vector_env(two, agents=20)
    obs, _ = vec.reset(seed=0)
    i = int(np.argmax(obs[:, 0] == 1))  # an agent starting at u
    wrong = obs[:, 0].copy()  # origin k's own path is path k
    wrong[i] = 0
    with pytest.raises(ValueError, match=f"agent {i} in state 1 took action 0; allowed: 1"):
        vec.step(wrong)
    _, rew, *_ = vec.step(obs[:, 0])
    assert np.all(rew == -2.0)  # -D c_p: cost 1, total demand D = 2
    with pytest.raises(ConfigError, match="agents"):
        parallel_env(two, agents=0)


# --------------------------------------------------------------------------- against the mean field


def noisy_dynamic():
    """The dynamic crowd example with noisy local moves (stochastic transitions, T = 3)."""
    game = load_config(EXAMPLES / "dynamic.yaml")["game"].model_dump()
    return load_config({"game": {**game, "noise": 0.2}})


MEAN_FIELD_CASES = [pytest.param(lambda name=name: game_config(name), id=name) for name in GAMES]
MEAN_FIELD_CASES.append(pytest.param(noisy_dynamic, id="crowd-local-noisy"))


@pytest.mark.parametrize("make_config", MEAN_FIELD_CASES)
def test_mean_reward_approaches_the_mean_field(make_config):
    """Agents playing a fixed ``pi`` earn on average, at step ``t``,

    .. math:: E_t = \\sum_{s,a} m_t(s) \\pi_t(s, a) R_t(s, a; \\mu_t)

    (``R`` from ``reward_table`` at ``mu = mean_field(pi)``, modifier included; ``m_t`` the
    mass before the move). The population's mean reward ``M_N`` is a smooth function of
    the empirical distributions, which deviate from the mean field by ``O(1/sqrt(N))``
    (central limit theorem), so ``M_N - E_t`` has mean ``O(1/N)`` (delta method) and
    spread ``O(1/sqrt(N))``. Checked over ``K`` seeds at ``N = 10^3`` and ``10^5``: the mean
    error is within 4 standard errors (plus an ``O(1/N)`` allowance), and the spread
    falls like ``1/sqrt(N)``: by 10x, accepted within a factor 2.5 (the ratio of two
    standard deviations of ``K = 20`` samples stays within it with probability > 99.9%,
    F distribution)."""
    cfg = make_config()
    game = build_game(cfg)
    rng = np.random.default_rng(7)
    pi = policy(game, rng)
    mod = tabular(game)
    w = rng.uniform(-1, 1, mod.n_params)
    mu = mean_field(game, pi)
    R = reward_table(game, mu, mod.theta(w))
    expected = np.einsum("ts,tsa,tsa->t", state_before(game, mu), pi, R)
    scale = float(np.abs(R[np.broadcast_to(pi > 0, R.shape)]).max()) + 1.0
    K = 20
    spread = {}
    for N in (1_000, 100_000):
        err = np.empty((K, game.T))
        for k in range(K):
            env = vector_env(cfg, agents=N, w=w, modifier=mod)
            obs, _ = env.reset(seed=k)
            for t in range(game.T):
                obs, rew, *_ = env.step(sample_actions(pi[t], obs[:, 0], env.np_random))
                err[k, t] = rew.mean() - expected[t]
        sd = err.std(axis=0, ddof=1)
        assert np.all(np.abs(err.mean(axis=0)) <= 4 * sd / np.sqrt(K) + 10 * scale / N), \
            (N, err.mean(axis=0), sd)
        spread[N] = sd
    ratio = spread[1_000] / spread[100_000]  # sqrt(100) = 10 if the spread is ~ 1/sqrt(N)
    assert np.all((ratio > 4) & (ratio < 25)), ratio


def test_200k_agents_step():
    N = 200_000
    for source in (EXAMPLES / "oneshot.yaml", EXAMPLES / "dynamic.yaml"):
        cfg = load_config(source)
        game = build_game(cfg)
        w = np.full(build(cfg, "modifier", game=game).n_params, 0.2)
        env = vector_env(cfg, agents=N, w=w)
        obs, _ = env.reset(seed=0)
        actions = env.np_random.integers(0, game.A, N)
        obs, rew, term, _, infos = env.step(actions)
        assert obs.shape == (N, 2) and rew.shape == (N,) and np.all(np.isfinite(rew))
        assert infos["reward_modifier"].shape == (N,)
        assert np.isclose(env.state().sum(), 1.0)


def test_population_step_never_aliases_the_actions():
    game = build_game(load_config({"game": {"name": "crowd", "height": 2, "width": 2}}))
    actions = np.array([0, 1, 3])
    step = population_step(game, None, 0, np.zeros(3, dtype=np.int64), actions,
                           np.random.default_rng(0))
    actions[:] = 2
    assert step.states.tolist() == [0, 1, 3]


# --------------------------------------------------------------------------- reward modifiers


def _run(env, seed, actions_per_step):
    env.reset(seed=seed)
    out = []
    for actions in actions_per_step:
        _, rew, _, _, infos = env.step(actions)
        out.append((np.array(list(rew.values())), infos))
    return out


def _actions(env, seed, rng):
    """Valid actions for every step of one episode of ``env`` (seeded like the runs)."""
    obs, _ = env.reset(seed=seed)
    steps = []
    while env.agents:
        acts = valid_actions(env, obs, rng)
        steps.append(acts)
        obs, *_ = env.step(acts)
    return steps


def test_modifier_at_zero_changes_nothing():
    cfg = load_config(EXAMPLES / "dynamic.yaml")
    for family in ("power_series", "rbf", "tabular", "potential_based"):
        base = parallel_env(cfg, agents=12)
        mod = modifiers.get(family)(validate_section("modifier", {"name": family}), base.game)
        steps = _actions(base, 1, np.random.default_rng(0))
        plain = _run(base, 1, steps)
        zero = _run(modify_rewards(parallel_env(cfg, agents=12), mod, np.zeros(mod.n_params)),
                    1, steps)
        for (r0, _), (r1, info) in zip(plain, zero):
            assert np.array_equal(r0, r1)
            assert all(i["reward_modifier"] == 0 for i in info.values())


def test_tabular_modifier_pays_exactly_w_of_the_landing_cell():
    # one-shot, moves: any -> action a lands in cell a, so Theta(s, a) = w[a] exactly
    cfg = load_config({"game": {"name": "crowd", "height": 2, "width": 3}})
    w = np.array([0.5, -1.0, 2.0, 0.0, 0.25, -0.125])
    actions = [{"agent_0": 2, "agent_1": 2, "agent_2": 5, "agent_3": 1}]
    plain = _run(parallel_env(cfg, agents=4), 0, actions)[0][0]
    mod = tabular(build_game(cfg))
    wrapped = _run(modify_rewards(parallel_env(cfg, agents=4), mod, w), 0, actions)[0][0]
    built_in = _run(parallel_env(cfg, agents=4, w=w, modifier="tabular"), 0, actions)[0][0]
    assert np.array_equal(wrapped - plain, [2.0, 2.0, -0.125, -1.0])
    assert np.array_equal(built_in, wrapped)
    # budget balanced: minus the agents' mean transfer, so the transfers sum to zero
    bb = tabular(build_game(cfg), budget_balanced=True)
    out = _run(modify_rewards(parallel_env(cfg, agents=4), bb, w), 0, actions)[0]
    transfers = [i["reward_modifier"] for i in out[1].values()]
    assert np.allclose(transfers, np.array([2.0, 2.0, -0.125, -1.0]) - 0.71875)
    assert abs(sum(transfers)) < 1e-12


def test_wrapper_matches_the_built_in_modifier_on_a_stochastic_game():
    """Local moves with noise, per-step weights: the wrapper reads (s, t) from observations,
    the env from its arrays; both pay ``theta[t][s, a]``."""
    cfg = load_config(EXAMPLES / "dynamic.yaml")
    game = build_game(cfg)
    mod = modifiers.get("rbf")(validate_section("modifier", {"name": "rbf", "centers": 2,
                                                             "per_step": True}), game)
    w = np.random.default_rng(3).uniform(-1, 1, mod.n_params)
    noisy = load_config({"game": {**cfg["game"].model_dump(), "noise": 0.3}})
    steps = _actions(parallel_env(noisy, agents=15), 8, np.random.default_rng(1))
    plain = _run(parallel_env(noisy, agents=15), 8, steps)
    wrapped = _run(modify_rewards(parallel_env(noisy, agents=15), mod, w), 8, steps)
    built_in = _run(parallel_env(noisy, agents=15, w=w, modifier=mod), 8, steps)
    theta = mod.theta(w)
    env = parallel_env(noisy, agents=15)
    env.reset(seed=8)
    for t, ((r0, _), (r1, info), (r2, _)) in enumerate(zip(plain, wrapped, built_in)):
        a = np.array(list(steps[t].values()))
        assert np.allclose(r1 - r0, theta[t][env.states, a], atol=1e-12)
        assert np.allclose(r1, r2, atol=1e-12)
        env.step(steps[t])


def test_callable_modifier():
    cfg = load_config(EXAMPLES / "dynamic.yaml")

    def bonus(observation, action, w):
        s, t = observation
        return w[0] * s + w[1] * action + w[2] * t

    w = np.array([0.1, -0.5, 3.0])
    steps = _actions(parallel_env(cfg, agents=6), 2, np.random.default_rng(5))
    plain = _run(parallel_env(cfg, agents=6), 2, steps)
    env = modify_rewards(parallel_env(cfg, agents=6), bonus, w)
    wrapped = _run(env, 2, steps)
    ref = parallel_env(cfg, agents=6)
    ref.reset(seed=2)
    for t, ((r0, _), (r1, _)) in enumerate(zip(plain, wrapped)):
        a = np.array(list(steps[t].values()))
        assert np.allclose(r1 - r0, 0.1 * ref.states - 0.5 * a + 3.0 * t)
        ref.step(steps[t])
    env.w = np.zeros(3)  # new parameters apply from the next step
    assert np.array_equal(_run(env, 2, steps)[0][0], plain[0][0])


# PettingZoo's generated-agents env has no possible_agents (its agents are created on the
# fly), so parallel_api_test warns about the inner env itself, as it does unwrapped.
@pytest.mark.filterwarnings(
    "ignore:This environment does not have possible_agents defined:UserWarning")
def test_wrapper_on_any_pettingzoo_env():
    """PettingZoo's own test env: agents appear and leave, observations are Boxes."""
    from pettingzoo.test.example_envs import generated_agents_parallel_v0

    def bonus(observation, action, w):
        return w[0] * float(observation[0]) + w[1] * action

    w = np.array([2.0, 0.5])
    parallel_api_test(modify_rewards(generated_agents_parallel_v0.parallel_env(), bonus, w),
                      num_cycles=30)
    plain, env = generated_agents_parallel_v0.parallel_env(), generated_agents_parallel_v0.\
        parallel_env()
    wrapped = modify_rewards(env, bonus, w)
    obs0, _ = plain.reset(seed=4)
    obs1, _ = wrapped.reset(seed=4)
    rng = np.random.default_rng(0)
    for _ in range(20):
        if not plain.agents:
            break
        actions = {a: int(rng.integers(plain.action_space(a).n)) for a in plain.agents}
        before = dict(obs1)
        obs0, r0, *_ = plain.step(actions)
        obs1, r1, *_ = wrapped.step(actions)
        for a in actions:
            assert np.isclose(r1[a] - r0[a], bonus(before[a], actions[a], w))
    with pytest.raises(ConfigError, match="crowdsteer env"):
        modify_rewards(plain, "tabular", w)
    with pytest.raises(ConfigError, match="modifier"):
        modify_rewards(plain, 3.0, w)


def test_envs_are_what_the_factories_say():
    cfg = {"game": {"name": "crowd", "height": 3, "width": 3}, "modifier": {"name": "rbf",
                                                                              "centers": 2}}
    env = parallel_env(cfg, agents=3, w=np.ones(4))  # the config's modifier section
    assert isinstance(env, CrowdParallelEnv) and env.modifier.n_params == 4
    assert isinstance(vector_env(cfg, agents=3), CrowdVectorEnv)
    assert parallel_env(cfg, agents=3).theta is None


# --------------------------------------------------------------------------- the example


def test_byo_pettingzoo_example_runs(monkeypatch):
    path = EXAMPLES / "byo_pettingzoo.py"
    spec = importlib.util.spec_from_file_location("byo_pettingzoo", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "byo_pettingzoo", module)  # dataclasses look it up
    spec.loader.exec_module(module)
    result = module.main(["--evaluations", "3", "--initial", "2", "--optimiser", "random",
                          "--agents", "30", "--episodes", "40"])
    assert result.evaluations == 1 + 3  # the baseline w = 0, then the 3 asked for
    assert np.isfinite(result.best.objective) and result.best.objective <= \
        result.baseline.objective
    assert {"welfare", "transfer"} <= set(result.best.diagnostics)
