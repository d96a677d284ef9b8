"""A self-contained HTML report of a meta-agent run, built from its saved files only.

The report shows the pictures of the paper for one run folder:

1. a header (objective, learner, modifier, optimiser) and a table of the baseline
   (modifier off, ``w = 0``) against the best ``w`` found;
2. the agents' own desirability, then heat maps of the target ``M*_t``, the agents left
   alone and the agents under the best modifier, one row each and one column per time
   step, on one colour scale (log where the mass sits in a few cells), and the best minus
   the target; games that are not grids get bar charts named by their states instead;
3. ``J`` against trial number (``0``: the baseline, as in ``evaluations.csv``): every
   evaluation as a point, the best so far as a line, the baseline, and the KL of N agents
   drawn iid from the target when there is one;
4. the best weights named by their terms, those at a bound flagged; the modifier
   ``Theta`` at the best ``w`` on a diverging scale centred at 0;
5. the failed evaluations with their errors;
6. the resolved config.

Every file but ``result.json`` is optional; a section whose files are missing is left out.
The files are read as untrusted: a file that cannot be read as it should (not UTF-8, a
``.npy`` whose header declares more data than the file holds, an array of the wrong
dimension, a value of the wrong type in ``result.json``) is left out and listed under
"Files left out", never a traceback.
Figures are PNGs embedded as base64 data URIs and the CSS is inline, so ``report.html``
can be mailed or archived on its own.

Run folder contract (written by the meta-agent)::

    result.json        objective {name, direction}, baseline {...}, best {..., trial},
                       evaluations, inner_iterations, iid_sample_kl {mean, std, agents},
                       learner, modifier, optimiser, seconds; baseline and best may hold
                       validation {mean, std, seeds, values}, best may hold mean_field
                       {objective, kl, welfare, exploitability}
    evaluations.csv    trial,state,J,J_std,kl,welfare,maxmin,exploitability,converged,
                       net_transfer,seconds,error,w_0,...
    target.npy         (T, h, w) or (T, n)   the KL target M*
    baseline_mu.npy    (T, h, w) or (T, n)   agents left alone (w = 0)
    best_mu.npy        (T, h, w) or (T, n)   agents under the best modifier
    best_theta.npy     (T, h, w) or (T, n)   Theta at the best w
    reward.npy         (T, h, w) or (T, n)   the agents' desirability (or intrinsic reward)
    labels.json        state and weight names, the weights' bounds (report/labels.py)
    config.yaml        the resolved config
    network.npz        road networks: link ends, capacities, node positions, demand
"""

from __future__ import annotations

import base64
import csv
import errno
import html
import io
import json
import math
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crowdsteer import rundir
from crowdsteer.config_base import read_npy
from crowdsteer.errors import ConfigError
from crowdsteer.report import plots
from crowdsteer.report.labels import read_labels
from crowdsteer.report.network import report_section as network_section
from crowdsteer.report.plots import write_reproduction_plot

__all__ = ["Evaluations", "SavedRun", "read_run", "relative_improvement", "write_report",
           "write_reproduction_plot"]

MAX_COLUMNS = 12
"""Heat maps of longer horizons show this many evenly spaced steps (first and last kept)."""

METRICS = (("kl", "minimize"), ("welfare", "maximize"), ("maxmin", "maximize"),
           ("exploitability", "minimize"))
"""Summary metrics and which way is better (exploitability: lower is nearer equilibrium)."""

W_SHOWN = 12
"""Parameter vectors longer than this are shown truncated."""

ARRAY_NDIM = {"target.npy": (2, 3), "baseline_mu.npy": (2, 3), "best_mu.npy": (2, 3),
              "best_theta.npy": (2, 3), "reward.npy": (2, 3)}
"""Dimensions each saved array may have: ``(T, h, w)`` or ``(T, n)``."""


