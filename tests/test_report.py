"""The HTML report of a meta-agent run, built from a hand-made run folder."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest

from crowdsteer.report.html import (
    read_run,
    relative_improvement,
    write_report,
    write_reproduction_plot,
)
from crowdsteer.report.plots import best_so_far

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DATA_URI = "data:image/png;base64,"

CONFIG = """seed: 0
objective: {name: kl}
note: "<script>alert('x')</script> & friends"
"""

RESULT = {
    "objective": {"name": "kl", "direction": "minimize"},
    "baseline": {"w": [0.0, 0.0], "objective": 0.8123, "kl": 0.8123, "welfare": -1.25,
                 "maxmin": None, "exploitability": 0.0042},
    "best": {"w": [0.75, -1.5], "objective": 0.2345, "kl": 0.2345, "welfare": -0.75,
             "maxmin": None, "exploitability": 0.0031, "trial": 2},
    "evaluations": 4,
    "iid_sample_kl": {"mean": 0.0125, "std": 0.001, "agents": 2000},
    "inner_iterations": 321,
    "learner": "qlearning",
    "modifier": "rbf",
    "optimiser": "tpe",
    "seconds": 12.5,
}

# trial 3 finished before trial 2 (parallel workers): the report orders by trial
CSV = """trial,state,J,J_std,kl,welfare,maxmin,exploitability,seconds,error,w_0,w_1
0,COMPLETE,0.61,0.01,0.61,-1.1,,0.004,1.0,,0.1,0.2
1,FAIL,,,,,,,0.5,DivergenceError: NaN in mu at t<3 & beyond,5.0,5.0
3,COMPLETE,0.4,0.02,0.4,-0.9,,0.0035,1.1,,0.5,-1.0
2,COMPLETE,0.2345,0.01,0.2345,-0.75,,0.0031,1.2,,0.75,-1.5
"""

T, H, W = 3, 4, 5


def make_run(tmp_path: Path, missing: tuple[str, ...] = (), grid: bool = True,
             horizon: int = T) -> Path:
    """A run folder as the meta-agent writes it, without the files named in ``missing``."""
    rng = np.random.default_rng(0)
    shape = (horizon, H, W) if grid else (horizon, H * W)

    def dist() -> np.ndarray:
        a = rng.random(shape)
        return a / a.reshape(horizon, -1).sum(axis=1).reshape((horizon,) + (1,) * (a.ndim - 1))

    files = {
        "target.npy": dist(), "baseline_mu.npy": dist(), "best_mu.npy": dist(),
        "best_theta.npy": rng.normal(size=shape),
    }
    run = tmp_path / "run"
    run.mkdir()
    (run / "result.json").write_text(json.dumps(RESULT))
    for name, arr in files.items():
        if name not in missing:
            np.save(run / name, arr)
    if "evaluations.csv" not in missing:
        (run / "evaluations.csv").write_text(CSV)
    if "config.yaml" not in missing:
        (run / "config.yaml").write_text(CONFIG)
    return run


def images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)",
                                                     page)]


def assert_self_contained(page: str) -> None:
    # every src is a data URI; no links, stylesheets, scripts or CSS urls to fetch
    assert all(src.startswith(DATA_URI) for src in re.findall(r'src="([^"]*)"', page))
    assert not re.search(r"(href|src)\s*=\s*[\"']?\s*(https?:)?//", page, re.I)
    assert not re.search(r"url\(|@import|<link|<script", page, re.I)
    assert "http" not in page  # nothing in this page's input mentions http at all


@pytest.mark.parametrize(("missing", "n_images"), [
    ((), 5),                               # distributions, best - target, J trace,
                                           # best weights, modifier
    (("target.npy",), 4),                  # two distribution rows, no difference map
    (("best_theta.npy",), 4),
    (("evaluations.csv",), 4),
    (("target.npy", "baseline_mu.npy", "best_mu.npy"), 3),
    (("config.yaml",), 5),
])
def test_report_sections_follow_the_files(tmp_path, missing, n_images):
    run = make_run(tmp_path, missing)
    out = write_report(run)
    assert out == run / "report.html" and out.is_file()
    page = out.read_text()
    assert page.count(DATA_URI) == n_images
    pngs = images(page)
    assert len(pngs) == n_images and all(p.startswith(PNG_MAGIC) for p in pngs)
    assert_self_contained(page)
    assert ("<h2>Config</h2>" in page) == ("config.yaml" not in missing)
    assert ("Failed evaluations" in page) == ("evaluations.csv" not in missing)
    assert ("The reward modifier" in page) == ("best_theta.npy" not in missing)


def test_report_shows_baseline_and_best(tmp_path):
    page = write_report(make_run(tmp_path)).read_text()
    for text in ("kl (minimize)", "qlearning", "rbf", "tpe"):
        assert text in page
    summary = page[page.index('<table class="summary">'):]
    summary = summary[:summary.index("</table>")]
    # objective and kl: 0.8123 -> 0.2345, (0.8123 - 0.2345) / 0.8123 = +71.1%
    assert "<td>0.8123</td><td>0.2345</td><td>+71.1%</td>" in summary
    assert "<th>kl</th>" not in summary  # same numbers as J = kl: one row, not two
    # welfare is maximised: -1.25 -> -0.75 is (-0.75 + 1.25) / 1.25 = +40.0%
    assert "<td>-1.25</td><td>-0.75</td><td>+40.0%</td>" in summary
    # exploitability is a distance to equilibrium: its change is said in words
    assert "<td>0.0042</td><td>0.0031</td><td>fell by 0.0011: nearer equilibrium</td>" in summary
    # maxmin is null in both: shown as n/a, not as a number
    assert "<th>maxmin</th><td>n/a</td><td>n/a</td><td>n/a</td>" in summary
    assert "[0.75, -1.5]" in page
    assert "KL of 2000 agents drawn iid from the target" in page and "0.0125" in page
    assert "It is not a floor" in page


def test_report_escapes_config_and_errors(tmp_path):
    page = write_report(make_run(tmp_path)).read_text()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; friends" in page
    assert "<script>" not in page
    # the failed trial is listed with its error, escaped
    assert "DivergenceError: NaN in mu at t&lt;3 &amp; beyond" in page
    assert "Failed evaluations (1 of 4)" in page


def test_report_from_result_json_alone(tmp_path):
    run = tmp_path / "bare"
    run.mkdir()
    (run / "result.json").write_text(json.dumps(RESULT))
    page = write_report(run).read_text()
    assert page.count(DATA_URI) == 1 and "The best weights" in page  # from best.w alone
    assert "<td>0.8123</td><td>0.2345</td>" in page
    assert_self_contained(page)


def test_report_of_minimal_result(tmp_path):
    """Keys may be missing or null (non-finite floats are saved as null)."""
    run = tmp_path / "min"
    run.mkdir()
    (run / "result.json").write_text(json.dumps(
        {"objective": {"name": "welfare", "direction": "maximize"},
         "baseline": {"objective": None}, "best": {"objective": 1.5}}))
    page = write_report(run).read_text()
    assert "welfare (maximize)" in page
    assert "<td>n/a</td><td>1.5</td><td>n/a</td>" in page
    assert "iid" not in page  # no iid_sample_kl (exact learner): nothing to say about it


def test_report_without_result_json_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="result.json"):
        write_report(tmp_path)


def test_report_of_non_grid_game(tmp_path):
    """``(T, n)`` distributions are drawn as bars of the last step (the modifier as strips)."""
    page = write_report(make_run(tmp_path, grid=False)).read_text()
    assert page.count(DATA_URI) == 4 and "bar chart of the distributions" in page


def test_report_of_long_horizon_shows_some_steps(tmp_path):
    page = write_report(make_run(tmp_path, horizon=30)).read_text()
    assert page.count(DATA_URI) == 5
    assert "Showing 12 of 30 steps" in page


def test_evaluations_are_read_in_trial_order(tmp_path):
    ev = read_run(make_run(tmp_path)).evaluations
    assert ev.trial.tolist() == [0, 1, 2, 3]
    assert ev.state == ("COMPLETE", "FAIL", "COMPLETE", "COMPLETE")
    np.testing.assert_array_equal(ev.J, [0.61, np.nan, 0.2345, 0.4])
    np.testing.assert_array_equal(ev.w[2], [0.75, -1.5])
    assert np.isnan(ev.maxmin).all()


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_best_so_far_matches_a_plain_loop(direction):
    J = np.random.default_rng(1).normal(size=50)
    J[[0, 7, 8, 30]] = np.nan  # failures
    better = (lambda a, b: a < b) if direction == "minimize" else (lambda a, b: a > b)
    expected, best = [], np.nan
    for j in J:
        if not np.isnan(j) and (np.isnan(best) or better(j, best)):
            best = j
        expected.append(best)
    np.testing.assert_array_equal(best_so_far(J, direction), expected)


def test_relative_improvement_signs():
    assert relative_improvement(0.8, 0.2, "minimize") == pytest.approx(0.75)
    assert relative_improvement(0.8, 1.0, "minimize") == pytest.approx(-0.25)
    assert relative_improvement(-2.0, -1.0, "maximize") == pytest.approx(0.5)
    assert np.isnan(relative_improvement(0.0, 1.0, "maximize"))
    assert np.isnan(relative_improvement(None, 1.0, "maximize"))


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_reproduction_plot(tmp_path, direction):
    rng = np.random.default_rng(2)
    curves = [np.exp(-rng.random(n).cumsum()) for n in (20, 25, 30)]
    curves[1][[0, 4]] = np.nan  # a run whose first evaluation failed
    out = write_reproduction_plot(curves, tmp_path / "repro.png", "J (kl)", direction)
    assert out.read_bytes().startswith(PNG_MAGIC)


def test_reproduction_plot_needs_a_curve(tmp_path):
    with pytest.raises(ValueError, match="at least one"):
        write_reproduction_plot([], tmp_path / "repro.png", "J", "minimize")
