"""Bring your own inner loop: the meta-agent steers agents that you train on a PettingZoo env.

The meta-agent (:func:`crowdsteer.optimise`) proposes modifier weights ``w``;
``evaluate(w, seed)`` is *your* training code, here:

1. build the PettingZoo env of a small one-shot crowd game with the reward modifier
   ``Theta(.; w)`` (the config's ``power_series`` family) added to its rewards
   (:func:`crowdsteer.envs.parallel_env` with ``w``; :func:`crowdsteer.envs.modify_rewards`
   adds one to any other PettingZoo env);
2. train ``N`` independent tabular Q-learners on it, one per PettingZoo agent, with
   Boltzmann exploration (the learners are NumPy arrays over agents; only the env speaks
   dicts), for a number of episodes;
3. report ``J = KL(mu || target)``, ``mu`` the agents' distribution over the last episodes,
   as an :class:`crowdsteer.Outcome`, with the welfare (mean intrinsic reward) and the
   mean transfer as diagnostics.

Any MARL library that trains on a PettingZoo ``ParallelEnv`` can replace step 2.

Run it (about 10-20 s with the defaults)::

    .venv/bin/python examples/byo_pettingzoo.py
    .venv/bin/python examples/byo_pettingzoo.py --evaluations 40 --agents 500 --out runs/byo
"""

from __future__ import annotations

import argparse
import functools
from dataclasses import dataclass

import numpy as np

from crowdsteer import Outcome, RunResult, kl_divergence, load_config, optimise, setup
from crowdsteer.envs import parallel_env

# A 5 x 5 grid: the agents like the top-left corner; the meta-agent wants them in the
# lower right. Log congestion keeps them from all piling into one cell.
CONFIG = {
    "game": {"name": "crowd", "height": 5, "width": 5, "horizon": 1, "moves": "any",
             "desirability": {"bumps": [{"center": [1, 1], "height": 2.0, "width": 1.5}]},
             "congestion": {"kind": "log", "strength": 0.5}},
    "modifier": {"name": "power_series", "order": 1, "bounds": [-3, 3]},
    "objective": {"name": "kl", "target": {"bumps": [{"center": [3, 3], "height": 1.0,
                                                      "width": 1.5}]}},
}


@dataclass(frozen=True)
class Training:
    """How the agents learn (one evaluation of ``w``).

    Attributes
    ----------
    agents
        ``N``, PettingZoo agents in the env.
    episodes
        Training episodes (each ``T`` steps).
    learning_rate
        Step size of the Q-learning update once ``1 / visits`` falls below it (a sample
        average of the first visits, then a constant step that tracks the other agents).
    temperature
        Boltzmann exploration: ``P(a) ~ exp(Q(s, a) / temperature)``.
    initial_q
        Starting value of every ``Q(s, a)``: optimistic (above any reward) so that every
        agent tries every action before settling.
    use_state
        Learn ``Q(t, s, a)`` (``True``) or ``Q(t, a)``: in a one-shot game with ``moves: any``
        where an agent starts does not change what its action does, so pooling over ``s``
        learns ``S`` times faster. Games with local moves need ``True``.
    measure
        The share of final episodes over which the distribution ``mu`` is averaged.
    """

    agents: int = 200
    episodes: int = 300
    learning_rate: float = 0.1
    temperature: float = 0.1
    initial_q: float = 5.0
    use_state: bool = False
    measure: float = 0.2


