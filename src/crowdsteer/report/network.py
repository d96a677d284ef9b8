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
    ids = game.net.ids
    for i, j, x, c, t in zip(ids[game.net.tail], ids[game.net.head], flow, cost, toll):
        w.writerow([int(i), int(j), repr(float(x)), repr(float(c)), repr(float(t))])
    rundir.atomic_write(Path(path), buf.getvalue().encode())


SPRING_NODES = 200
"""Up to this many nodes the synthetic layout is a seeded spring layout (under a second);
beyond, a spectral one (linear-time sparse eigenvectors: 0.04 s for a 2,500-node grid,
0.16 s for Berlin-Center's 12,981 nodes, where the spring layout took 19 s and hours)."""


def has_coordinates(game: Any) -> bool:
    """Whether the map can use the node file's coordinates (else its layout is synthetic)."""
    return game.coords is not None and bool(np.all(np.isfinite(game.coords)))


def layout(game: Any) -> Array:
    """``(nodes, 2)`` positions: the game's coordinates, else a synthetic layout (seeded
    spring layout for small networks, spectral beyond ``SPRING_NODES``)."""
    if has_coordinates(game):
        return np.asarray(game.coords, dtype=float)
    N = game.net.nodes
    if N > SPRING_NODES:
        return _spectral_layout(N, game.net.tail, game.net.head)
    import networkx as nx

    g = nx.Graph()
    g.add_nodes_from(range(N))
    g.add_edges_from(zip(game.net.tail.tolist(), game.net.head.tolist()))
    pos = nx.spring_layout(g, seed=0)
    return np.array([pos[k] for k in range(N)])


def _spectral_layout(N: int, tail: Array, head: Array) -> Array:
    """The Laplacian's second and third eigenvectors (shift-invert on the sparse matrix)."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import eigsh

    A = sp.coo_matrix((np.ones(tail.shape[0]), (tail, head)), shape=(N, N)).tocsr()
    A = ((A + A.T) > 0).astype(float)
    L = sp.diags(np.asarray(A.sum(axis=1)).ravel()) - A
    vals, vecs = eigsh(L.tocsc(), k=3, sigma=-1e-3, which="LM")
    return vecs[:, np.argsort(vals)[1:3]]


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


# ------------------------------------------------------------------ meta-agent runs


def save_network(game: Any, path: Path) -> None:
    """What the report needs to draw a network run without the TNTP files: link ends,
    capacities, node positions and the total demand (``network.npz``)."""
    buf = io.BytesIO()
    np.savez(buf, tail=game.net.tail, head=game.net.head, capacity=game.net.capacity,
             positions=layout(game), D=np.array(game.D))
    rundir.atomic_write(Path(path), buf.getvalue())


class _Saved:
    """A saved network, shaped like the game for :func:`draw_map`."""

    def __init__(self, data: Any) -> None:
        from types import SimpleNamespace

        self.net = SimpleNamespace(tail=data["tail"], head=data["head"],
                                   capacity=data["capacity"], nodes=data["positions"].shape[0])
        self.E = int(data["tail"].shape[0])
        self.coords = data["positions"]
        self.D = float(data["D"])


def report_section(run_dir: Path, figure: Any) -> str:
    """The report's road-network section: the map with the tolls set, volume/capacity
    before and after the tolls, TSTT against evaluation number ("" without
    ``network.npz``)."""
    import html

    from crowdsteer.report import plots

    run_dir = Path(run_dir)
    if not (run_dir / "network.npz").is_file():
        return ""
    with np.load(run_dir / "network.npz", allow_pickle=False) as data:
        game = _Saved(data)

    def load(name: str) -> Array | None:
        p = run_dir / name
        return np.load(p, allow_pickle=False).reshape(-1) if p.is_file() else None

    base, best, toll = load("baseline_mu.npy"), load("best_mu.npy"), load("best_theta.npy")
    parts = ["<section><h2>The road network</h2>"]
    if base is not None and best is not None:
        tolled = toll != 0 if toll is not None else None
        n = int(tolled.sum()) if tolled is not None else 0

        def draw(path: Path) -> Path:
            return map_png(game, [("left alone (no tolls)", base * game.D),
                                  (f"best tolls ({n} links, outlined)", best * game.D)],
                           path, highlight=tolled)

        parts.append("<p>Links coloured by volume/capacity at equilibrium, without tolls and "
                     "with the best tolls found; tolled links are drawn thick and outlined.</p>")
        parts.append(figure(draw, "network maps of volume over capacity"))
        if toll is not None and n:
            rows = "".join(f"<tr><td>{int(game.net.tail[e]) + 1} &rarr; "
                           f"{int(game.net.head[e]) + 1}</td><td>{toll[e]:.4g}</td>"
                           f"<td>{base[e] * game.D:.6g}</td><td>{best[e] * game.D:.6g}</td></tr>"
                           for e in np.flatnonzero(tolled))
            parts.append("<table><thead><tr><th>link</th><th>toll (cost units)</th>"
                         "<th>flow, no tolls</th><th>flow, tolls</th></tr></thead>"
                         f"<tbody>{rows}</tbody></table>")
    tstt = _tstt_per_evaluation(run_dir / "evaluations.csv")
    if tstt is not None and np.isfinite(tstt).any():
        def trace(path: Path) -> Path:
            return plots.objective_trace(tstt, path, "minimize", ylabel="TSTT",
                                         baseline=float(tstt[0]),
                                         title="total travel time against evaluation")

        parts.append("<p>Total travel time (tolls excluded) of every evaluation; the first is "
                     "the network left alone.</p>")
        parts.append(figure(trace, html.escape("TSTT against evaluation number")))
    parts.append("</section>")
    return "".join(parts)


def _tstt_per_evaluation(path: Path) -> Array | None:
    """``(n,)`` TSTT = -welfare per evaluation in trial order (NaN where it failed)."""
    if not path.is_file():
        return None
    rows = list(csv.DictReader(path.read_text().splitlines()))
    if not rows or "welfare" not in rows[0]:
        return None
    rows.sort(key=lambda r: int(r.get("trial") or 0))

    def value(r: dict) -> float:
        try:
            return -float(r["welfare"])
        except (TypeError, ValueError):
            return float("nan")

    return np.array([value(r) for r in rows])
