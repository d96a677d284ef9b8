"""Matplotlib figures (Agg backend: no screen needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.colors
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from crowdsteer.report.labels import at_bound  # noqa: E402

Array = np.ndarray


def _save(fig: "plt.Figure", path: Path) -> Path:
    """Write ``fig`` as a PNG and free it."""
    path = Path(path)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def heatmap_grid(rows: Sequence[tuple[str, Array]], path: Path, title: str | None = None,
                 cmap: str = "viridis", shared_scale: bool = True, label: str = "",
                 scale: str = "linear") -> Path:
    """One row of heat maps per entry of ``rows``, one column per time step.

    Parameters
    ----------
    rows
        ``(label, array)`` pairs; each array is ``(T, height, width)`` (or ``(T, n)`` for
        games without a grid, drawn as a 1-row strip).
    path
        Where to write the PNG.
    label
        What the colour bar measures.
    scale
        ``linear``, ``log`` or ``auto`` (see :func:`choose_scale`).
    """
    rows = [(name, _as_grid(np.asarray(a, dtype=float))) for name, a in rows]
    T = max(a.shape[0] for _, a in rows)
    vmax = max(float(np.nanmax(a)) for _, a in rows) if shared_scale else None
    vmin = min(float(np.nanmin(a)) for _, a in rows) if shared_scale else None
    return _heatmaps(rows, path, range(T), title=title, cmap=cmap, vmin=vmin, vmax=vmax,
                     label=label, scale=scale)


def heatmap_columns(rows: Sequence[tuple[str, Array]], path: Path, times: Sequence[int],
                    title: str | None = None, cmap: str = "viridis",
                    vmin: float | None = None, vmax: float | None = None, label: str = "",
                    scale: str = "linear") -> Path:
    """Like :func:`heatmap_grid`, but only the 0-based time steps ``times``, on fixed limits.

    Columns are labelled with their true step ``t = times[k] + 1``, so a long horizon can be
    shown at a few chosen steps (see :func:`select_times`).
    """
    rows = [(name, _as_grid(np.asarray(a, dtype=float))) for name, a in rows]
    return _heatmaps(rows, path, list(times), title=title, cmap=cmap, vmin=vmin, vmax=vmax,
                     label=label, scale=scale)


def select_times(T: int, max_columns: int) -> Array:
    """At most ``max_columns`` 0-based steps out of ``T``, evenly spaced, first and last kept.

    >>> select_times(4, 6).tolist()
    [0, 1, 2, 3]
    >>> select_times(100, 5).tolist()
    [0, 25, 50, 74, 99]
    """
    if T <= max_columns:
        return np.arange(T)
    return np.unique(np.round(np.linspace(0, T - 1, max_columns)).astype(int))


CONCENTRATED = 20.0
"""A non-negative map is drawn on a log scale when its largest value exceeds this many times
its 90th percentile (most cells would be the lowest colour on a linear scale)."""
LOG_RANGE = 1e-4
"""A log scale spans this fraction of the largest value; smaller values get its lowest colour."""


def choose_scale(values: Array) -> str:
    """``log`` for non-negative values whose mass is concentrated in a few cells, else
    ``linear``.

    >>> choose_scale(np.r_[np.full(99, 1e-4), 1.0]), choose_scale(np.linspace(0, 1, 100))
    ('log', 'linear')
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0 or v.min() < 0 or v.max() <= 0:
        return "linear"
    return "log" if v.max() > CONCENTRATED * np.percentile(v, 90) else "linear"


def _norm(scale: str, vmin: float | None, vmax: float | None, values: Array) -> Any:
    if scale == "auto":
        scale = choose_scale(values)
    if scale != "log":
        return matplotlib.colors.Normalize(vmin=vmin, vmax=vmax), False
    top = float(np.nanmax(values)) if vmax is None else vmax
    return matplotlib.colors.LogNorm(vmin=top * LOG_RANGE, vmax=top, clip=True), True


def _heatmaps(rows: Sequence[tuple[str, Array]], path: Path, times: Sequence[int],
              title: str | None, cmap: str, vmin: float | None, vmax: float | None,
              label: str = "", scale: str = "linear") -> Path:
    """Draw ``(label, (T, h, w))`` rows at the 0-based steps ``times``: ticks on the grid's
    rows and columns, a labelled colour bar per row, panels about 300 px wide."""
    times = list(times)
    n, C = len(rows), len(times)
    values = np.concatenate([a.ravel() for _, a in rows])
    norm, log = _norm(scale, vmin, vmax, values)
    h, w = rows[0][1].shape[1:]
    aspect = min(max(h / max(w, 1), 0.25), 2.0)
    fig, axes = plt.subplots(n, C, figsize=(3.3 * C + 1.2, 3.3 * aspect * n + 0.7),
                             squeeze=False)
    strip = h == 1
    for r, (name, a) in enumerate(rows):
        im = None
        for c, t in enumerate(times):
            ax = axes[r, c]
            if t >= a.shape[0]:
                ax.axis("off")
                continue
            im = ax.imshow(a[t], cmap=cmap, norm=norm, interpolation="nearest",
                           aspect="auto" if strip else "equal")
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(6, integer=True))
            if strip:
                ax.set_yticks([])
            else:
                ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(6, integer=True))
            ax.tick_params(labelsize=7)
            if r == 0 and C > 1:
                ax.set_title(f"t = {t + 1}", fontsize=10)
            if r == n - 1:
                ax.set_xlabel("state" if strip else "column", fontsize=8)
            if c == 0:
                ax.set_ylabel(name if strip else f"{name}\nrow", fontsize=9)
        if im is not None:
            bar = fig.colorbar(im, ax=list(axes[r]), shrink=0.85)
            bar.set_label(label + (" (log scale)" if log else ""), fontsize=8)
            bar.ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title + (f"; below {LOG_RANGE:g} x the largest value: the darkest colour"
                              if log else ""), fontsize=10)
    return _save(fig, path)


