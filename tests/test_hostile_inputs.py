"""Hostile inputs (issue 12, items 9 and 12-15): every one is refused with one line naming
the field or argument, or handled, never a traceback and never a late failure that names
nothing.

Each test here was run against the code before its fix and failed there (a late
``DivergenceError``, a traceback, a silently accepted value or a mangled message).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import crowdsteer
from crowdsteer.config import build_game, load_config
from crowdsteer import config_base
from crowdsteer.errors import ConfigError
from tests.test_cli import cli, write_config
from tests.test_report import RESULT, make_run
from tests.test_routing import edit

GAME = {"name": "crowd", "height": 3, "width": 3}


def one_line_exit_2(r) -> str:
    """The CLI refused cleanly: exit code 2 and one line on stderr; returns that line."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    line = r.stderr.strip()
    assert "Traceback" not in line and len(line.splitlines()) == 1, r.stderr
    return line


# ------------------------------------------------------------ item 9: non-finite floats

NON_FINITE = [
    ({"game": {**GAME, "desirability": {"bumps": [{"center": [1, 1], "height": ".nan"}]}}},
     "game.desirability.bumps.0.height"),
    ({"game": {**GAME, "desirability": {"bumps": [{"center": [1, 1], "height": "-.inf"}]}}},
     "game.desirability.bumps.0.height"),
    ({"game": {**GAME, "desirability": {"bumps": [{"center": [".nan", 1]}]}}},
     "game.desirability.bumps.0.center.0"),
    ({"game": {**GAME, "desirability": {"bumps": [{"center": [[1, ".inf"]]}]}}},
     "game.desirability.bumps.0.center.0.1"),
    ({"game": {**GAME, "desirability": {"bumps": [{"center": [1, 1], "width": ".inf"}]}}},
     "game.desirability.bumps.0.width"),
    ({"game": {**GAME, "congestion": {"kind": "kernel", "strength": ".inf"}}},
     "game.congestion.strength"),
    ({"game": {**GAME, "congestion": {"kind": "kernel", "radius": ".inf"}}},
     "game.congestion.radius"),
    ({"game": GAME, "learner": {"name": "exact", "temperature": ".inf"}}, "learner.temperature"),
    ({"game": GAME, "learner": {"name": "exact", "tolerance": ".inf"}}, "learner.tolerance"),
    ({"game": GAME, "learner": {"name": "fictitious_play", "tolerance": ".nan"}},
     "learner.tolerance"),
    ({"game": GAME, "learner": {"name": "independent", "learning_rate": ".nan"}},
     "learner.learning_rate"),
    ({"game": GAME, "modifier": {"name": "rbf", "bounds": ["-.inf", 1]}}, "modifier.bounds.0"),
    ({"game": GAME, "modifier": {"name": "rbf", "width": ".nan"}}, "modifier.width"),
    ({"game": GAME, "objective": {"name": "kl", "target": {"values": [1, ".nan"] + [1] * 7}}},
     "objective.target.values.1"),
    ({"game": GAME, "objective": {"name": "kl", "target": {
        "bumps": [{"center": [1, 1]}], "floor": ".nan"}}}, "objective.target.floor"),
]


def _yaml_floats(data):
    """YAML's spellings of NaN and infinity (``.nan``, ``.inf``) written as YAML would."""
    text = yaml.safe_dump(data)
    for word in ("'.nan'", "'.inf'", "'-.inf'"):
        text = text.replace(word, word.strip("'"))
    return text


@pytest.mark.parametrize("data, field", NON_FINITE)
def test_non_finite_floats_are_refused_at_load_naming_the_field(data, field):
    raw = yaml.safe_load(_yaml_floats(data))  # as a user's YAML file gives them: float nan/inf
    with pytest.raises(ConfigError) as info:
        load_config(raw)
    assert info.value.field == field
    assert "finite numbers" in info.value.message


