"""The paper's Lemma 1 and continuity, checked numerically on every example's game; and the
check itself shown able to fail."""

from pathlib import Path

import numpy as np
import pytest

from crowdsteer.config import load_config
from crowdsteer.theory import check, lemma1_violation
from tests.conftest import crowd

EXAMPLES = sorted(Path(__file__).parent.parent.joinpath("examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_lemma1_and_continuity_hold_on_every_example(path):
    report = check(path, samples=2)
    if report.lemma1 is not None:
        assert report.lemma1 <= 1e-6 * max(1.0, report.lemma1_scale)
    assert report.shrinks


def test_every_registered_game_has_an_example():
    from crowdsteer.games.base import games

    named = {load_config(p).resolved()["game"]["name"] for p in EXAMPLES}
    assert set(games.names()) <= named


class WrongPotential:
    """The kernel crowd game with the potential's congestion term doubled: no longer the
    potential of its rewards (the agents' own crowding counted twice)."""

    def __init__(self, game):
        self.game = game

    def __getattr__(self, name):
        return getattr(self.game, name)

    def potential(self, t, mu):
        return self.game.potential(t, mu) - 0.5 * self.game.c * mu @ self.game.crowding(mu)


def test_the_check_detects_a_wrong_potential():
    game = crowd(height=3, width=3, congestion={"kind": "kernel", "strength": 1.0,
                                                  "radius": 1.0})
    rng = np.random.default_rng(0)
    good, scale = lemma1_violation(game, None, rng)
    bad, _ = lemma1_violation(WrongPotential(game), None, rng)
    assert good < 1e-8 < 1e-3 < bad
