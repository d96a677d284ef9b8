"""Deep agents on your own PettingZoo env: PPO agents trained by crowdsteer, steered by the meta-agent.

The env below is *yours*, not a crowdsteer game: ``N`` commuters leave home each morning
over ``T`` half-hour slots; each slot a commuter still at home either waits or leaves by
one of three roads; a road's travel time grows with the share of commuters on it that
slot, and arriving late costs. Observations are a Box ``[slot / T, at_home]``: crowdsteer
knows nothing of states or a model here.

1. The modifier is added through crowdsteer's reward wrapper,
   :func:`crowdsteer.envs.modify_rewards`, with a callable of your own:
   ``Theta(observation, action; w) = w[action - 1]`` for leaving by road ``action`` (a toll
   when negative; waiting pays nothing).
2. :func:`crowdsteer.train_ppo` trains shared-parameter PPO agents (TorchRL)
   on the wrapped env.
3. The meta-agent (:func:`crowdsteer.optimise`) picks ``w`` so that the road split gets
   close to a target split (J = KL of the observed split to it). Without a model, no
   exploitability certificate exists: the agents' own estimate is reported instead.

Needs ``pip install 'crowdsteer[deep]'``. Run it (a few minutes; ``--evaluations 4`` for a
quick look)::

    .venv/bin/python examples/ppo_pettingzoo.py --evaluations 12 --agents 100
"""

from __future__ import annotations

import argparse
import functools

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from crowdsteer import Outcome, RunResult, optimise, train_ppo
from crowdsteer.envs import modify_rewards

FREE_FLOW = np.array([1.0, 1.5, 2.0])  # travel time of each road when empty
CROWDING = np.array([3.0, 1.5, 0.5])  # extra time per unit share of the commuters on it
TARGET = np.array([0.3, 0.4, 0.3])  # the road split the city wants


class Commute(ParallelEnv):
    """``N`` commuters, ``T`` slots; action 0 waits, 1..3 leave by a road (then done)."""

    metadata = {"name": "commute_v0"}

    def __init__(self, agents: int = 100, slots: int = 3) -> None:
        self.possible_agents = [f"commuter_{i}" for i in range(agents)]
        self.T = slots
        self._obs = spaces.Box(0.0, 1.0, (2,), np.float32)
        self._act = spaces.Discrete(1 + len(FREE_FLOW))
        self.split = np.zeros(len(FREE_FLOW))

    def observation_space(self, agent):
        return self._obs

    def action_space(self, agent):
        return self._act

    def _observe(self, agents=None):
        """``[slot / T, at home]`` of each of ``agents`` (default: those still at home)."""
        agents = self.agents if agents is None else agents
        return {a: np.array([self.t / self.T, float(a in self.agents)], np.float32)
                for a in agents}

    def reset(self, seed=None, options=None):
        self.agents = list(self.possible_agents)
        self.t = 0
        self.split = np.zeros(len(FREE_FLOW))
        return self._observe(), {a: {} for a in self.agents}

    def step(self, actions):
        N = len(self.possible_agents)
        last = self.t == self.T - 1  # in the last slot everyone must leave: waiting = road 1
        act = {a: (max(int(actions[a]), 1) if last else int(actions[a])) for a in self.agents}
        counts = np.bincount([act[a] for a in self.agents], minlength=4)[1:]
        self.split += counts / N
        time_on = FREE_FLOW + CROWDING * counts / N
        rewards, terms = {}, {}
        for a in self.agents:
            leaves = act[a] > 0
            late = max(self.t - 1, 0) * 0.5  # leaving in slot 0 or 1 is on time
            rewards[a] = -(time_on[act[a] - 1] + late) if leaves else 0.0
            terms[a] = leaves
        self.t += 1
        self.agents = [a for a in self.agents if not terms[a]]
        obs = self._observe(list(terms))  # every agent that acted, those who left too
        return obs, rewards, terms, {a: False for a in terms}, {a: {} for a in terms}


def toll(observation, action, w) -> float:
    """Your modifier: ``w[road]`` for leaving by a road, nothing for waiting."""
    return float(w[action - 1]) if action > 0 else 0.0


def evaluate(w: np.ndarray, seed: int, agents: int, rounds: int) -> Outcome:
    """Train PPO commuters under the modifier ``w``; J = KL(split || target)."""
    env = modify_rewards(Commute(agents), toll, w)
    trained = train_ppo(env, {"temperature": 0.05, "learning_rate": 0.01, "hidden": [32]},
                        rounds=rounds, rng=np.random.default_rng(seed))
    splits = []
    rng = np.random.default_rng(seed + 1)
    for _ in range(5):  # the trained agents' split, averaged over a few episodes
        obs, _ = env.reset()
        while env.agents:
            x = np.stack([obs[a] for a in env.agents])
            p = trained.probs(x)
            choice = (p.cumsum(axis=1) > rng.random((len(x), 1))).argmax(axis=1)
            obs, *_ = env.step(dict(zip(env.agents, choice.tolist())))
        splits.append(env.unwrapped.split)
    split = np.mean(splits, axis=0)
    kl = float(np.sum(split * np.log(np.maximum(split, 1e-12) / TARGET)))
    return Outcome(objective=kl, diagnostics={
        "own_exploitability_estimate": trained.estimate,  # trained.certified is False
        **{f"road_{i + 1}": float(s) for i, s in enumerate(split)}})


def main(argv: list[str] | None = None) -> RunResult:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--evaluations", type=int, default=12, help="meta-agent evaluations")
    p.add_argument("--agents", type=int, default=100, help="commuters")
    p.add_argument("--rounds", "--episodes", dest="rounds", type=int, default=150,
                   help="PPO episodes per evaluation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="run folder (study, result, report)")
    args = p.parse_args(argv)
    result = optimise(functools.partial(evaluate, agents=args.agents, rounds=args.rounds),
                      n_params=len(FREE_FLOW), bounds=(-2.0, 2.0), direction="minimize",
                      optimiser={"name": "bo", "evaluations": args.evaluations,
                                 "initial": min(4, args.evaluations)},
                      seed=args.seed, out=args.out)
    for name, o in (("left alone (w = 0)", result.baseline), ("steered", result.best)):
        d = o.diagnostics
        print(f"{name}: KL {o.objective:.4f}, split "
              f"{[round(d[f'road_{i + 1}'], 3) for i in range(len(FREE_FLOW))]}, w = "
              f"{np.round(o.w, 2).tolist()}; exploitability: no model to certify it, the "
              f"agents' own estimate is {d['own_exploitability_estimate']:.4f}")
    return result


if __name__ == "__main__":
    main()
