"""Nonatomic routing: a continuum of travellers chooses paths through a network.

A directed multigraph (parallel edges allowed) with a latency ``l_e(x)`` on every
edge, where ``x`` is the flow on the edge, and origin-destination demands ``d_k``.
Each traveller of pair ``k`` picks a simple path from its origin to its destination;
a path costs the sum of its edges' latencies. The equilibrium is Wardrop's (1952):
every used path of a pair costs the least among the pair's paths. Latencies are

.. math::

    l_e(x) = a_e \\;(\\text{constant}), \\quad a_e + b_e x \\;(\\text{affine}), \\quad
    a_e + b_e x^{p_e} \\;(\\text{polynomial}), \\qquad a_e, b_e \\ge 0,\\; p_e > 0.

As a one-shot (``T = 1``) mean-field game: one origin state per pair (``K`` of them)
followed by one landing state per path (``P``), ``S = K + P``; action ``p`` is path ``p``
and lands in state ``K + p``; ``allowed[k, p]`` says path ``p`` serves pair ``k``. With
total demand ``D = sum_k d_k``, ``mu0[k] = d_k / D`` and the flow on path ``p`` is
``f_p = D mu(K + p)``; edge flows are ``x = Delta f`` with ``Delta`` the ``(E, P)``
edge-path incidence matrix (``edge_path``). The landing reward of path ``p`` is

.. math::

    r(K + p) = -D \\, c_p(x), \\qquad c_p(x) = \\sum_e \\Delta_{e p} \\, l_e(x_e),

the ``-D`` scaling making the population's welfare ``sum_s mu(s) r(s)`` exactly minus
the total travel time ``sum_e x_e l_e(x_e)`` (tolls excluded), and the potential
``Phi(mu) = -sum_e int_0^{x_e} l_e`` (minus Beckmann's, 1956) have gradient ``r``. With
``D = 1`` rewards are minus per-traveller costs; in general divide rewards (and
exploitabilities) by ``D`` to read them per traveller. So the objectives read: ``welfare``
is minus the total travel time; ``maxmin`` is ``-D`` times the average cost of the worst-off
pair; ``kl`` compares the distribution over states, i.e. over paths (origin states are
empty after the move: a target ``.npy`` of shape ``(S,)`` needs a tiny mass there, as
targets may not have zeros).

Classic instances (``examples/pigou.yaml``, ``examples/braess.yaml``): Pigou (1920),
one unit over latencies ``1`` and ``x``, equilibrium cost 1, optimum 3/4, price of anarchy
4/3 (Roughgarden & Tardos 2002); Braess (1968), equilibrium cost 2, optimum 3/2.

Examples
--------
>>> game = build(RoutingConfig.model_validate({
...     "demand": [{"from": "s", "to": "t", "amount": 1.0}],
...     "edges": [{"from": "s", "to": "t", "latency": {"kind": "constant", "a": 1}},
...               {"from": "s", "to": "t", "latency": {"kind": "affine", "a": 0, "b": 1}}]}))
>>> (game.K, game.P, game.S, game.A)
(1, 2, 3, 2)
>>> mu = np.array([0.0, 0.25, 0.75])    # a quarter on latency 1, three quarters on x
>>> game.reward(0, mu).tolist()
[0.0, -1.0, -0.75]
>>> game.total_travel_time(mu)           # 0.25 * 1 + 0.75 * 0.75
0.8125
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import ConfigDict, Field, model_validator

from crowdsteer.config_base import Strict
from crowdsteer.errors import ConfigError
from crowdsteer.games.base import SparseMoves, Transition, games
from crowdsteer.games.network import NetworkConfig, NetworkGame, build_network

Array = np.ndarray

NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class Latency(Strict):
    """A latency function ``l(x)`` of the flow ``x`` on an edge."""

    kind: Literal["constant", "affine", "polynomial"]
    """``constant``: ``a``; ``affine``: ``a + b x``; ``polynomial``: ``a + b x^p``."""
    a: NonNegFloat = 0.0
    """Free-flow latency (>= 0)."""
    b: NonNegFloat | None = None
    """Congestion coefficient (>= 0); needed by ``affine`` and ``polynomial``."""
    p: PositiveFloat | None = None
    """Exponent (> 0); needed by ``polynomial`` only."""

    @model_validator(mode="after")
    def _fields_of_kind(self) -> "Latency":
        needs = {"constant": (), "affine": ("b",), "polynomial": ("b", "p")}[self.kind]
        for key in ("b", "p"):
            given = getattr(self, key) is not None
            if key in needs and not given:
                raise ValueError(f"kind {self.kind} needs '{key}'")
            if key not in needs and given:
                raise ValueError(f"kind {self.kind} takes no '{key}'; allowed: a"
                                 + "".join(f", {k}" for k in needs))
        return self

    def coefficients(self) -> tuple[float, float, float]:
        """``(a, b, p)`` with ``l(x) = a + b x^p`` for every kind."""
        return self.a, self.b or 0.0, self.p or 1.0


class _Endpoints(Strict):
    # ``from`` is a Python keyword: the fields are ``source``/``target``, spelled
    # ``from``/``to`` in YAML and in the resolved config (dumped by alias).
    model_config = ConfigDict(extra="forbid", frozen=True, serialize_by_alias=True,
                              coerce_numbers_to_str=True)

    source: str = Field(alias="from", min_length=1)
    """Tail node."""
    target: str = Field(alias="to", min_length=1)
    """Head node."""


class Edge(_Endpoints):
    """A directed edge ``from -> to`` with its latency; parallel edges are allowed."""

    latency: Latency
    name: str | None = Field(default=None, min_length=1)
    """Label in reports and in the ``tolls`` modifier; default ``from->to`` (``#2``, ... for
    parallel edges)."""


class Demand(_Endpoints):
    """Travellers from ``from`` to ``to``."""

    amount: PositiveFloat = 1.0
    """Mass of travellers ``d_k`` (> 0)."""


class RoutingConfig(Strict):
    """The ``game`` section for ``name: routing``: either a small network given by its
    ``edges`` and ``demand`` (paths enumerated), or a road ``network`` read from TNTP files
    (link-based, :mod:`crowdsteer.games.network`); exactly one of the two."""

    name: Literal["routing"] = "routing"
    edges: Annotated[list[Edge], Field(min_length=1)] | None = None
    """The network: ``{from, to, latency: {kind, a, b, p}, name}`` per edge."""
    demand: Annotated[list[Demand], Field(min_length=1)] | None = None
    """Origin-destination pairs: ``{from, to, amount}`` (with ``edges``)."""
    max_paths: Annotated[int, Field(gt=0)] = 10_000
    """Refuse networks with more simple paths than this (their number grows exponentially)."""
    network: NetworkConfig | None = None
    """``{net, trips, node, toll_weight, distance_weight}``: TNTP files (instead of
    ``edges``)."""

    @model_validator(mode="after")
    def _one_form(self) -> "RoutingConfig":
        if (self.edges is None) == (self.network is None):
            raise ValueError("give exactly one of 'edges' (with 'demand') or 'network' "
                             "(TNTP files)")
        if self.edges is not None and self.demand is None:
            raise ValueError("'edges' needs 'demand': [{from, to, amount}, ...]")
        if self.network is not None and self.demand is not None:
            raise ValueError("with 'network' the demand comes from its trips file; remove "
                             "'demand'")
        return self


@dataclass(frozen=True, eq=False)
class RoutingGame:
    """A routing game as arrays. Build it with :func:`build` from a :class:`RoutingConfig`.

    Attributes
    ----------
    edge_names, path_names, od_names
        Labels of the ``E`` edges, ``P`` paths and ``K`` origin-destination pairs.
    edge_path
        ``(E, P)`` 0/1 incidence: ``edge_path[e, p] = 1`` iff path ``p`` uses edge ``e``.
    path_od
        ``(P,)`` the pair each path serves.
    demand
        ``(K,)`` demand ``d_k > 0`` of each pair.
    a, b, p
        ``(E,)`` latency coefficients: ``l_e(x) = a_e + b_e x^{p_e}``.
    """

    edge_names: tuple[str, ...]
    path_names: tuple[str, ...]
    od_names: tuple[str, ...]
    edge_path: Array
    path_od: Array
    demand: Array
    a: Array
    b: Array
    p: Array
    T: int = 1
    mu0: Array = field(init=False, repr=False)
    """``(S,)``: each pair's share ``d_k / D`` of the demand on its origin state."""
    transition: Transition = field(init=False, repr=False)
    """Action ``p`` lands in state ``K + p`` from any state."""
    allowed: Array = field(init=False, repr=False)
    """``(S, A)``: origin ``k`` may take pair ``k``'s paths; path state ``K + p`` only ``p``."""

    @property
    def K(self) -> int:
        return len(self.od_names)

    @property
    def P(self) -> int:
        return len(self.path_names)

    @property
    def E(self) -> int:
        return len(self.edge_names)

    @property
    def S(self) -> int:
        return self.K + self.P

    @property
    def A(self) -> int:
        return self.P

    @property
    def D(self) -> float:
        """Total demand."""
        return float(self.demand.sum())

    @property
    def state_names(self) -> tuple[str, ...]:
        """The ``K`` origin states, then the ``P`` path (landing) states."""
        return self.od_names + self.path_names

    def __post_init__(self) -> None:
        K, P, S = self.K, self.P, self.S
        # action p lands in state K + p from any state
        nxt = np.broadcast_to(K + np.arange(P), (S, P))
        object.__setattr__(self, "transition",
                           SparseMoves(nxt[:, :, None].copy(), np.ones((S, P, 1))))
        # a pair's own paths; a path state (never occupied before the move) only its own path
        allowed = np.zeros((S, P), bool)
        allowed[self.path_od, np.arange(P)] = True
        allowed[K + np.arange(P), np.arange(P)] = True
        object.__setattr__(self, "allowed", allowed)
        object.__setattr__(self, "mu0", np.concatenate([self.demand / self.D, np.zeros(P)]))

    def path_flow(self, mu_t: Array) -> Array:
        """``(P,)`` path flows ``f_p = D mu(K + p)``."""
        return self.D * np.maximum(mu_t[self.K:], 0.0)

    def edge_flow(self, mu_t: Array) -> Array:
        """``(E,)`` edge flows ``x = Delta f``."""
        return self.edge_path @ self.path_flow(mu_t)

    def latency(self, x: Array) -> Array:
        """``(E,)`` latencies ``l_e(x_e)``."""
        return self.a + self.b * x**self.p

    def path_cost(self, mu_t: Array) -> Array:
        """``(P,)`` per-traveller path costs ``c_p = sum_e Delta_ep l_e(x_e)``."""
        return self.edge_path.T @ self.latency(self.edge_flow(mu_t))

    def total_travel_time(self, mu_t: Array) -> float:
        """``sum_e x_e l_e(x_e)``, the social cost (``= sum_p f_p c_p``)."""
        x = self.edge_flow(mu_t)
        return float(x @ self.latency(x))

    def reward(self, t: int, mu_t: Array) -> Array:
        """``(S,)``: ``-D c_p`` on path states, 0 on origin states (never landed on)."""
        return np.concatenate([np.zeros(self.K), -self.D * self.path_cost(mu_t)])

    def potential(self, t: int, mu_t: Array) -> float:
        """Minus the Beckmann potential, ``-sum_e int_0^{x_e} l_e``; its gradient in ``mu``
        is :meth:`reward`. Wardrop equilibria maximise it over feasible flows."""
        x = self.edge_flow(mu_t)
        return float(-np.sum(self.a * x + self.b * x ** (self.p + 1) / (self.p + 1)))

    def marginal_cost_tolls(self, mu_t: Array) -> Array:
        """``(E,)`` Pigouvian tolls ``x_e l_e'(x_e) = b_e p_e x_e^{p_e}``: charged at the
        system optimum they make it a Wardrop equilibrium (Beckmann et al. 1956)."""
        return self.b * self.p * self.edge_flow(mu_t) ** self.p

    def toll_features(self) -> Array:
        """``(S, E)``: reward per unit toll on each edge, ``-D Delta^T`` on path states (0 on
        origin states); the ``tolls`` modifier's field is ``toll_features() @ w``."""
        return np.concatenate([np.zeros((self.K, self.E)), -self.D * self.edge_path.T])


