"""Names for what the report draws, saved beside a run's arrays (``labels.json``,
``reward.npy``): the states of games that are not grids, the terms the weights multiply,
the box of the weights and the agents' own reward.

Written by the meta-agent at the end of a run (:func:`save_labels`); read by the report
(:func:`read_labels`), which shows plain indices where the file is missing or damaged.

``labels.json``::

    {"states": ["player0", "player0:cooperate", ...] or null,
     "weights": ["1", "u", "v", "u^2", ...] or null,
     "bounds": [lo, hi],
     "reward": "desirability d_t(s)", "intrinsic reward r_t(s; mu) at w = 0" or null}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from crowdsteer import rundir

Array = np.ndarray


def state_names(game: Any) -> list[str] | None:
    """Names of the ``S`` states of a game that is not a grid (``None`` for grids)."""
    if getattr(game, "shape", None):
        return None
    names = getattr(game, "state_names", None)
    if names is None and hasattr(game, "od_names") and hasattr(game, "path_names"):
        names = (*game.od_names, *game.path_names)  # routing: origins, then paths
    if names is None or len(names) != game.S:
        return None
    return [str(n) for n in names]


def power_term(p: int, q: int) -> str:
    """``u^p v^q`` written plainly: ``1``, ``u``, ``u v^2``.

    >>> [power_term(p, q) for p, q in ((0, 0), (1, 0), (1, 2))]
    ['1', 'u', 'u v^2']
    """
    parts = [f"{x}^{k}" if k > 1 else x for x, k in (("u", p), ("v", q)) if k]
    return " ".join(parts) or "1"


def weight_names(config: Any, game: Any, n: int) -> list[str] | None:
    """What each weight multiplies: power-series terms (in the order of
    :func:`crowdsteer.modifiers.families.power_features`, per step with ``per_step``) or
    the tolled edges; ``None`` where the family has no such names."""
    cfg = config["modifier"]
    name = getattr(cfg, "name", None)
    if name == "potential_based":
        inner = dict(getattr(cfg, "potential", {}) or {})
        if inner.get("name") == "power_series":
            names = [f"Phi: {power_term(p, t - p)}" for t in range(int(inner.get("order", 2)) + 1)
                     for p in range(t, -1, -1)]
            return _per_step(names, n, game)
        return None
    if name == "power_series":
        names = [power_term(p, t - p) for t in range(cfg.order + 1) for p in range(t, -1, -1)]
        return _per_step(names, n, game)
    if name == "tolls":
        edges = getattr(game, "edge_names", None)
        links = getattr(cfg, "links", None)
        if edges is not None and links is None and len(edges) == n:
            return [f"toll {e}" for e in edges]
        if links is not None and len(links) == n:
            return [f"toll {a}-{b}" for a, b in links]
    return None


def _per_step(names: list[str], n: int, game: Any) -> list[str] | None:
    if len(names) == n:
        return names
    T = getattr(game, "T", 1)
    if len(names) * T == n:
        return [f"t={t + 1}: {x}" for t in range(T) for x in names]
    return None


def at_bound(w: Array, bounds: Any, tol: float = 0.01) -> Array:
    """``(d,)`` bool: weights within ``tol`` of the box's width from a bound other than 0 (a
    bound at 0, as for tolls, is "no modifier", not a limit the search ran into).

    >>> at_bound(np.array([-3.0, 0.5, 2.99]), (-3, 3)).tolist()
    [True, False, True]
    >>> at_bound(np.array([0.0, 2.0]), (0, 2)).tolist()
    [False, True]
    """
    w = np.asarray(w, dtype=float)
    if bounds is None:
        return np.zeros(w.shape, bool)
    lo, hi = float(bounds[0]), float(bounds[1])
    eps = tol * (hi - lo)
    return ((w <= lo + eps) & (lo != 0)) | ((w >= hi - eps) & (hi != 0))


def bound_note(config: Any, game: Any, w: Any) -> str | None:
    """One line naming the best weights that sit at a (non-zero) bound, or ``None``."""
    bounds = getattr(config["modifier"], "bounds", None)
    w = np.asarray(w, dtype=float)
    at = at_bound(w, bounds)
    if not at.any():
        return None
    names = weight_names(config, game, w.size) or [f"w_{i}" for i in range(w.size)]
    hit = [n for n, a in zip(names, at) if a]
    more = ", ..." if len(hit) > 6 else ""
    return (f"{len(hit)} of {w.size} best weights sit at a bound of "
            f"[{bounds[0]:g}, {bounds[1]:g}] ({', '.join(hit[:6])}{more}): the best w may "
            "lie outside the box; widen modifier.bounds to look there")


def intrinsic_reward(game: Any, mu: Array) -> tuple[Array, str]:
    """``(T, S)``: the crowd's desirability ``d`` where the game has one, else the landing
    reward ``r_t(s; mu_t)`` at the given mean field (the agents left alone)."""
    d = getattr(game, "d", None)
    if d is not None and np.shape(d) == (game.T, game.S):
        return np.asarray(d, dtype=float), "desirability d_t(s)"
    r = np.stack([np.asarray(game.reward(t, mu[t]), dtype=float) for t in range(game.T)])
    return r, "intrinsic reward r_t(s; mu) at w = 0"


def save_labels(out: Path, config: Any, game: Any, n: int, mu_base: Array | None,
                grid: Any) -> None:
    """Write ``labels.json`` and ``reward.npy`` (``grid`` shapes ``(T, S)`` as the other
    saved arrays); road networks (no ``reward``) get ``labels.json`` only."""
    reward_label = None
    if mu_base is not None and hasattr(game, "reward") and hasattr(game, "T"):
        try:
            reward, reward_label = intrinsic_reward(game, mu_base)
            rundir.save_npy(Path(out) / "reward.npy", grid(game, reward))
        except (ValueError, TypeError, AttributeError, FloatingPointError):
            reward_label = None
    bounds = getattr(config["modifier"], "bounds", None)
    rundir.write_json(Path(out) / "labels.json", {
        "states": state_names(game), "weights": weight_names(config, game, n),
        "bounds": None if bounds is None else [float(b) for b in bounds],
        "reward": reward_label})


def read_labels(run_dir: Path) -> dict[str, Any]:
    """``labels.json`` as a dict; ``{}`` when it is missing or not what it should be."""
    try:
        data = json.loads((Path(run_dir) / "labels.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    out: dict[str, Any] = {}
    for key in ("states", "weights"):
        v = data.get(key)
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            out[key] = v
    b = data.get("bounds")
    if (isinstance(b, list) and len(b) == 2 and all(isinstance(x, (int, float))
                                                  and not isinstance(x, bool) for x in b)):
        out["bounds"] = [float(x) for x in b]
    if isinstance(data.get("reward"), str):
        out["reward"] = data["reward"]
    return out
