"""Origin-based Wardrop equilibrium: Algorithm B (Dial 2006), compiled with Numba.

Every origin ``o`` keeps a *bush*: an acyclic set of links rooted at ``o`` that carries
``o``'s trips, with origin-based link flows ``f[o, e]`` (so ``x = sum_o f[o]``). One
iteration visits every origin in turn and

1. **updates its bush**: with the links in topological order, the shortest (``L``) and
   longest (``U``) path labels within the bush are computed; links without flow leave the
   bush, except the ones on the tree of shortest paths (which keeps every node reached),
   and a link ``(i, j)`` outside it joins when it is a shortcut for the longest paths,
   ``U_i + c_ij < U_j``. Bush links satisfy ``U_b >= U_a``, a joining link
   ``U_j > U_i``: the bush stays acyclic (zero-cost links included).
2. **equilibrates it**: with ``L`` over the bush links and ``U`` over the used ones, each
   node ``j``, last in topological order first, whose shortest and longest used paths
   end on different links, moves flow from the longest to the shortest path segment
   between ``j`` and the node where the two diverge, by a Newton step on Beckmann's
   potential,

   .. math:: \\Delta = \\min\\Bigl(\\frac{C_U - C_L}{\\sum_{e \\in U \\cup L} c'_e},
             \\min_{e \\in U} f_{oe}\\Bigr),

   updating the link costs at once (Gauss-Seidel over origins).

After each iteration, a few more equilibration passes over all bushes (no bush update)
and the certificate: the relative gap ``(c.x - SPTT) / c.x`` at the generalised costs
(tolls included), with SPTT from shortest paths on the whole network from every origin
(compiled Dijkstra, origins shared out over the cores with ``numba.prange``), summed only
over pairs with trips (an unreachable pair without trips costs nothing, not
``0 * inf``).

The bush solution is unique in the link flows for strictly increasing costs (as Frank-
Wolfe's), and unlike Frank-Wolfe it converges fast near the equilibrium: Chicago Sketch to a
relative gap of 1e-10 (BENCHMARKS.md). With ``system_optimum`` the link costs are the
marginal social costs ``c + x t'``: for BPR times ``t_0 (1 + b (1 + p) (x / k)^p)``, with
derivative ``(1 + p) t'``.

Data are plain arrays: the links' tails and heads on the graph of
:class:`crowdsteer.games.network._Graph` (zones that are not through nodes have an
out-twin), the BPR parameters and the flow-independent cost per link.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from crowdsteer.learners.base import check_finite

Array = np.ndarray

POWER_FLOOR = 1e-9
"""``x / capacity`` below which a BPR power under 1 takes its derivative (which is infinite
at 0): the Newton steps then start small and grow, instead of stopping."""


@dataclass(frozen=True)
class BushResult:
    """What :func:`solve` returns (the caller wraps it into a ``NetworkSolution``)."""

    flow: Array
    """``(E,)`` link flows."""
    relative_gap: float
    """``(c.x - SPTT) / c.x`` at ``flow`` (generalised cost)."""
    iterations: int
    history: Array
    """``(iterations,)`` the relative gap after each iteration."""
    converged: bool
    seconds: float
    paths: tuple | None = None
    """``(links, ptr, pair, flow)`` of :func:`_decompose` when asked (``paths=True``)."""


@njit(cache=True, inline="always")
def _cost(x, t0, b, cap, p, fixed, so):  # pragma: no cover - compiled
    """Generalised cost and its derivative of one link at flow ``x``; ``so``: marginal."""
    k = 1.0 + p if so else 1.0
    u = max(x, 0.0) / cap
    if p == 0.0:
        return t0 * (1.0 + b) + fixed, 0.0
    if p == 4.0:  # the usual BPR power: no pow() in the innermost loop
        u3 = u * u * u
        c = t0 * (1.0 + b * k * u3 * u) + fixed
        return c, k * t0 * b * 4.0 / cap * u3
    up = u ** p
    c = t0 * (1.0 + b * k * up) + fixed
    if p < 1.0:
        u = max(u, POWER_FLOOR)
    d = k * t0 * b * p / cap * u ** (p - 1.0)
    return c, d


@njit(cache=True)
def _costs(x, t0, b, cap, p, fixed, so, c, dc):  # pragma: no cover - compiled
    for e in range(x.shape[0]):
        c[e], dc[e] = _cost(x[e], t0[e], b[e], cap[e], p[e], fixed[e], so)


@njit(cache=True)
def _dijkstra(src, out_ptr, out_link, head, cost, dist, pred, order, heap_node, heap_key,
              done):  # pragma: no cover - compiled
    """Shortest paths from ``src`` (binary heap, lazy deletion). Fills ``dist``, ``pred``
    (the link into each node, -1) and ``order`` (settled nodes, in order); returns how many
    were settled."""
    n = dist.shape[0]
    for i in range(n):
        dist[i] = np.inf
        pred[i] = -1
        done[i] = False
    dist[src] = 0.0
    size = 1
    heap_node[0] = src
    heap_key[0] = 0.0
    count = 0
    while size > 0:
        i = heap_node[0]
        key = heap_key[0]
        size -= 1
        if size > 0:  # sift the last entry down from the root
            last_n = heap_node[size]
            last_k = heap_key[size]
            pos = 0
            while True:
                child = 2 * pos + 1
                if child >= size:
                    break
                if child + 1 < size and heap_key[child + 1] < heap_key[child]:
                    child += 1
                if heap_key[child] >= last_k:
                    break
                heap_node[pos] = heap_node[child]
                heap_key[pos] = heap_key[child]
                pos = child
            heap_node[pos] = last_n
            heap_key[pos] = last_k
        if done[i] or key > dist[i]:
            continue
        done[i] = True
        order[count] = i
        count += 1
        for a in range(out_ptr[i], out_ptr[i + 1]):
            e = out_link[a]
            j = head[e]
            nd = key + cost[e]
            if nd < dist[j]:
                dist[j] = nd
                pred[j] = e
                pos = size  # sift up
                size += 1
                while pos > 0:
                    parent = (pos - 1) // 2
                    if heap_key[parent] <= nd:
                        break
                    heap_node[pos] = heap_node[parent]
                    heap_key[pos] = heap_key[parent]
                    pos = parent
                heap_node[pos] = j
                heap_key[pos] = nd
    return count


@njit(cache=True)
def _tree(src, out_ptr, out_link, head, cost):  # pragma: no cover - compiled
    """``(dist, pred, order, count)`` of :func:`_dijkstra` from ``src``, in fresh arrays
    (one set per thread)."""
    n = out_ptr.shape[0] - 1
    m = head.shape[0]
    dist = np.empty(n)
    pred = np.empty(n, np.int64)
    order = np.empty(n, np.int64)
    count = _dijkstra(src, out_ptr, out_link, head, cost, dist, pred, order,
                      np.empty(m + 1, np.int64), np.empty(m + 1), np.empty(n, np.bool_))
    return dist, pred, order, count


@njit(cache=True, parallel=True)
def shortest_path_totals(sources, od, out_ptr, out_link, head, cost):  # pragma: no cover
    """``(Zo,)`` each origin's ``sum_d od[o, d] dist[o, d]`` over the pairs with trips
    (``inf`` if one of them is unreachable), origins shared out over the threads."""
    Zo = sources.shape[0]
    Z = od.shape[1]
    total = np.zeros(Zo)
    for r in prange(Zo):
        dist, _, _, _ = _tree(sources[r], out_ptr, out_link, head, cost)
        s = 0.0
        for d in range(Z):
            if od[r, d] > 0:
                s += od[r, d] * dist[d]
        total[r] = s
    return total


@njit(cache=True, parallel=True)
def _load_trees(sources, od, out_ptr, out_link, tail, head, cost, flows, in_bush,
                dists):  # pragma: no cover - compiled
    """Each origin's trips on its tree of shortest paths: ``flows[o]`` the loads,
    ``in_bush[o]`` the tree's links, ``dists[o]`` the distances to the zones."""
    Zo = sources.shape[0]
    n = out_ptr.shape[0] - 1
    m = head.shape[0]
    Z = od.shape[1]
    for r in prange(Zo):
        dist, pred, order, count = _tree(sources[r], out_ptr, out_link, head, cost)
        load = np.zeros(n)
        for d in range(Z):
            dists[r, d] = dist[d]
            if od[r, d] > 0:
                load[d] = od[r, d]
        for e in range(m):
            flows[r, e] = 0.0
            in_bush[r, e] = False
        for k in range(count - 1, 0, -1):  # farthest first: a node's load before its tail's
            j = order[k]
            e = pred[j]
            in_bush[r, e] = True
            flows[r, e] = load[j]
            load[tail[e]] += load[j]


