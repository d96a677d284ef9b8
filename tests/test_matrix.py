"""Normal-form games: the prisoner's dilemma and stag hunt thresholds, pairwise transfers,
and what potential-based shaping does (and does not do) to equilibrium selection.

Reference values are derived in each test from the payoff tables:
prisoner's dilemma (T, R, P, S) = (5, 3, 1, 0), M = [[R, S], [T, P]] (cooperate, defect);
stag hunt (stag, hare, failure) = (4, 3, 0), M = [[4, 0], [3, 3]] (stag, hare).
"""

import numpy as np
import pytest
from hypothesis import given, strategies as st
from scipy.special import softmax

import crowdsteer
from crowdsteer.config import validate_section
from crowdsteer.equilibrium import exploitability, mean_field, state_before, welfare
from crowdsteer.errors import ConfigError
from crowdsteer.games.base import theta_at
from crowdsteer.games.matrix import MatrixConfig, build
from crowdsteer.learners.base import Solution
from crowdsteer.learners.exact import ExactConfig, ExactSolver
from crowdsteer.modifiers import modifiers
from crowdsteer.objectives import ObjectiveConfig, build as build_objective
from tests.conftest import assert_potential_gradient_is_reward, crowd

EXACT = ExactSolver(ExactConfig(tolerance=1e-10))
C, D = 0, 1          # prisoner's dilemma actions
STAG, HARE = 0, 1    # stag hunt actions


def game(players=1, horizon=1, preset="prisoners_dilemma", **kw):
    return build(MatrixConfig(preset=preset, players=players, horizon=horizon, **kw))


def modifier(g, name="transfers", **kw):
    cfg = validate_section("modifier", {"name": name, **kw})
    return modifiers.get(name)(cfg, g)


def profile(g, p):
    """Every player mixes (p, 1 - p) over the two actions, at every state and step."""
    return g.policy(np.tile([p, 1 - p], (g.N, 1)))


def share(g, mu_t, action=0):
    """Share of the players' mass on ``action`` after a move."""
    return float(g.mixed(mu_t)[:, action].mean())


# ----------------------------------------------------------------------------- the games


def test_presets_are_the_textbook_tables():
    np.testing.assert_array_equal(game().M, [[3, 0], [5, 1]])
    np.testing.assert_array_equal(game(preset="stag_hunt").M, [[4, 0], [3, 3]])
    g = build(MatrixConfig(payoffs=[[0, -1, 1], [1, 0, -1], [-1, 1, 0]], players=2,
                           actions=["rock", "paper", "scissors"]))
    assert (g.S, g.A, g.action_names[1]) == (2 + 6, 3, "paper")
    np.testing.assert_array_equal(g.B, g.M.T)


@pytest.mark.parametrize("raw, words", [
    ({"preset": {"name": "prisoners_dilemma", "temptation": 2}}, "temptation > reward"),
    ({"preset": {"name": "stag_hunt", "hare": 5}}, "stag > hare"),
    ({"preset": "chicken"}, "prisoners_dilemma"),
    ({"preset": "stag_hunt", "payoffs": [[1, 0], [0, 1]]}, "exactly one"),
    ({}, "exactly one"),
    ({"payoffs": [[1, 0], [0]]}, "square"),
    ({"payoffs": [[1, 0], [0, 1]], "column_payoffs": [[1, 0], [0, 1]]}, "players: 2"),
    ({"payoffs": [[1, 0], [0, 1]], "actions": ["a", "a"]}, "distinct"),
])
def test_bad_matrix_configs(raw, words):
    with pytest.raises(ConfigError) as info:
        validate_section("game", {"name": "matrix", **raw})
    assert words in str(info.value) and info.value.field.startswith("game")


@pytest.mark.parametrize("players", [1, 2])
@pytest.mark.parametrize("preset", ["prisoners_dilemma", "stag_hunt"])
def test_potential_gradient_is_the_reward(players, preset, rng):
    """Symmetric 2 x 2 games are potential games: d potential / d mu = reward, up to a
    constant over each player's landing states (central differences)."""
    g = game(players, preset=preset)
    assert g.is_potential
    for _ in range(5):
        mu = g.landing(rng.dirichlet(np.ones(2), size=g.N))
        assert_potential_gradient_is_reward(g, mu, atol=1e-6)


