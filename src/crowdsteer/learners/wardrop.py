"""The Wardrop equilibrium of a road network (:class:`~crowdsteer.games.network.NetworkGame`),
and its derivative in the tolls.

Three engines, all certified by the relative gap ``(TSTT - SPTT) / TSTT``, chosen by
``learner.method`` (:data:`METHODS`; ``auto``: :func:`engine`):

:func:`bush_based` (``bush``, the default), Algorithm B on origin-based bushes, compiled
    (:mod:`crowdsteer.learners.bush`): Chicago Sketch to 1e-10 in about 20 iterations.

:func:`gradient_projection` (``gradient_projection``, path-based; what the equilibrium's
derivative in the tolls works on, :func:`equilibrium_vjp`)
    keeps the used paths of every pair (a sparse path-link incidence), adds each pair's
    shortest path when it is cheaper than its used ones (column generation), and moves
    flow towards each pair's cheapest path by a Newton step on Beckmann's potential over
    the used paths (preconditioned conjugate gradients; the diagonal step of Jayakrishnan
    et al. 1994 as fallback), with a line search. Sioux Falls: 32 iterations to 1e-6, 35
    to 1e-12.

:func:`bfw` (``bfw``), the bi-conjugate Frank-Wolfe method (Mitradjieva & Lindberg 2013).
Each iteration

1. prices the links at the current flows ``x`` and loads every origin's demand on its
   shortest-path tree (all-or-nothing, ``y``; see ``_Graph.all_or_nothing``);
2. certifies ``x`` with the relative gap ``(c.x - c.y) / c.x`` (TSTT against SPTT, both at
   the costs of ``x``);
3. moves to ``x + tau (s - x)``, where the target ``s`` mixes ``y`` with the two previous
   targets so that the direction is conjugate to the two previous ones with respect to
   ``diag(c'(x))`` (falling back to conjugate, then plain Frank-Wolfe when the mixture
   is not a proper convex combination), and ``tau`` minimises Beckmann's potential on
   the segment (safeguarded Newton on its derivative, which is monotone).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix

from crowdsteer.games.network import DEFAULT_RELATIVE_GAP, ENGINES, NetworkGame
from crowdsteer.learners import bush
from crowdsteer.learners.base import Progress, Solution, check_finite

Array = np.ndarray


@dataclass(frozen=True)
class NetworkSolution(Solution):
    """A network equilibrium: :class:`Solution` plus the link-level results.

    ``mu`` is ``(1, E)`` link flows over ``D``; ``exploitability`` the excess cost per
    traveller ``(TSTT_c - SPTT) / D`` in the costs the travellers face.
    """

    flow: Array = field(default_factory=lambda: np.zeros(0))
    """``(E,)`` link flows ``x``."""
    cost: Array = field(default_factory=lambda: np.zeros(0))
    """``(E,)`` generalised cost (tolls included) at ``x``."""
    relative_gap: float = float("nan")
    """``(c.x - SPTT) / c.x`` at the returned flows."""
    total_travel_time: float = float("nan")
    """``sum_e x_e t_e(x_e)`` (time only)."""
    total_cost: float = float("nan")
    """``sum_e x_e c_e(x_e)`` (what the gap is relative to)."""
    toll: Array | None = None
    """``(E,)`` the tolls solved under (``None``: none)."""
    paths: Any = field(default=None, repr=False, compare=False)
    """The used paths and their flows (:class:`PathSet`; path-based engine only)."""
    system_optimum: bool = False
    """Solved for the system optimum (``cost`` then holds the marginal social costs)."""

    def network_summary(self) -> dict[str, float]:
        """The fields ``summary.json`` adds for a network."""
        return {"relative_gap": self.relative_gap, "total_travel_time": self.total_travel_time,
                "total_cost": self.total_cost}


def _costs(game: NetworkGame, x: Array, toll: Array | None,
           system_optimum: bool) -> tuple[Array, Array]:
    """Generalised link costs and their derivative at ``x``; with ``system_optimum`` the
    marginal social costs ``c + x t'`` (whose equilibrium is the system optimum)."""
    c = game.generalised_cost(x, toll)
    dc = game.travel_time_derivative(x)
    if system_optimum:
        c = c + x * dc
        dc = 2 * dc + x * game.travel_time_derivative(x, order=2)
    return c, dc


