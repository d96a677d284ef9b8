"""Matplotlib figures (Agg backend: no screen needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

Array = np.ndarray


def heatmap_grid(rows: Sequence[tuple[str, Array]], path: Path, title: str | None = None,
                 cmap: str = "viridis", shared_scale: bool = True) -> Path:
    """One row of heat maps per entry of ``rows``, one column per time step.

    Parameters
    ----------
    rows
        ``(label, array)`` pairs; each array is ``(T, height, width)`` (or ``(T, n)`` for
        games without a grid, drawn as a 1-row strip).
    path
        Where to write the PNG.
    """
    rows = [(label, _as_grid(np.asarray(a, dtype=float))) for label, a in rows]
    T = max(a.shape[0] for _, a in rows)
    n = len(rows)
    fig, axes = plt.subplots(n, T, figsize=(2.6 * T + 0.8, 2.4 * n + 0.4), squeeze=False)
    vmax = max(float(np.nanmax(a)) for _, a in rows) if shared_scale else None
    vmin = min(float(np.nanmin(a)) for _, a in rows) if shared_scale else None
    for r, (label, a) in enumerate(rows):
        for t in range(T):
            ax = axes[r, t]
            ax.set_xticks([])
            ax.set_yticks([])
            if t >= a.shape[0]:
                ax.axis("off")
                continue
            im = ax.imshow(a[t], cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            if r == 0 and T > 1:
                ax.set_title(f"t = {t + 1}", fontsize=9)
            if t == 0:
                ax.set_ylabel(label, fontsize=9)
        fig.colorbar(im, ax=list(axes[r]), shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def _as_grid(a: Array) -> Array:
    if a.ndim == 2:  # (T, n): draw as a strip
        return a[:, None, :]
    return a


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
    path = Path(path)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path