@njit(cache=True)
def _topological(src, in_bush, out_ptr, out_link, head, indeg, order, rank):
    # pragma: no cover - compiled
    """Kahn's order of the bush's nodes from ``src``; returns how many it reaches."""
    n = indeg.shape[0]
    for i in range(n):
        indeg[i] = 0
        rank[i] = -1
    for e in range(head.shape[0]):
        if in_bush[e]:
            indeg[head[e]] += 1
    order[0] = src
    rank[src] = 0
    count = 1
    k = 0
    while k < count:
        i = order[k]
        k += 1
        for a in range(out_ptr[i], out_ptr[i + 1]):
            e = out_link[a]
            if in_bush[e]:
                j = head[e]
                indeg[j] -= 1
                if indeg[j] == 0:
                    rank[j] = count
                    order[count] = j
                    count += 1
    return count


@njit(cache=True)
def _labels(count, order, in_ptr, in_link, tail, in_bush, flow, c, used, eps, L, Lp, U, Up):
    # pragma: no cover - compiled
    """Shortest (``L``, link in ``Lp``) paths over the bush links and longest (``U``,
    ``Up``) over the bush links (``used``: those with flow above ``eps``), in topological
    order; ``Up = -1`` where no such link enters."""
    for i in range(L.shape[0]):
        L[i] = np.inf
        U[i] = np.inf
        Lp[i] = -1
        Up[i] = -1
    src = order[0]
    L[src] = 0.0
    U[src] = 0.0
    for k in range(1, count):
        j = order[k]
        lb = np.inf
        ub = -np.inf
        for a in range(in_ptr[j], in_ptr[j + 1]):
            e = in_link[a]
            if not in_bush[e]:
                continue
            i = tail[e]
            v = L[i] + c[e]
            if v < lb or Lp[j] < 0:
                lb = v
                Lp[j] = e
            if not used or flow[e] > eps:
                w = U[i] + c[e]
                if w > ub:
                    ub = w
                    Up[j] = e
        L[j] = lb
        U[j] = ub if Up[j] >= 0 else lb