def test_games_without_a_potential_say_so():
    rps = [[0, -1, 1], [1, 0, -1], [-1, 1, 0]]           # rock-paper-scissors: a cycle
    pennies = [[1, -1], [-1, 1]]                         # matching pennies, zero-sum
    for g in (build(MatrixConfig(payoffs=rps)),
              build(MatrixConfig(payoffs=pennies, column_payoffs=[[-1, 1], [1, -1]],
                                 players=2))):
        assert not g.is_potential and not hasattr(g, "potential")
        with pytest.raises(AttributeError, match="not a potential game"):
            g.potential(0, g.mu0)


# ------------------------------------------------------------------ prisoner's dilemma


def omd_one_shot(g, x0, eta=0.5, steps=400, theta=None):
    """Mirror descent (the exact solver's update at tau = 0: y += eta Q^pi) of one population
    in a one-shot game, from many initial mixes at once: ``x0`` ``(M, K)``."""
    y = np.log(x0)
    for _ in range(steps):
        x = softmax(y, axis=1)
        u = g.payoffs(x[:, None, :])[:, 0, :]
        if theta is not None:
            u = u + np.stack([theta(0, g.landing(xi[None]))[0] for xi in x])
        y = y + eta * u
        y -= y.max(axis=1, keepdims=True)
    return softmax(y, axis=1)


@pytest.mark.parametrize("players", [1, 2])
def test_prisoners_dilemma_learners_defect(players):
    """Defect is strictly dominant (T > R, P > S): the only equilibrium is all-defect,
    welfare P = 1 per agent; all-cooperate is exploitable by T - R = 2."""
    g = game(players)
    sol = EXACT.solve(g)
    assert share(g, sol.mu[0], D) == pytest.approx(1, abs=1e-8)
    assert welfare(g, sol.mu) == pytest.approx(1, abs=1e-8)
    assert exploitability(g, profile(g, 0.0)) == pytest.approx(0, abs=1e-12)
    assert exploitability(g, profile(g, 1.0)) == pytest.approx(2.0)


def test_prisoners_dilemma_defect_from_any_start(rng):
    g = game()
    x = omd_one_shot(g, rng.dirichlet(np.ones(2), size=200))
    assert np.all(x[:, D] > 1 - 1e-6)


@pytest.mark.parametrize("players", [1, 2])
@pytest.mark.parametrize("t, coop_share, gain", [(2.5, 1.0, 0.0), (1.5, 0.5, 0.5)])
def test_transfer_threshold(players, t, coop_share, gain):
    """A transfer t from a defector to the cooperator it meets: against a cooperator, C pays
    R = 3 and D pays T - t = 5 - t, so all-cooperate is an equilibrium iff t >= 2. At
    t = 2.5 cooperating is dominant (against D it pays t = 2.5 > P = 1); at t = 1.5 the
    deviation gains 5 - t - 3 = 0.5 and the learners settle where C and D pay the same:
    3 p + t (1 - p) = (5 - t) p + (1 - p)  ->  p = t - 1 = 1/2."""
    g = game(players)
    m = modifier(g, budget_balanced=True)
    theta = m.theta(np.array([t]))
    assert exploitability(g, profile(g, 1.0), theta=theta) == pytest.approx(gain, abs=1e-12)
    sol = EXACT.solve(g, theta)
    assert share(g, sol.mu[0], C) == pytest.approx(coop_share, abs=1e-6)
    assert sol.exploitability <= 1e-10


def test_meta_agent_finds_cooperation():
    """crowdsteer.run with free transfers W_ij (i != j), welfare, bo: the learners cooperate,
    welfare R = 3 per agent against P = 1 alone."""
    result = crowdsteer.run({
        "seed": 0, "game": {"name": "matrix", "preset": "prisoners_dilemma"},
        "learner": {"name": "exact", "tolerance": 1e-8},
        "modifier": {"name": "transfers", "bounds": [-3, 3]},
        "objective": {"name": "welfare"},
        "optimiser": {"name": "bo", "evaluations": 15, "initial": 6}})
    assert result.baseline.welfare == pytest.approx(1, abs=1e-6)
    assert result.best.welfare == pytest.approx(3, abs=1e-6)
    assert result.best.exploitability <= 1e-8
    W_DC = result.best.w[1]   # w = [W_CD, W_DC]: cooperation needs 5 + W_DC < 3
    assert W_DC < -2


