"""Road-network outputs: ``flows.csv``, ``summary.json``, GMNS/GeoJSON, maps, the report.

``crowdsteer solve`` on a network writes

``flows.csv``
    one row per link in the net file's order: ``link_id`` (1-based file order), ``from``,
    ``to`` (the file's node ids), ``capacity``, ``length``, ``free_flow_time``, the flow of
    every class (``flow_<class>``, when there are several) and ``flow`` (their total, PCE
    weighted), ``travel_time``, ``cost`` (the generalised cost the travellers face, tolls
    included), ``voc`` (volume / capacity) and ``toll`` (the meta-agent's toll, in cost
    units; at a system optimum the first-best tolls that make it the travellers' choice).
``summary.json``
    TSTT, SPTT, relative gap, average excess cost, total demand, vehicle-distance, with
    the units of the net file's ``<ORIGINAL HEADER>`` (else "units of the input").
``gmns/link.csv``, ``gmns/node.csv``
    the network and its flows in the General Modeling Network Specification's field names
    (``link_id, from_node_id, to_node_id, length, capacity, ...``), and
    ``network.geojson`` where the node file gives coordinates.
``map.png``
    links drawn from tail to head with width by flow and colour by volume/capacity, node
    ids on small networks; without a node file the layout is synthetic (seeded spring
    layout up to ``SPRING_NODES`` nodes, spectral beyond) and the map says so.

``crowdsteer run`` on a network adds ``flows_baseline.csv`` and ``flows_best.csv`` and the
share of the gap between the travellers' equilibrium and the system optimum that the
best tolls close (``result.json``'s ``network``).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from crowdsteer import rundir

Array = np.ndarray

LABELLED_NODES = 150
"""Maps of networks up to this many nodes carry the node ids."""


# ------------------------------------------------------------------ tables


def link_table(game: Any, x: Array, toll: Array | None) -> tuple[list[str], list[list]]:
    """``(header, rows)`` of ``flows.csv`` (see the module docstring) at the flows ``x``
    and tolls ``toll`` as the engines see them (``(E,)``; class by class with several
    classes)."""
    net = game.net
    x = np.asarray(x, dtype=float)
    toll = np.zeros(game.E) if toll is None else np.asarray(toll, dtype=float)
    names = getattr(game, "class_names", None)
    if names is None:
        flow, time = x, game.travel_time(x)
        extra_h, extra = ["cost"], [game.generalised_cost(x, toll)]
        tail_h, tail = ["toll"], [toll]
        first_h, first = [], []
    else:  # several classes: each class's flow (vehicles), cost and toll
        flow = game.total_flow(x)
        time = net.travel_time(flow)
        cost = game.per_class(game.generalised_cost(x, toll)) / game.classes.pce[:, None]
        first_h, first = [f"flow_{n}" for n in names], list(game.per_class(x))
        extra_h, extra = [f"cost_{n}" for n in names], list(cost)
        tail_h, tail = [f"toll_{n}" for n in names], list(game.per_class(toll))
    header = ["link_id", "from", "to", "capacity", "length", "free_flow_time", *first_h,
              "flow", "travel_time", *extra_h, "voc", *tail_h]
    ids = net.ids
    columns = [np.arange(1, net.E + 1), ids[net.tail], ids[net.head], net.capacity,
               net.length, net.free_flow_time, *first, flow, time, *extra,
               flow / net.capacity, *tail]
    rows = [[int(v) if k < 3 else repr(float(v)) for k, v in enumerate(row)]
            for row in zip(*columns)]
    return header, rows


def _csv(header: list[str], rows: list[list]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode()


def write_flows(game: Any, x: Array, toll: Array | None, path: Path) -> None:
    """Write ``flows.csv`` atomically."""
    rundir.atomic_write(Path(path), _csv(*link_table(game, x, toll)))


def link_flows(game: Any, x: Array) -> Array:
    """``(links,)`` link flows (PCE-weighted over the classes) of engine flows ``x``."""
    total = getattr(game, "total_flow", None)
    return np.asarray(x, dtype=float) if total is None else total(x)


def network_summary(game: Any, sol: Any, welfare: float | None = None) -> dict[str, Any]:
    """``summary.json`` of a network solve (no grid fields)."""
    from crowdsteer.games.tntp import units

    u = units(game.net)
    per_class = getattr(game, "per_class", None)
    vehicles = (np.asarray(sol.flow, dtype=float) if per_class is None  # not PCE-weighted
                else per_class(sol.flow).sum(axis=0))
    D = game.D
    sptt = sol.total_cost * (1.0 - sol.relative_gap)
    out = {
        "solved_for": "system_optimum" if getattr(sol, "system_optimum", False)
        else "equilibrium",
        "converged": sol.converged, "iterations": sol.iterations, "seconds": sol.seconds,
        "relative_gap": sol.relative_gap,
        "total_travel_time": sol.total_travel_time,
        "total_cost": sol.total_cost,
        "sptt": sptt,
        "average_excess_cost": (sol.total_cost - sptt) / D,
        "exploitability": sol.exploitability,
        "total_demand": D,
        "vehicle_distance": float(vehicles @ game.net.length),
        "links": game.E, "nodes": int(game.net.nodes), "zones": int(game.net.zones),
        "units": {
            "total_travel_time": f"vehicle x {u['time']}",
            "time": u["time"], "length": u["length"], "capacity": u["capacity"],
            "toll": u["toll"], "vehicle_distance": f"vehicle x {u['length']}",
            "total_demand": "trips (units of the input)",
            "cost": f"generalised cost, {u['time']}-equivalents",
        },
    }
    if welfare is not None:
        out["welfare"] = welfare
    gaps = getattr(game, "class_gaps", None)
    if per_class is not None:  # the costs of several classes are scaled by their PCE
        out["units"]["cost"] = f"generalised cost x PCE, {u['time']}-equivalents"
        out["units"]["average_excess_cost"] = (f"generalised cost x PCE per trip, "
                                               f"{u['time']}-equivalents")
    if gaps is not None:  # several classes: each certified by its own relative gap
        out["classes"] = {name: {"relative_gap": float(g), "trips": float(d.sum())}
                          for name, g, d in zip(game.class_names, gaps(sol.flow, sol.toll),
                                                game.classes.demands)}
    if getattr(sol, "system_optimum", False):
        out["note"] = ("the system optimum: the flows of least total travel time; its "
                       "relative gap certifies it in marginal social costs, and flows.csv's "
                       "toll column gives the first-best tolls that make it the equilibrium")
    return out


def solution_tolls(game: Any, sol: Any) -> Array:
    """The toll column of a solve: the meta-agent's tolls, or at a system optimum the
    first-best tolls ``x t'(x)`` less the fixed cost terms."""
    if getattr(sol, "system_optimum", False):
        return sol.flow * game.travel_time_derivative(sol.flow) - game.fixed_cost
    return np.zeros(game.E) if sol.toll is None else np.asarray(sol.toll, dtype=float)