@dataclass(frozen=True)
class Evaluations:
    """The rows of ``evaluations.csv`` sorted by trial number; ``n`` rows, ``d`` parameters.

    Float columns hold NaN where the file has an empty cell (a failed evaluation has no ``J``).
    """

    trial: np.ndarray
    """``(n,)`` int trial numbers."""
    state: tuple[str, ...]
    """``COMPLETE``, ``FAIL``, ..."""
    J: np.ndarray
    """``(n,)`` objective."""
    J_std: np.ndarray
    kl: np.ndarray
    welfare: np.ndarray
    maxmin: np.ndarray
    exploitability: np.ndarray
    seconds: np.ndarray
    error: tuple[str, ...]
    w: np.ndarray
    """``(n, d)`` parameters (``w_0 .. w_{d-1}``)."""


@dataclass(frozen=True)
class SavedRun:
    """What a run folder holds; ``None`` for each optional file that is missing."""

    run_dir: Path
    result: dict[str, Any]
    evaluations: Evaluations | None
    target: np.ndarray | None
    baseline_mu: np.ndarray | None
    best_mu: np.ndarray | None
    best_theta: np.ndarray | None
    config_text: str | None
    problems: tuple[str, ...] = ()
    """One line per file (or part of one) left out because it could not be read."""
    reward: np.ndarray | None = None
    """``reward.npy``: the agents' own desirability (or intrinsic reward at ``w = 0``)."""
    labels: dict[str, Any] = field(default_factory=dict)
    """``labels.json`` (:func:`crowdsteer.report.labels.read_labels`): state and weight
    names, the weights' bounds, what ``reward`` is."""


def read_run(run_dir: Path) -> SavedRun:
    """Load a meta-agent run folder; only ``result.json`` is required.

    Optional files that cannot be read (not UTF-8, a corrupt or lying ``.npy`` header, an
    array of the wrong dimension, a CSV without a ``J`` column) are left out and described
    in :attr:`SavedRun.problems`.

    Raises
    ------
    FileNotFoundError
        ``run_dir/result.json`` is missing.
    ConfigError
        ``result.json`` is not UTF-8 text holding a JSON object.
    """
    run_dir = Path(run_dir)
    path = run_dir / "result.json"
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "no result.json here; is this a meta-agent run "
                                "folder?", str(run_dir))
    try:
        result = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), f"not UTF-8 text ({exc.reason} at byte {exc.start})") \
            from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ConfigError(str(path), f"not valid JSON ({exc})") from None
    if not isinstance(result, dict):
        raise ConfigError(str(path), "must hold a JSON object")
    problems: list[str] = []

    def array(name: str) -> np.ndarray | None:
        p = run_dir / name
        if not p.is_file():
            return None
        try:
            arr = read_npy(p)
        except Exception as exc:  # numpy raises several types for corrupt files
            problems.append(f"{name}: not a readable .npy array ({exc})")
            return None
        if arr.ndim not in ARRAY_NDIM[name] or arr.size == 0:
            problems.append(f"{name}: shape {arr.shape}; expected (T, height, width) or (T, n)")
            return None
        if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            problems.append(f"{name}: holds {arr.dtype} values; expected real numbers")
            return None
        return arr.astype(float)

    def text(name: str) -> str | None:
        p = run_dir / name
        if not p.is_file():
            return None
        try:
            return p.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})")
            return None

    road = _road_problem(run_dir)
    if road is not None:
        problems.append(road)
    csv_text = text("evaluations.csv")
    evaluations = None
    if csv_text is not None:
        try:
            evaluations = _read_evaluations(csv_text)
        except (ValueError, csv.Error) as exc:
            problems.append(f"evaluations.csv: {exc}")
    return SavedRun(
        run_dir=run_dir,
        result=result,
        evaluations=evaluations,
        target=array("target.npy"),
        baseline_mu=array("baseline_mu.npy"),
        best_mu=array("best_mu.npy"),
        best_theta=array("best_theta.npy"),
        config_text=text("config.yaml"),
        problems=tuple(problems),
        reward=array("reward.npy"),
        labels=read_labels(run_dir),
    )


ROAD = "the road network section"
_UNREADABLE = (OSError, ValueError, KeyError, IndexError, TypeError, EOFError,
               UnicodeDecodeError, zipfile.BadZipFile, csv.Error)