@pytest.mark.parametrize("data, field", [NON_FINITE[0], NON_FINITE[5], NON_FINITE[8]])
def test_non_finite_floats_through_the_cli_leave_no_run_folder(tmp_path, data, field):
    """Before the fix these failed late ("exploitability became NaN", no field named) and
    ``tolerance: .inf`` reported "converged"."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(_yaml_floats(data))
    line = one_line_exit_2(cli("solve", cfg, "--out", tmp_path / "out"))
    assert field in line and "finite numbers" in line
    assert not (tmp_path / "out").exists()


def test_numbers_near_the_float_limit_are_refused():
    """1e300 is finite but overflows once squared or summed over a grid."""
    bad = {"game": {**GAME, "desirability": {"bumps": [{"center": [1, 1], "height": 1e300}]}}}
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert info.value.field == "game.desirability.bumps.0.height"
    ok = {"game": {**GAME, "desirability": {"bumps": [{"center": [1, 1], "height": 1e99}]}}}
    assert build_game(load_config(ok)).d.max() == pytest.approx(1e99)


def test_a_width_whose_square_underflows_is_a_spike_not_nan():
    """width 1e-200: width^2 is 0 in float64, so dist^2 / width^2 was 0 / 0 = NaN at the
    center. The bump is then a spike of its height at the center and 0 elsewhere."""
    cfg = {"game": {**GAME, "desirability": {"bumps": [{"center": [1, 1], "width": 1e-200,
                                                        "height": 2.0}]}}}
    d = build_game(load_config(cfg)).d[0]
    want = np.zeros(9)
    want[4] = 2.0
    np.testing.assert_array_equal(d, want)


# ------------------------------------------------------------ item 9/14: .npy files


@pytest.mark.parametrize("array, words", [
    (np.full((3, 3), 1e308), "as large as 1e+308"),
    (np.full((3, 3), -1e150), "as large as 1e+150"),
    (np.ones((3, 3)) + 1j, "complex"),
    (np.array([[1.0, np.inf, 1], [1, 1, 1], [1, 1, 1]]), "finite numbers"),
])
def test_bad_npy_targets_are_refused_naming_the_target(tmp_path, array, words):
    """Before the fix a 1e308 target passed validation and failed later as "objective is
    NaN"; a complex one was accepted with a ComplexWarning and its imaginary part dropped."""
    np.save(tmp_path / "t.npy", array)
    data = {"game": GAME, "modifier": {"name": "power_series", "order": 1},
            "objective": {"name": "kl", "target": {"file": "t.npy"}},
            "optimiser": {"name": "random", "evaluations": 1}}
    cfg = write_config(tmp_path, data)
    line = one_line_exit_2(cli("run", cfg, "--out", tmp_path / "run"))
    assert "objective.target.file" in line and words in line
    assert not (tmp_path / "run" / "study.db").exists()


def test_a_npy_header_claiming_a_huge_shape_is_refused_without_allocating(tmp_path):
    p = tmp_path / "huge.npy"
    with open(p, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f8", "fortran_order": False, "shape": (10**9, 10**9)})
        f.write(b"\0" * 64)
    with pytest.raises(ConfigError) as info:
        config_base.load_npy(p, "game.desirability.file")
    assert info.value.field == "game.desirability.file"
    assert "declares shape (1000000000, 1000000000)" in info.value.message
    assert config_base.load_npy(_saved(tmp_path, np.arange(6.0).reshape(2, 3)), "x").shape == (2, 3)


def _saved(folder: Path, arr: np.ndarray, name: str = "ok.npy") -> Path:
    np.save(folder / name, arr)
    return folder / name


def test_max_magnitude_is_what_the_messages_say():
    big = config_base.MAX_MAGNITUDE
    assert big == 1e100 and (big * 1e3) ** 2 < np.finfo(float).max


# ------------------------------------------------------------ item 12: small commands


def test_init_refuses_a_folder_with_and_without_force(tmp_path):
    (tmp_path / "d").mkdir()
    for extra in ((), ("--force",)):
        line = one_line_exit_2(cli("init", tmp_path / "d", *extra))
        assert "is a folder" in line
    assert list((tmp_path / "d").iterdir()) == []


def test_init_with_a_missing_parent_folder(tmp_path):
    line = one_line_exit_2(cli("init", tmp_path / "nope" / "c.yaml"))
    assert "no such folder" in line


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_init_onto_a_full_device():
    line = one_line_exit_2(cli("init", "/dev/full", "--force"))
    assert "/dev/full" in line and "No space left" in line


def test_init_on_a_read_only_filesystem_keeps_the_old_file(tmp_path, monkeypatch):
    """A read-only filesystem (simulated: every new file is refused with EROFS, as the
    kernel does) gives one line, and ``--force`` leaves the existing file as it was."""
    import errno

    from typer.testing import CliRunner

    from crowdsteer import cli as cli_mod
    from crowdsteer import rundir

    target = tmp_path / "c.yaml"
    target.write_text("old\n")

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path))

    monkeypatch.setattr(rundir.tempfile, "mkstemp", read_only)
    r = CliRunner().invoke(cli_mod.app, ["init", str(target), "--force"])
    assert r.exit_code == 2 and "Read-only file system" in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    assert target.read_text() == "old\n"


