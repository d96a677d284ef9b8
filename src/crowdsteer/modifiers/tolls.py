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
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

import numpy as np

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


@modifiers.register("tolls")
def tolls(cfg: TollsConfig, game: Game) -> LinearModifier:
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
    if not isinstance(game, Tolled):
        raise ConfigError("modifier.name", f"tolls need a game with edges (e.g. routing); "
                          f"{type(game).__name__} has none")
    features = np.asarray(game.toll_features(), dtype=float)
    if features.shape != (game.S, len(game.edge_names)) or features.shape[1] == 0:
        raise ConfigError("modifier.name", f"the game's toll features have shape "
                          f"{features.shape}; expected (S, E) = ({game.S}, "
                          f"{len(game.edge_names)}) with E > 0")
    return LinearModifier(game, features, cfg.per_step, cfg.budget_balanced)


tolls.config = TollsConfig  # type: ignore[attr-defined]