def test_meta_agent_finds_a_budget_balanced_transfer():
    result = crowdsteer.run({
        "seed": 0, "game": {"name": "matrix", "preset": "prisoners_dilemma", "players": 2},
        "learner": {"name": "exact", "tolerance": 1e-8},
        "modifier": {"name": "transfers", "bounds": [-3, 3], "budget_balanced": True},
        "objective": {"name": "welfare"},
        "optimiser": {"name": "bo", "evaluations": 8, "initial": 4}})
    assert result.baseline.welfare == pytest.approx(1, abs=1e-6)
    assert result.best.welfare == pytest.approx(3, abs=1e-6)
    assert result.best.w[0] > 2                              # the derived threshold
    assert result.best.net_transfer == pytest.approx(0, abs=1e-12)


def test_kl_to_a_target_share_of_cooperators(tmp_path):
    """KL to a target over states: 90% cooperators. Budget-balanced transfers reach it at
    t = 1.9 (p = t - 1, from test_transfer_threshold); the starting state gets 1e-9 mass
    because targets must be positive everywhere (a floor of about 1e-9 nats)."""
    target = np.array([1e-9, 0.9, 0.1])
    np.save(tmp_path / "target.npy", target)
    result = crowdsteer.run({
        "seed": 0, "game": {"name": "matrix", "preset": "prisoners_dilemma"},
        "learner": {"name": "exact", "tolerance": 1e-8},
        "modifier": {"name": "transfers", "bounds": [0, 3], "budget_balanced": True},
        "objective": {"name": "kl", "target": {"file": str(tmp_path / "target.npy")}},
        # one weight and a narrow valley between two plateaus (t < 1 all defect, t > 2 all
        # cooperate): the global GP's expected improvement finds it, a local search that
        # starts on a plateau needs more evaluations
        "optimiser": {"name": "gp", "evaluations": 14, "initial": 4}})
    assert result.baseline.kl > 1.0          # all defect: KL(D || target) = log 10 = 2.3
    assert result.best.kl < 1e-3
    assert result.best.w[0] == pytest.approx(1.9, abs=0.05)


def test_maxmin_is_the_worse_off_player():
    """Battle of the sexes as a bimatrix game: at (opera, opera) the row player gets 2 and
    the column player 1, so maxmin = 1 while welfare = 3/2."""
    g = build(MatrixConfig(payoffs=[[2, 0], [0, 1]], column_payoffs=[[1, 0], [0, 2]],
                           players=2, actions=["opera", "football"]))
    obj = build_objective(ObjectiveConfig(name="maxmin"), g)
    pi = profile(g, 1.0)
    m = obj.measure(g, Solution(pi, mean_field(g, pi), 0.0, 1, 0.0, True))
    assert (m.objective, m.maxmin, m.welfare) == (1.0, 1.0, 1.5)


# -------------------------------------------------------------------------- transfers


@given(seed=st.integers(0, 2**31), players=st.sampled_from([1, 2]),
       K=st.integers(2, 4), horizon=st.integers(1, 3))
def test_budget_balanced_transfers_sum_to_zero(seed, players, K, horizon):
    """W antisymmetric: sum over the population of the transfers is zero for any w and any
    policy (sum_ij x_i W_ij x_j = 0; for two players x_0^T W x_1 + x_1^T W x_0 = 0)."""
    r = np.random.default_rng(seed)
    g = build(MatrixConfig(payoffs=r.normal(size=(K, K)).tolist(), players=players,
                           horizon=horizon))
    m = modifier(g, budget_balanced=True, per_step=bool(seed % 2))
    assert m.n_params == K * (K - 1) // 2 * (horizon if seed % 2 else 1)
    theta = m.theta(r.uniform(-3, 3, m.n_params))
    pi = r.dirichlet(np.ones(K), size=(horizon, g.S))
    mu = mean_field(g, pi)
    before = state_before(g, mu)
    paid = [np.sum(before[t][:, None] * pi[t] * theta_at(theta, t, mu[t], (g.S, g.A)))
            for t in range(horizon)]
    np.testing.assert_allclose(paid, 0, atol=1e-12)
    W = m.matrix(r.uniform(-3, 3, m.n_params))
    np.testing.assert_allclose(W, -W.transpose(0, 2, 1))


def test_transfers_shapes_and_zero():
    g = game(2, horizon=2)
    for kw, n in [({}, 2), ({"diagonal": True}, 4), ({"budget_balanced": True}, 1),
                  ({"per_step": True}, 4)]:
        m = modifier(g, **kw)
        assert m.n_params == n
        theta = m.theta(np.zeros(n))
        assert np.all(theta(0, g.landing([[0.3, 0.7], [0.6, 0.4]])) == 0)
        assert m.field(np.ones(n)).shape == (2, g.S)
    W = modifier(g).matrix(np.array([1.0, -2.0]))[0]
    np.testing.assert_array_equal(W, [[0, 1], [-2, 0]])