"""What numpy, zipfile and csv raise on damaged files."""


def _road_problem(run_dir: Path) -> str | None:
    """Why the road-network section of a run folder cannot be drawn (``None``: it can, or
    the folder holds no network): the first unreadable file, by name, else the files that
    do not fit together."""
    from crowdsteer.report.network import _Saved, _tstt_per_evaluation

    if not (run_dir / "network.npz").is_file():
        return None

    links = 0

    def network(p: Path) -> None:
        nonlocal links
        with np.load(p, allow_pickle=False) as data:
            links = _Saved(data).E

    def per_link(p: Path) -> None:
        if read_npy(p).size != links:
            raise ValueError(f"{read_npy(p).size} values for the {links} links of network.npz")

    for name, read in [("network.npz", network), ("baseline_mu.npy", per_link),
                       ("best_mu.npy", per_link), ("best_theta.npy", per_link),
                       ("evaluations.csv", _tstt_per_evaluation)]:
        if (run_dir / name).is_file():
            try:
                read(run_dir / name)
            except _UNREADABLE as exc:
                return f"{name}: cannot be read ({_reason(exc)}); {ROAD} is left out"
    try:
        network_section(run_dir, lambda draw, alt: "")
    except _UNREADABLE as exc:
        return (f"network.npz and the arrays beside it do not fit together ({_reason(exc)}); "
                f"{ROAD} is left out")
    return None


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]


def _read_evaluations(text: str) -> Evaluations:
    """Parse ``evaluations.csv`` text; ``ValueError`` if it has no ``J`` column."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = reader.fieldnames or []
    rows = list(reader)
    if "J" not in fields:
        raise ValueError(f"needs a J column; its header is {','.join(fields)!r}")
    w_cols = sorted((c for c in fields if c.startswith("w_") and c[2:].isdigit()),
                    key=lambda c: int(c[2:]))

    def trial_of(i: int, row: dict[str, Any]) -> int:
        try:
            k = int(row.get("trial") or "")
        except (TypeError, ValueError):
            return i
        return k if abs(k) < 2**62 else i  # it goes into an int64 array

    order = sorted(range(len(rows)), key=lambda i: trial_of(i, rows[i]))
    rows_sorted = [rows[i] for i in order]

    def col(name: str) -> np.ndarray:
        return np.array([_to_float(r.get(name)) for r in rows_sorted], dtype=float)

    def words(name: str, r: dict[str, Any]) -> str:
        v = r.get(name)
        return v.strip() if isinstance(v, str) else ""  # a short row gives None

    return Evaluations(
        trial=np.array([trial_of(i, rows[i]) for i in order], dtype=int),
        state=tuple(words("state", r).upper() for r in rows_sorted),
        J=col("J"), J_std=col("J_std"), kl=col("kl"), welfare=col("welfare"),
        maxmin=col("maxmin"), exploitability=col("exploitability"), seconds=col("seconds"),
        error=tuple(words("error", r) for r in rows_sorted),
        w=np.array([[_to_float(r.get(c)) for c in w_cols] for r in rows_sorted],
                   dtype=float).reshape(len(rows_sorted), len(w_cols)),
    )


def _to_float(x: Any) -> float:
    """A number, or NaN for ``None``, empty cells, JSON nulls and text."""
    if x is None or isinstance(x, bool):
        return math.nan
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def relative_improvement(baseline: Any, best: Any, direction: str) -> float:
    """Improvement of ``best`` over ``baseline`` as a fraction of ``|baseline|``; > 0 is better.

    .. math:: \\frac{J_{base} - J_{best}}{|J_{base}|} \\ \\text{(minimize)}, \\quad
              \\frac{J_{best} - J_{base}}{|J_{base}|} \\ \\text{(maximize)}

    NaN when either value is missing or the baseline is 0.

    >>> relative_improvement(2.0, 0.5, "minimize")
    0.75
    >>> relative_improvement(-2.0, -1.0, "maximize")
    0.5
    """
    a, b = _to_float(baseline), _to_float(best)
    if not (math.isfinite(a) and math.isfinite(b)) or a == 0:
        return math.nan
    sign = -1.0 if direction == "minimize" else 1.0
    return sign * (b - a) / abs(a)


def write_report(run_dir: Path) -> Path:
    """Write ``run_dir/report.html`` from the run folder's saved files; return its path.

    The page is self-contained: figures are base64 PNG data URIs and the CSS is inline.
    Sections whose files are missing are left out; a file that cannot be drawn gets a note
    in place of its figure rather than stopping the report.
    """
    run = read_run(run_dir)
    roads = (Path(run_dir) / "network.npz").is_file()  # a road network: maps, no grid panels
    sections: list[str] = [_header(run, roads)]
    with tempfile.TemporaryDirectory(prefix="crowdsteer-report-") as tmp:
        figure = _Figures(Path(tmp))
        grids = (None, None) if roads else (_distributions(run, figure),
                                            _modifier(run, figure))
        sections += [s for s in (grids[0], _trace(run, figure),
                                 None if roads else _weights(run, figure), grids[1],
                                 "" if any(p.endswith(ROAD + " is left out") for p in run.problems)
                                 else network_section(run_dir, figure),
                                 _failures(run), _config(run), _problems(run)) if s]
    out = Path(run_dir) / "report.html"
    title = f"crowdsteer run: {Path(run_dir).resolve().name}"
    rundir.atomic_write(out, _PAGE.format(title=_e(title), css=_CSS,  # never half a page
                                          body="\n".join(sections)).encode("utf-8"))
    return out


class _Figures:
    """Draw a figure into a scratch folder and return it as an ``<img>`` tag."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.k = 0

    def __call__(self, draw: Callable[[Path], Path], alt: str) -> str:
        self.k += 1
        try:
            with warnings.catch_warnings():  # a tampered value (1e308 on a log axis) may
                warnings.simplefilter("ignore")  # overflow inside matplotlib: no figure then
                path = draw(self.tmp / f"figure{self.k}.png")
        except (ValueError, IndexError, TypeError, OverflowError, RuntimeWarning) as exc:
            return f'<p class="note">could not draw {_e(alt)}: {_e(str(exc))}</p>'
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