@njit(cache=True)
def _update_bush(src, in_bush, flow, c, out_ptr, out_link, in_ptr, in_link, tail, head,
                 eps, indeg, order, rank, L, Lp, U, Up):  # pragma: no cover - compiled
    """Drop the unused links off the shortest-path tree, add the shortcuts of the longest
    paths; returns how many nodes the bush reaches (``order``, ``rank`` up to date)."""
    count = _topological(src, in_bush, out_ptr, out_link, head, indeg, order, rank)
    _labels(count, order, in_ptr, in_link, tail, in_bush, flow, c, False, eps, L, Lp, U, Up)
    dropped = False
    for e in range(head.shape[0]):
        if in_bush[e] and flow[e] <= eps and Lp[head[e]] != e:
            in_bush[e] = False
            flow[e] = 0.0
            dropped = True
    if dropped:  # the longest paths over what stays (the order is still topological)
        _labels(count, order, in_ptr, in_link, tail, in_bush, flow, c, False, eps, L, Lp, U,
                Up)
    added = False
    for e in range(head.shape[0]):
        if not in_bush[e]:
            i = tail[e]
            j = head[e]
            if U[i] == np.inf or not (U[i] < U[j] or U[i] == U[j] and rank[i] < rank[j]):
                continue  # backwards in the order (U, rank), which bush links respect
            if U[i] + c[e] < U[j] or L[i] + c[e] < L[j]:
                in_bush[e] = True
                added = True
    if added:  # dropping links leaves the order topological
        count = _topological(src, in_bush, out_ptr, out_link, head, indeg, order, rank)
    return count