def test_transfers_refuse_games_without_pairs():
    with pytest.raises(ConfigError, match="transfers need"):
        modifier(crowd(height=2, width=2))
    with pytest.raises(ConfigError) as info:
        modifier(game(), budget_balanced=True, diagonal=True)
    assert info.value.field == "modifier.diagonal"


# -------------------------------------------------------------------------- stag hunt


@pytest.mark.parametrize("players", [1, 2])
def test_stag_hunt_equilibria(players):
    """Stag pays 4 p + 0 (1 - p) against a share p of stag hunters, hare pays 3 always:
    all-stag (4 > 3) and all-hare (3 > 0) are strict equilibria, and p* = 3/4 makes the two
    equal, the mixed one. At p = 1/2 hare gains 3 - 2 = 1 over stag, i.e. 1/2 on average."""
    g = game(players, preset="stag_hunt")
    for p in (1.0, 0.0, 0.75):
        assert exploitability(g, profile(g, p)) == pytest.approx(0, abs=1e-12)
    assert exploitability(g, profile(g, 0.5)) == pytest.approx(0.5)
    sol = EXACT.solve(g)                       # the exact solver starts at p = 1/2
    assert share(g, sol.mu[0], HARE) == pytest.approx(1, abs=1e-8)


def test_stag_hunt_hare_basin(rng):
    """From a share p0 of stag hunters, stag gains 4 p - 3 over hare, so mirror descent
    (replicator-like) raises p iff p > 3/4: hare wins from every p0 < 3/4, i.e. from 3/4 of
    uniformly drawn starts."""
    p0 = rng.uniform(0.01, 0.99, 400)
    p0 = p0[np.abs(p0 - 0.75) > 0.01]          # the mixed equilibrium itself is unstable
    x = omd_one_shot(game(preset="stag_hunt"), np.stack([p0, 1 - p0], axis=1), steps=2000)
    reached_stag = x[:, STAG] > 0.999
    assert np.all(reached_stag | (x[:, HARE] > 0.999))
    np.testing.assert_array_equal(reached_stag, p0 > 0.75)
    assert np.mean(~reached_stag) == pytest.approx(0.74, abs=0.06)   # 0.74 = (0.75-0.01)/0.98


# ------------------------------------------------------------------ shaping and selection
#
# The repeated stag hunt: the stage game T = 3 times, a player's state its own previous
# action. Shaping Theta_t(s, a) = Phi_{t+1}(s') - Phi_t(s) with Phi_0 = Phi_T = 0
# (potential_based, budget-balanced, a tabular potential per step).

T_REPEATED = 3


def shaping(g, stag_bonus):
    """Phi_t(after stag) = stag_bonus for t >= 1; 0 elsewhere."""
    m = modifier(g, "potential_based", potential={"name": "tabular"}, per_step=True,
                 budget_balanced=True, bounds=[-5, 5])
    phi = np.zeros((g.T, g.S))
    phi[1:, g.state(0, STAG)] = stag_bonus
    return m, phi


def test_shaping_keeps_the_equilibrium_set(rng):
    """Both pure equilibria and the mixed one have exploitability 0 with and without shaping,
    and so does nothing else: every policy's exploitability is unchanged."""
    g = game(preset="stag_hunt", horizon=T_REPEATED)
    m, _ = shaping(g, 0.0)
    for _ in range(3):
        theta = m.theta(rng.uniform(-5, 5, m.n_params))
        for p in (1.0, 0.0, 0.75):
            assert exploitability(g, profile(g, p)) == pytest.approx(0, abs=1e-12)
            assert exploitability(g, profile(g, p), theta=theta) == pytest.approx(0, abs=1e-12)
        for _ in range(5):
            pi = rng.dirichlet(np.ones(2), size=(g.T, g.S))
            assert exploitability(g, pi, theta=theta) == pytest.approx(exploitability(g, pi),
                                                                       abs=1e-12)


def test_shaping_does_not_move_the_exact_solver():
    """The exact solver's mirror descent adds eta Q^pi to its scores; shaping turns Q^pi_t(s, a)
    into Q^pi_t(s, a) - Phi_t(s), the same for every action of a state, so its iterates, and
    the equilibrium it selects (hare), do not change at all."""
    g = game(preset="stag_hunt", horizon=T_REPEATED)
    m, phi = shaping(g, 3.0)
    a, b = EXACT.solve(g), EXACT.solve(g, m.theta(phi.ravel()))
    np.testing.assert_allclose(a.mu, b.mu, atol=1e-12)
    assert all(share(g, a.mu[t], HARE) == pytest.approx(1, abs=1e-8) for t in range(g.T))


