"""OpenSpiel's ``mfg_crowd_modelling_2d`` (C++ game, Python fictitious play) and its rebuild.

The game string: ``size``, ``horizon``, ``only_distribution_reward=true`` (no positional
reward, no move cost: with them OpenSpiel's value tables, keyed by the state string
``(x, y, t)``, would mix up states that differ in the last action, which the move cost
depends on). Defaults kept: ``noise_intensity=1`` (the displacement added after each
move is uniform over the 5 moves), ``crowd_aversion_coef=1``, no forbidden states.

Two quirks of the C++ game matter for a faithful rebuild:

* ``initial_distribution`` lists cells as ``x|y`` and merges them to ``x * size + y``,
  but the initial chance node places the agent at ``x = k % size, y = k // size``: the
  listed coordinates land transposed. To put mass ``m`` on cell ``(x, y)`` one lists
  ``y|x``; :func:`game_params` does so.
* The decision node at ``t = 0`` is rewarded against the game's built-in uniform
  distribution, whatever ``initial_distribution`` says; the reward is the same for every
  cell, so it cancels in the exploitability.
"""

from __future__ import annotations

import re
from importlib.metadata import version

import numpy as np
import pyspiel
from open_spiel.python import policy as policy_std
from open_spiel.python.mfg.algorithms import fictitious_play, nash_conv

from peers.games import blob_initial, openspiel_crowd

GAME = "mfg_crowd_modelling_2d"
_DECISION = re.compile(r"\((\d+), (\d+), (\d+)\)")


def versions() -> dict:
    return {"open_spiel": version("open_spiel")}


def initial(spec: dict) -> np.ndarray | None:
    """``(size * size,)`` initial distribution of a spec (``None``: OpenSpiel's uniform)."""
    return blob_initial(spec["size"]) if spec["mu0"] == "blob" else None


def game_params(size: int, horizon: int, mu0: np.ndarray | None) -> dict:
    params = {"size": size, "horizon": horizon, "only_distribution_reward": True}
    if mu0 is not None:
        x, y = np.divmod(np.arange(size * size), size)
        # transposed on purpose: see the module docstring
        params["initial_distribution"] = "[" + ";".join(f"{b}|{a}" for a, b in zip(x, y)) + "]"
        params["initial_distribution_value"] = "[" + ";".join(repr(float(v)) for v in mu0) + "]"
    return params


def build(spec: dict):
    """``(pyspiel game, crowdsteer game)`` for a spec ``{size, horizon, mu0}``."""
    mu0 = initial(spec)
    peer = pyspiel.load_game(GAME, game_params(spec["size"], spec["horizon"], mu0))
    return peer, openspiel_crowd(spec["size"], spec["horizon"], mu0)


class ArrayPolicy(policy_std.Policy):
    """A crowdsteer policy ``(T, S, A)`` seen by OpenSpiel; uniform at the unrewarded last step."""

    def __init__(self, game, pi: np.ndarray, size: int) -> None:
        super().__init__(game, [0])
        self.pi, self.size = pi, size

    def action_probabilities(self, state, player_id=None):
        x, y, t = map(int, _DECISION.fullmatch(state.observation_string(0)).groups())
        legal = state.legal_actions()
        if t >= len(self.pi):
            return {a: 1.0 / len(legal) for a in legal}
        row = self.pi[t, x * self.size + y]
        return {a: float(row[a]) for a in legal}


def exploitability(peer, policy) -> float:
    """OpenSpiel's NashConv: best-response value minus policy value, from the root."""
    return float(nash_conv.NashConv(peer, policy).nash_conv())


def check(spec: dict, policies: dict[str, np.ndarray]) -> list[dict]:
    """Exploitability of each fixed policy by OpenSpiel and by crowdsteer."""
    from crowdsteer.equilibrium import exploitability as ours

    peer, game = build(spec)
    rows = []
    for name, pi in policies.items():
        theirs = exploitability(peer, ArrayPolicy(peer, pi, spec["size"]))
        rows.append({"policy": name, "peer": theirs, "ours": ours(game, pi),
                     "precision": "float64"})
    return rows


def time_fp(spec: dict, knobs: dict) -> dict:
    """Python fictitious play: seconds per iteration, and a capped run to the tolerance."""
    from peers import timing

    peer, _ = build(spec)

    def run(fp, k: int) -> None:
        for _ in range(k):
            fp.iteration()

    out = {"per_iter": timing.per_iteration(run, knobs["peer_iterations"], knobs["peer_repeats"],
                                            setup=lambda: fictitious_play.FictitiousPlay(peer))}
    if knobs.get("to_tol", True):
        fp = fictitious_play.FictitiousPlay(peer)
        out["to_tol"] = timing.until(fp.iteration, lambda: exploitability(peer, fp.get_policy()),
                                     knobs["tolerance"], knobs["peer_cap_s"])
    return out