def _edge_names(edges: list[Edge], field_name: str) -> tuple[str, ...]:
    names: list[str] = []
    taken = {e.name for e in edges if e.name is not None}
    for i, e in enumerate(edges):
        if e.name is not None:
            if e.name in names:
                raise ConfigError(f"{field_name}.edges.{i}.name",
                                  f"edge name {e.name!r} is used twice; names must be unique")
            names.append(e.name)
            continue
        base, k = f"{e.source}->{e.target}", 1
        name = base
        while name in names or name in taken:
            k += 1
            name = f"{base}#{k}"
        names.append(name)
    return tuple(names)


def simple_paths(out_edges: dict[str, list[int]], heads: list[str], origin: str,
                 destination: str) -> Iterator[list[int]]:
    """Every simple path ``origin -> destination`` as a list of edge indices (DFS, edges in
    the order given, so the paths come out in a fixed order)."""
    stack: list[tuple[str, list[int], frozenset[str]]] = [(origin, [], frozenset([origin]))]
    while stack:
        node, path, seen = stack.pop()
        if node == destination:
            yield path
            continue
        for e in reversed(out_edges.get(node, [])):  # reversed: the first edge is explored first
            if heads[e] not in seen:
                stack.append((heads[e], path + [e], seen | {heads[e]}))