def train(env, train: Training, rng: np.random.Generator, seed: int) -> dict[str, np.ndarray]:
    r"""Independent tabular Q-learning of every agent of ``env``; returns what it saw.

    ``Q`` is ``(N, T + 1, S, A)`` (``(N, T + 1, 1, A)`` without ``use_state``; row ``T``:
    zero continuation after the last step); agent ``i`` is ``env.possible_agents[i]``.
    Observations are ``[s, t]`` (crowdsteer envs). The update, for every agent at once:

    .. math::

        Q(t, s, a) \leftarrow Q + \eta (r + \max_{a'} Q(t + 1, s', a') - Q),
        \quad \eta = \max(1 / \text{visits}, \text{learning\_rate}).

    Returns
    -------
    ``{"mu": (S,) mean landing distribution over the measured episodes, "reward":
    (episodes,) mean modified reward, "transfer": (episodes,) mean modifier term}``.
    """
    game = env.unwrapped.game
    T, S, A = game.T, game.S, game.A
    names = env.possible_agents
    N = len(names)
    rows = S if train.use_state else 1
    Q = np.full((N, T + 1, rows, A), train.initial_q)
    Q[:, T] = 0.0
    visits = np.zeros((N, T, rows, A), dtype=np.int64)
    idx = np.arange(N)
    allowed = np.ones((S, A), bool) if game.allowed is None else game.allowed
    measured = max(1, int(round(train.measure * train.episodes)))
    mu = np.zeros(S)
    reward, transfer = np.zeros(train.episodes), np.zeros(train.episodes)
    obs, _ = env.reset(seed=seed)
    for episode in range(train.episodes):
        if episode:
            obs, _ = env.reset()
        for _ in range(T):
            o = np.stack([obs[a] for a in names])  # (N, 2): [s, t]
            s, t = o[:, 0], o[:, 1]
            k = s if train.use_state else 0  # the Q row an agent consults
            q = np.where(allowed[s], Q[idx, t, k], -np.inf) / train.temperature
            p = np.exp(q - q.max(axis=1, keepdims=True))
            cdf = np.cumsum(p, axis=1)  # each agent draws its own action from its row
            actions = (cdf > rng.random((N, 1)) * cdf[:, -1:]).argmax(axis=1)
            obs, rew, _, _, infos = env.step(dict(zip(names, actions.tolist())))
            o2 = np.stack([obs[a] for a in names])
            r = np.fromiter((rew[a] for a in names), float, N)
            s2, t2 = o2[:, 0], o2[:, 1]
            k2 = s2 if train.use_state else 0
            future = np.where(allowed[s2], Q[idx, t2, k2], -np.inf).max(axis=1)
            target = r + np.where(t2 < T, future, 0.0)
            n = visits[idx, t, k, actions] = visits[idx, t, k, actions] + 1
            step = np.maximum(1.0 / n, train.learning_rate)  # sample average, then constant
            Q[idx, t, k, actions] += step * (target - Q[idx, t, k, actions])
            reward[episode] += r.mean() / T
            transfer[episode] += np.mean([infos[a]["reward_modifier"] for a in names]) / T
            if episode >= train.episodes - measured and t[0] == T - 1:
                mu += np.bincount(s2, minlength=S) / (N * measured)
    return {"mu": mu, "reward": reward, "transfer": transfer}


def evaluate(w: np.ndarray, seed: int, training: Training, config=CONFIG) -> Outcome:
    """The inner loop: train the agents under ``Theta(.; w)`` and measure J (KL to target)."""
    cfg = load_config(config)
    target = setup(cfg).objective.target[-1]  # (S,): the meta-agent's M*_T
    env = parallel_env(cfg, agents=training.agents, w=w)  # the config's modifier at w
    seen = train(env, training, np.random.default_rng(seed), seed)
    last = max(1, int(round(training.measure * training.episodes)))
    transfer = float(seen["transfer"][-last:].mean())
    return Outcome(objective=float(kl_divergence(seen["mu"], target)),
                   diagnostics={"welfare": float(seen["reward"][-last:].mean()) - transfer,
                                "transfer": transfer})


def main(argv: list[str] | None = None) -> RunResult:
    """Parse the arguments, run the meta-agent, print what it found."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--evaluations", type=int, default=20, help="meta-agent evaluations")
    p.add_argument("--initial", type=int, default=6, help="random evaluations first")
    p.add_argument("--optimiser", default="cmaes", choices=["bo", "cmaes", "tpe", "random"])
    p.add_argument("--agents", type=int, default=Training.agents, help="PettingZoo agents")
    p.add_argument("--episodes", type=int, default=Training.episodes, help="training episodes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="run folder (study, result, report)")
    args = p.parse_args(argv)

    training = Training(agents=args.agents, episodes=args.episodes)
    cfg = load_config(CONFIG)
    n_params = setup(cfg).modifier.n_params
    result = optimise(functools.partial(evaluate, training=training), n_params,
                      bounds=tuple(cfg["modifier"].bounds), direction="minimize",
                      optimiser={"name": args.optimiser, "evaluations": args.evaluations,
                                 "initial": min(args.initial, args.evaluations)},
                      seed=args.seed, out=args.out)
    b, best = result.baseline, result.best
    print(f"KL to target: {b.objective:.3f} left alone (w = 0) -> {best.objective:.3f} at "
          f"w = {np.round(best.w, 2).tolist()} ({result.evaluations} evaluations, "
          f"{result.seconds:.1f} s)")
    print(f"welfare {b.diagnostics['welfare']:.3f} -> {best.diagnostics['welfare']:.3f}; "
          f"mean transfer {best.diagnostics['transfer']:.3f} per agent")
    return result


if __name__ == "__main__":
    main()