def write_solve(result: Any, out: Path) -> list[str]:
    """``crowdsteer solve`` on a network: flows.csv, summary.json, GMNS (and GeoJSON), then
    map.png last (the numbers are on disk before any drawing); returns the names."""
    game, sol = result.game, result.solution
    out = Path(out)
    toll = solution_tolls(game, sol)
    write_flows(game, sol.flow, toll, out / "flows.csv")
    rundir.write_json(out / "summary.json", network_summary(game, sol, result.welfare))
    flow, link_toll = link_flows(game, sol.flow), _link_tolls(game, toll)
    names = ["flows.csv", "summary.json", *export_gmns(game, out, flow, link_toll)]
    what = "system optimum" if getattr(sol, "system_optimum", False) else "equilibrium"
    map_png(game, [(f"{what}: TSTT {sol.total_travel_time:.6g}", flow)], out / "map.png",
            highlight=link_toll != 0)
    return names + ["map.png"]


def _link_tolls(game: Any, toll: Array) -> Array:
    """``(links,)``: the toll on each link (the largest over the classes)."""
    per_class = getattr(game, "per_class", None)
    return np.asarray(toll, dtype=float) if per_class is None else per_class(toll).max(axis=0)


# ------------------------------------------------------------------ GMNS and GeoJSON


