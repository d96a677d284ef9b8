"""Road-network outputs: ``flows.csv``, the volume/capacity map, the report section.

The map draws every link as a segment from its tail to its head, coloured by
volume/capacity, from the ``_node`` file's coordinates when the game has them, else from a
spring layout of the graph (``networkx``, seeded: the same network always looks the same).
Two-way links are offset sideways so both directions show.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from crowdsteer import rundir

Array = np.ndarray


def write_flows(game: Any, flow: Array, cost: Array, toll: Array, path: Path) -> None:
    """``from,to,flow,cost,toll``: one row per link in the net file's order (1-based nodes;
    ``cost`` is the generalised cost the travellers face, tolls included; ``toll`` the
    meta-agent's toll in cost units)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["from", "to", "flow", "cost", "toll"])
    for i, j, x, c, t in zip(game.net.tail + 1, game.net.head + 1, flow, cost, toll):
        w.writerow([int(i), int(j), repr(float(x)), repr(float(c)), repr(float(t))])
    rundir.atomic_write(Path(path), buf.getvalue().encode())


def layout(game: Any) -> Array:
    """``(nodes, 2)`` positions: the game's coordinates, else a seeded spring layout."""
    if game.coords is not None and np.all(np.isfinite(game.coords)):
        return np.asarray(game.coords, dtype=float)
    import networkx as nx

    g = nx.Graph()
    g.add_nodes_from(range(game.net.nodes))
    g.add_edges_from(zip(game.net.tail.tolist(), game.net.head.tolist()))
    pos = nx.spring_layout(g, seed=0)
    return np.array([pos[k] for k in range(game.net.nodes)])


def draw_map(ax: Any, game: Any, ratio: Array, vmax: float, highlight: Array | None = None,
             title: str = "") -> Any:
    """Links coloured by ``ratio`` (volume/capacity) on ``ax``; ``highlight`` (bool ``(E,)``)
    draws those links thick and outlined (e.g. the tolled ones). Returns the collection."""
    from matplotlib.collections import LineCollection

    xy = layout(game)
    a, b = xy[game.net.tail], xy[game.net.head]
    d = b - a
    length = np.hypot(d[:, 0], d[:, 1])
    span = float(np.ptp(xy, axis=0).max()) or 1.0
    normal = np.stack([-d[:, 1], d[:, 0]], axis=1) / np.where(length > 0, length, 1)[:, None]
    shift = normal * 0.006 * span  # two-way links side by side
    segs = np.stack([a + shift, b + shift], axis=1)
    width = np.full(game.E, 1.4)
    if highlight is not None and highlight.any():
        ax.add_collection(LineCollection(segs[highlight], colors="black",
                                         linewidths=5.0, zorder=1))
        width[highlight] = 3.0
    lines = LineCollection(segs, array=ratio, cmap="turbo", linewidths=width, zorder=2)
    lines.set_clim(0.0, vmax)
    ax.add_collection(lines)
    ax.autoscale()
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    return lines


def map_png(game: Any, panels: list[tuple[str, Array]], path: Path,
            highlight: Array | None = None) -> Path:
    """One map per ``(title, flow)`` panel, on one volume/capacity colour scale."""
    from crowdsteer.report.plots import _save, plt

    ratios = [np.asarray(x, dtype=float) / game.net.capacity for _, x in panels]
    vmax = max(1.0, max(float(r.max()) for r in ratios))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 5.2), squeeze=False)
    for ax, (title, _), r in zip(axes[0], panels, ratios):
        lines = draw_map(ax, game, r, vmax, highlight, title)
    fig.colorbar(lines, ax=axes[0].tolist(), shrink=0.8, label="volume / capacity")
    return _save(fig, Path(path))


def write_solve(result: Any, out: Path) -> list[str]:
    """``crowdsteer solve`` on a network: flows.csv, summary.json, map.png; returns the
    names written."""
    game, sol = result.game, result.solution
    out = Path(out)
    toll = sol.toll if sol.toll is not None else np.zeros(game.E)
    write_flows(game, sol.flow, sol.cost, toll, out / "flows.csv")
    rundir.write_json(out / "summary.json", result.summary())
    map_png(game, [(f"equilibrium: TSTT {sol.total_travel_time:.6g}", sol.flow)],
            out / "map.png", highlight=toll != 0)
    return ["flows.csv", "summary.json", "map.png"]
