"""MFGLib's ``crowd_motion`` (PyTorch) and its rebuild.

``Environment.crowd_motion(T, torus_l=n, torus_w=n)`` with its defaults: ``c = 10``,
``log_eps = 1e-10``, ``p_still = 0.5``, ``loc_change_freq = 2``, ``seed = 0``, uniform
``mu0``. Time points ``t = 0..T``; the reward at ``t`` is
``c * (1 - |x - bar_t|_1 / (l + w)) - log(mu_t(x) + log_eps)`` where the bar takes a
seeded random walk; the move adds a random displacement (stay with ``p_still``, each
other direction ``(1 - p_still) / 4``) and clips the sum to the grid.

The rebuild reads the bar term ``c * c1s[t]`` off the environment (the walk comes from
PyTorch's generator) and uses crowdsteer's ``-log(max(mu, 1e-12))`` for MFGLib's
``-log(mu + 1e-10)``: the two differ by about ``1e-10 / mu`` per reward.

MFGLib computes in PyTorch's default ``float32``; the agreement check also runs it in
``float64`` (``torch.set_default_dtype``) to separate rounding from modelling.
"""

from __future__ import annotations

from importlib.metadata import version

import numpy as np
import torch

from mfglib.alg import (  # before mfglib.scoring: importing that first is circular
    FictitiousPlay, OnlineMirrorDescent, PriorDescent,
)
from mfglib.env import Environment
from mfglib.scoring import exploitability_score

from peers.games import mfglib_crowd


def versions() -> dict:
    return {"mfglib": version("mfglib"), "torch": torch.__version__,
            "opt_einsum": version("opt_einsum")}


def environment(spec: dict) -> Environment:
    return Environment.crowd_motion(T=spec["T"], torus_l=spec["n"], torus_w=spec["n"])


def build(spec: dict):
    """``(MFGLib environment, crowdsteer game)`` for a spec ``{n, T}``."""
    env = environment(spec)
    rf = env.reward_fn
    bonus = np.stack([rf.c * rf.c1s[t][..., 0].double().numpy() for t in range(spec["T"] + 1)])
    return env, mfglib_crowd(bonus, p_still=0.5)


def to_peer(pi: np.ndarray, n: int) -> torch.Tensor:
    """``(T, S, A)`` -> MFGLib's ``(T + 1, n, n, A)``; the last (irrelevant) step uniform."""
    T, S, A = pi.shape
    full = np.concatenate([pi, np.full((1, S, A), 1.0 / A)])
    return torch.tensor(full.reshape(T + 1, n, n, A), dtype=torch.get_default_dtype())


def check(spec: dict, policies: dict[str, np.ndarray]) -> list[dict]:
    """Exploitability of each fixed policy by MFGLib (float32 and float64) and by crowdsteer."""
    from crowdsteer.equilibrium import exploitability as ours

    rows = []
    for dtype in (torch.float32, torch.float64):
        old = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            env, game = build(spec)
            kernel = game.transition.dense()  # (S, A, S'); MFGLib's p is (dst..., src..., A)
            theirs = env.transition_fn.p.double().numpy().reshape(game.S, game.S, game.A)
            kernel_diff = float(np.abs(kernel - theirs.transpose(1, 2, 0)).max())
            for name, pi in policies.items():
                theirs_expl = float(exploitability_score(env, to_peer(pi, spec["n"])))
                rows.append({"policy": name, "peer": theirs_expl, "ours": ours(game, pi),
                             "precision": str(dtype).replace("torch.", ""),
                             "kernel_diff": kernel_diff})
        finally:
            torch.set_default_dtype(old)
    return rows


def time_fp(spec: dict, knobs: dict) -> dict:
    """Fictitious play (``alpha = 0``: weights ``1/(i+2)``): per iteration, and a capped run.

    One iteration is ``FictitiousPlay.step_next_state`` (mean field, greedy best response,
    its mean field, the state-weighted average); ``solve`` would also score every iterate,
    which is kept out of the timing as it is for OpenSpiel.
    """
    from peers import timing

    torch.backends.opt_einsum.enabled = knobs.get("opt_einsum", True)
    env = environment(spec)
    alg = FictitiousPlay()
    uniform = torch.ones((spec["T"] + 1, spec["n"], spec["n"], 5)) / 5

    def run(state, k: int) -> None:
        for _ in range(k):
            state = alg.step_next_state(state, None, None)

    out = {"per_iter": timing.per_iteration(run, knobs["peer_iterations"], knobs["peer_repeats"],
                                            setup=lambda: alg.init_state(env, uniform)),
           "opt_einsum": torch.backends.opt_einsum.enabled,
           "threads": torch.get_num_threads()}
    if knobs.get("to_tol", True):
        box = {"state": alg.init_state(env, uniform)}

        def step() -> None:
            box["state"] = alg.step_next_state(box["state"], None, None)

        def evaluate() -> float:
            return float(exploitability_score(env, box["state"].pi))

        out["to_tol"] = timing.until(step, evaluate, knobs["tolerance"], knobs["peer_cap_s"])
    return out


BEST_CANDIDATES = {
    "FictitiousPlay()": FictitiousPlay,
    "OnlineMirrorDescent()": OnlineMirrorDescent,
    "PriorDescent()": PriorDescent,
}
"""MFGLib's iterative algorithms with their default parameters (MF-OMO and occupation-measure
inclusion solve an optimisation problem per iterate: far slower at this size)."""


def time_best(spec: dict, knobs: dict) -> dict:
    """Each candidate from the uniform policy until ``exploitability_score <= tolerance`` or
    the cap, in float64 (float32 rounds the score of this game, values ~ 100, at ~1e-4)."""
    from peers import timing

    torch.set_default_dtype(torch.float64)
    torch.backends.opt_einsum.enabled = True
    env = environment(spec)
    uniform = torch.ones((spec["T"] + 1, spec["n"], spec["n"], 5)) / 5
    out = {}
    for name, cls in BEST_CANDIDATES.items():
        alg = cls()
        box = {"state": alg.init_state(env, uniform)}

        def step() -> None:
            box["state"] = alg.step_next_state(box["state"], None, None)

        def evaluate() -> float:
            return float(exploitability_score(env, box["state"].pi))

        res = timing.until(step, evaluate, knobs["tolerance"], knobs["peer_cap_s"])
        res.pop("history")
        out[name] = res
    return {"best": out, "dtype": "float64"}