def export_gmns(game: Any, out: Path, flow: Array, toll: Array) -> list[str]:
    """``gmns/link.csv`` and ``gmns/node.csv`` (GMNS field names; ``vdf_*`` the BPR
    parameters, ``volume`` the flow), and ``network.geojson`` where coordinates exist;
    returns the names written."""
    net = game.net
    out = Path(out)
    (out / "gmns").mkdir(exist_ok=True)
    ids = net.ids
    link_header = ["link_id", "from_node_id", "to_node_id", "directed", "length", "capacity",
                   "free_speed", "toll", "vdf_fftt", "vdf_alpha", "vdf_beta", "link_type",
                   "volume", "voc"]
    links = [[e + 1, int(ids[i]), int(ids[j]), "true", *map(repr, map(float, row)), int(lt),
              repr(float(v)), repr(float(v / c))]
             for e, (i, j, row, lt, v, c) in enumerate(zip(
                 net.tail, net.head, np.stack([net.length, net.capacity, net.speed, toll,
                                               net.free_flow_time, net.b, net.power], 1),
                 net.link_type, flow, net.capacity))]
    rundir.atomic_write(out / "gmns" / "link.csv", _csv(link_header, links))
    xy = game.coords if has_coordinates(game) else None
    zone = np.arange(net.nodes) < net.zones
    nodes = [[int(ids[k]), *(["", ""] if xy is None else [repr(float(xy[k, 0])),
                                                          repr(float(xy[k, 1]))]),
              int(ids[k]) if zone[k] else ""] for k in range(net.nodes)]
    rundir.atomic_write(out / "gmns" / "node.csv",
                        _csv(["node_id", "x_coord", "y_coord", "zone_id"], nodes))
    names = ["gmns/link.csv", "gmns/node.csv"]
    if xy is not None:
        features = [{"type": "Feature", "geometry": {"type": "LineString", "coordinates": [
            [float(xy[i, 0]), float(xy[i, 1])], [float(xy[j, 0]), float(xy[j, 1])]]},
            "properties": {"link_id": e + 1, "from": int(ids[i]), "to": int(ids[j]),
                           "flow": float(flow[e]), "voc": float(flow[e] / net.capacity[e]),
                           "toll": float(toll[e])}}
            for e, (i, j) in enumerate(zip(net.tail, net.head))]
        rundir.atomic_write(out / "network.geojson", json.dumps(
            {"type": "FeatureCollection", "features": features}).encode())
        names.append("network.geojson")
    return names


# ------------------------------------------------------------------ maps

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


def draw_map(ax: Any, game: Any, values: Array, vmin: float, vmax: float,
             highlight: Array | None = None, title: str = "", flow: Array | None = None,
             cmap: str = "turbo", xy: Array | None = None) -> Any:
    """Links coloured by ``values`` (e.g. volume/capacity) on ``ax``, ``flow`` setting their
    width; ``highlight`` (bool ``(E,)``) outlines those links (e.g. the tolled ones). Node
    ids are written on networks of up to ``LABELLED_NODES`` nodes; a synthetic layout is
    said so. Returns the collection."""
    from matplotlib.collections import LineCollection

    xy = layout(game) if xy is None else xy
    a, b = xy[game.net.tail], xy[game.net.head]
    d = b - a
    length = np.hypot(d[:, 0], d[:, 1])
    span = float(np.ptp(xy, axis=0).max()) or 1.0
    normal = np.stack([-d[:, 1], d[:, 0]], axis=1) / np.where(length > 0, length, 1)[:, None]
    shift = normal * 0.006 * span  # two-way links side by side
    segs = np.stack([a + shift, b + shift], axis=1)
    if flow is not None and np.max(np.abs(flow)) > 0:
        width = 0.4 + 4.0 * np.abs(flow) / np.max(np.abs(flow))
    else:
        width = np.full(game.E, 1.4)
    if highlight is not None and highlight.any():
        ax.add_collection(LineCollection(segs[highlight], colors="black",
                                         linewidths=width[highlight] + 3.0, zorder=1))
    lines = LineCollection(segs, array=values, cmap=cmap, linewidths=width, zorder=2)
    lines.set_clim(vmin, vmax)
    ax.add_collection(lines)
    if game.net.nodes <= LABELLED_NODES:
        ids = getattr(game.net, "ids", np.arange(1, game.net.nodes + 1))
        for k in range(game.net.nodes):
            ax.annotate(str(int(ids[k])), xy[k], fontsize=6, ha="center", va="center",
                        zorder=3, bbox={"boxstyle": "round,pad=0.15", "fc": "white",
                                        "ec": "0.6", "lw": 0.4})
    if not getattr(game, "has_coords", has_coordinates(game)):
        ax.text(0.01, 0.01, "layout is synthetic (no node file): positions mean nothing",
                transform=ax.transAxes, fontsize=7, color="0.35")
    ax.autoscale()
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    return lines


def map_png(game: Any, panels: list[tuple[str, Array]], path: Path,
            highlight: Array | None = None) -> Path:
    """One map per ``(title, flow)`` panel, on one volume/capacity colour scale, link width
    by flow."""
    from crowdsteer.report.plots import _save, plt

    xy = layout(game)
    ratios = [np.asarray(x, dtype=float) / game.net.capacity for _, x in panels]
    vmax = max(1.0, max(float(r.max()) for r in ratios))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 5.2), squeeze=False)
    for ax, (title, x), r in zip(axes[0], panels, ratios):
        lines = draw_map(ax, game, r, 0.0, vmax, highlight, title, flow=x, xy=xy)
    fig.colorbar(lines, ax=axes[0].tolist(), shrink=0.8, label="volume / capacity")
    return _save(fig, Path(path))


