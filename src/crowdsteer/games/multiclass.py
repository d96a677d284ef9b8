"""Several classes of traveller on one road network (cars and trucks, each with its own
demand, value of time, distance weight and passenger-car equivalent).

``network: {net: ..., classes: [{name, trips, value_of_time or toll_weight,
distance_weight, pce}, ...]}``. Class ``k`` with flows ``x_k`` (vehicles per link) sees

.. math::

    c_{k,e} = t_e(X_e) + \\gamma^\\text{toll}_k \\, \\text{toll}_e
        + \\gamma^\\text{dist}_k \\, \\text{length}_e + \\theta_{k,e},
    \\qquad X_e = \\sum_k \\text{pce}_k \\, x_{k,e},

where ``theta`` is the meta-agent's toll for that class (cost units). Scaling class
``k``'s costs by ``pce_k`` changes no choice and makes the Jacobian symmetric
(``pce_k pce_j t'(X)``), so the equilibrium minimises the potential
``sum_e int_0^{X_e} t + sum_k pce_k (fixed_k + theta_k) . x_k``: the single-class
engines (:mod:`crowdsteer.learners.wardrop`) solve it on ``K`` copies of the network
(one per class, sharing the congestion through ``X``) and certify every class by its own
relative gap.

As a mean-field game the states are the ``K E`` (class, link) pairs, ``mu = x / D`` with
``D`` all trips, ``reward = -D t(X)``, so that the welfare is minus the total travel time
of all vehicles ``sum_k x_k . t(X)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Annotated, Any

import numpy as np
from pydantic import Field, model_validator

from crowdsteer.config_base import Strict
from crowdsteer.errors import ConfigError
from crowdsteer.games.tntp import TntpNetwork

Array = np.ndarray
PosFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class TravellerClass(Strict):
    """One entry of ``network.classes``."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_\-]+$")]
    """Letters, digits, ``_`` and ``-`` (it names the class's column in flows.csv)."""
    trips: str
    """The class's ``_trips.tntp`` file."""
    value_of_time: PosFloat | None = None
    """Toll units per cost unit (e.g. cents per minute): ``toll_weight = 1 / value_of_time``."""
    toll_weight: NonNegFloat | None = None
    """Cost units per toll unit (give this or ``value_of_time``; default 0)."""
    distance_weight: NonNegFloat = 0.0
    """Cost units per length unit."""
    pce: PosFloat = 1.0
    """Passenger-car equivalents per vehicle of the class (its weight in the congestion)."""

    @model_validator(mode="after")
    def _one_weight(self) -> "TravellerClass":
        if self.value_of_time is not None and self.toll_weight is not None:
            raise ValueError("give value_of_time or toll_weight, not both")
        return self

    @property
    def weight_of_toll(self) -> float:
        if self.value_of_time is not None:
            return 1.0 / self.value_of_time
        return self.toll_weight or 0.0


def expand(net: TntpNetwork, K: int) -> TntpNetwork:
    """``K`` copies of the network, zones first: zone ``z`` of class ``k`` is node
    ``k Z + z``, other node ``v`` is ``K Z + k (N - Z) + v - Z``; links of class ``k`` are
    ``k E .. (k + 1) E - 1``."""
    N, Z = net.nodes, net.zones
    k = np.arange(K)[:, None]

    def node(v: Array) -> Array:
        return np.where(v < Z, k * Z + v, K * Z + k * (N - Z) + v - Z).ravel()

    ids = np.concatenate([np.tile(net.ids[:Z], K), np.tile(net.ids[Z:], K)])
    tile = {name: np.tile(getattr(net, name), K) for name in (
        "capacity", "length", "free_flow_time", "b", "power", "speed", "toll", "link_type")}
    return replace(net, nodes=K * N, zones=K * Z, tail=node(net.tail), head=node(net.head),
                   ids=ids, **tile)


@dataclass(frozen=True, eq=False)
class ClassesView:
    """What the network games need from the classes: names, weights, PCE (``(K,)`` each)."""

    names: tuple[str, ...]
    toll_weight: Array
    distance_weight: Array
    pce: Array
    demands: Array = field(repr=False)
    """``(K, Z, Z)`` trips per class (intrazonal entries zeroed)."""

    @property
    def K(self) -> int:
        return len(self.names)


def block_demand(demands: Array) -> Array:
    """``(K Z, K Z)`` block-diagonal demand of the expanded network."""
    K, Z, _ = demands.shape
    out = np.zeros((K * Z, K * Z))
    for k in range(K):  # K blocks (a handful of classes)
        out[k * Z:(k + 1) * Z, k * Z:(k + 1) * Z] = demands[k]
    return out


def check_classes(classes: list[TravellerClass], field_name: str) -> None:
    names = [c.name for c in classes]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ConfigError(f"{field_name}.classes", f"class name {dup!r} is used twice; "
                          "allowed: distinct names")
