"""Road networks from TNTP files: link-based Wardrop equilibrium, tolls, certificates.

The ``routing`` game with a ``network:`` section (instead of ``edges:``) is a
:class:`NetworkGame`: ``E`` links with BPR travel times, an origin-destination matrix
between zones, and travellers who minimise the generalised cost

.. math::

    c_e(x_e) = t_e(x_e) + \\gamma_\\text{toll} \\, \\text{toll}_e
        + \\gamma_\\text{dist} \\, \\text{length}_e + \\theta_e,
    \\qquad t_e(x) = t^0_e \\bigl(1 + b_e (x / \\kappa_e)^{p_e}\\bigr),

where ``theta_e`` is the meta-agent's toll (in cost units: minutes). Wardrop's
equilibrium minimises Beckmann's potential ``sum_e int_0^{x_e} c_e`` over the feasible
link flows.

The engines (:mod:`crowdsteer.learners.wardrop`) never enumerate paths: bi-conjugate
Frank-Wolfe works on link flows; gradient projection keeps only the paths in use,
generated from shortest paths as it goes.

As a mean-field game (the contract the meta-agent's code relies on) the game has
``T = 1`` and one "state" per link: ``mu = x / D`` with ``D`` the number of trips between
distinct zones, and ``reward(0, mu) = -D t(D mu)`` (travel time only), so that
``crowdsteer.equilibrium.welfare(game, mu) = -sum_e x_e t_e(x_e)``, minus the total
travel time (TSTT), tolls and generalised-cost terms excluded.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import Field, model_validator
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from crowdsteer.config_base import Strict
from crowdsteer.errors import ConfigError
from crowdsteer.games.base import SparseMoves, power_derivative
from crowdsteer.games.multiclass import (
    ClassesView, TravellerClass, block_demand, check_classes, expand,
)
from crowdsteer.games.tntp import TntpNetwork, read_net, read_nodes, read_trips

Array = np.ndarray
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]

DEFAULT_RELATIVE_GAP = 1e-6
"""Where ``learner: {name: exact}`` stops on a network unless ``relative_gap`` is set."""


class NetworkConfig(Strict):
    """The ``network`` subsection of ``game: {name: routing, network: ...}``."""

    net: str
    """``_net.tntp`` file (relative to the config file's folder)."""
    trips: str | None = None
    """``_trips.tntp`` file (one class of traveller; or give ``classes``)."""
    classes: Annotated[list[TravellerClass], Field(min_length=1)] | None = None
    """Several classes of traveller, each with its trips file, weights and PCE
    (:mod:`crowdsteer.games.multiclass`); instead of ``trips``."""
    node: str | None = None
    """Optional ``_node.tntp`` file: coordinates for the map."""
    toll_weight: NonNegFloat = 0.0
    """Cost units per toll unit in the generalised cost (Chicago Sketch: 0.02 min/cent)."""
    distance_weight: NonNegFloat = 0.0
    """Cost units per length unit (Chicago Sketch: 0.04 min/mile)."""

    @model_validator(mode="after")
    def _trips_or_classes(self) -> "NetworkConfig":
        if (self.trips is None) == (self.classes is None):
            raise ValueError("give exactly one of 'trips' (one class of traveller) and "
                             "'classes'")
        return self


def _resolve(path: str, base_dir: Path | None) -> Path:
    p = Path(path)
    return p if p.is_absolute() or base_dir is None else base_dir / p


@dataclass(frozen=True, eq=False)
class NetworkGame:
    """A road network with its demand, as arrays. Build it with :func:`build_network`.

    Attributes
    ----------
    net
        The links (:class:`~crowdsteer.games.tntp.TntpNetwork`), in file order.
    demand
        ``(Z, Z)`` trips between zones (intrazonal entries are ignored: they use no link).
    toll_weight, distance_weight
        Weights of the file's tolls and lengths in the generalised cost.
    coords
        ``(nodes, 2)`` node coordinates, or ``None``.
    """

    net: TntpNetwork
    demand: Array
    toll_weight: float = 0.0
    distance_weight: float = 0.0
    coords: Array | None = None
    trips_path: Path | None = None
    T: int = 1
    A: int = 1
    allowed: None = None
    mu0: Array = field(init=False, repr=False)
    transition: SparseMoves = field(init=False, repr=False)
    graph: "_Graph" = field(init=False, repr=False)

    def __post_init__(self) -> None:
        E = self.net.E
        od = self.demand.copy()
        np.fill_diagonal(od, 0.0)
        object.__setattr__(self, "demand", od)
        # The mean-field interface: one state per link, a single "stay" action. Nothing
        # moves; the network engine, not the generic solver, finds the equilibrium.
        object.__setattr__(self, "mu0", np.zeros(E))
        object.__setattr__(self, "transition", SparseMoves(
            np.arange(E)[:, None, None], np.ones((E, 1, 1))))
        object.__setattr__(self, "graph", _Graph(self.net, od))

    # ------------------------------------------------------------------ sizes and names
    @property
    def E(self) -> int:
        return self.net.E

    @property
    def S(self) -> int:
        return self.net.E

    @property
    def D(self) -> float:
        """Trips between distinct zones (the travellers who use the network)."""
        return float(self.demand.sum())

    @property
    def edge_names(self) -> tuple[str, ...]:
        """``"i->j"`` in the file's node ids (``#k`` for parallel links)."""
        names: list[str] = []
        seen: dict[str, int] = {}
        for i, j in zip(self.net.ids[self.net.tail], self.net.ids[self.net.head]):
            base = f"{i}->{j}"
            seen[base] = seen.get(base, 0) + 1
            names.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
        return tuple(names)

    @property
    def state_names(self) -> tuple[str, ...]:
        return self.edge_names

    # ------------------------------------------------------------------ costs
    @property
    def fixed_cost(self) -> Array:
        """``(E,)`` flow-independent generalised-cost terms: toll and distance."""
        return self.toll_weight * self.net.toll + self.distance_weight * self.net.length

    def travel_time(self, x: Array) -> Array:
        """``(E,)`` BPR travel times at link flows ``x``."""
        return self.net.travel_time(x)

    def travel_time_derivative(self, x: Array, order: int = 1) -> Array:
        """``(E,)`` first (or second) derivative of the BPR time in the flow."""
        n = self.net  # t = fft (1 + b u^p), u = x / capacity
        return (n.free_flow_time * n.b / n.capacity ** order
                * power_derivative(np.asarray(x, dtype=float) / n.capacity, n.power, order))

    def total_travel_time(self, x: Array) -> float:
        """TSTT ``sum_e x_e t_e(x_e)`` of link flows ``x`` (time only)."""
        return float(x @ self.travel_time(x))

    def generalised_cost(self, x: Array, toll: Array | None = None) -> Array:
        """``(E,)`` what a traveller pays per link: time + weighted toll and distance +
        ``toll`` (the meta-agent's, in cost units)."""
        c = self.travel_time(x) + self.fixed_cost
        return c if toll is None else c + toll

    # ------------------------------------------------------------------ mean-field view
    def flows(self, mu_t: Array) -> Array:
        """``(E,)`` link flows ``x = D mu``."""
        return self.D * np.asarray(mu_t, dtype=float)

    def reward(self, t: int, mu_t: Array) -> Array:
        """``(E,)`` ``-D t(D mu)``: ``mu . reward = -TSTT`` (time only)."""
        return -self.D * self.travel_time(self.flows(mu_t))

    def reward_vjp(self, t: int, mu_t: Array, g: Array) -> Array:
        """``(E,)`` ``g^T d reward / d mu = -D^2 t'(D mu) * g`` (the Jacobian is diagonal)."""
        return -self.D ** 2 * self.travel_time_derivative(self.flows(mu_t)) * np.asarray(g)

    def equilibrium_vjp(self, solution: Any, theta: Any, g_mu: Array) -> tuple[Array, float]:
        """``(g_theta, residual)``: ``dJ/dtheta`` (``(E,)``, per unit toll on each link) given
        ``dJ/dmu = g_mu`` (the shape of ``solution.mu``) at the equilibrium under tolls
        ``theta``; see :func:`crowdsteer.learners.wardrop.equilibrium_vjp`."""
        return ENGINES["equilibrium_vjp"](self, solution, _toll_vector(theta, self.E), g_mu)

    def worst_off(self, mu: Array) -> float:
        """``-D`` times the longest shortest-path travel time of any pair with demand, at the
        flows ``D mu[0]`` (the ``maxmin`` objective: the worst-off pair's time)."""
        x = self.flows(mu[0])
        dist = self.graph.distances(self.travel_time(x))
        return -self.D * float(dist[self.demand[self.graph.origins] > 0].max())

    def net_transfer(self, solution: Any, theta: Any) -> float:
        """What the tolls pay the travellers: minus the revenue ``-sum_e x_e theta_e``
        (0 with budget balance, where the revenue is handed back)."""
        if theta is None or isinstance(theta, RebatedTolls):
            return 0.0
        x = self.flows(solution.mu[0])
        return -float(x @ np.asarray(theta, dtype=float))

    # ------------------------------------------------------------------ equilibrium
    def solve_equilibrium(self, theta: Any = None, relative_gap: float = DEFAULT_RELATIVE_GAP,
                          max_iterations: int = 100_000, progress: Any = None,
                          temperature: float = 0.0, system_optimum: bool = False,
                          method: str = "auto") -> Any:
        """Wardrop equilibrium under tolls ``theta`` (``(E,)`` cost units, or ``None``): a
        :class:`~crowdsteer.learners.wardrop.NetworkSolution`. ``system_optimum`` solves
        for the system optimum instead (the equilibrium of marginal social costs);
        ``method`` names the engine (:data:`crowdsteer.learners.wardrop.METHODS`)."""
        engine = ENGINES["engine"]  # registered by crowdsteer.learners.wardrop

        if temperature > 0:
            raise ConfigError("learner.temperature", "road networks are solved for "
                              "Wardrop's (deterministic) equilibrium; allowed: 0")
        toll = _toll_vector(theta, self.E)
        self._check_overflow(toll)
        free = self.generalised_cost(np.zeros(self.E), toll)
        if np.any(free < 0):  # shortest paths (Dijkstra) need costs >= 0
            e = int(np.argmin(free))
            raise ConfigError("modifier.bounds", f"a subsidy makes link {self.edge_names[e]} "
                              f"cost {free[e]:.3g} < 0 at free flow; allowed: costs >= 0")
        if getattr(self, "classes", None) is not None:  # several classes: link engines
            if method == "bush":
                raise ConfigError("learner.method", "bush solves one class of traveller; "
                                  "allowed with classes: auto, bfw, gradient_projection")
            if method == "auto":  # the measured rule of one class before the bush engine
                many = int(np.count_nonzero(self.demand)) > MULTICLASS_PATH_PAIRS
                method = "bfw" if many and relative_gap >= 1e-6 else "gradient_projection"
        return engine(method)(self, toll, relative_gap, max_iterations, progress,
                              system_optimum)

    def _check_overflow(self, toll: Array | None) -> None:
        """Refuse demand or tolls whose costs overflow (every trip on every link bounds
        what a solve can meet): the engines would report a NaN gap naming nothing."""
        D = float(self.D)
        heavy = np.full(self.E, D if np.isfinite(D) else np.inf)
        with np.errstate(over="ignore", invalid="ignore"):
            untolled = D * float(np.max(self.generalised_cost(heavy))) if self.E else 0.0
            tolled = D * float(np.max(self.generalised_cost(heavy, toll))) if self.E else 0.0
            free = self.generalised_cost(np.zeros(self.E))
        if not np.all(np.isfinite(free)):
            raise ConfigError("game.network.net", "a link's toll or length times toll_weight "
                              "or distance_weight is not finite; allowed: finite costs")
        if not np.isfinite(untolled):
            raise ConfigError("game.network.trips", f"{D:.3g} trips make the network's costs "
                              "overflow (total cost not finite); allowed: demand whose total "
                              "cost stays finite in double precision")
        if not np.isfinite(tolled):
            raise ConfigError("modifier.bounds", "the tolls make the total cost overflow "
                              f"({D:.3g} trips); allowed: tolls whose total cost stays finite")

    def system_optimum(self, relative_gap: float = DEFAULT_RELATIVE_GAP,
                       progress: Any = None, max_iterations: int = 100_000) -> Any:
        """The system optimum: the link flows of least total travel time (time only, as the
        welfare objective counts it; the file's tolls and distances do not enter), the
        equilibrium of the marginal social times ``t + x t'``. Solved once per gap, kept."""
        cache = self.__dict__.setdefault("_system_optima", {})
        if relative_gap not in cache:
            fixed = self.fixed_cost
            cache[relative_gap] = self.solve_equilibrium(
                -fixed if np.any(fixed) else None, relative_gap=relative_gap,
                max_iterations=max_iterations, progress=progress, system_optimum=True)
        return cache[relative_gap]

    def first_best_tolls(self, relative_gap: float = DEFAULT_RELATIVE_GAP) -> Array:
        """``(E,)`` tolls (cost units) under which the travellers' equilibrium is the
        system optimum: the marginal-cost tolls ``x t'(x)`` there (Pigou; Beckmann et al.
        1956), less the generalised cost's fixed terms (toll and distance weights)."""
        x = self.system_optimum(relative_gap).flow
        return x * self.travel_time_derivative(x) - self.fixed_cost


@dataclass(frozen=True, eq=False)
class MultiClassNetworkGame(NetworkGame):
    """Several classes of traveller on one network (:mod:`crowdsteer.games.multiclass`).

    Vectors the engines and the meta-agent see have ``E = K * links`` entries, class by
    class (``x[k * links + e]``: class ``k``'s vehicles on link ``e``); ``net`` is the
    network itself (``links`` links); ``total_flow`` gives the PCE-weighted link flows.
    Costs are the classes' generalised costs scaled by their PCE (the same choices; a
    symmetric Jacobian, so the single-class engines apply).
    """

    classes: ClassesView | None = None
    first_best_tolls = None  # type: ignore[assignment]  # no system optimum here (yet)

    def __post_init__(self) -> None:
        K, L = self.classes.K, self.net.E
        demands = self.classes.demands.copy()
        for d in demands:
            np.fill_diagonal(d, 0.0)
        od = block_demand(demands)
        object.__setattr__(self, "classes", replace(self.classes, demands=demands))
        object.__setattr__(self, "demand", od)
        object.__setattr__(self, "mu0", np.zeros(K * L))
        object.__setattr__(self, "transition", SparseMoves(
            np.arange(K * L)[:, None, None], np.ones((K * L, 1, 1))))
        object.__setattr__(self, "graph", _ClassGraph(expand(self.net, K), od, K))
        object.__setattr__(self, "_pce", np.repeat(self.classes.pce, L))

    @property
    def E(self) -> int:
        return self.classes.K * self.net.E

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.classes.names

    @property
    def edge_names(self) -> tuple[str, ...]:
        links = NetworkGame.edge_names.fget(self)  # type: ignore[attr-defined]
        return tuple(f"{k}:{e}" for k in self.classes.names for e in links)

    def per_class(self, x: Array) -> Array:
        """``(K, links)`` view of a stacked vector."""
        return np.asarray(x, dtype=float).reshape(self.classes.K, self.net.E)

    def total_flow(self, x: Array) -> Array:
        """``(links,)`` PCE-weighted link flows ``X = sum_k pce_k x_k``."""
        return self.classes.pce @ self.per_class(x)

    @property
    def fixed_cost(self) -> Array:
        """``(E,)`` each class's toll and distance terms (unscaled)."""
        c = self.classes
        return (c.toll_weight[:, None] * self.net.toll + c.distance_weight[:, None]
                * self.net.length).ravel()

    def travel_time(self, x: Array) -> Array:
        """``(E,)`` every class's BPR time on each link, at the PCE-weighted flows."""
        return np.tile(self.net.travel_time(self.total_flow(x)), self.classes.K)

    def travel_time_derivative(self, x: Array, order: int = 1) -> Array:
        """``(E,)`` the diagonal ``pce_k^2 t'(X)`` of the scaled costs' Jacobian (what the
        engines' line searches and curvature estimates use)."""
        if order != 1:
            raise ConfigError("learner.solve_for", "the system optimum of several classes "
                              "is not available; allowed: equilibrium")
        single = NetworkGame.travel_time_derivative(self, self.total_flow(x))
        return self._pce ** 2 * np.tile(single, self.classes.K)

    def cost_jacobian(self, x: Array) -> Any:
        """``u -> J u`` with the scaled costs' full Jacobian ``pce_k pce_j t'(X)``."""
        L = self.net.E
        dt = NetworkGame.travel_time_derivative(self, self.total_flow(x))
        pce = self.classes.pce

        def apply(u: Array) -> Array:
            return self._pce * np.tile(dt * (pce @ u.reshape(-1, L)), self.classes.K)

        return apply

    def total_travel_time(self, x: Array) -> float:
        """Total travel time of all vehicles ``sum_k x_k . t(X)``."""
        return float(np.asarray(x) @ self.travel_time(x))

    def generalised_cost(self, x: Array, toll: Array | None = None) -> Array:
        """``(E,)`` ``pce_k (t(X) + fixed_k + theta_k)``: class ``k``'s cost scaled by its
        PCE (divide by it for the cost a vehicle of the class faces)."""
        c = self.travel_time(x) + self.fixed_cost
        return self._pce * (c if toll is None else c + toll)

    def reward_vjp(self, t: int, mu_t: Array, g: Array) -> Array:
        """``g^T d reward / d mu``: ``-D^2 pce_j t'(X) sum_k g_k`` on (class ``j``, link)."""
        x = self.flows(mu_t)
        dt = NetworkGame.travel_time_derivative(self, self.total_flow(x))
        summed = self.per_class(g).sum(axis=0)
        return -self.D ** 2 * self._pce * np.tile(dt * summed, self.classes.K)

    def equilibrium_vjp(self, solution: Any, theta: Any, g_mu: Array) -> tuple[Array, float]:
        """As :meth:`NetworkGame.equilibrium_vjp`; a toll ``theta_k`` enters the scaled
        cost as ``pce_k theta_k``."""
        g, residual = NetworkGame.equilibrium_vjp(self, solution, theta, g_mu)
        return g * self._pce, residual

    def system_optimum(self, *args: Any, **kwargs: Any) -> Any:
        raise ConfigError("learner.solve_for", "the system optimum of several classes is not "
                          "available; allowed: equilibrium")

    def class_gaps(self, x: Array, toll: Array | None = None) -> Array:
        """``(K,)`` each class's relative gap ``(c_k . x_k - SPTT_k) / c_k . x_k``, recomputed
        from the flows (shortest paths on every class's copy of the network)."""
        c = self.generalised_cost(x, toll)
        dist = self.graph.distances(c)
        Z = self.net.zones
        row_class = self.graph.origins // Z
        od = self.graph.od  # other classes' zones are unreachable (inf) and have no trips
        sp = np.bincount(row_class, weights=np.where(od > 0, od * np.where(od > 0, dist, 0),
                                                     0.0).sum(axis=1),
                         minlength=self.classes.K)
        used = (self.per_class(c) * self.per_class(x)).sum(axis=1)
        return np.where(used > 0, (used - sp) / np.where(used > 0, used, 1.0), 0.0)


MULTICLASS_PATH_PAIRS = 20_000
"""Above this many OD pairs (all classes), ``auto`` solves several classes by bi-conjugate
Frank-Wolfe at loose gaps (gradient projection's iterations cost ~ its used paths)."""


ENGINES: dict[str, Any] = {}
"""The engines by ``learner.method`` name (``bush``, ``bfw``, ``gradient_projection``),
``engine`` (the ``auto`` rule) and ``equilibrium_vjp``, registered by
:mod:`crowdsteer.learners.wardrop` (which ``import crowdsteer`` imports): the solver
imports the game, not the other way round."""

NETWORK_LEARNERS = ("exact", "routes")
"""Learners that work on road networks (the others simulate states, which a network lacks)."""


def check_learner(game: Any, name: str) -> None:
    """Refuse, in one line, a learner that cannot run on a road network."""
    if isinstance(game, NetworkGame) and name not in NETWORK_LEARNERS:
        raise ConfigError("learner.name", f"{name} does not run on road networks; allowed: "
                          "exact (the Wardrop equilibrium) or routes (travellers who learn "
                          "their routes)")


class RebatedTolls(np.ndarray):
    """``(E,)`` tolls whose revenue is handed back equally per traveller (budget balance).

    A lump sum changes no route, so the equilibrium is that of the plain tolls; only
    the net transfer (``0``) differs.
    """


def _toll_vector(theta: Any, E: int) -> Array | None:
    if theta is None:
        return None
    if callable(theta):
        raise ConfigError("modifier.name", "network games take tolls per link (the tolls "
                          "modifier); this modifier gives a state-action table")
    toll = np.asarray(theta, dtype=float)
    if toll.shape != (E,):
        toll = toll.reshape(-1)
        if toll.shape != (E,):
            raise ConfigError("modifier", f"network tolls need shape ({E},), got "
                              f"{np.shape(theta)}")
    return toll


class _Graph:
    """Shortest paths and all-or-nothing loading on the network, vectorised over origins.

    Zones below ``<FIRST THRU NODE>`` are never passed through: their outgoing links leave
    from a twin node (the zone as an origin), so paths can end at a zone but not cross it.
    Parallel links share one arc of the shortest-path graph, the cheapest of them.
    """

    def __init__(self, net: TntpNetwork, demand: Array) -> None:
        N, Z = net.nodes, net.zones
        blocked = net.blocked  # node ids below <FIRST THRU NODE>: never passed through
        twin = np.full(N, -1)
        twin[np.flatnonzero(blocked)] = N + np.arange(blocked.sum())
        self.n = N + int(blocked.sum())
        tail = np.where(blocked[net.tail], twin[net.tail], net.tail)
        self.tail, self.head = tail, net.head.copy()
        self.origins = np.flatnonzero(demand.sum(axis=1) > 0)  # zones with trips out
        self.source = np.where(twin[self.origins] >= 0, twin[self.origins], self.origins)
        self.od = demand[self.origins]  # (Zo, Z)
        self.Z = Z
        # one arc per (tail, head) pair, in CSR order
        key = self.tail * self.n + self.head
        self.pairs, self.pair_of = np.unique(key, return_inverse=True)
        self.parallel = self.pairs.shape[0] < key.shape[0]
        self.link_of_pair = np.zeros(self.pairs.shape[0], np.int64)
        self.link_of_pair[self.pair_of] = np.arange(key.shape[0])
        rows = self.pairs // self.n
        self.indptr = np.searchsorted(rows, np.arange(self.n + 1)).astype(np.int32)
        self.indices = (self.pairs % self.n).astype(np.int32)
        # flat (origin, node) indices: 32 bits while they fit (half the memory traffic)
        self._index = np.int32 if self.source.shape[0] * self.n < 2**31 else np.int64
        self._flat_rows = (np.arange(self.source.shape[0])[:, None] * self.n).astype(self._index)
        # (tail, head) -> pair lookup: a dense table while it is small, else a binary search
        self._table = None
        if self.n * self.n <= 4_000_000:
            self._table = np.full(self.n * self.n, -1, np.int32)
            self._table[self.pairs] = np.arange(self.pairs.shape[0], dtype=np.int32)

    def arc_link(self, tail: Array, head: Array) -> Array:
        """The link (the cheapest, among parallel ones) of each arc ``tail -> head``."""
        key = tail.astype(np.int64) * self.n + head
        pair = self._table[key] if self._table is not None else np.searchsorted(self.pairs, key)
        return self.link_of_pair[pair]

    def _pair_costs(self, cost: Array) -> Array:
        if not self.parallel:
            return cost[self.link_of_pair]
        # the cheapest of each group of parallel links
        order = np.lexsort((cost, self.pair_of))
        first = np.ones(order.shape[0], bool)
        first[1:] = self.pair_of[order[1:]] != self.pair_of[order[:-1]]
        self.link_of_pair = order[first]
        return cost[self.link_of_pair]

    def shortest_paths(self, cost: Array) -> tuple[Array, Array]:
        """``(dist, pred)``, ``(Zo, n)`` each, from every origin."""
        G = csr_matrix((self._pair_costs(cost), self.indices, self.indptr),
                       shape=(self.n, self.n))
        return dijkstra(G, directed=True, indices=self.source, return_predecessors=True)

    def distances(self, cost: Array) -> Array:
        """``(Zo, Z)`` shortest-path costs from every origin to every zone."""
        return self.shortest_paths(cost)[0][:, :self.Z]

    def all_or_nothing(self, cost: Array) -> tuple[Array, float, Array]:
        """Load every origin's trips on its shortest-path tree.

        Returns ``(y, sptt, dist)``: ``(E,)`` link flows, the total shortest-path cost
        ``sum_od d_od dist_od`` and ``(Zo, Z)`` the distances.
        """
        dist, pred = self.shortest_paths(cost)
        Zo, n = dist.shape
        has_trips = self.od > 0  # a pair with no trips may have no path: 0 * inf is NaN
        sptt = float(self.od[has_trips] @ dist[:, :self.Z][has_trips])
        pred = pred.astype(self._index)
        has = (pred >= 0).ravel()
        flat = np.arange(Zo * n, dtype=self._index)
        parent = np.where(has, (self._flat_rows + pred).ravel(), flat)
        # depth in each tree by pointer jumping: log2(depth) rounds of gathers
        depth = has.astype(np.int32)
        anc = parent
        while True:
            nxt = anc[anc]
            if np.array_equal(nxt, anc):
                break
            depth += depth[anc]
            anc = nxt
        load = np.zeros((Zo, n))
        load[:, :self.Z] = self.od
        load = load.ravel()
        top = int(depth.max())
        kind = np.uint8 if top < 2**8 else np.uint16 if top < 2**16 else np.uint32
        order = np.argsort(depth.astype(kind), kind="stable")
        bounds = np.cumsum(np.bincount(depth, minlength=top + 1))
        for level in range(top, 0, -1):  # deepest first: children before their parents
            idx = order[bounds[level - 1]:bounds[level]]
            np.add.at(load, parent[idx], load[idx])
        # the link of each tree arc pred -> node
        arcs = np.flatnonzero(has)
        link = self.arc_link(pred.ravel()[arcs], arcs % n)
        y = np.bincount(link, weights=load[arcs], minlength=cost.shape[0])
        return y, sptt, dist[:, :self.Z]


class _ClassGraph(_Graph):
    """The graph of ``K`` copies of a network: a class's zones are never reachable from
    another class's origins, and no trips go there; their distances read 0 (not inf), so
    that sums of trips times distances stay finite."""

    def __init__(self, net: TntpNetwork, demand: Array, K: int) -> None:
        super().__init__(net, demand)
        Z = net.zones // K
        self._other = (self.origins[:, None] // Z) != (np.arange(net.zones)[None, :] // Z)

    def shortest_paths(self, cost: Array) -> tuple[Array, Array]:
        dist, pred = super().shortest_paths(cost)
        dist[:, :self.Z][self._other] = 0.0
        return dist, pred


def build_network(cfg: NetworkConfig, base_dir: Path | None = None,
                  field_name: str = "game.network") -> NetworkGame:
    """Read the files, check every pair with trips can reach its destination."""
    net = read_net(_resolve(cfg.net, base_dir), f"{field_name}.net")
    if cfg.classes is not None:
        check_classes(cfg.classes, field_name)
        fields = [f"{field_name}.classes.{k}.trips" for k in range(len(cfg.classes))]
        paths = [_resolve(c.trips, base_dir) for c in cfg.classes]
    else:
        fields, paths = [f"{field_name}.trips"], [_resolve(cfg.trips, base_dir)]
    all_trips = [read_trips(p, net, f) for p, f in zip(paths, fields)]
    zone_ids = np.unique(np.concatenate([t.zone_ids for t in all_trips]))
    net = net.with_zones(zone_ids)  # zones: the nodes the trips files name, first
    demands = np.stack([_on_zones(t, zone_ids) for t in all_trips])
    _check_graph_size(net, demands.sum(axis=0), fields[0], len(all_trips))
    coords = None
    if cfg.node is not None:
        coords = read_nodes(_resolve(cfg.node, base_dir), net, f"{field_name}.node")
    if cfg.classes is None:
        game = NetworkGame(net, demands[0], cfg.toll_weight, cfg.distance_weight, coords,
                           paths[0])
    else:
        view = ClassesView(tuple(c.name for c in cfg.classes),
                           np.array([c.weight_of_toll for c in cfg.classes]),
                           np.array([c.distance_weight for c in cfg.classes]),
                           np.array([c.pce for c in cfg.classes]), demands)
        game = MultiClassNetworkGame(net, demands[0], 0.0, 0.0, coords, paths[0],
                                     classes=view)
    if game.D <= 0:
        raise ConfigError(fields[0], f"{paths[0]}: no trips between distinct zones")
    with np.errstate(over="ignore", invalid="ignore"):
        free = game.generalised_cost(np.zeros(game.E))
    if not np.all(np.isfinite(free)):
        raise ConfigError(f"{field_name}.net", "a link's toll or length times toll_weight or "
                          "distance_weight is not finite; allowed: finite costs")
    if np.any(free < 0):  # the file's own toll (or length) times its weight
        e = int(np.argmin(free))
        raise ConfigError(f"{field_name}.net", f"link {game.edge_names[e]} costs {free[e]:.3g} "
                          "< 0 at free flow (its toll or length, times toll_weight or "
                          "distance_weight); allowed: costs >= 0")
    dist = game.graph.distances(free)
    bad = np.argwhere(~np.isfinite(dist) & (game.graph.od > 0))
    if bad.size:
        origin = game.graph.origins[bad[0, 0]]
        k = int(origin // net.zones) if cfg.classes is not None else 0
        o, d = net.ids[origin % net.zones], net.ids[bad[0, 1] % net.zones]
        line = all_trips[k].origin_line.get(int(o))
        where = f"{paths[k]}" + (f", line {line}" if line else "")
        raise ConfigError(fields[k], f"{where}: origin {o} has trips to {d}, "
                          f"which no path reaches ({len(bad)} such pairs)")
    return game


def _on_zones(trips: Any, zone_ids: Array) -> Array:
    """A trips file's ``(Z, Z)`` demand on the union of the zones ``zone_ids``."""
    idx = np.searchsorted(zone_ids, trips.zone_ids)
    out = np.zeros((zone_ids.shape[0], zone_ids.shape[0]))
    out[np.ix_(idx, idx)] = trips.demand
    return out


def _check_graph_size(net: TntpNetwork, demand: Array, field: str, K: int = 1) -> None:
    """Refuse, before allocating, a network whose shortest-path trees cannot fit: each
    origin keeps distances, predecessors and loads over every node (about 40 bytes each)."""
    from crowdsteer.guards import check_memory

    origins = int(np.count_nonzero(demand.sum(axis=1) > 0))
    check_memory(40.0 * K * origins * K * (net.nodes + net.zones), field,
                 f"{origins:,} origins over {net.nodes:,} nodes", "use fewer zones")