def q_learning(g, theta, q0, alpha=0.1, tau=0.1, iterations=1500):
    """Mean-field (expected) Q-learning of one population from initial values ``q0``
    ``(M, T, S, A)``, M runs at once: pi = softmax(Q / tau), and every iteration

        Q_t(s, a) += alpha (R_t(s, a; mu) + Theta_t(s, a) + max_a' Q_{t+1}(s', a') - Q_t(s, a)),

    bootstrapping on its own current estimates, as sample-based Q-learners do.
    Returns ``(pi, mu)``: ``(M, T, S, A)`` and ``(M, T, S)``."""
    P = g.transition.dense()                                  # (S, A, S)
    N = g.N
    Q = np.array(q0, dtype=float)
    extra = 0.0 if theta is None else np.asarray(theta)
    for _ in range(iterations + 1):
        pi = softmax(Q / tau, axis=-1)
        mu = np.empty(Q.shape[:3])
        prev = np.broadcast_to(g.mu0, (len(Q), g.S))
        for t in range(g.T):
            prev = mu[:, t] = np.einsum("ms,msa,sax->mx", prev, pi[:, t], P)
        x = N * mu[..., N:].reshape(len(Q), g.T, N, g.K)
        r = np.concatenate([np.zeros((len(Q), g.T, N)),
                            g.payoffs(x).reshape(len(Q), g.T, -1)], axis=-1)
        target = np.einsum("sax,mtx->mtsa", P, r) + extra
        target[:, :-1] += np.einsum("sax,mtx->mtsa", P, Q[:, 1:].max(axis=-1))
        Q += alpha * (target - Q)
    return pi, mu


def random_values(g, M, rng, tau=0.1):
    """Initial values whose softmax is a uniformly drawn mix at every (t, s)."""
    p = rng.uniform(0.01, 0.99, (M, g.T, g.S))
    return tau * np.log(np.stack([p, 1 - p], axis=-1))


def test_shaping_is_a_change_of_initial_values(rng):
    """Wiewiora (2003): a Q-learner shaped by Phi from Q0 acts exactly as an unshaped one
    started from Q0 + Phi_t(s); its values differ by -Phi_t(s) at every iteration."""
    g = game(preset="stag_hunt", horizon=T_REPEATED)
    m, phi = shaping(g, 3.0)
    q0 = random_values(g, 20, rng)
    shaped_pi, shaped_mu = q_learning(g, m.theta(phi.ravel()), q0, iterations=300)
    plain_pi, plain_mu = q_learning(g, None, q0 + phi[None, :, :, None], iterations=300)
    np.testing.assert_allclose(shaped_pi, plain_pi, atol=1e-9)
    np.testing.assert_allclose(shaped_mu, plain_mu, atol=1e-9)


def test_shaping_selects_stag_for_q_learners(rng):
    """Q-learners from random starts end at hare from most starts; shaping with a bonus
    Phi = 3 for having hunted stag (worth exactly the hare's edge when nobody hunts stag)
    makes stag look better to them until their estimates catch up (the bonus shows in the
    reward now and is taken back from the continuation they have not learned yet), and
    from most starts the population then coordinates on stag in every round but the last.
    The last round cannot move: with Phi_T = 0 its shaping is -Phi_{T-1}(s), the same for
    both actions, so its outcome stays (mostly) hare."""
    g = game(preset="stag_hunt", horizon=T_REPEATED)
    m, phi = shaping(g, 3.0)
    q0 = random_values(g, 200, rng)
    stag = {}
    for name, theta in (("alone", None), ("shaped", m.theta(phi.ravel()))):
        _, mu = q_learning(g, theta, q0)
        shares = mu[:, :, g.state(0, STAG)]                 # (M, T) share hunting stag
        assert np.all((shares < 0.05) | (shares > 0.95))     # a pure equilibrium each round
        stag[name] = (shares > 0.5).mean(axis=0)
    assert np.all(stag["alone"] < 0.35)                    # hare from most starts
    assert np.all(stag["shaped"][:-1] > 0.85)              # stag from most starts
    assert stag["shaped"][-1] < 0.35                       # the last round: unchanged
