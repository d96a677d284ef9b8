"""Size and time guards (crowdsteer/guards.py): what cannot fit is refused up front with one
line giving the estimate and what to change; what will be slow says so, with numbers; and
the Python API refuses misuse with a ConfigError naming the argument."""

import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest

import crowdsteer
from crowdsteer import guards
from crowdsteer.config import build, load_config
from crowdsteer.errors import ConfigError, CrowdsteerWarning
from crowdsteer.games.crowd import CrowdConfig, build as build_crowd
from crowdsteer.modifiers.base import LinearModifier
from tests.test_cli import cli, write_config

RUN = {
    "seed": 0,
    "game": {"name": "crowd", "height": 3, "width": 3},
    "learner": {"name": "exact", "temperature": 0.2},
    "modifier": {"name": "power_series", "order": 1},
    "optimiser": {"name": "random", "evaluations": 2},
}


def refused(r, field, *words):
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line, line
    assert f"error: {field}:" in line and all(w in line for w in words), line
    return line


@pytest.mark.parametrize("game, learner, field, words", [
    # 300 x 300 cells, any cell reachable: T S A = 8.1e9 entries, ~24 float arrays of them
    # for the newton method auto picks at tau = 0: 24 * 8 * 8.1e9 B = 1.4 TiB
    ({"height": 300, "width": 300, "moves": "any"}, {"name": "exact"}, "game",
     ["T=1, S=90000, A=90000", "1.4 TiB", "moves: local"]),
    # 1e12 agents at ~100 bytes each
    ({}, {"name": "fictitious_play", "agents": 10**12}, "learner.agents",
     ["1,000,000,000,000 agents", "fewer agents"]),
    ({"height": 10**5, "width": 10**5}, {"name": "exact"}, "game",
     ["100000 x 100000 grid", "smaller grid"]),
])
def test_what_cannot_fit_is_refused_before_it_is_allocated(tmp_path, game, learner, field,
                                                           words):
    cfg = write_config(tmp_path, {**RUN, "game": {**RUN["game"], **game}, "learner": learner})
    start = time.perf_counter()
    line = refused(cli("run", cfg, "--out", tmp_path / "run"), field, *words)
    assert "more than the" in line and "this machine has" in line
    assert time.perf_counter() - start < 60  # refused up front, not after a long wait
    assert not (tmp_path / "run").exists()


def test_the_estimates_match_the_arrays_a_solve_allocates():
    """The exact solver's estimate, 12 T S A floats (24 for the newton method), bounds the
    peak tracemalloc measures (and is within a factor 2 of it), on a grid with any moves and
    on one with local moves, for the method the default picks (newton, at tau = 0 and 0.1)
    and for fp."""
    cases = [(kw, learner) for kw in (
        {"height": 12, "width": 12, "moves": "any"},
        {"height": 20, "width": 20, "horizon": 4, "moves": "local", "noise": 0.1})
        for learner in ({"temperature": 0}, {"temperature": 0.1}, {"method": "fp"})]
    for kw, extra in cases:
        game = build_crowd(CrowdConfig(**kw))
        cfg = load_config({"game": {"name": "crowd", **kw},
                           "learner": {"name": "exact", "max_iterations": 3, **extra}})
        learner = build(cfg, "learner")
        learner.solve(game)  # loads the compiled kernels first: code, not arrays
        tracemalloc.start()
        learner.solve(game)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        need = guards.solve_bytes(game, cfg["learner"])[0]
        assert peak <= need <= 2 * peak


def test_a_tabular_modifier_on_200_x_200_needs_no_dense_identity():
    """np.eye(40000) would take 11.9 GiB; the sparse identity takes S entries."""
    game = build_crowd(CrowdConfig(height=200, width=200, moves="local"))
    cfg = load_config({"game": {"name": "crowd"}, "modifier": {"name": "tabular"}})
    tracemalloc.start()
    modifier = build(cfg, "modifier", game=game)
    theta = modifier.theta(np.linspace(-1, 1, modifier.n_params))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert modifier.n_params == 40000 and theta.shape == (1, 40000, 5)
    assert peak < 50e6


@pytest.mark.parametrize("per_step", [False, True])
@pytest.mark.parametrize("budget_balanced", [False, True])
def test_the_sparse_tabular_modifier_equals_the_dense_identity(per_step, budget_balanced):
    """Differential test against LinearModifier over np.eye(S), the former definition."""
    game = build_crowd(CrowdConfig(height=4, width=5, horizon=3, moves="local", noise=0.2))
    cfg = load_config({"game": {"name": "crowd"}, "modifier": {
        "name": "tabular", "per_step": per_step, "budget_balanced": budget_balanced}})
    sparse = build(cfg, "modifier", game=game)
    dense = LinearModifier(game, np.eye(game.S), per_step, budget_balanced)
    w = np.random.default_rng(3).uniform(-2, 2, dense.n_params)
    assert sparse.n_params == dense.n_params
    np.testing.assert_array_equal(sparse.field(w), dense.field(w))
    mu = np.full(game.S, 1 / game.S)
    for t in range(game.T):
        a, b = sparse.theta(w), dense.theta(w)
        a, b = (a(t, mu), b(t, mu)) if budget_balanced else (a[t], b[t])
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-15)