def change_png(game: Any, base: Array, best: Array, path: Path,
               highlight: Array | None = None) -> Path:
    """The flow change ``best - base`` per link (red: more, blue: less), tolled links
    outlined."""
    from crowdsteer.report.plots import _save, plt

    change = np.asarray(best, dtype=float) - np.asarray(base, dtype=float)
    top = float(np.max(np.abs(change))) or 1.0
    fig, ax = plt.subplots(figsize=(6.2, 5.2))
    lines = draw_map(ax, game, change, -top, top, highlight,
                     "flow change made by the tolls (tolled links outlined)", flow=change,
                     cmap="coolwarm")
    fig.colorbar(lines, ax=ax, shrink=0.8, label="flow with tolls - flow without")
    return _save(fig, Path(path))


# ------------------------------------------------------------------ meta-agent runs


def gap_closed(tstt_baseline: float, tstt_best: float, tstt_so: float) -> float:
    """Share of the gap between the untolled equilibrium and the system optimum closed:
    ``(TSTT_UE - TSTT_best) / (TSTT_UE - TSTT_SO)`` (``nan`` when the gap is 0).

    >>> gap_closed(7.48e6, 7.2e6, 7.18e6)
    0.9333333333333333
    """
    gap = tstt_baseline - tstt_so
    return float((tstt_baseline - tstt_best) / gap) if gap > 0 else float("nan")


def run_outputs(s: Any, best_w: Array, baseline_mu: Array, best_mu: Array,
                best_exploitability: float, out: Path | None) -> dict[str, Any]:
    """After a network run: the system optimum, the share of the UE-to-SO gap closed,
    and (with ``out``) ``flows_baseline.csv`` and ``flows_best.csv``; returns the facts
    for ``result.json``'s ``network``."""
    from crowdsteer.errors import ConfigError

    game = s.game
    base = np.asarray(baseline_mu, dtype=float).reshape(-1) * game.D
    best = np.asarray(best_mu, dtype=float).reshape(-1) * game.D
    toll = np.asarray(s.modifier.theta(np.asarray(best_w)), dtype=float).reshape(-1)
    gap = getattr(s.config["learner"], "relative_gap", None) or 1e-6
    t_base, t_best = game.total_travel_time(base), game.total_travel_time(best)
    facts = {"tstt_baseline": t_base, "tstt_best": t_best,
             "relative_gap": float(best_exploitability * game.D
                                   / (best @ game.generalised_cost(best, toll))),
             "tolled_links": int(np.count_nonzero(_link_tolls(game, toll)))}
    try:
        so = game.system_optimum(min(gap, 1e-6))
    except ConfigError:  # several classes: no system optimum
        so = None
    if so is not None:
        facts.update({"tstt_system_optimum": so.total_travel_time,
                      "system_optimum_relative_gap": so.relative_gap,
                      "gap_closed": gap_closed(t_base, t_best, so.total_travel_time)})
    if out is not None:
        write_flows(game, base, None, Path(out) / "flows_baseline.csv")
        write_flows(game, best, toll, Path(out) / "flows_best.csv")
        if so is not None:
            rundir.save_npy(Path(out) / "system_optimum_flow.npy", so.flow)
    return facts


def save_network(game: Any, path: Path) -> None:
    """What the report needs to draw a network run without the TNTP files: link ends,
    node ids, capacities, node positions, whether they are real, the total demand
    (``network.npz``)."""
    buf = io.BytesIO()
    np.savez(buf, tail=game.net.tail, head=game.net.head, capacity=game.net.capacity,
             positions=layout(game), D=np.array(game.D), ids=game.net.ids,
             has_coords=np.array(has_coordinates(game)),
             pce=game.classes.pce if hasattr(game, "class_names") else np.ones(1))
    rundir.atomic_write(Path(path), buf.getvalue())