def test_init_writes_a_config_that_loads(tmp_path):
    r = cli("init", tmp_path / "c.yaml")
    assert r.returncode == 0, r.stderr
    assert load_config(tmp_path / "c.yaml", required=("game", "modifier"))["game"] is not None
    assert (tmp_path / "c.yaml").stat().st_mode & 0o777 != 0o600  # an ordinary file


def test_check_refuses_a_negative_seed(tmp_path):
    cfg = write_config(tmp_path, {"game": GAME, "modifier": {"name": "power_series"}})
    line = one_line_exit_2(cli("check", cfg, "--seed", "-1"))
    assert "--seed" in line and ">= 0" in line


# report on a tampered run folder -------------------------------------------------------


def _leaves(x, path=()):
    """Every position in a JSON value: ``(path, value)`` for the value and all it holds."""
    yield path, x
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _leaves(v, path + (i,))


SWAPS = ["not a number", [1, "a", [2]], {"x": {"y": 1}}, None, True, 1e308, -(2**70)]


def test_report_survives_any_value_of_the_wrong_type_in_result_json(tmp_path, monkeypatch):
    """Every position of result.json replaced by a string, a list, an object, null, a
    boolean, a huge float and a huge integer: the report is written every time. (Figures
    are stubbed here for speed; the values the figures use are drawn for real below.)"""
    from crowdsteer.report import html

    run = make_run(tmp_path)
    monkeypatch.setattr(html._Figures, "__call__", lambda self, draw, alt: "<p>figure</p>")
    n = 0
    for path, _ in _leaves(RESULT):
        if not path:
            continue
        for value in SWAPS:
            (run / "result.json").write_text(json.dumps(edit(RESULT, path, value)))
            assert html.write_report(run).is_file(), (path, value)
            n += 1
    assert n > 100


@pytest.mark.parametrize("path", [("baseline", "objective"), ("kl_floor",), *(
    pytest.param(p, marks=pytest.mark.slow)
    for p in [("best", "trial"), ("objective", "direction"), ("objective",)])])
def test_report_draws_despite_tampered_values_its_figures_use(tmp_path, path):
    from crowdsteer.report.html import write_report

    run = make_run(tmp_path)
    for value in (1e308, "x", [1, 2]):
        (run / "result.json").write_text(json.dumps(edit(RESULT, path, value)))
        assert "<section>" in write_report(run).read_text()


@pytest.mark.parametrize("name, content, words", [
    ("evaluations.csv", b"trial,state,J\n0,COMPLETE,\xff\xfe1.0\n", "evaluations.csv: not UTF-8"),
    ("config.yaml", b"seed: \xff\n", "config.yaml: not UTF-8"),
    ("best_mu.npy", None, "best_mu.npy: shape ()"),
    ("target.npy", "huge", "target.npy: not a readable .npy array"),
    ("evaluations.csv", b"trial,state\n0,COMPLETE\n", "evaluations.csv: needs a J column"),
])
def test_report_on_a_tampered_folder_leaves_the_bad_file_out_and_says_so(
        tmp_path, name, content, words):
    run = make_run(tmp_path)
    p = run / name
    if content is None:
        np.save(p, np.float64(3.0))  # a 0-d array
    elif content == "huge":
        with open(p, "wb") as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "<f8", "fortran_order": False, "shape": (10**7, 10**7, 10**7)})
    else:
        p.write_bytes(content)
    r = cli("report", run)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert f"left out {words}" in r.stderr
    page = (run / "report.html").read_text()
    assert "Files left out" in page and words.split(": ")[1][:12] in page