@games.register("routing")
def build(cfg: RoutingConfig, base_dir: Path | None = None,
          field_name: str = "game") -> RoutingGame | NetworkGame:
    """Build a :class:`RoutingGame` (``edges``: check the network, enumerate each pair's
    simple paths) or a :class:`~crowdsteer.games.network.NetworkGame` (``network``)."""
    if cfg.network is not None:
        return build_network(cfg.network, base_dir, f"{field_name}.network")
    assert cfg.edges is not None and cfg.demand is not None
    nodes: list[str] = []
    out_edges: dict[str, list[int]] = {}
    for i, e in enumerate(cfg.edges):
        if e.source == e.target:
            raise ConfigError(f"{field_name}.edges.{i}", f"a loop at {e.source!r}: an edge "
                              "joins two different nodes")
        out_edges.setdefault(e.source, []).append(i)
        nodes += [n for n in (e.source, e.target) if n not in nodes]
    heads = [e.target for e in cfg.edges]
    edge_names = _edge_names(cfg.edges, field_name)

    paths: list[list[int]] = []
    path_od: list[int] = []
    pairs: list[tuple[str, str]] = []
    for k, d in enumerate(cfg.demand):
        where = f"{field_name}.demand.{k}"
        for key, node in (("from", d.source), ("to", d.target)):
            if node not in nodes:
                raise ConfigError(f"{where}.{key}", f"unknown node {node!r}; the edges join: "
                                  + ", ".join(nodes))
        if d.source == d.target:
            raise ConfigError(f"{where}.to", "origin and destination are the same node")
        if (d.source, d.target) in pairs:
            raise ConfigError(where, f"pair {d.source}->{d.target} is given twice; add the "
                              "amounts into one entry")
        pairs.append((d.source, d.target))
        found = 0
        for path in simple_paths(out_edges, heads, d.source, d.target):
            paths.append(path)
            path_od.append(k)
            found += 1
            if len(paths) > cfg.max_paths:
                raise ConfigError(f"{field_name}.max_paths", f"the network has more than "
                                  f"{cfg.max_paths} simple paths; raise max_paths or simplify it")
        if found == 0:
            raise ConfigError(where, f"no path from {d.source!r} to {d.target!r} along the "
                              "edges (they are directed)")

    edge_path = np.zeros((len(cfg.edges), len(paths)))
    for j, path in enumerate(paths):
        edge_path[path, j] = 1.0
    coef = np.array([e.latency.coefficients() for e in cfg.edges], dtype=float)
    return RoutingGame(
        edge_names=edge_names,
        path_names=tuple(" + ".join(edge_names[e] for e in path) for path in paths),
        od_names=tuple(f"{s}->{t}" for s, t in pairs),
        edge_path=edge_path,
        path_od=np.asarray(path_od, dtype=np.int64),
        demand=np.array([d.amount for d in cfg.demand], dtype=float),
        a=coef[:, 0], b=coef[:, 1], p=coef[:, 2],
    )


build.config = RoutingConfig  # type: ignore[attr-defined]