def _as_grid(a: Array) -> Array:
    if a.ndim == 2:  # (T, n): draw as a strip
        return a[:, None, :]
    return a


def bar_chart(series: Sequence[tuple[str, Array]], names: Sequence[str], path: Path,
              ylabel: str, title: str | None = None) -> Path:
    """Grouped bars: one group per name, one bar per ``(label, (len(names),) values)``."""
    k = len(series)
    x = np.arange(len(names))
    width = 0.8 / max(k, 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.5 * len(names) * max(k, 2) / 2 + 2), 3.8))
    for i, (label, v) in enumerate(series):
        ax.bar(x + (i - (k - 1) / 2) * width, np.asarray(v, dtype=float), width, label=label)
    ax.set_xticks(x)
    rotate = max((len(n) for n in names), default=0) * len(names) > 60
    ax.set_xticklabels(names, rotation=30 if rotate else 0, ha="right" if rotate else "center",
                       fontsize=8)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    if k > 1:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def weight_bars(w: Array, names: Sequence[str], path: Path, bounds: Sequence[float] | None,
                title: str | None = None) -> Path:
    """The best weights as horizontal bars named by their terms; a weight within 1% of the
    box's width from a bound is drawn red and marked ``at bound``."""
    w = np.asarray(w, dtype=float)
    at = at_bound(w, bounds)
    fig, ax = plt.subplots(figsize=(6.4, 0.32 * len(w) + 1.2))
    y = np.arange(len(w))[::-1]
    ax.barh(y, w, color=np.where(at, "tab:red", "tab:blue"))
    ax.set_yticks(y)
    ax.set_yticklabels([f"{n}  (at bound)" if a else n for n, a in zip(names, at)], fontsize=8)
    if bounds is not None:
        for b in bounds:
            ax.axvline(b, ls="--", lw=1, color="tab:gray")
    ax.axvline(0, lw=0.8, color="black")
    ax.set_xlabel("weight (dashed: the bounds)")
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def line_plot(series: Sequence[tuple[str, Array, Array]], path: Path, xlabel: str, ylabel: str,
              title: str | None = None, logy: bool = False,
              bands: Sequence[tuple[Array, Array, Array]] | None = None) -> Path:
    """Lines ``(label, x, y)``; optional shaded ``(x, lo, hi)`` bands, one per line."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for i, (label, x, y) in enumerate(series):
        (line,) = ax.plot(x, y, label=label, lw=1.6)
        if bands is not None and i < len(bands):
            bx, lo, hi = bands[i]
            ax.fill_between(bx, lo, hi, color=line.get_color(), alpha=0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("symlog", linthresh=1e-4)
    if title:
        ax.set_title(title, fontsize=10)
    if len(series) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def modifier_heatmap(theta: Array, path: Path, title: str | None = None,
                     times: Sequence[int] | None = None,
                     label: str = "paid on landing (reward units)") -> Path:
    """The modifier field ``Theta`` as heat maps on a diverging scale centred at 0.

    Parameters
    ----------
    theta
        ``(T, height, width)`` (or ``(T, n)``, drawn as strips).
    path
        Where to write the PNG.
    times
        0-based steps to draw; all by default.

    Red is a bonus, blue a toll; the scale is symmetric, ``[-max|Theta|, max|Theta|]``, so
    white is exactly zero.
    """
    theta = _as_grid(np.asarray(theta, dtype=float))
    finite = np.abs(theta[np.isfinite(theta)])
    limit = float(finite.max()) if finite.size else 0.0
    limit = limit if limit > 0 else 1.0  # an all-zero field still gets a valid scale
    times = range(theta.shape[0]) if times is None else times
    return _heatmaps([("Theta", theta)], path, list(times), title=title, cmap="RdBu_r",
                     vmin=-limit, vmax=limit, label=label)


def best_so_far(J: Array, direction: str) -> Array:
    """Running best of ``J`` (``(n,)``, NaN for failed evaluations), NaN until the first value.

    >>> best_so_far(np.array([np.nan, 3.0, 1.0, np.nan, 2.0]), "minimize").tolist()
    [nan, 3.0, 1.0, 1.0, 1.0]
    >>> best_so_far(np.array([1.0, 3.0, 2.0]), "maximize").tolist()
    [1.0, 3.0, 3.0]
    """
    J = np.asarray(J, dtype=float)
    if direction not in ("minimize", "maximize"):
        raise ValueError(f"direction must be 'minimize' or 'maximize', not {direction!r}")
    # fmin/fmax skip NaN, so a failed evaluation carries the best forward
    ufunc = np.fmin if direction == "minimize" else np.fmax
    return ufunc.accumulate(J) if J.size else J


def objective_trace(J: Array, path: Path, direction: str, ylabel: str,
                    baseline: float | None = None, floor: float | None = None,
                    best_index: int | None = None, logy: bool = False,
                    title: str | None = None, trials: Array | None = None,
                    floor_label: str = "N iid agents from the target") -> Path:
    """Each evaluation's ``J`` as a point and the best so far as a line, against its trial
    number (``0``: the baseline), as in ``evaluations.csv`` and the run's output.

    Parameters
    ----------
    J
        ``(n,)`` objective per evaluation in order; NaN marks a failed evaluation (drawn as a
        red cross on the x axis).
    direction
        ``minimize`` or ``maximize``: which way "best" goes.
    baseline
        ``J`` with the modifier off (``w = 0``), drawn as a dotted horizontal line.
    floor
        A reference level drawn dashed: the KL of as many agents drawn iid from the target.
    best_index
        0-based position of the reported best evaluation, drawn as a star.
    logy
        Log scale; the caller checks every drawn value is positive.
    trials
        ``(n,)`` trial numbers of the evaluations (default ``0 .. n - 1``).
    """
    J = np.asarray(J, dtype=float)
    x = np.arange(J.size) if trials is None else np.asarray(trials)
    ok = np.isfinite(J)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.plot(x[ok], J[ok], "o", ms=3.5, alpha=0.55, color="tab:blue", label="evaluation")
    ax.plot(x, best_so_far(J, direction), "-", lw=1.8, color="tab:blue", drawstyle="steps-post",
            label="best so far")
    if baseline is not None and np.isfinite(baseline):
        ax.axhline(baseline, ls=":", lw=1.4, color="tab:gray", label="baseline (w = 0)")
    if floor is not None and np.isfinite(floor):
        ax.axhline(floor, ls="--", lw=1.2, color="tab:red", label=floor_label)
    if best_index is not None and 0 <= best_index < J.size and ok[best_index]:
        ax.plot([x[best_index]], [J[best_index]], "*", ms=13, color="tab:orange", mec="black",
                mew=0.6, label="best", zorder=5)
    if not ok.all():
        # failures have no J: mark them on the x axis, whatever the y scale
        ax.plot(x[~ok], np.zeros((~ok).sum()), "x", color="tab:red", ms=6, clip_on=False,
                transform=ax.get_xaxis_transform(), label="failed", zorder=5)
    if logy:
        ax.set_yscale("log")
        lo, hi = ax.get_ylim()
        if hi < 10 * lo:  # within one decade the default labels read "6 x 10^0": say "6"
            plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(plain)
    ax.set_xlabel("trial (0: the baseline, w = 0)")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def write_reproduction_plot(curves: Sequence[Array], path: Path, label: str,
                            direction: str) -> Path:
    """Mean best-so-far curve over several runs, with a shaded min-max band.

    Parameters
    ----------
    curves
        One ``(n_k,)`` array of per-evaluation ``J`` per run (NaN for failed evaluations);
        lengths may differ. At evaluation ``i`` the mean and band are taken over the runs that
        have a best-so-far value there (a run that stopped early, or has not yet finished an
        evaluation, drops out).
    path
        Where to write the PNG.
    label
        What ``J`` is, for the y axis (e.g. ``"J (kl)"``).
    direction
        ``minimize`` or ``maximize``.

    The y axis is logarithmic (``symlog``) when every value is positive and they span at
    least two decades, as KL curves do.
    """
    if not curves:
        raise ValueError("write_reproduction_plot needs at least one curve")
    n = max(len(c) for c in curves)
    best = np.full((len(curves), n), np.nan)
    for k, c in enumerate(curves):
        best[k, :len(c)] = best_so_far(np.asarray(c, dtype=float), direction)
    ok = np.isfinite(best)
    count = ok.sum(axis=0)
    has = count > 0
    mean = np.where(has, np.where(ok, best, 0.0).sum(axis=0) / np.maximum(count, 1), np.nan)
    lo = np.where(has, np.where(ok, best, np.inf).min(axis=0), np.nan)
    hi = np.where(has, np.where(ok, best, -np.inf).max(axis=0), np.nan)
    values = best[ok]
    logy = bool(values.size and values.min() > 0 and values.max() >= 100 * values.min())
    x = np.arange(n)  # trial numbers, 0 the baseline, as in evaluations.csv
    runs = f"{len(curves)} run" + ("s" if len(curves) != 1 else "")
    return line_plot([(label, x, mean)], path, xlabel="trial (0: the baseline, w = 0)",
                     ylabel=label,
                     title=f"best so far: mean over {runs}, min-max band", logy=logy,
                     bands=[(x, lo, hi)])
