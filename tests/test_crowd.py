"""The crowd game's arrays against plain-loop constructions of the issue's definition."""

import numpy as np
import pytest

from crowdsteer.errors import ConfigError
from crowdsteer.games.crowd import CrowdConfig, build
from tests.conftest import crowd


def loop_local_kernel(h, w, noise):
    """Dense P(s'|s,a) written straight from the definition, one cell at a time."""
    moves = [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)]  # stay, up, down, left, right
    S = h * w
    P = np.zeros((S, 5, S))
    for i in range(h):
        for j in range(w):
            s = i * w + j
            for a in range(5):
                for b, (di, dj) in enumerate(moves):
                    p = (1 - noise) * (a == b) + noise / 5
                    ni, nj = i + di, j + dj
                    dest = ni * w + nj if (0 <= ni < h and 0 <= nj < w) else s
                    P[s, a, dest] += p
    return P


@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_local_moves_match_definition(noise):
    game = crowd(height=3, width=4, horizon=2, moves="local", noise=noise)
    np.testing.assert_allclose(game.transition.dense(), loop_local_kernel(3, 4, noise))


def test_desirability_bumps_and_moving_center():
    cfg = CrowdConfig(height=4, width=5, horizon=2, moves="local", desirability={"bumps": [
        {"center": [[1, 2], [3, 0]], "height": 2.0, "width": 1.5},
        {"center": [0, 4], "height": -1.0, "width": 0.7}]})
    d = build(cfg).d
    for t, (ci, cj) in enumerate([(1, 2), (3, 0)]):
        for i in range(4):
            for j in range(5):
                want = 2.0 * np.exp(-((i - ci) ** 2 + (j - cj) ** 2) / (2 * 1.5**2))
                want += -1.0 * np.exp(-((i - 0) ** 2 + (j - 4) ** 2) / (2 * 0.7**2))
                assert d[t, i * 5 + j] == pytest.approx(want)


def test_kernel_crowding_matches_dense_kernel(rng):
    game = crowd(height=4, width=6, congestion={"kind": "kernel", "strength": 1.0, "radius": 1.3})
    K = np.array([[np.exp(-((s // 6 - q // 6) ** 2 + (s % 6 - q % 6) ** 2) / (2 * 1.3**2))
                   for q in range(24)] for s in range(24)])
    mu = rng.dirichlet(np.ones(24))
    np.testing.assert_allclose(game.crowding(mu), K @ mu)
    np.testing.assert_allclose(game.reward(0, mu), game.d[0] - K @ mu)


def test_desirability_file_shapes(tmp_path):
    np.save(tmp_path / "d.npy", np.arange(6.0).reshape(2, 3))
    cfg = CrowdConfig(height=2, width=3, horizon=2, desirability={"file": "d.npy"})
    d = build(cfg, base_dir=tmp_path).d
    np.testing.assert_array_equal(d, np.tile(np.arange(6.0), (2, 1)))
    np.save(tmp_path / "bad.npy", np.zeros((3, 3)))
    with pytest.raises(ConfigError, match=r"desirability.file.*allowed: \(2, 2, 3\)"):
        build(CrowdConfig(height=2, width=3, horizon=2, desirability={"file": "bad.npy"}),
              base_dir=tmp_path)


def test_initial_file_is_normalised_and_checked(tmp_path):
    np.save(tmp_path / "m0.npy", np.array([[1.0, 3.0], [0.0, 0.0]]))
    game = build(CrowdConfig(height=2, width=2, initial="m0.npy"), base_dir=tmp_path)
    np.testing.assert_allclose(game.mu0, [0.25, 0.75, 0, 0])
    np.save(tmp_path / "neg.npy", np.array([[1.0, -3.0], [0.0, 0.0]]))
    with pytest.raises(ConfigError, match="game.initial.*negative"):
        build(CrowdConfig(height=2, width=2, initial="neg.npy"), base_dir=tmp_path)
    with pytest.raises(ConfigError, match="game.initial.*not found"):
        build(CrowdConfig(height=2, width=2, initial="missing.npy"), base_dir=tmp_path)


def test_moves_default_depends_on_horizon():
    assert CrowdConfig(horizon=1).moves == "any"
    assert CrowdConfig(horizon=3).moves == "local"
    assert build(CrowdConfig(height=2, width=3)).A == 6
    assert build(CrowdConfig(height=2, width=3, horizon=2)).A == 5
