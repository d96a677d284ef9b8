import os

import numpy as np
import pytest
from hypothesis import settings

from crowdsteer.games.crowd import CrowdConfig, build

settings.register_profile("ci", max_examples=40, deadline=None)
settings.register_profile("dev", max_examples=25, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def crowd(**kw):
    """A crowd game from keyword config (tests build games the way users' YAML does)."""
    kw.setdefault("desirability", {"bumps": [{"center": [0, 1], "height": 1.5, "width": 1.0}]})
    return build(CrowdConfig(**kw))


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def assert_potential_gradient_is_reward(g, mu, atol):
    """For a player game ``g`` (games/matrix.py): d potential / d mu equals the landing reward
    up to a constant over each player's landing states (central differences, step 1e-6)."""
    r, h = g.reward(0, mu), 1e-6
    grad = np.array([(g.potential(0, mu + h * e) - g.potential(0, mu - h * e)) / (2 * h)
                     for e in np.eye(g.S)])
    for i in range(g.N):
        land = [g.state(i, k) for k in range(g.K)]
        diff = grad[land] - r[land]
        np.testing.assert_allclose(diff, diff[0], atol=atol)
