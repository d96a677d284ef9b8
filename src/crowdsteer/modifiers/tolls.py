"""The ``tolls`` family: one toll per edge of a network game, charged to whoever uses it.

With ``w_e`` the toll on edge ``e`` (in the game's latency units; ``w_e < 0`` a subsidy
when the bounds allow it), a traveller on path ``p`` pays ``sum_e Delta_ep w_e``. The
field over landing states is the game's ``toll_features() @ w``, e.g. for
:class:`~crowdsteer.games.routing.RoutingGame`

.. math::

    f(K + p) = -D \\sum_e \\Delta_{e p} w_e, \\qquad f(k) = 0 \\text{ on origin states},

in the same ``-D`` scaling as the game's rewards, so ``w`` reads as a per-traveller toll
(the marginal-cost toll of Pigou's example is ``w = 1/2`` on the ``x`` link). It is a
:class:`~crowdsteer.modifiers.base.LinearModifier`: ``budget_balanced`` hands the toll
revenue back to the population as an equal lump sum (which changes no route choice);
``per_step`` gives each step its own tolls (one step in a one-shot game).

Any game can opt in by exposing ``edge_names`` and ``toll_features()`` (:class:`Tolled`).

On a road network (:class:`~crowdsteer.games.network.NetworkGame`) the modifier is a
:class:`NetworkTolls`: ``theta(w)`` is the ``(E,)`` vector of tolls in cost units
(minutes), ``w_l`` on the ``l``-th listed link and 0 elsewhere; ``links`` (``[[from, to],
...]``, the file's node numbers) restricts the tolls to those links (second-best
tolling), all links when omitted. ``budget_balanced`` hands the revenue back as an equal
lump sum per traveller: routes, flows and travel times are unchanged (a lump sum changes
no path's relative cost); only the net transfer (0 instead of minus the revenue) and
each traveller's money differ.
"""

from __future__ import annotations

from typing import Annotated, Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import Field

from crowdsteer.errors import ConfigError
from crowdsteer.games.base import Game
from crowdsteer.modifiers.base import LinearModifier, ModifierConfig, modifiers

Array = np.ndarray


@runtime_checkable
class Tolled(Protocol):
    """A game with edges that can carry tolls."""

    edge_names: tuple[str, ...]

    def toll_features(self) -> Array:
        """``(S, E)``: landing reward per unit toll on each edge."""
        ...


class TollsConfig(ModifierConfig):
    """``name: tolls``: one toll per edge (``w_e`` in latency units)."""

    name: Literal["tolls"] = "tolls"
    bounds: tuple[float, float] = (0.0, 2.0)
    """``[lo, hi]``: the box every toll lies in (must contain 0; ``lo < 0`` allows subsidies)."""
    links: Annotated[list[tuple[int | str, int | str]], Field(min_length=1)] | None = None
    """``[[from, to], ...]``: toll only these links (second-best tolls); default every link.
    Road networks: the file's node numbers; ``edges`` games: the edges' end nodes."""
    classes: Annotated[list[str], Field(min_length=1)] | None = None
    """Road networks with several classes of traveller: toll only these classes (default
    all)."""
    per_class: bool = False
    """Road networks with several classes: each tolled class has its own tolls (``w`` has
    one toll per link and class, class by class); else one toll per link charged to every
    tolled class (in cost units)."""


class NetworkTolls:
    """Tolls on (some) links of a road network: ``theta(w)`` is the ``(E,)`` toll vector.

    Parameters
    ----------
    game
        A :class:`~crowdsteer.games.network.NetworkGame`.
    links
        ``(L,)`` indices of the tolled links.
    budget_balanced
        Hand the revenue back equally per traveller (see the module docstring).
    param
        ``(L,)`` which toll ``w_k`` each tolled link charges (parallel links listed once in
        ``links:`` share one); default one toll per link.

    Examples
    --------
    >>> class Net:  # any game with E links
    ...     E = 3
    >>> m = NetworkTolls(Net(), np.array([2, 0]))
    >>> m.theta(np.array([0.5, 1.0])).tolist()
    [1.0, 0.0, 0.5]
    >>> m.theta_vjp(np.zeros(2), np.array([1.0, 2.0, 3.0])).tolist()
    [3.0, 1.0]
    >>> shared = NetworkTolls(Net(), np.array([0, 1]), param=np.array([0, 0]))
    >>> shared.theta(np.array([2.0])).tolist(), shared.theta_vjp(None, np.ones(3)).tolist()
    ([2.0, 2.0, 0.0], [2.0])
    """

    def __init__(self, game: Game, links: Array, budget_balanced: bool = False,
                 param: Array | None = None) -> None:
        self.game = game
        self.links = np.asarray(links, dtype=np.int64)
        self.param = (np.arange(self.links.shape[0]) if param is None
                      else np.asarray(param, dtype=np.int64))
        self.budget_balanced = budget_balanced
        self.per_step = False
        self.n_params = int(self.param.max()) + 1 if self.param.size else 0

    def _check(self, w: Array) -> Array:
        w = np.asarray(w, dtype=float)
        if w.shape != (self.n_params,):
            raise ValueError(f"w has shape {w.shape}; this modifier takes ({self.n_params},)")
        return w

    def theta(self, w: Array) -> Array:
        """``(E,)`` tolls in cost units (a ``RebatedTolls`` view when budget-balanced)."""
        from crowdsteer.games.network import RebatedTolls

        toll = np.zeros(self.game.E)
        toll[self.links] = self._check(w)[self.param]
        return toll.view(RebatedTolls) if self.budget_balanced else toll

    def field(self, w: Array) -> Array:
        """``(1, E)``: the toll on each link, in cost units (what a traveller pays)."""
        return np.asarray(self.theta(w), dtype=float)[None].copy()

    def w_from_tolls(self, toll: Array) -> Array:
        """``(n_params,)`` the ``w`` closest to charging ``toll`` (``(E,)``, cost units): each
        parameter's mean toll over the links it charges."""
        toll = np.asarray(toll, dtype=float).reshape(-1)[self.links]
        count = np.bincount(self.param, minlength=self.n_params)
        return np.bincount(self.param, weights=toll, minlength=self.n_params) / count

    def theta_vjp(self, w: Array, g_theta: Array) -> Array:
        """``(n_params,)``: ``g_theta . d theta / d w`` (tolls are ``w`` on the listed links;
        parallel links sharing a toll add up)."""
        g = np.asarray(g_theta, dtype=float).reshape(-1)[self.links]
        return np.bincount(self.param, weights=g, minlength=self.n_params)