class _Saved:
    """A saved network, shaped like the game for :func:`draw_map`."""

    def __init__(self, data: Any) -> None:
        from types import SimpleNamespace

        n = data["positions"].shape[0]
        self.net = SimpleNamespace(tail=data["tail"], head=data["head"],
                                   capacity=data["capacity"], nodes=n,
                                   ids=data["ids"] if "ids" in data else np.arange(1, n + 1))
        self.E = int(data["tail"].shape[0])
        self.coords = data["positions"]
        self.has_coords = bool(data["has_coords"]) if "has_coords" in data else True
        self.D = float(data["D"])
        self.pce = data["pce"] if "pce" in data else np.ones(1)

    def links(self, v: Array | None, tolls: bool = False) -> Array | None:
        """``(E,)`` per link of a saved vector that is per class and link with several
        classes: PCE-weighted sum (flows) or largest (tolls)."""
        if v is None or v.shape[0] != self.pce.shape[0] * self.E or self.pce.shape[0] == 1:
            return v
        per = v.reshape(self.pce.shape[0], self.E)
        return per.max(axis=0) if tolls else self.pce @ per


def report_section(run_dir: Path, figure: Any) -> str:
    """The report's road-network section: TSTT without tolls, with the best tolls and at
    the system optimum with the share of the gap closed; the maps (flow width,
    volume/capacity colour, tolled links outlined) before and after, the map of the flow
    change; the tolls; TSTT against evaluation number with the SO line ("" without
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

    facts = _network_facts(run_dir)
    base, best = game.links(load("baseline_mu.npy")), game.links(load("best_mu.npy"))
    toll = game.links(load("best_theta.npy"), tolls=True)
    parts = ["<section><h2>The road network</h2>"]
    if facts:
        rows = [("total travel time, no tolls (user equilibrium)", facts.get("tstt_baseline")),
                ("total travel time, best tolls", facts.get("tstt_best")),
                ("total travel time, system optimum", facts.get("tstt_system_optimum")),
                ("share of the UE-to-SO gap closed", facts.get("gap_closed")),
                ("relative gap of the best tolls' equilibrium", facts.get("relative_gap")),
                ("tolled links", facts.get("tolled_links"))]
        parts.append("<table class=\"summary\"><tbody>" + "".join(
            f"<tr><th>{html.escape(k)}</th><td>{_fmt(v, pct=k.startswith('share'))}</td></tr>"
            for k, v in rows if v is not None) + "</tbody></table>")
    if base is not None and best is not None:
        tolled = toll != 0 if toll is not None else None
        n = int(tolled.sum()) if tolled is not None else 0

        def draw(path: Path) -> Path:
            return map_png(game, [("left alone (no tolls)", base * game.D),
                                  (f"best tolls ({n} links, outlined)", best * game.D)],
                           path, highlight=tolled)

        def change(path: Path) -> Path:
            return change_png(game, base * game.D, best * game.D, path, highlight=tolled)

        parts.append("<p>Links coloured by volume/capacity at equilibrium and drawn as wide as "
                     "their flow, without tolls and with the best tolls found; tolled links "
                     "are outlined.</p>")
        parts.append(figure(draw, "network maps of volume over capacity"))
        parts.append(figure(change, "map of the flow change made by the tolls"))
        if toll is not None and n:
            ids = game.net.ids
            rows = "".join(f"<tr><td>{int(ids[game.net.tail[e]])} &rarr; "
                           f"{int(ids[game.net.head[e]])}</td><td>{toll[e]:.4g}</td>"
                           f"<td>{base[e] * game.D:.6g}</td><td>{best[e] * game.D:.6g}</td></tr>"
                           for e in np.flatnonzero(tolled))
            parts.append("<table><thead><tr><th>link</th><th>toll (cost units)</th>"
                         "<th>flow, no tolls</th><th>flow, tolls</th></tr></thead>"
                         f"<tbody>{rows}</tbody></table>")
    tstt = _tstt_per_evaluation(run_dir / "evaluations.csv")
    if tstt is not None and np.isfinite(tstt).any():
        so = facts.get("tstt_system_optimum") if facts else None

        def trace(path: Path) -> Path:
            return plots.objective_trace(tstt, path, "minimize", ylabel="TSTT",
                                         baseline=float(tstt[0]), floor=so,
                                         floor_label="system optimum",
                                         title="total travel time against evaluation")

        parts.append("<p>Total travel time (tolls excluded) of every evaluation; the first is "
                     "the network left alone, the dashed line the system optimum.</p>")
        parts.append(figure(trace, html.escape("TSTT against evaluation number")))
    parts.append("</section>")
    return "".join(parts)


def _fmt(v: Any, pct: bool = False) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return "n/a"
    if pct:
        return f"{100 * v:.2f}%"
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _network_facts(run_dir: Path) -> dict[str, Any]:
    """``result.json``'s ``network`` (``{}`` when missing or unreadable)."""
    try:
        data = json.loads((run_dir / "result.json").read_text())
    except (OSError, ValueError):
        return {}
    facts = data.get("network") if isinstance(data, dict) else None
    return facts if isinstance(facts, dict) else {}


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