# ------------------------------------------------------------------------------- sections


def _header(run: SavedRun, roads: bool = False) -> str:
    r = run.result
    obj = _dict(r.get("objective"))
    name, direction = str(obj.get("name", "?")), str(obj.get("direction", "minimize"))
    base, best = _dict(r.get("baseline")), _dict(r.get("best"))
    facts = [("objective", f"{name} ({direction})"), ("learner", r.get("learner")),
             ("modifier", r.get("modifier")), ("optimiser", r.get("optimiser")),
             ("evaluations", r.get("evaluations")), ("best trial", best.get("trial")),
             ("seconds", _fmt(r.get("seconds")))]
    iid = r.get("iid_sample_kl")
    if isinstance(iid, dict):  # model-free learners with a KL target
        facts.append((f"KL of {_str(iid.get('agents'))} agents drawn iid from the target",
                      _fmt(iid.get("mean"))))
    if r.get("inner_iterations") is not None:
        facts.append(("inner iterations", r.get("inner_iterations")))
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(_str(v))}</dd>" for k, v in facts)

    rows = [(f"objective J ({name})", direction, base.get("objective"), best.get("objective"))]
    rows += [(m, d, base.get(m), best.get(m)) for m, d in METRICS if (m in base or m in best)
             # road networks: no KL, and the worst-off pair's time is not a report row
             and not (roads and m in ("kl", "maxmin"))
             # J is often the metric itself: one row is enough
             and not (m == name and base.get(m) == base.get("objective")
                      and best.get(m) == best.get("objective"))]
    for label, key in (("J on fresh seeds (mean)", "validation"),):
        b0, b1 = (_dict(base.get(key)).get("mean"), _dict(best.get(key)).get("mean"))
        if b0 is not None or b1 is not None:
            seeds = len(_dict(best.get(key)).get("seeds") or [])
            rows.append((f"{label}, {seeds} seeds", direction, b0, b1))
    mf = _dict(best.get("mean_field"))
    if mf.get("objective") is not None:
        rows.append(("J at the exact equilibrium (mean field)", direction, None,
                     mf.get("objective")))
    body = "".join(
        f"<tr><th>{_e(label)}</th><td>{_fmt(b0)}</td><td>{_fmt(b1)}</td>"
        f"<td>{_change(label, b0, b1, d)}</td><td class=\"dir\">{_e(d)}</td></tr>"
        for label, d, b0, b1 in rows)
    table = ("<table class=\"summary\"><thead><tr><th></th><th>baseline (w = 0)</th>"
             "<th>best</th><th>improvement</th><th>better is</th></tr></thead>"
             f"<tbody>{body}</tbody></table>")
    ws = "".join(f"<tr><th>{label}</th><td><code>{_e(_vector(v.get('w')))}</code></td></tr>"
                 for label, v in (("baseline w", base), ("best w", best)) if "w" in v)
    return (f"<header><h1>{_e('crowdsteer run: ' + Path(run.run_dir).resolve().name)}</h1>"
            f"<dl class=\"facts\">{dl}</dl></header>"
            f"<section><h2>Baseline against best</h2>{table}"
            "<p class=\"note\">improvement = change as a fraction of |baseline|, "
            "positive when better.</p>" + _equilibrium_note(r, base, best)
            + (f"<table class=\"w\">{ws}</table>" if ws else "") + "</section>")


