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