def _line_search(game: NetworkGame, x: Array, d: Array, toll: Array | None,
                 system_optimum: bool) -> float:
    """``tau`` in [0, 1] minimising Beckmann's potential on ``x + tau d``: the root of the
    increasing ``g(tau) = c(x + tau d) . d`` (safeguarded Newton, bisection fallback)."""
    def g(tau: float) -> tuple[float, float]:
        c, dc = _costs(game, x + tau * d, toll, system_optimum)
        return float(c @ d), float((dc * d) @ d)

    g0, _ = g(0.0)
    if g0 >= 0:
        return 0.0
    g1, _ = g(1.0)
    if g1 <= 0:
        return 1.0
    lo, hi, tau = 0.0, 1.0, g0 / (g0 - g1)  # secant start
    for _ in range(60):
        val, slope = g(tau)
        if val > 0:
            hi = tau
        else:
            lo = tau
        if abs(val) <= 1e-15 * abs(g0) or hi - lo <= 1e-15:
            break
        step = tau - val / slope if slope > 0 else -1.0
        tau = step if lo < step < hi else 0.5 * (lo + hi)
    return tau


def bfw(game: NetworkGame, toll: Array | None = None,
        relative_gap: float = DEFAULT_RELATIVE_GAP, max_iterations: int = 100_000,
        progress: Progress | None = None, system_optimum: bool = False) -> NetworkSolution:
    """Bi-conjugate Frank-Wolfe to ``relative_gap`` (see the module docstring).

    Parameters
    ----------
    toll
        ``(E,)`` extra cost per link (the meta-agent's tolls), or ``None``.
    system_optimum
        Solve for the system optimum instead (marginal social costs).

    Returns
    -------
    A :class:`NetworkSolution` whose ``history`` is the relative gap per iteration.
    """
    start = time.perf_counter()
    graph, E = game.graph, game.E
    c, _ = _costs(game, np.zeros(E), toll, system_optimum)
    x, _, _ = graph.all_or_nothing(c)
    s1 = s2 = None  # the two previous targets
    tau_prev = 0.0
    history: list[float] = []
    gap = np.inf
    for k in range(1, max_iterations + 1):
        c, dc = _costs(game, x, toll, system_optimum)
        y, sptt, _ = graph.all_or_nothing(c)
        gap = _certify(float(c @ x), sptt, k, history, progress)
        if gap <= relative_gap or k == max_iterations:
            break
        s = _target(x, y, s1, s2, tau_prev, dc, c)
        d = s - x
        tau = _line_search(game, x, d, toll, system_optimum)
        x = x + tau * d
        if tau >= 1.0 - 1e-12:  # a full step loses the conjugacy information
            s1 = s2 = None
        else:
            s1, s2 = s, s1
        tau_prev = tau
    return _solution(game, x, toll, gap, k, time.perf_counter() - start,
                     gap <= relative_gap, history, system_optimum)


def _certify(total: float, sptt: float, k: int, history: list[float],
             progress: Progress | None) -> float:
    """The relative gap ``(TSTT - SPTT) / TSTT``, recorded and reported."""
    gap = (total - sptt) / total if total > 0 else 0.0
    check_finite(gap, "relative gap")
    history.append(gap)
    if progress:
        progress(k, gap)
    return gap