@njit(cache=True)
def _equilibrate(count, order, rank, in_bush, flow, x, c, dc, in_ptr, in_link, tail, t0, b,
                 cap, p, fixed, so, eps, L, Lp, U, Up, thresh):  # pragma: no cover
    """One pass of Newton flow shifts from longest to shortest path segments, last node
    first; returns the largest relative cost difference seen."""
    _labels(count, order, in_ptr, in_link, tail, in_bush, flow, c, True, eps, L, Lp, U, Up)
    worst = 0.0
    for k in range(count - 1, 0, -1):
        j = order[k]
        lp = Lp[j]
        up = Up[j]
        if up < 0 or lp == up or U[j] - L[j] <= thresh * U[j]:
            continue  # one path, or none differing by more than thresh: no walk
        a = tail[lp]
        z = tail[up]
        cl = c[lp]
        dl = dc[lp]
        cu = c[up]
        du = dc[up]
        fm = flow[up]
        ok = True
        while a != z:  # walk back to where the two paths diverge
            if rank[a] > rank[z]:
                e = Lp[a]
                cl += c[e]
                dl += dc[e]
                a = tail[e]
            else:
                e = Up[z]
                if e < 0:
                    ok = False
                    break
                cu += c[e]
                du += dc[e]
                if flow[e] < fm:
                    fm = flow[e]
                z = tail[e]
        diff = cu - cl
        if not ok or fm <= 0.0 or diff <= 0.0:
            continue
        rel = diff / cu
        if rel > worst:
            worst = rel
        if rel <= thresh:
            continue
        den = du + dl
        delta = fm if den <= 0.0 else diff / den
        if delta >= fm:
            delta = fm
        node = j
        while node != a:  # onto the shortest segment
            e = Lp[node]
            flow[e] += delta
            x[e] += delta
            c[e], dc[e] = _cost(x[e], t0[e], b[e], cap[e], p[e], fixed[e], so)
            node = tail[e]
        node = j
        while node != a:  # off the longest
            e = Up[node]
            new = flow[e] - delta
            if new <= eps:  # rounding's residues would block the walks above
                new = 0.0
            x[e] -= flow[e] - new
            flow[e] = new
            c[e], dc[e] = _cost(x[e], t0[e], b[e], cap[e], p[e], fixed[e], so)
            node = tail[e]
    return worst


@njit(cache=True)
def _sweep(sources, in_bush, flows, x, c, dc, out_ptr, out_link, in_ptr, in_link, tail,
           head, t0, b, cap, p, fixed, so, eps, update, passes, thresh):  # pragma: no cover
    """Every origin in turn: its bush updated (``update``), then ``passes`` equilibration
    passes, each seeing the link costs the previous origins left (Gauss-Seidel).

    One thread: sharing the origins out over two threads with lock-free updates of the
    link flows converged as fast but made the flows depend on the threads' timing (two
    solves of one game differed), which the reproducibility of a run forbids.
    """
    n = out_ptr.shape[0] - 1
    indeg = np.empty(n, np.int64)
    order = np.empty(n, np.int64)
    rank = np.empty(n, np.int64)
    L = np.empty(n)
    U = np.empty(n)
    Lp = np.empty(n, np.int64)
    Up = np.empty(n, np.int64)
    for r in range(sources.shape[0]):
        bush = in_bush[r]
        flow = flows[r]
        if update:
            count = _update_bush(sources[r], bush, flow, c, out_ptr, out_link, in_ptr,
                                 in_link, tail, head, eps[r], indeg, order, rank, L, Lp, U,
                                 Up)
        else:
            count = _topological(sources[r], bush, out_ptr, out_link, head, indeg, order,
                                 rank)
        for _ in range(passes):
            _equilibrate(count, order, rank, bush, flow, x, c, dc, in_ptr, in_link, tail,
                         t0, b, cap, p, fixed, so, eps[r], L, Lp, U, Up, thresh)