def _change(label: str, b0: Any, b1: Any, direction: str) -> str:
    """The improvement cell; exploitability is a distance to equilibrium, not a score, so its
    change is said in words (a rise from near 0 is no "-300%")."""
    if label != "exploitability":
        return _pct(relative_improvement(b0, b1, direction))
    a, b = _to_float(b0), _to_float(b1)
    if not (math.isfinite(a) and math.isfinite(b)):
        return "n/a"
    if b > a:
        return f"rose by {_fmt(b - a)}: further from equilibrium"
    return f"fell by {_fmt(a - b)}: nearer equilibrium" if b < a else "unchanged"


def _equilibrium_note(r: dict[str, Any], base: dict[str, Any], best: dict[str, Any]) -> str:
    """A paragraph saying what exploitability is and whether the outcomes are equilibria."""
    text = ("Exploitability is what one agent could gain by changing its own policy while "
            "the others keep theirs, certified with the game's model: 0 at an equilibrium. "
            "An outcome counts as an equilibrium (converged) when it is at most the "
            "learner's tolerance.")
    said = [f"{label}: {'converged' if v.get('converged') else 'NOT converged'}"
            for label, v in (("baseline", base), ("best", best)) if "converged" in v]
    if said:
        text += " " + "; ".join(said) + "."
    n, total = r.get("converged_evaluations"), r.get("evaluations")
    if n is not None:
        text += (f" {_str(n)} of {_str(total)} evaluations converged"
                 + ("; only those could be chosen as the best." if r.get("require_convergence",
                                                                      True)
                    else "; require_convergence was off, so any could be chosen."))
    return f'<p class="note">{_e(text)}</p>'