def _target(x: Array, y: Array, s1: Array | None, s2: Array | None, tau: float, h: Array,
            c: Array) -> Array:
    """The bi-conjugate target ``s = b0 y + b1 s1 + b2 s2`` (``b`` on the simplex) making
    ``s - x`` conjugate (w.r.t. ``diag(h)``) to the two previous directions; conjugate
    (``b2 = 0``) or plain (``y``) Frank-Wolfe when that is not a convex combination."""
    u = y - x
    if s1 is None:
        return y
    p1 = s1 - x  # the previous direction, seen from x
    if s2 is not None:
        p2 = tau * s1 - x + (1 - tau) * s2  # the one before (Mitradjieva & Lindberg 2013)
        a, b = s1 - x - u, s2 - x - u
        M = np.array([[a @ (h * p1), b @ (h * p1)], [a @ (h * p2), b @ (h * p2)]])
        rhs = -np.array([u @ (h * p1), u @ (h * p2)])
        if abs(np.linalg.det(M)) > 1e-300:
            b1, b2 = np.linalg.solve(M, rhs)
            b0 = 1 - b1 - b2
            if b1 >= 0 and b2 >= 0 and b0 >= 1e-2:
                s = b0 * y + b1 * s1 + b2 * s2
                if c @ (s - x) < 0:
                    return s
    den = (s1 - x - u) @ (h * p1)
    if den != 0:
        b1 = -(u @ (h * p1)) / den
        if 0 <= b1 <= 1 - 1e-2:
            s = (1 - b1) * y + b1 * s1
            if c @ (s - x) < 0:
                return s
    return y


def _solution(game: NetworkGame, x: Array, toll: Array | None, gap: float, k: int,
              seconds: float, converged: bool, history: list[float],
              system_optimum: bool = False, paths: Any = None) -> NetworkSolution:
    c, _ = _costs(game, x, toll, system_optimum)
    total = float(c @ x)
    D = game.D
    return NetworkSolution(
        pi=np.ones((1, game.E, 1)), mu=(x / D)[None], exploitability=max(gap, 0.0) * total / D,
        iterations=k, seconds=seconds, converged=converged, history=np.asarray(history),
        flow=x, cost=c, relative_gap=float(gap), total_travel_time=game.total_travel_time(x),
        total_cost=total, toll=toll, paths=paths, system_optimum=system_optimum)




class PathSet:
    """Used paths as a sparse ``(P, E)`` path-link incidence, with their pairs and flows.

    Pairs are numbered ``k = row * Z + destination`` over the origins with trips (``row``
    indexes ``graph.origins``).
    """

    def __init__(self, links: Array, ptr: Array, od: Array, flow: Array, E: int) -> None:
        self.links, self.ptr, self.od, self.flow, self.E = links, ptr, od, flow, E
        self.delta = csr_matrix((np.ones(links.shape[0]), links, ptr), shape=(od.shape[0], E))

    @property
    def P(self) -> int:
        return int(self.od.shape[0])

    def link_flow(self) -> Array:
        return self.delta.T @ self.flow

    def extend(self, links: Array, ptr: Array, od: Array) -> "PathSet":
        """The set with new paths (flow 0) appended."""
        return PathSet(np.concatenate([self.links, links]),
                       np.concatenate([self.ptr, self.ptr[-1] + ptr[1:]]),
                       np.concatenate([self.od, od]),
                       np.concatenate([self.flow, np.zeros(od.shape[0])]), self.E)

    def keep(self, mask: Array) -> "PathSet":
        """The set restricted to the paths where ``mask`` holds."""
        lengths = np.diff(self.ptr)[mask]
        ptr = np.concatenate([[0], np.cumsum(lengths)])
        rows = np.repeat(mask, np.diff(self.ptr))
        return PathSet(self.links[rows], ptr, self.od[mask], self.flow[mask], self.E)


def trace_paths(graph: Any, pred: Array, rows: Array, dest: Array) -> tuple[Array, Array]:
    """Links of the shortest path ``source(row) -> dest`` for each requested pair, walking
    the predecessor trees backwards (vectorised over pairs; as many steps as the longest
    path has links). Returns ``(links, ptr)`` in CSR layout, each path's links in any order."""
    cur = dest.copy()
    src = graph.source[rows]
    found_rows, found_links = [], []
    active = np.flatnonzero(cur != src)
    while active.size:
        p = pred[rows[active], cur[active]]
        found_rows.append(active)
        found_links.append(graph.arc_link(p, cur[active]))
        cur[active] = p
        active = active[p != src[active]]
    which = np.concatenate(found_rows) if found_rows else np.zeros(0, np.int64)
    links = np.concatenate(found_links) if found_links else np.zeros(0, np.int64)
    order = np.argsort(which, kind="stable")
    counts = np.bincount(which, minlength=dest.shape[0])
    return links[order], np.concatenate([[0], np.cumsum(counts)])