@njit(cache=True)
def _decompose(sources, od, flows, in_ptr, in_link, tail, eps):  # pragma: no cover
    """Each origin's bush flows as paths: ``(links, ptr, pair, flow)`` in CSR layout (a
    path's links from its destination back), ``pair = row * Z + destination``.

    For every destination with trips the residual flow is walked back from it, always
    along the entering link that carries most, and the path takes the smallest of the
    remaining trips and the residuals it passed; each path empties a link or the trips.
    Link flows conserve trips at every node, so a walk with trips left finds an entering
    link with flow until the origin (a bush is acyclic)."""
    Zo, Z = od.shape
    n = in_ptr.shape[0] - 1
    cap = 4 * Zo * Z + 16
    links = np.empty(cap, np.int64)
    ptr = [0]
    pair = []
    pflow = []
    walk = np.empty(n, np.int64)
    for r in range(Zo):
        f = flows[r].copy()
        src = sources[r]
        for d in range(Z):
            left = od[r, d]
            while left > eps[r]:
                node = d
                steps = 0
                low = left
                while node != src:
                    best = -1
                    for a in range(in_ptr[node], in_ptr[node + 1]):
                        e = in_link[a]
                        if f[e] > eps[r] and (best < 0 or f[e] > f[best]):
                            best = e
                    if best < 0 or steps >= n:
                        break
                    walk[steps] = best
                    steps += 1
                    if f[best] < low:
                        low = f[best]
                    node = tail[best]
                if node != src:  # residues of rounding: what is left is dropped
                    break
                start = ptr[-1]
                if start + steps > links.shape[0]:
                    grown = np.empty(2 * (start + steps), np.int64)
                    grown[:start] = links[:start]
                    links = grown
                for k in range(steps):
                    links[start + k] = walk[k]
                    f[walk[k]] -= low
                ptr.append(start + steps)
                pair.append(r * Z + d)
                pflow.append(low)
                left -= low
    m = ptr[-1]
    return (links[:m].copy(), np.array(ptr, np.int64), np.array(pair, np.int64),
            np.array(pflow))


def _stars(tail: Array, head: Array, n: int) -> tuple[Array, Array, Array, Array]:
    """Forward and backward stars: ``(out_ptr, out_link, in_ptr, in_link)``."""
    out_link = np.argsort(tail, kind="stable").astype(np.int64)
    in_link = np.argsort(head, kind="stable").astype(np.int64)
    out_ptr = np.searchsorted(tail[out_link], np.arange(n + 1)).astype(np.int64)
    in_ptr = np.searchsorted(head[in_link], np.arange(n + 1)).astype(np.int64)
    return out_ptr, out_link, in_ptr, in_link


class Network:
    """The arrays the compiled code works on, from a ``NetworkGame`` and its tolls."""

    def __init__(self, game, toll: Array | None = None, system_optimum: bool = False) -> None:
        g, net = game.graph, game.net
        self.n = int(g.n)
        self.tail = np.ascontiguousarray(g.tail, dtype=np.int64)
        self.head = np.ascontiguousarray(g.head, dtype=np.int64)
        self.sources = np.ascontiguousarray(g.source, dtype=np.int64)
        self.od = np.ascontiguousarray(g.od, dtype=float)
        self.stars = _stars(self.tail, self.head, self.n)
        self.t0 = np.ascontiguousarray(net.free_flow_time, dtype=float)
        self.b = np.ascontiguousarray(net.b, dtype=float)
        self.cap = np.ascontiguousarray(net.capacity, dtype=float)
        self.p = np.ascontiguousarray(net.power, dtype=float)
        fixed = game.fixed_cost if toll is None else game.fixed_cost + toll
        self.fixed = np.ascontiguousarray(fixed, dtype=float)
        self.so = bool(system_optimum)

    @property
    def bpr(self) -> tuple:
        return self.t0, self.b, self.cap, self.p, self.fixed, self.so

    def costs(self, x: Array) -> tuple[Array, Array]:
        c, dc = np.empty_like(x), np.empty_like(x)
        _costs(x, *self.bpr, c, dc)
        return c, dc

    def sptt(self, c: Array) -> float:
        """Total shortest-path cost ``sum_od d_od dist_od`` over the pairs with trips."""
        out_ptr, out_link, _, _ = self.stars
        return float(shortest_path_totals(self.sources, self.od, out_ptr, out_link, self.head,
                                          c).sum())

    def relative_gap(self, x: Array) -> float:
        c, _ = self.costs(x)
        total = float(c @ x)
        return (total - self.sptt(c)) / total if total > 0 else 0.0