def _distributions(run: SavedRun, figure: _Figures) -> str:
    rows = [(label, a) for label, a in (("target M*", run.target),
                                        ("left alone (w = 0)", run.baseline_mu),
                                        ("best modifier", run.best_mu)) if a is not None]
    if not rows:
        return ""
    if all(np.ndim(a) == 2 for _, a in rows):
        return _action_bars(run, rows, figure)
    T = max(np.shape(a)[0] for _, a in rows)
    times = plots.select_times(T, MAX_COLUMNS)
    note = "" if len(times) == T else (
        f" Showing {len(times)} of {T} steps, evenly spaced.")
    values = np.concatenate([np.ravel(a) for _, a in rows]).astype(float)
    scale = plots.choose_scale(values)
    if scale == "log":
        note += (f" Most of the mass sits in a few cells, so the colours are on a log scale "
                 f"(values below {plots.LOG_RANGE:g} of the largest share the darkest colour).")

    def draw(path: Path) -> Path:
        if len(times) == T:
            return plots.heatmap_grid(rows, path, title="distribution of agents over states",
                                      label="share of agents", scale=scale)
        return plots.heatmap_columns(rows, path, times, title="distribution of agents over "
                                     "states", vmin=float(np.nanmin(values)),
                                     vmax=float(np.nanmax(values)), label="share of agents",
                                     scale=scale)

    parts = [figure(draw, "heat maps of the distributions")]
    reward = run.reward
    if reward is not None and np.shape(reward)[1:] == np.shape(rows[0][1])[1:]:
        what = run.labels.get("reward", "the agents' own reward")

        def draw_reward(path: Path) -> Path:
            return plots.heatmap_columns([("agents' reward", reward)], path,
                                         plots.select_times(np.shape(reward)[0], MAX_COLUMNS),
                                         title=f"what the agents like on their own: {what}",
                                         cmap="magma",
                                         label="reward")

        parts.insert(0, figure(draw_reward, "heat map of the agents' own reward"))
    target, best = run.target, run.best_mu
    if target is not None and best is not None and np.shape(target) == np.shape(best):
        diff = best - target
        limit = float(np.nanmax(np.abs(diff))) or 1.0

        def draw_diff(path: Path) -> Path:
            return plots.heatmap_columns([("best - target", diff)], path, times,
                                         title="best minus target: red too many agents, "
                                         "blue too few", cmap="RdBu_r", vmin=-limit,
                                         vmax=limit, label="share of agents")

        parts.append(figure(draw_diff, "heat map of best minus target"))
    return ("<section><h2>Where the agents go</h2>"
            "<p>What the agents like on their own, then one row per distribution, one column "
            "per time step, on one colour scale: "
            + ", ".join(_e(label) for label, _ in rows) + "." + note
            + (" Last, the best distribution minus the target." if len(parts) > 2 or (
                target is not None and best is not None and reward is None) else "")
            + "</p>" + "".join(parts) + "</section>")


def _action_bars(run: SavedRun, rows: list[tuple[str, np.ndarray]], figure: _Figures) -> str:
    """Games that are not grids: the share of agents per state at the last step, as bars
    named by the game's states (``player:action``, paths), the states no one is in left out."""
    S = np.shape(rows[0][1])[1]
    if any(np.shape(a)[1] != S for _, a in rows):
        return ""
    last = [(label, np.asarray(a, dtype=float)[-1]) for label, a in rows]
    names = run.labels.get("states")
    names = names if names is not None and len(names) == S else [f"state {i}" for i in range(S)]
    used = np.flatnonzero(np.any([np.nan_to_num(v) > 1e-12 for _, v in last], axis=0))
    if used.size == 0:
        return ""

    def draw(path: Path) -> Path:
        return plots.bar_chart([(label, v[used]) for label, v in last],
                               [names[i] for i in used], path, ylabel="share of agents",
                               title="where the agents end up (last step)")

    return ("<section><h2>Where the agents go</h2><p>The share of agents in each state at "
            "the last step (for players, <code>player:action</code>: the action taken), for "
            + ", ".join(_e(label) for label, _ in rows) + "; states no one is in are left "
            "out.</p>" + figure(draw, "bar chart of the distributions") + "</section>")