def _cheapest(paths: PathSet, c: Array, K: int) -> tuple[Array, Array]:
    """``(P,)`` path costs at link costs ``c`` and ``(K,)`` each pair's cheapest."""
    C = paths.delta @ c
    best = np.full(K, np.inf)
    np.minimum.at(best, paths.od, C)
    return C, best


def _basic(paths: PathSet, C: Array, best: Array, K: int) -> Array:
    """``(P,)``: for each path, its pair's basic path (the first of the pair's cheapest)."""
    cand = np.flatnonzero(C <= best[paths.od])[::-1]
    basic = np.full(K, -1)
    basic[paths.od[cand]] = cand  # written last to first: the first cheapest stays
    return basic[paths.od]


def _reduced_hessian(paths: PathSet, b: Array, dc: Any, free: Array) -> Any:
    """``v -> H v``: the Hessian of the potential in the moves ``v_p`` (off path ``p``, onto
    its pair's basic path ``b(p)``) of the ``free`` paths, ``H = G^T diag(c') G`` with
    ``G = Delta_p - Delta_b`` (zero outside ``free``); ``dc`` may instead be the
    Jacobian's product ``u -> J u`` (several classes sharing links)."""
    jac = dc if callable(dc) else (lambda u: dc * u)

    def H(v: Array) -> Array:
        return _g_transpose(paths, b, free, jac(_g(paths, b, v)))

    return H


def _g(paths: PathSet, b: Array, v: Array) -> Array:
    """``(E,)`` link change ``G v`` of moving ``v_p`` off each path ``p`` onto ``b(p)``,
    sign flipped (``+v`` on ``p``, ``-v`` on ``b``)."""
    delta = v.copy()
    np.add.at(delta, b, -v)
    return paths.delta.T @ delta


def _g_transpose(paths: PathSet, b: Array, free: Array, u: Array) -> Array:
    """``(P,)`` ``G^T u``: the cost of ``p`` minus that of ``b(p)`` under link values ``u``."""
    w = paths.delta @ u
    return np.where(free, w - w[b], 0.0)


def _newton_moves(paths: PathSet, b: Array, dc: Array, excess: Array, diag: Array,
                  free: Array, move: Array, iterations: int = 30) -> Array:
    """Flow to move from each free path to its pair's cheapest path: ``H v = excess`` on the
    free set by preconditioned conjugate gradients, ``H`` the Hessian of the potential in
    these moves (``v_p`` off ``p`` and onto ``b(p)``); the other paths keep ``move``. Moves
    onto a path (``v_p < 0``) are scaled so that no cheapest path goes negative."""
    P = paths.P
    H = _reduced_hessian(paths, b, dc, free)

    rhs = np.where(free, excess, 0.0)
    fixed = np.where(free, 0.0, move)
    rhs = rhs - H(fixed) * free  # the moves already decided shift the gradient
    v = np.zeros(P)
    r = rhs.copy()
    z = r / diag
    p = z.copy()
    rz = r @ z
    r0 = np.sqrt(r @ r)
    for _ in range(iterations):
        Hp = H(p)
        den = p @ Hp
        if den <= 0:
            break
        a = rz / den
        v += a * p
        r -= a * Hp
        if np.sqrt(r @ r) <= 1e-3 * r0:
            break
        z = r / diag
        rz_new = r @ z
        p = z + (rz_new / rz) * p
        rz = rz_new
    out = np.where(free, np.minimum(v, paths.flow), fixed)
    # flow moved onto paths comes from the pair's cheapest path: never more than it holds
    onto = np.bincount(b, weights=np.maximum(-out, 0.0), minlength=P)
    scale = np.where(onto > paths.flow, paths.flow / np.maximum(onto, 1e-300), 1.0)
    return np.where(out < 0, out * scale[b], out)