def test_a_million_steps_say_how_long_an_iteration_takes_before_it_starts(tmp_path):
    """horizon: 1000000 once ran 90 s without a word: now a warning with the measured time of
    an iteration comes within seconds of the start."""
    cfg = write_config(tmp_path, {"game": {"name": "crowd", "height": 2, "width": 2,
                                           "horizon": 10**6}, "learner": {"name": "exact"}})
    proc = subprocess.Popen([sys.executable, "-m", "crowdsteer", "solve", str(cfg), "--out",
                             str(tmp_path / "out")], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    try:
        line = proc.stderr.readline()  # blocks until the first line of output
    finally:
        proc.kill()
        proc.communicate()
    assert line.startswith("warning: game.horizon: 1,000,000 steps")
    assert "each solver iteration takes about" in line and "us per step, measured" in line


def test_many_weights_warn_with_numbers():
    """400 weights: 400 x 3-25 ms per ask; bo's first local run needs 2 * 400 + 1 probes."""
    with pytest.warns(CrowdsteerWarning) as record:
        guards.check_optimiser("bo", 400, 40, in_memory=False)
    text = [str(w.message) for w in record]
    assert any("modifier: 400 weights" in t and "1.2 s to 10 s per ask" in t for t in text)
    assert any("bo with 400 weights" in t and "2 n + 1 = 801 points" in t for t in text)
    with pytest.warns(CrowdsteerWarning, match="gp with 101 weights: a Gaussian process"):
        guards.check_optimiser("gp", 101, 40, in_memory=True)


def test_many_weights_warn_through_the_cli(tmp_path):
    """A tabular modifier on 20 x 20 (400 weights) with bo: two one-line warnings up front."""
    cfg = write_config(tmp_path, {**RUN, "game": {**RUN["game"], "height": 20, "width": 20},
                                  "modifier": {"name": "tabular"},
                                  "optimiser": {"name": "bo", "evaluations": 40}})
    proc = subprocess.Popen([sys.executable, "-m", "crowdsteer", "run", str(cfg), "--out",
                             str(tmp_path / "out")], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    try:
        lines = [proc.stderr.readline(), proc.stderr.readline()]  # the first two lines
    finally:
        proc.kill()
        proc.communicate()
    assert lines[0].startswith("warning: modifier: 400 weights: every ask stores them")
    assert lines[1].startswith("warning: optimiser.name: bo with 400 weights")


def test_a_covariance_that_cannot_fit_is_refused():
    # three 10^6 x 10^6 float matrices: 3 * 8 * 10^12 B = 21.8 TiB
    with pytest.raises(ConfigError, match=r"n_params: cmaes with 1,000,000 weights .* needs "
                                          r"about 21.8 TiB"):
        crowdsteer.optimise(lambda w, seed: 0.0, 10**6, optimiser={"name": "cmaes"})


# ----------------------------------------------------------------------------- API misuse

def bowl(w, seed):
    return float(np.sum(w**2))


@pytest.mark.parametrize("kwargs, field", [
    ({"n_params": 2.5}, "n_params"),
    ({"n_params": 0}, "n_params"),
    ({"n_params": True}, "n_params"),
    ({"bounds": (-np.inf, np.inf)}, "bounds"),
    ({"bounds": (-1, np.nan)}, "bounds"),
    ({"bounds": "wide"}, "bounds"),
    ({"seed": -1}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"evaluate": "not a function"}, "evaluate"),
    ({"out": 3}, "out"),
])
def test_optimise_misuse_names_the_argument(tmp_path, kwargs, field):
    args = {"evaluate": bowl, "n_params": 2, **kwargs}
    with pytest.raises(ConfigError) as err:
        crowdsteer.optimise(args.pop("evaluate"), args.pop("n_params"), **args)
    assert err.value.field == field and "\n" not in str(err.value)


def test_numpy_integers_are_whole_numbers():
    result = crowdsteer.optimise(bowl, np.int64(2), seed=np.int64(3),
                                 optimiser={"name": "random", "evaluations": 2})
    plain = crowdsteer.optimise(bowl, 2, seed=3, optimiser={"name": "random", "evaluations": 2})
    assert result.history == plain.history


@pytest.mark.parametrize("config", [None, 3, ["game"]])
def test_run_misuse_names_the_argument(config):
    with pytest.raises(ConfigError, match="^config: expected a Config, a dict or the path"):
        crowdsteer.run(config)