def test_report_on_a_non_utf8_result_json_is_one_line(tmp_path):
    run = make_run(tmp_path)
    (run / "result.json").write_bytes(b'{"objective": "\xff"}')
    line = one_line_exit_2(cli("report", run))
    assert "result.json" in line and "UTF-8" in line


# ------------------------------------------------------------ item 13: square brackets


def test_error_messages_keep_square_brackets(tmp_path):
    """rich markup ate ``[1.0]`` and turned ``[dim]secret[/dim].npy`` into ``secret.npy``."""
    cfg = write_config(tmp_path, {"game": {**GAME, "desirability": {"bumps": [
        {"center": [1.0]}]}}})
    line = one_line_exit_2(cli("solve", cfg, "--out", tmp_path / "o"))
    assert "a center is [row, column], got [1.0]" in line
    cfg = write_config(tmp_path, {"game": {**GAME, "desirability": {
        "file": "[dim]secret[/dim].npy"}}})
    line = one_line_exit_2(cli("solve", cfg, "--out", tmp_path / "o"))
    assert "[dim]secret[/dim].npy" in line


def test_check_table_keeps_square_brackets_in_paths(tmp_path):
    folder = tmp_path / "[bold]x"
    folder.mkdir()
    cfg = write_config(folder, {"game": {**GAME, "horizon": 1},
                                "modifier": {"name": "power_series", "order": 1},
                                "learner": {"name": "exact", "temperature": 0.5}})
    r = subprocess.run([sys.executable, "-m", "crowdsteer", "check", str(cfg), "--samples", "1"],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "COLUMNS": "400"})  # wide: no cell is cut short
    assert r.returncode == 0, r.stderr
    assert "[bold]x" in r.stdout


# ------------------------------------------------------------ item 14: misleading options


@pytest.mark.slow
def test_reproduce_into_a_used_folder_does_not_suggest_resume(tmp_path):
    data = {"game": GAME, "learner": {"name": "exact", "temperature": 0.5},
            "modifier": {"name": "power_series", "order": 1},
            "objective": {"name": "welfare"}, "optimiser": {"name": "random", "evaluations": 1}}
    cfg = write_config(tmp_path, data, name="tiny.yaml")
    args = ("reproduce", cfg, "--out", tmp_path / "rep", "--runs", "1", "--simulations", "1")
    assert cli(*args).returncode == 0
    before = (tmp_path / "rep" / "tiny" / "run_0" / "evaluations.csv").read_text()
    line = one_line_exit_2(cli(*args))
    assert "--force" in line and "--resume" not in line
    assert (tmp_path / "rep" / "tiny" / "run_0" / "evaluations.csv").read_text() == before
    assert cli(*args, "--force").returncode == 0


def test_reproduce_refuses_two_configs_with_one_name(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    data = {"game": GAME, "modifier": {"name": "power_series", "order": 1}}
    one, two = write_config(tmp_path / "a", data), write_config(tmp_path / "b", data)
    line = one_line_exit_2(cli("reproduce", one, two, "--out", tmp_path / "rep"))
    assert "different file names" in line


def test_address_without_ray_is_refused(tmp_path):
    data = {"game": GAME, "modifier": {"name": "power_series", "order": 1},
            "optimiser": {"name": "random", "evaluations": 1}}
    cfg = write_config(tmp_path, data)
    line = one_line_exit_2(cli("run", cfg, "--out", tmp_path / "r", "--address", "auto"))
    assert "--address" in line and "--executor ray" in line
    assert not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match="address: only the ray executor"):
        load_config({**data, "executor": {"name": "local", "address": "auto"}})


# ------------------------------------------------------------ item 15: the envs API

envs = pytest.importorskip("crowdsteer.envs")
ENV_CFG = {"game": GAME, "modifier": {"name": "tabular"}}


def test_parallel_env_with_a_billion_agents_is_refused_with_an_estimate():
    """Before: a MemoryError (or the machine swapping) building 10^9 agent names."""
    N = 10**9
    assert N * envs.PARALLEL_BYTES_PER_AGENT > envs.total_memory()
    with pytest.raises(ConfigError) as info:
        envs.parallel_env(ENV_CFG, agents=N)
    assert info.value.field == "agents" and "GiB" in info.value.message
    assert "vector_env" in info.value.message
    big = envs.total_memory() // envs.VECTOR_BYTES_PER_AGENT + 1
    with pytest.raises(ConfigError, match="GiB"):
        envs.vector_env(ENV_CFG, agents=big)


