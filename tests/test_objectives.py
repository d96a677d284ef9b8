"""Objectives: KL against SciPy, the finite-N floor, target validation, the worst-off agent."""

import numpy as np
import pytest
from hypothesis import given, strategies as st
from scipy.stats import entropy

from crowdsteer.errors import ConfigError
from crowdsteer.objectives import (
    ObjectiveConfig, build, kl_divergence, kl_floor, worst_off,
)
from crowdsteer.equilibrium import mean_field
from tests.conftest import crowd


@given(st.lists(st.floats(0.01, 10), min_size=2, max_size=8), st.integers(0, 2**31))
def test_kl_matches_scipy_and_is_zero_on_itself(p, seed):
    p = np.array(p) / np.sum(p)
    q = np.random.default_rng(seed).dirichlet(np.ones(len(p)))
    assert kl_divergence(p, p) == pytest.approx(0, abs=1e-12)
    assert kl_divergence(p, q) == pytest.approx(entropy(p, q), rel=1e-9)
    assert kl_divergence(p, q) >= 0


def test_kl_floor_matches_simulation():
    """E[KL(empirical || q)] ~ (S - 1) / (2N) for N draws from q (Miller's bias), checked
    by simulation. The next term of the expansion, (sum_s 1/q_s - 1) / (12 N^2), is 0.3%
    here, and the Monte Carlo error of 4000 samples 0.5% (sd of one KL ~ sqrt(2 (S - 1)) /
    (2N)); rel = 0.02 tells S - 1 from S (4% apart)."""
    rng = np.random.default_rng(0)
    S, N = 25, 2000
    q = rng.dirichlet(np.full(S, 5.0))
    counts = rng.multinomial(N, q, size=4000) / N
    mean_kl = kl_divergence(counts, q).mean()
    assert mean_kl == pytest.approx(kl_floor(S, N, 1), rel=0.02)
    assert mean_kl != pytest.approx(S / (2 * N), rel=0.02)
    assert kl_floor(S, N, 3) == pytest.approx(3 * kl_floor(S, N, 1))  # summed over steps


@pytest.mark.parametrize("array, words", [
    (np.full((2, 3), np.nan), "NaN"),
    (np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]]), "zero"),
    (np.array([[1.0, -1.0, 1.0], [1.0, 1.0, 1.0]]), "negative"),
    (np.ones((3, 3)), "shape"),
])
def test_bad_targets_are_refused(tmp_path, array, words):
    np.save(tmp_path / "t.npy", array)
    game = crowd(height=2, width=3)
    cfg = ObjectiveConfig(name="kl", target={"file": "t.npy"})
    with pytest.raises(ConfigError, match=words) as info:
        build(cfg, game, tmp_path)
    assert info.value.field == "objective.target.file"


def test_kl_needs_a_target():
    with pytest.raises(ConfigError, match="objective.target"):
        build(ObjectiveConfig(name="kl"), crowd(height=2, width=2))


def test_target_is_normalised_per_step():
    game = crowd(height=3, width=3, horizon=2, moves="local")
    cfg = ObjectiveConfig(name="kl", target={"bumps": [{"center": [[0, 0], [2, 2]], "width": 1}]})
    target = build(cfg, game).target
    np.testing.assert_allclose(target.sum(axis=1), 1)
    assert target[0].argmax() == 0 and target[1].argmax() == 8


def test_worst_off_in_a_one_shot_game_is_the_lowest_start_value(rng):
    """One shot, any move: V_0(s) = sum_a pi(s, a) r(a); the worst-off is the minimum."""
    game = crowd(height=2, width=2)
    pi = rng.dirichlet(np.ones(4), size=(1, 4))
    mu = mean_field(game, pi)
    r = game.reward(0, mu[0])
    assert worst_off(game, pi, mu) == pytest.approx(float((pi[0] @ r).min()))


def test_values_target_allows_zeros_only_where_no_agent_lands():
    """Routing: the origin state is empty after the move, so the target may be 0 there;
    a path (where agents do land) may not have 0."""
    from crowdsteer.config import build_game, load_config

    game = build_game(load_config("examples/pigou.yaml"))
    assert game.S == 3  # one origin, two paths
    target = build(ObjectiveConfig(name="kl", target={"values": [0, 1, 3]}), game).target
    np.testing.assert_allclose(target[0], [0, 0.25, 0.75])
    with pytest.raises(ConfigError, match="zero entries where agents can land") as info:
        build(ObjectiveConfig(name="kl", target={"values": [1, 0, 3]}), game)
    assert info.value.field == "objective.target.values"
    with pytest.raises(ConfigError, match="one entry per state"):
        build(ObjectiveConfig(name="kl", target={"values": [1, 3]}), game)