def gradient_projection(game: NetworkGame, toll: Array | None = None,
                        relative_gap: float = DEFAULT_RELATIVE_GAP,
                        max_iterations: int = 100_000, progress: Progress | None = None,
                        system_optimum: bool = False, newton: bool = True) -> NetworkSolution:
    """Path-based gradient projection with column generation (Jayakrishnan et al. 1994),
    every pair at once, with a line search on Beckmann's potential.

    Each iteration: shortest paths from every origin (one ``dijkstra`` call); each pair
    adds its shortest path if it is cheaper than its used ones; every non-shortest path
    ``p`` of a pair sends ``(c_p - c_b) / sum_{e in p xor b} c'_e`` (its Newton step,
    capped by its flow) to the pair's cheapest path ``b``; all pairs move together by the
    step that minimises the potential on that direction.
    """
    start = time.perf_counter()
    graph, E = game.graph, game.E
    od_rows, od_dest = np.nonzero(graph.od > 0)
    demand = graph.od[od_rows, od_dest]
    K = od_rows.shape[0]
    c, _ = _costs(game, np.zeros(E), toll, system_optimum)
    _, pred = graph.shortest_paths(c)
    links, ptr = trace_paths(graph, pred, od_rows, od_dest)
    paths = PathSet(links, ptr, np.arange(K), demand.copy(), E)
    history: list[float] = []
    gap = np.inf
    for k in range(1, max_iterations + 1):
        x = paths.link_flow()
        c, dc = _costs(game, x, toll, system_optimum)
        dist, pred = graph.shortest_paths(c)
        sp = dist[od_rows, od_dest]
        gap = _certify(float(c @ x), float(demand @ sp), k, history, progress)
        if gap <= relative_gap or k == max_iterations:
            break
        C, best = _cheapest(paths, c, K)
        new = np.flatnonzero(sp < best - 1e-12 * np.maximum(np.abs(best), 1.0))
        if new.size:
            nl, nptr = trace_paths(graph, pred, od_rows[new], od_dest[new])
            paths = paths.extend(nl, nptr, new)
            C, best = _cheapest(paths, c, K)
        b = _basic(paths, C, best, K)
        excess = C - best[paths.od]
        # second derivative along "p minus b": links of p or b but not both
        common = np.asarray(paths.delta.multiply(paths.delta[b]) @ dc).ravel()
        curv = paths.delta @ dc + (paths.delta @ dc)[b] - 2 * common
        nonbasic = (paths.flow > 0) & (np.arange(paths.P) != b)
        diag = np.maximum(curv, 1e-300)
        move = np.where(nonbasic, np.minimum(paths.flow, excess / diag), 0.0)
        # Paths the diagonal step keeps in use form the free set: there a Newton step on
        # the potential restricted to them (conjugate gradients, diagonally
        # preconditioned) accounts for the pairs sharing links, which the diagonal does not.
        free = nonbasic & (move < paths.flow)
        candidates = [move]
        if newton and free.any():
            candidates.insert(0, _newton_moves(paths, b, dc, excess, diag, free, move))
        for move in candidates:  # the Newton moves, unless they fail to descend
            df = -move
            np.add.at(df, b, move)
            d = paths.delta.T @ df
            tau = _line_search(game, x, d, toll, system_optimum)
            if tau > 0:
                break
        paths.flow = np.maximum(paths.flow + tau * df, 0.0)
        paths = paths.keep((paths.flow > 0) | (np.arange(paths.P) == b))
    x = paths.link_flow()
    return _solution(game, x, toll, gap, k, time.perf_counter() - start,
                     gap <= relative_gap, history, system_optimum, paths)