def _weights(run: SavedRun, figure: _Figures) -> str:
    w = _dict(run.result.get("best")).get("w")
    try:
        w = np.asarray(w, dtype=float).ravel()
    except (TypeError, ValueError):
        return ""
    if w.size == 0 or not np.all(np.isfinite(w)):
        return ""
    names = run.labels.get("weights")
    names = names if names is not None and len(names) == w.size else [
        f"w_{i}" for i in range(w.size)]
    bounds = run.labels.get("bounds")
    at = plots.at_bound(w, bounds)
    flagged = [n for n, a in zip(names, at) if a]
    warn = (f'<p class="warn">{len(flagged)} of {w.size} weights sit at a bound of the box '
            f"{_e(str(bounds))}: {_e(', '.join(flagged[:8]))}"
            f"{', ...' if len(flagged) > 8 else ''}. The best w may lie outside it: widen "
            "modifier.bounds and run again.</p>" if flagged else "")

    def draw(path: Path) -> Path:
        return plots.weight_bars(w, names, path, bounds, title="the best weights")

    return ("<section><h2>The best weights</h2><p>Each weight named by what it multiplies"
            + (" (power series: u the column, v the row, both scaled to [-1, 1])"
               if any(n == "u" or n.endswith(": u") for n in names) else "")
            + "; red bars sit at a bound.</p>" + warn
            + figure(draw, "bar chart of the best weights") + "</section>")


def _trace(run: SavedRun, figure: _Figures) -> str:
    ev = run.evaluations
    if ev is None or not np.isfinite(ev.J).any():
        return ""
    obj = _dict(run.result.get("objective"))
    name, direction = str(obj.get("name", "J")), str(obj.get("direction", "minimize"))
    if direction not in ("minimize", "maximize"):
        direction = "minimize"
    baseline = _to_float(_dict(run.result.get("baseline")).get("objective"))
    # a level of the empirical KL, so it belongs on the axis only when J is KL
    iid = run.result.get("iid_sample_kl")
    floor = _to_float(_dict(iid).get("mean")) if name == "kl" else math.nan
    best_trial = _dict(run.result.get("best")).get("trial")
    hits = (np.flatnonzero(ev.trial == best_trial) if isinstance(best_trial, int)
            and not isinstance(best_trial, bool) else [])
    best_index = int(hits[0]) if len(hits) else None
    drawn = np.concatenate([ev.J[np.isfinite(ev.J)], [v for v in (baseline, floor)
                                                      if math.isfinite(v)]])
    logy = name == "kl" and bool((drawn > 0).all())
    n_fail = int((~np.isfinite(ev.J)).sum())

    def draw(path: Path) -> Path:
        return plots.objective_trace(
            ev.J, path, direction, ylabel=f"J ({name})",
            baseline=baseline if math.isfinite(baseline) else None,
            floor=floor if math.isfinite(floor) else None, best_index=best_index, logy=logy,
            title=f"J against trial ({direction})", trials=ev.trial)

    fails = f" {n_fail} evaluation(s) without J are marked x on the axis." if n_fail else ""
    floor_note = (" The dashed line is the KL of as many agents drawn independently from the "
                  "target: what perfectly placed independent agents would score. It is not a "
                  "floor: agents that coordinate can do better." if math.isfinite(floor) else "")
    return ("<section><h2>The meta-agent's search</h2>"
            f"<p>Each evaluation's J as a point, the best so far as a line; the dotted line is "
            f"the baseline (w = 0).{floor_note}{fails}</p>"
            + figure(draw, "J against trial number") + "</section>")


def _modifier(run: SavedRun, figure: _Figures) -> str:
    theta = run.best_theta
    if theta is None:
        return ""
    T = np.shape(theta)[0] if np.ndim(theta) else 1
    times = plots.select_times(T, MAX_COLUMNS)
    note = "" if len(times) == T else f" Showing {len(times)} of {T} steps, evenly spaced."

    names = run.labels.get("states")
    if np.ndim(theta) == 2 and names is not None and len(names) == np.shape(theta)[1]:
        steps = plots.select_times(T, 6)  # not a grid: bars named by the states

        def draw(path: Path) -> Path:
            return plots.bar_chart([(f"t = {t + 1}", theta[t]) for t in steps], names, path,
                                   ylabel="paid on landing (reward units)",
                                   title="Theta at the best w")

        return ("<section><h2>The reward modifier</h2><p>What an agent is paid on landing "
                "in each state at the best w (negative: a toll).</p>"
                + figure(draw, "bar chart of the modifier") + "</section>")

    def draw(path: Path) -> Path:
        return plots.modifier_heatmap(theta, path, title="Theta at the best w", times=times)

    return ("<section><h2>The reward modifier</h2>"
            "<p>Theta at the best w: red adds to the agents' reward, blue takes from it; the "
            "scale is its own, symmetric about 0." + note + "</p>"
            + figure(draw, "heat map of the modifier") + "</section>")


