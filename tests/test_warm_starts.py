"""Warm starts' bookkeeping on stubs: which earlier evaluation an evaluation starts from,
the chain it is rebuilt along, and which solutions and setups a process keeps.

The expected answers are worked out by hand in each test (distances, insertion order).
"""

from types import SimpleNamespace

import numpy as np
import pytest

from crowdsteer.metaagent import evaluation
from crowdsteer.metaagent.evaluation import WarmStarts, lineage


def trial(number, w, value=1.0, failed=False, warm_from=-1):
    attrs = {"w": list(w), "warm_from": warm_from}
    if failed:
        attrs["failed"] = True
    return SimpleNamespace(number=number, value=value, user_attrs=attrs, params={})


def test_the_source_is_the_nearest_successful_trial():
    """Distances from w = (1, 1): trial 0 at (0, 0) is sqrt(2), trial 1 at (3, 3) 2 sqrt(2),
    trial 2 at (1.1, 0.9) 0.14 but failed, trial 3 at (1.5, 1) 0.5, trial 4 at (1, 1.4) 0.4
    but without a value (still running): trial 3."""
    trials = [trial(0, [0, 0]), trial(1, [3, 3]), trial(2, [1.1, 0.9], failed=True),
              trial(3, [1.5, 1.0]), trial(4, [1.0, 1.4], value=None)]
    number, chain = lineage(trials, [1.0, 1.0], 2)
    assert number == 3
    assert chain == [(3, [1.5, 1.0])]
    assert lineage(trials, [2.9, 3.2], 2)[0] == 1  # the farthest from (1, 1), nearest here
    assert lineage([trials[2]], [1.0, 1.0], 2) == (-1, [])  # only failed ones: cold


def test_the_chain_runs_root_first_through_warm_from_links():
    """Trial 5 started from 3, 3 from 1, 1 from 0 (solved cold): the chain to rebuild 5 is
    0, 1, 3, 5 in that order. A link to a failed trial (2) or to a later one ends it."""
    trials = [trial(0, [0.0]), trial(1, [0.5], warm_from=0), trial(2, [0.7], failed=True),
              trial(3, [0.8], warm_from=1), trial(4, [5.0], warm_from=2),
              trial(5, [1.0], warm_from=3), trial(6, [9.0], warm_from=7),
              trial(7, [8.0], warm_from=6)]
    number, chain = lineage(trials, [1.05], 1)
    assert number == 5
    assert chain == [(0, [0.0]), (1, [0.5]), (3, [0.8]), (5, [1.0])]
    assert lineage(trials, [5.1], 1)[1] == [(4, [5.0])]  # its source failed: a root
    assert lineage(trials, [9.1], 1)[1] == [(6, [9.0])]  # a link forward is no parent


class StubLearner:
    def solve(self, game, theta, init=None):  # pragma: no cover - never called
        raise AssertionError


def solution(k):
    """A stub solution of 800 bytes (``pi`` and ``mu`` of 50 floats each)."""
    return SimpleNamespace(pi=np.full(50, float(k)), mu=np.full(50, float(k)), dual=None,
                           mu_sample=None)


class Solves(Exception):
    pass


def held(warm, number):
    """Whether ``warm`` holds trial ``number``: a one-link chain is served without solving
    (a solve raises, so the check changes nothing)."""
    def solve(w, init):
        raise Solves

    try:
        warm.start([(number, [0.0])], 0, solve)
    except Solves:
        return False
    return True


def test_the_oldest_solutions_go_first():
    """800 bytes each, room for 2400: after trials 0..4 the three newest, 2, 3 and 4,
    remain. Adding trial 2 again refreshes it: after 5, trials 2, 4 and 5 remain."""
    warm = WarmStarts(StubLearner(), keep_bytes=2400)
    for k in range(5):
        warm.add(k, solution(k))
    assert [k for k in range(5) if held(warm, k)] == [2, 3, 4]
    warm = WarmStarts(StubLearner(), keep_bytes=2400)
    for k in (0, 1, 2, 3, 4, 2, 5):
        warm.add(k, solution(k))
    assert [k for k in range(6) if held(warm, k)] == [2, 4, 5]


def test_the_two_newest_stay_whatever_the_budget():
    warm = WarmStarts(StubLearner(), keep_bytes=0)
    for k in range(4):
        warm.add(k, solution(k))
    assert [k for k in range(4) if held(warm, k)] == [2, 3]


def test_the_setups_served_most_recently_are_kept(monkeypatch):
    """CACHED_RUNS = 4: serve runs 0..3, run 0 again, then run 4: run 1 (served least
    recently) goes, run 0 stays."""
    monkeypatch.setattr(evaluation, "_CACHE", {})
    built = []

    def fake_setup(cfg):
        built.append(cfg)
        return SimpleNamespace(learner=StubLearner(),
                               optimiser=SimpleNamespace(warm_starts=False))

    monkeypatch.setattr(evaluation, "setup", fake_setup)
    monkeypatch.setattr(evaluation, "load_config", lambda raw, base: raw["run"])
    monkeypatch.setattr(evaluation, "measured", lambda s, w, r, init: ("sample", None, None))
    assert evaluation.CACHED_RUNS == 4
    for run in (0, 1, 2, 3, 0, 4):
        assert evaluation.evaluate_task(({"run": run}, ".", [0.0], 0, f"r{run}")) == "sample"
    assert built == [0, 1, 2, 3, 4]  # run 0 served again from the cache
    kept = sorted(key.split(":")[0] for key in evaluation._CACHE)
    assert kept == ["r0", "r2", "r3", "r4"]


@pytest.mark.parametrize("number", [0, 3])
def test_a_held_solution_is_returned_as_is(number):
    warm = WarmStarts(StubLearner())
    sols = [solution(k) for k in range(4)]
    for k, s in enumerate(sols):
        warm.add(k, s)
    assert warm.start([(number, [0.0])], 0, None) is sols[number]