def bush_based(game: NetworkGame, toll: Array | None = None,
               relative_gap: float = DEFAULT_RELATIVE_GAP, max_iterations: int = 100_000,
               progress: Progress | None = None,
               system_optimum: bool = False) -> NetworkSolution:
    """Algorithm B on origin-based bushes (:mod:`crowdsteer.learners.bush`), compiled.

    Solved to :data:`VJP_GAP` or tighter (the gradient optimiser's equilibria), the bushes'
    flows also come decomposed into paths, on which :func:`equilibrium_vjp` differentiates
    without re-solving path-based."""
    keep = relative_gap <= VJP_GAP * 100  # as tight as a sensitivity analysis needs
    r = bush.solve(game, toll, relative_gap, max_iterations, progress, system_optimum, keep)
    paths = None
    if r.paths is not None:
        links, ptr, pair, flow = r.paths
        paths = PathSet(links, ptr, pair, flow, game.E)
    return _solution(game, r.flow, toll, r.relative_gap, r.iterations, r.seconds, r.converged,
                     list(r.history), system_optimum, paths)


METHODS = {"bush": bush_based, "bfw": bfw, "gradient_projection": gradient_projection}
"""The network engines by the name ``learner.method`` gives them (``auto``: :func:`engine`)."""


def engine(method: str = "auto") -> Any:
    """The engine ``method`` names; ``auto`` is ``bush``, measured fastest at every gap and
    size in BENCHMARKS.md (network: Sioux Falls, Anaheim, Chicago Sketch, Berlin-Center)."""
    return METHODS["bush" if method == "auto" else method]


VJP_GAP = 1e-10
"""Relative gap the sensitivity analysis needs (re-solved to it when the given solution is
looser or has no paths)."""


def equilibrium_vjp(game: NetworkGame, solution: NetworkSolution, toll: Array | None,
                    g_mu: Array) -> tuple[Array, float]:
    """``(g_theta, residual)``: ``dJ/dtheta`` for ``dJ/dmu = g_mu`` at the equilibrium under
    the tolls ``theta``, by sensitivity analysis on the used paths (Tobin & Friesz 1988).

    With ``G = Delta_p - Delta_b`` over the used non-basic paths ``p`` (``b`` their pair's
    basic path) and ``J = diag(c'(x))``, a toll change ``d theta`` keeps every used path of a
    pair equally cheap when ``dx = -G (G^T J G)^+ G^T d theta``; the map is symmetric, so

    .. math:: g_\\theta = -G \\, (G^T J G)^+ \\, G^T g_x, \\qquad g_x = g_\\mu / D,

    solved matrix-free by MINRES. ``residual`` is its relative residual. It assumes strict
    complementarity (no unused path exactly as cheap as the used ones), which holds
    generically.
    """
    from scipy.sparse.linalg import LinearOperator, minres

    if solution.paths is None or solution.relative_gap > VJP_GAP * 100:
        solution = gradient_projection(game, toll, relative_gap=VJP_GAP)
    paths = solution.paths
    x = paths.link_flow()
    c, dc = _costs(game, x, toll, False)
    K = game.graph.od.shape[0] * game.graph.od.shape[1]
    b = _basic(paths, *_cheapest(paths, c, K), K)
    free = (paths.flow > 0) & (np.arange(paths.P) != b)
    g_x = np.asarray(g_mu, dtype=float).reshape(-1) / game.D
    idx = np.flatnonzero(free)
    if idx.size == 0:  # one path per pair: tolls move no flow
        return np.zeros(game.E), 0.0
    jacobian = getattr(game, "cost_jacobian", None)  # several classes: not diagonal
    H = _reduced_hessian(paths, b, dc if jacobian is None else jacobian(x), free)

    def on_free(v: Array) -> Array:
        full = np.zeros(paths.P)
        full[idx] = v
        return H(full)[idx]

    rhs = _g_transpose(paths, b, free, g_x)[idx]
    op = LinearOperator((idx.size, idx.size), matvec=on_free, dtype=float)
    z, _ = minres(op, rhs, rtol=1e-12, maxiter=10 * idx.size + 100)
    norm = float(np.linalg.norm(rhs))
    residual = float(np.linalg.norm(on_free(z) - rhs)) / norm if norm > 0 else 0.0
    full = np.zeros(paths.P)
    full[idx] = z
    return -_g(paths, b, full), residual


ENGINES.update(METHODS, engine=engine,  # the games' solvers, by name
               equilibrium_vjp=equilibrium_vjp)