@pytest.mark.parametrize("make, per_agent", [("parallel_env", "PARALLEL_BYTES_PER_AGENT"),
                                             ("vector_env", "VECTOR_BYTES_PER_AGENT")])
def test_memory_per_agent_estimate_covers_a_measurement(make, per_agent):
    """The estimate is an upper bound of what tracemalloc sees over construction, reset and
    one modified step (N = 20,000), and not a gross over-estimate (within 2x)."""
    import tracemalloc

    N = 20_000
    tracemalloc.start()
    try:
        env = getattr(envs, make)(ENV_CFG, agents=N, w=np.zeros(9))
        env.reset(seed=0)
        if make == "parallel_env":
            env.step(dict.fromkeys(env.agents, 0))
        else:
            env.step(np.zeros(N, dtype=np.int64))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    estimate = getattr(envs, per_agent)
    assert peak / N <= estimate <= 2 * peak / N, peak / N


@pytest.mark.parametrize("kwargs, field, words", [
    ({"w": [float("nan")] * 9}, "w", "finite numbers"),
    ({"w": [0.0] * 3}, "w", "9 numbers"),
    ({"w": "abc"}, "w", "9 numbers"),
    ({"agents": 2.5}, "agents", "whole number"),
    ({"agents": 0}, "agents", "whole number"),
    ({"modifier": 3.0, "w": [0.0]}, "modifier", "registered family"),
])
def test_env_api_misuse_is_a_config_error_naming_the_argument(kwargs, field, words):
    with pytest.raises(ConfigError) as info:
        envs.parallel_env(ENV_CFG, **kwargs)
    assert info.value.field == field and words in info.value.message


def test_w_without_a_modifier_is_refused_not_made_up():
    """Before: a default power_series modifier was built quietly."""
    with pytest.raises(ConfigError) as info:
        envs.parallel_env({"game": GAME}, w=[0.1, 0.2])
    assert info.value.field == "w" and "modifier" in info.value.message
    env = envs.parallel_env({"game": GAME}, w=np.zeros(9), modifier="tabular")
    assert env.modifier.n_params == 9


def test_env_config_of_the_wrong_type_names_config():
    with pytest.raises(ConfigError) as info:
        envs.vector_env(42)
    assert info.value.field == "config"


def test_wrapper_w_is_checked_like_the_factories():
    env = envs.parallel_env(ENV_CFG, agents=2)
    wrapped = envs.modify_rewards(env, "tabular", np.zeros(9))
    with pytest.raises(ConfigError, match="finite"):
        wrapped.w = np.full(9, np.inf)
    with pytest.raises(ConfigError) as info:
        envs.modify_rewards(object(), lambda o, a, w: 0.0, [0.0])
    assert info.value.field == "env"


def test_api_run_with_nan_in_config_names_the_field():
    with pytest.raises(ConfigError) as info:
        crowdsteer.run({"game": {**GAME, "congestion": {"strength": float("inf")}},
                        "modifier": {"name": "power_series"}})
    assert info.value.field == "game.congestion.strength"


def test_bad_actions_are_a_config_error_naming_actions():
    env = envs.parallel_env(ENV_CFG, agents=2)
    env.reset(seed=0)
    with pytest.raises(ConfigError) as info:
        env.step({"agent_0": 0, "agent_1": 99})
    assert info.value.field == "actions" and "took action 99" in info.value.message
    vec = envs.vector_env(ENV_CFG, agents=2)
    vec.reset(seed=0)
    with pytest.raises(ConfigError) as info:
        vec.step(np.array([0.5, 1.0]))
    assert info.value.field == "actions"


def test_an_unknown_key_with_brackets_is_named_whole():
    """Regression guard for the union-member tags dropped from error locations
    (``list[float]``): a user's own key that looks like one is kept."""
    with pytest.raises(ConfigError) as info:
        load_config({"game": {**GAME, "x[1]": 2}})
    assert info.value.field == "game.x[1]" and "unknown field" in info.value.message