FLOW_EPS = 1e-13
"""Bush flows below this share of their origin's trips count as none: rounding leaves
residues (1e-14 on a flow of 100) on links whose tail has lost its inflow, and a longest
path through one could not be walked back to the origin."""
INNER_PASSES = 1
"""Equilibration passes per origin after its bush update."""


def extra_sweeps(gap: float) -> int:
    """Sweeps over all origins (equilibration only) after the one with bush updates: more
    the closer the equilibrium, where the bushes change little and each sweep is cheap
    beside a bush update and the certificate. Measured on Chicago Sketch (CPU seconds, 1,
    3, 5, 10 sweeps): to 1e-4 0.68, 0.74, -, 1.34; to 1e-6 -, 1.42, 1.40, 2.01; to 1e-10
    (10 sweeps: 2.7, 20: 4.1; 2 passes after the update and 3 sweeps: 4.8)."""
    return 1 if gap > 1e-4 else 3 if gap > 1e-6 else 10


def solve(game, toll: Array | None = None, relative_gap: float = 1e-6,
          max_iterations: int = 100_000, progress=None,
          system_optimum: bool = False, paths: bool = False) -> BushResult:
    """Algorithm B to ``relative_gap`` (see the module docstring); ``paths``: the bushes'
    flows decomposed into paths as well (what a sensitivity analysis needs)."""
    start = time.perf_counter()
    net = Network(game, toll, system_optimum)
    out_ptr, out_link, in_ptr, in_link = net.stars
    Zo, E = net.sources.shape[0], net.tail.shape[0]
    flows = np.zeros((Zo, E))
    in_bush = np.zeros((Zo, E), np.bool_)
    c, dc = net.costs(np.zeros(E))
    _load_trees(net.sources, net.od, out_ptr, out_link, net.tail, net.head, c, flows, in_bush,
                np.empty((Zo, net.od.shape[1])))
    x = flows.sum(axis=0)
    eps = FLOW_EPS * net.od.sum(axis=1)
    history: list[float] = []
    gap = np.inf
    k = 0
    for k in range(1, max_iterations + 1):
        c, dc = net.costs(x)
        total = float(c @ x)
        gap = (total - net.sptt(c)) / total if total > 0 else 0.0
        check_finite(gap, "relative gap")
        history.append(gap)
        if progress:
            progress(k, gap)
        if gap <= relative_gap or k == max_iterations:
            break
        thresh = 0.01 * min(gap, 1e-3) if gap > 0 else 0.0
        _sweep(net.sources, in_bush, flows, x, c, dc, out_ptr, out_link, in_ptr, in_link,
               net.tail, net.head, *net.bpr, eps, True, INNER_PASSES, thresh)
        for _ in range(extra_sweeps(gap)):
            _sweep(net.sources, in_bush, flows, x, c, dc, out_ptr, out_link, in_ptr, in_link,
                   net.tail, net.head, *net.bpr, eps, False, 1, thresh)
        x = flows.sum(axis=0)  # drops the rounding the incremental updates gathered
    used = None
    if paths:
        used = _decompose(net.sources, net.od, flows, in_ptr, in_link, net.tail, eps)
    return BushResult(flow=x, relative_gap=float(gap), iterations=k,
                      history=np.asarray(history), converged=bool(gap <= relative_gap),
                      seconds=time.perf_counter() - start, paths=used)