def _link_indices(cfg: TollsConfig, tails: list[str], heads: list[str]) -> tuple[Array, Array]:
    """``(links, param)``: the tolled links and the toll each charges; a listed pair
    ``[from, to]`` tolls every parallel link from ``from`` to ``to`` with one toll."""
    if cfg.links is None:
        return np.arange(len(tails)), np.arange(len(tails))
    index: dict[tuple[str, str], list[int]] = {}
    for e, key in enumerate(zip(tails, heads)):
        index.setdefault(key, []).append(e)
    out: list[int] = []
    param: list[int] = []
    listed: set[tuple[str, str]] = set()  # a set: searching ``out`` made L links O(L^2)
    for i, (a, b) in enumerate(cfg.links):
        key = (str(a), str(b))
        found = index.get(key)
        if not found:
            raise ConfigError(f"modifier.links.{i}", f"no link {a} -> {b} in the network")
        if key in listed:
            raise ConfigError(f"modifier.links.{i}", f"link {a} -> {b} is listed twice")
        listed.add(key)
        out.extend(found)
        param.extend([i] * len(found))
    return np.asarray(out, dtype=np.int64), np.asarray(param, dtype=np.int64)


def _class_tolls(cfg: TollsConfig, game: Game, links: Array,
                 param: Array) -> tuple[Array, Array]:
    """Tolled (class, link) entries of a network with several classes (``(E,)`` vectors
    class by class): the listed classes, sharing ``param`` or each its own."""
    names = getattr(game, "class_names", None)
    if names is None:
        for key in ("classes", "per_class"):
            if getattr(cfg, key) not in (None, False):
                raise ConfigError(f"modifier.{key}", "this network has one class of "
                                  "traveller; classes and per_class apply with several "
                                  "(network.classes)")
        return links, param
    chosen = list(range(len(names)))
    if cfg.classes is not None:
        unknown = [c for c in cfg.classes if c not in names]
        if unknown:
            raise ConfigError("modifier.classes", f"unknown class {unknown[0]!r}; allowed: "
                              f"{', '.join(names)}")
        chosen = [names.index(c) for c in dict.fromkeys(cfg.classes)]
    L = game.net.E
    n = int(param.max()) + 1
    out_links = np.concatenate([k * L + links for k in chosen])
    out_param = np.concatenate([param + (j * n if cfg.per_class else 0)
                                for j in range(len(chosen))])
    return out_links, out_param


@modifiers.register("tolls")
def tolls(cfg: TollsConfig, game: Game) -> LinearModifier | NetworkTolls:
    """A :class:`LinearModifier` over the game's toll features; refuses games without edges.

    Examples
    --------
    >>> from crowdsteer.config import build_game, load_config
    >>> one = {"name": "one", "from": "s", "to": "t", "latency": {"kind": "constant", "a": 1}}
    >>> x = {"name": "x", "from": "s", "to": "t", "latency": {"kind": "affine", "b": 1}}
    >>> game = build_game(load_config({"game": {
    ...     "name": "routing", "demand": [{"from": "s", "to": "t"}], "edges": [one, x]}}))
    >>> m = tolls(TollsConfig(), game)
    >>> m.field(np.array([0.0, 0.5])).tolist()   # states: origin, path "one", path "x"
    [[0.0, 0.0, -0.5]]
    """
    if hasattr(game, "solve_equilibrium"):  # a road network: tolls per link
        tails = [str(i) for i in game.net.ids[game.net.tail]]
        heads = [str(j) for j in game.net.ids[game.net.head]]
        links, param = _link_indices(cfg, tails, heads)
        links, param = _class_tolls(cfg, game, links, param)
        return NetworkTolls(game, links, cfg.budget_balanced, param)
    if not isinstance(game, Tolled):
        raise ConfigError("modifier.name", f"tolls need a game with edges (e.g. routing); "
                          f"{type(game).__name__} has none")
    features = np.asarray(game.toll_features(), dtype=float)
    if features.shape != (game.S, len(game.edge_names)) or features.shape[1] == 0:
        raise ConfigError("modifier.name", f"the game's toll features have shape "
                          f"{features.shape}; expected (S, E) = ({game.S}, "
                          f"{len(game.edge_names)}) with E > 0")
    if cfg.links is not None:
        ends = [name.split("#")[0].split("->") for name in game.edge_names]
        keep, param = _link_indices(cfg, [e[0] for e in ends], [e[-1] for e in ends])
        share = np.zeros((keep.shape[0], int(param.max()) + 1))
        share[np.arange(keep.shape[0]), param] = 1.0  # parallel edges share one toll
        features = features[:, keep] @ share
    return LinearModifier(game, features, cfg.per_step, cfg.budget_balanced)


tolls.config = TollsConfig  # type: ignore[attr-defined]