def _failures(run: SavedRun) -> str:
    ev = run.evaluations
    if ev is None:
        return ""
    bad = [i for i, s in enumerate(ev.state) if s != "COMPLETE"]
    if not bad:
        return ""
    rows = "".join(
        f"<tr><td>{ev.trial[i]}</td><td>{_e(ev.state[i] or '?')}</td>"
        f"<td><code>{_e(_vector(ev.w[i]))}</code></td>"
        f"<td class=\"err\">{_e(ev.error[i] or '(no message)')}</td></tr>" for i in bad)
    return (f"<section><h2>Failed evaluations ({len(bad)} of {len(ev.state)})</h2>"
            "<table class=\"fails\"><thead><tr><th>trial</th><th>state</th><th>w</th>"
            f"<th>error</th></tr></thead><tbody>{rows}</tbody></table></section>")


def _problems(run: SavedRun) -> str:
    if not run.problems:
        return ""
    items = "".join(f"<li>{_e(p)}</li>" for p in run.problems)
    return ("<section><h2>Files left out</h2><p class=\"note\">These files of the run folder "
            f"could not be read and are not shown:</p><ul>{items}</ul></section>")


def _config(run: SavedRun) -> str:
    if run.config_text is None:
        return ""
    return f"<section><h2>Config</h2><pre>{_e(run.config_text)}</pre></section>"


# ----------------------------------------------------------------------------- formatting


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _dict(x: Any) -> dict[str, Any]:
    """``x`` if it is a JSON object, else ``{}`` (a tampered ``result.json`` may hold a
    string or a list where an object belongs)."""
    return x if isinstance(x, dict) else {}


def _fmt(x: Any) -> str:
    """A number to 5 significant digits; ``n/a`` for missing or non-finite values."""
    if isinstance(x, bool) or x is None:
        return "n/a"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    v = _to_float(x)
    if v != 0 and abs(v) < 1e-100:  # e.g. J = -1.7e-260 on spectrum: zero, said plainly
        return f"0 ({v:.2g})"
    return f"{v:.5g}" if math.isfinite(v) else "n/a"


def _pct(x: float) -> str:
    return f"{100 * x:+.1f}%" if math.isfinite(x) else "n/a"


def _str(v: Any) -> str:
    return "n/a" if v is None else str(v)


def _vector(w: Any) -> str:
    if w is None or isinstance(w, str):
        return "n/a" if w is None else w
    try:
        values = np.ravel(np.asarray(w, dtype=float))  # JSON nulls become NaN, shown as n/a
    except (TypeError, ValueError, OverflowError):  # text, objects or ragged lists
        return "n/a (not a list of numbers)"
    shown = ", ".join(_fmt(v) for v in values[:W_SHOWN])
    more = f", ... ({values.size} values)" if values.size > W_SHOWN else ""
    return f"[{shown}{more}]"


_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: .3em; }
h2 { font-size: 1.15em; border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.8em; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: .15em 1em; margin: 0; }
dl.facts dt { color: #666; }
dl.facts dd { margin: 0; font-weight: 600; }
table { border-collapse: collapse; margin: .6em 0; }
th, td { padding: .25em .8em; border-bottom: 1px solid #eee; text-align: left; }
table.summary td { text-align: right; font-variant-numeric: tabular-nums; }
table.summary td.dir { text-align: left; color: #666; }
td.err { color: #a00; font-family: ui-monospace, monospace; white-space: pre-wrap; }
img { max-width: 100%; height: auto; display: block; margin: .5em 0; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: 13px; }
.note { color: #666; font-size: .9em; }
.warn { color: #8a4b00; background: #fff4e0; padding: .4em .7em; border-left: 3px solid #e69500; }
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
{body}
</body>
</html>
"""
