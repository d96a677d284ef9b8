"""Deep agents: shared-parameter actor-critic PPO on an MLP (TorchRL), ``learner: {name: ppo}``.

``N`` agents play the game in its vectorised environment
(:class:`crowdsteer.envs.CrowdVectorEnv`: the agents see their own state and the step,
receive their own landing reward plus the modifier ``Theta``) and share one policy network
and one value network (parameter sharing; Schulman et al. 2017, "Proximal policy
optimization algorithms"; Yu et al. 2022, "The surprising effectiveness of PPO in
cooperative multi-agent games"). Round ``k``:

1. Play one episode: agent ``i`` at step ``t`` in state ``s`` observes the one-hot
   features of ``[s, t]`` (Gymnasium's ``flatten`` of the env's ``MultiDiscrete``
   observation), draws ``a ~ pi_theta(. | s, t)`` (forbidden actions masked), lands in
   ``s'`` and receives, with the entropy of its policy where it acted,

   .. math::

       r_i = r_t(s'; \\hat\\mu_t) + \\Theta_t(s, a; \\hat\\mu_t) + \\tau H(\\pi_\\theta(. | s, t)),

   so that the sum of an agent's rewards is the regularised return the certificate's
   soft values measure (:func:`crowdsteer.equilibrium.evaluate`).
2. Advantages by GAE (``gamma = 1``, the game's finite horizon) on the critic
   ``V_phi(s, t)``; ``epochs`` passes of TorchRL's clipped PPO loss, with the entropy
   bonus ``tau`` (the gradient of the entropy at the step itself), Adam at step
   :math:`\\alpha_k = \\alpha\\, h / (h + k)` (``h`` = ``step_halving``): the sampled
   gradients are noisy and a decreasing step lets the shared policy settle.

With ``mu_hat`` taken as given by each agent (its own action moves the histogram by
``1 / N``), the sampled policy gradient is every agent's own, the mean-field Nash
direction; on a potential game it ascends the potential.

Stopping, on a certified check: every ``check_every`` rounds the network's policy table
:math:`\\pi(t, s, a)` (its probabilities at the features of every ``[s, t]``) is certified
with the model (its mean field and the exploitability of a best response against it,
as for the other learners), and the learner stops when that is at most ``tolerance``
(default ``T (S - 1) / (2 N)``, :func:`crowdsteer.objectives.kl_floor`). Otherwise it
returns the network with the lowest certificate seen (``converged = False``).
``Solution.estimate`` is the agents' own, model-free estimate (:func:`own_estimate`), and
``history`` holds it round by round.

Warm starts: ``solve(..., init=solution)`` starts from the weights an earlier ``ppo`` solve
returned (``Solution.params``; the meta-agent passes the one at the closest earlier ``w``),
and its step schedule continues from round ``init.iterations / 2``. The solve draws all its
randomness from ``rng`` and runs torch deterministically on ``threads`` threads, so the
same ``rng`` state and ``init`` give the same network, bit for bit: resumed runs and
parallel workers rebuild the same warm starts.

:func:`train_ppo` trains the same agents on any PettingZoo ``ParallelEnv`` a user brings
(with the modifier added by :func:`crowdsteer.envs.modify_rewards`); without a model it
can only report the agents' own estimate.

Measured (``benchmarks/ppo.py``, BENCHMARKS.md): on examples/ppo.yaml (the paper's dynamic
game, ``N = 2000``, ``tau = 0.1``) a cold solve certifies 0.87-0.92x the tolerance in
215-280 rounds, 16-20 s of CPU; warm-started evaluations of the meta-agent took a median
of 155 rounds.

torch and TorchRL are imported only when a solve runs: ``pip install crowdsteer[deep]``.
"""

from __future__ import annotations

import importlib.util
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from crowdsteer import guards
from crowdsteer.config_base import Strict
from crowdsteer.equilibrium import entropy, exploitability, mean_field
from crowdsteer.errors import ConfigError
from crowdsteer.games.base import Game, ThetaLike
from crowdsteer.learners.base import Progress, Solution, check_finite, learners
from crowdsteer.learners.simulate import draw_own
from crowdsteer.objectives import kl_floor

Array = np.ndarray
SAMPLE_ROUNDS = 5  # mu_sample averages the empirical histograms of this many final rounds
INSTALL = "pip install 'crowdsteer[deep]'"


class PPOConfig(Strict):
    """The ``learner`` section for ``name: ppo``."""

    name: Literal["ppo"] = "ppo"
    temperature: Annotated[float, Field(ge=0)] = 0.1
    """``tau``: entropy regularisation of the agents (added to their rewards and the PPO
    entropy bonus). At 0 the certificate is the plain Nash gap, which softmax policies
    only approach."""
    agents: Annotated[int, Field(gt=0)] = 2000
    """``N``: simulated agents sharing one network (each round is one episode of all)."""
    tolerance: Annotated[float, Field(gt=0)] | None = None
    """Stop when the certified exploitability of the network's policy table, checked every
    ``check_every`` rounds, is at most this. Default ``T (S - 1) / (2 N)``."""
    check_every: Annotated[int, Field(gt=0)] = 5
    """Rounds between certified checks."""
    max_iterations: Annotated[int, Field(gt=0)] = 2000
    """Rounds of play (one episode of all ``N`` agents and one PPO update each)."""
    patience: Annotated[int, Field(gt=0)] | None = 300
    """Stop (not converged) when the certificate has not improved on its best for this
    many rounds (``null``: play all ``max_iterations``)."""
    hidden: Annotated[list[Annotated[int, Field(gt=0, le=4096)]],
                      Field(min_length=1, max_length=8)] = [64, 64]
    """Widths of the hidden layers of the policy and the value MLPs (tanh)."""
    learning_rate: Annotated[float, Field(gt=0, le=1)] = 3e-3
    """``alpha``: Adam's step in round ``k`` is ``alpha h / (h + k)``."""
    step_halving: Annotated[int, Field(gt=0)] = 100
    """``h``: rounds after which the step has halved."""
    epochs: Annotated[int, Field(gt=0, le=100)] = 4
    """PPO passes over each round's batch."""
    minibatches: Annotated[int, Field(gt=0, le=1000)] = 2
    """Minibatches per pass."""
    clip: Annotated[float, Field(gt=0, lt=1)] = 0.2
    """PPO's ratio clipping ``epsilon``."""
    gae_lambda: Annotated[float, Field(ge=0, le=1)] = 0.95
    """GAE's ``lambda`` (``gamma`` is 1: the game's horizon is finite)."""
    critic_coef: Annotated[float, Field(gt=0)] = 0.5
    """Weight of the value loss."""
    threads: Annotated[int, Field(gt=0, le=256)] = 1
    """torch threads during a solve (fixed: a run is bit-for-bit reproducible only with the
    same count)."""


def check_installed() -> None:
    """One-line :class:`ConfigError` when torch or TorchRL is missing."""
    for module in ("torch", "tensordict", "torchrl"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ValueError:  # blocked: sys.modules[module] is None
            found = False
        if not found:
            raise ConfigError("learner.name", f"ppo needs torch and TorchRL ({module} is not "
                              f"installed); install them with: {INSTALL}")


@dataclass(frozen=True)
class Episodes:
    """A round of play: ``M`` agents' episodes of up to ``L`` steps, padded.

    Observations are ids into a table of the distinct ones seen (``K`` rows).

    Attributes
    ----------
    features, mask
        ``(K, F)`` float32 features and ``(K, A)`` allowed actions of the distinct
        observations (see :class:`crowdsteer.learners.ppo_net.Inputs`).
    policy
        ``(K, A)`` the acting policy at each.
    key, next_key
        ``(M, L)`` int64 observation ids before and after each step.
    action
        ``(M, L)`` int64 actions taken.
    log_prob
        ``(M, L)`` their log-probabilities under the acting policy.
    reward
        ``(M, L)`` rewards, the entropy term ``tau H`` included.
    terminated, done
        ``(M, L)`` bool: the episode ended (no value after it) / ended or was cut short.
    valid
        ``(M, L)`` bool: a real step (padding after an agent's last step is ``False``).
    """

    features: Array
    mask: Array
    policy: Array
    key: Array
    next_key: Array
    action: Array
    log_prob: Array
    reward: Array
    terminated: Array
    done: Array
    valid: Array


def own_estimate(ep: Episodes, tau: float) -> float:
    """The agents' own estimate of the exploitability, from one round's episodes alone.

    With :math:`G` an agent's return from a step on (rewards with their entropy terms),
    :math:`\\hat Q(o, a)` the mean over the round of :math:`G - \\tau H(\\pi(o))` after
    action ``a`` at observation ``o`` (actions nobody took there are left out),

    .. math::

        \\hat e = \\frac{1}{M} \\sum_{i, t} \\Big(\\tau \\log \\sum_a e^{\\hat Q(o_{it}, a)/\\tau}
                   - \\sum_a \\pi(a | o_{it}) \\hat Q(o_{it}, a) - \\tau H(\\pi(o_{it}))\\Big),

    the gain of one soft policy-improvement step summed along the agents' own paths (max
    instead of the log-sum-exp at ``tau = 0``). An estimate, not a bound: the improved
    policy is valued on the current one's state visits, and sampling noise in
    :math:`\\hat Q` raises the maximum.
    """
    K, A = ep.policy.shape
    M = ep.valid.shape[0]
    valid = ep.valid.ravel()
    G = np.cumsum(np.where(ep.valid, ep.reward, 0.0)[:, ::-1], axis=1)[:, ::-1].ravel()[valid]
    key = ep.key.ravel()[valid]
    H = entropy(ep.policy)
    cell = key * A + ep.action.ravel()[valid]
    total = np.bincount(cell, weights=G - tau * H[key], minlength=K * A).reshape(K, A)
    count = np.bincount(cell, minlength=K * A).reshape(K, A)
    seen = count > 0
    visits = count.sum(axis=1)
    here = visits > 0
    q = np.where(seen, total / np.maximum(count, 1), -np.inf)[here]
    pi = np.where(seen, ep.policy, 0.0)[here]
    pi /= pi.sum(axis=1, keepdims=True)
    top = q.max(axis=1)
    v_br = top + tau * np.log(np.exp((q - top[:, None]) / tau).sum(axis=1)) if tau > 0 else top
    v_pi = (pi * np.where(seen[here], q, 0.0)).sum(axis=1) + tau * entropy(pi)
    return max(float(visits[here] @ (v_br - v_pi)) / M, 0.0)


class Features:
    """One-hot features of crowdsteer observations ``[s, t]``: ``(T + 1, S, S + T + 1)``
    float32 (what ``gymnasium.spaces.flatten`` gives for ``MultiDiscrete([S, T + 1])``)."""

    def __init__(self, game: Game) -> None:
        T, S, A = game.T, game.S, game.A
        self.table = np.zeros((T + 1, S, S + T + 1), dtype=np.float32)
        self.table[:, np.arange(S), np.arange(S)] = 1.0
        self.table[np.arange(T + 1), :, S + np.arange(T + 1)] = 1.0
        allowed = np.ones((S, A), bool) if game.allowed is None else np.asarray(game.allowed)
        self.allowed = allowed
        self.width = S + T + 1
        self.flat = self.table.reshape((T + 1) * S, -1)  # row t S + s
        self.flat_mask = np.broadcast_to(allowed, (T + 1, S, A)).reshape((T + 1) * S, A)


class PPOLearner:
    """``N`` agents sharing one actor-critic, trained by PPO (see module docstring)."""

    def __init__(self, config: PPOConfig | None = None) -> None:
        self.config = config or PPOConfig()

    def solve(self, game: Game, theta: ThetaLike = None, rng: np.random.Generator | None = None,
              progress: Progress | None = None, init: Solution | None = None) -> Solution:
        """Train until the certificate meets ``tolerance``; ``init`` warm-starts the network."""
        from crowdsteer.envs.vector import CrowdVectorEnv
        from crowdsteer.learners import ppo_net

        start = time.perf_counter()
        cfg = self.config
        guards.check_solve(game, cfg)
        N, T, S, A, tau = cfg.agents, game.T, game.S, game.A, cfg.temperature
        tolerance = kl_floor(S, N, T) if cfg.tolerance is None else cfg.tolerance
        rng = np.random.default_rng() if rng is None else rng
        feats = Features(game)
        with ppo_net.deterministic(cfg.threads):
            params = None if init is None else init.params
            net, update = _network(ppo_net, cfg, feats.width, A, rng, params)
            k0 = 0 if params is None else int(init.iterations) // 2
            env = CrowdVectorEnv(game, N, theta)
            env.reset(seed=int(rng.integers(2**63)))
            recent: deque[Array] = deque(maxlen=SAMPLE_ROUNDS)
            history: list[float] = []
            best: dict[str, Any] | None = None
            converged = False
            for k in range(1, cfg.max_iterations + 1):
                ep, mu_hat = play_game(env, net, feats, tau, rng)
                recent.append(mu_hat)
                estimate = own_estimate(ep, tau)
                history.append(estimate)
                if progress:
                    progress(k, estimate)
                if k % cfg.check_every == 0 or k == cfg.max_iterations:
                    pi = policy_table(ep.policy[:T * S], feats.allowed, T)
                    mu = mean_field(game, pi)
                    expl = exploitability(game, pi, tau, theta, mu=mu)
                    check_finite(expl, "exploitability")
                    if best is None or expl < best["expl"]:
                        best = dict(expl=expl, k=k, pi=pi, mu=mu, params=net.get_params(),
                                    sample=np.mean(recent, axis=0), estimate=estimate)
                    if expl <= tolerance:
                        converged = True
                        break
                    if cfg.patience is not None and k - best["k"] >= cfg.patience:
                        break
                lr = cfg.learning_rate * cfg.step_halving / (cfg.step_halving + k + k0)
                update.step(_batch(ppo_net, ep), ep.features, ep.mask, ep.valid, lr, rng)
        assert best is not None  # the last round is always checked
        return Solution(best["pi"], best["mu"], best["expl"], k, time.perf_counter() - start,
                        converged, mu_sample=best["sample"], agents=N,
                        history=np.asarray(history), estimate=best["estimate"],
                        params=best["params"])


def _network(ppo_net: Any, cfg: PPOConfig, width: int, A: int, rng: np.random.Generator,
             params: Array | None) -> tuple[Any, Any]:
    """The actor-critic (its weights ``params`` when given, a warm start) and its PPO update."""
    net = ppo_net.ActorCritic(width, A, cfg.hidden, int(rng.integers(2**63)))
    if params is not None:
        if np.shape(params) != (net.n_params(),):
            raise ConfigError("init", f"the warm start's network has {np.size(params)} "
                              f"weights; this game and learner.hidden need {net.n_params()}")
        net.set_params(params)
    update = ppo_net.PPOUpdate(net, cfg.learning_rate, cfg.clip, cfg.temperature,
                               cfg.critic_coef, cfg.gae_lambda, cfg.epochs, cfg.minibatches)
    return net, update


def _batch(ppo_net: Any, ep: Episodes) -> Any:
    return ppo_net.make_batch(ep.key, ep.action, ep.log_prob, ep.reward, ep.next_key,
                              ep.terminated, ep.done)


def policy_table(probs: Array, allowed: Array, T: int) -> Array:
    """``(T, S, A)`` policy from the network's ``(T S, A)`` probabilities: forbidden actions
    exactly 0, rows renormalised in float64."""
    pi = probs.reshape(T, *allowed.shape) * allowed
    return pi / pi.sum(axis=-1, keepdims=True)


def draw_actions(probs: Array, rng: np.random.Generator) -> tuple[Array, Array]:
    """One action per row of ``probs`` ``(M, A)`` and its log-probability, ``(M,)`` each."""
    a = draw_own(probs.T, rng)
    return a, np.log(np.maximum(probs[np.arange(a.shape[0]), a], 1e-30))


def play_game(env: Any, net: Any, feats: Features, tau: float,
              rng: np.random.Generator) -> tuple[Episodes, Array]:
    """One episode of all agents of a :class:`~crowdsteer.envs.CrowdVectorEnv`; also returns
    the ``(T, S)`` empirical distributions after each move.

    The policy is fixed for the round, so the network runs once, on the ``(T + 1) S``
    observations ``[s, t]``; an agent's probabilities are its row."""
    game, N = env.game, env.N
    T, S = game.T, game.S
    policy = net.probs(feats.flat, feats.flat_mask)  # (T + 1) S rows; t = T is never acted on
    H = entropy(policy)
    obs, _ = env.reset()
    key = np.empty((N, T + 1), dtype=np.int64)
    action = np.empty((N, T), dtype=np.int64)
    log_prob = np.empty((N, T))
    reward = np.empty((N, T))
    mu_hat = np.empty((T, S))
    for t in range(T):
        key[:, t] = k = t * S + obs[:, 0]
        action[:, t], log_prob[:, t] = draw_actions(policy[k], rng)
        obs, r, _, _, _ = env.step(action[:, t])
        reward[:, t] = r + tau * H[k]
        mu_hat[t] = np.bincount(obs[:, 0], minlength=S) / N
    key[:, T] = T * S + obs[:, 0]
    check_finite(reward, "rewards")
    terminated = np.zeros((N, T), dtype=bool)
    terminated[:, -1] = True
    ep = Episodes(feats.flat, feats.flat_mask, policy, key[:, :T], key[:, 1:], action, log_prob,
                  reward, terminated, terminated, np.ones((N, T), dtype=bool))
    return ep, mu_hat


# --------------------------------------------------------------------------- PettingZoo


@dataclass(frozen=True)
class TrainedAgents:
    """What :func:`train_ppo` returns.

    Attributes
    ----------
    params
        ``(P,)`` float32 weights of the shared actor-critic (pass as ``init`` to continue).
    features, actions, hidden
        The network's input width, number of actions and hidden widths.
    estimate
        The agents' own exploitability estimate (:func:`own_estimate`) at the end: the env
        has no model, so no certificate exists.
    history
        The estimate after each round.
    rounds
        Episodes played (one PPO update each).
    mean_return
        ``(rounds,)`` the agents' mean episode return (modifier and entropy terms included).
    seconds
        Wall time.
    certified
        Always ``False``: a user's env has no model to certify the estimate with.
    """

    params: Array
    features: int
    actions: int
    hidden: tuple[int, ...]
    estimate: float
    history: Array
    rounds: int
    mean_return: Array
    seconds: float
    certified: bool = False
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def probs(self, observations: Array, mask: Array | None = None) -> Array:
        """``(M, A)`` action probabilities at ``(M, features)`` flattened observations."""
        from crowdsteer.learners import ppo_net

        if "net" not in self._cache:
            net = ppo_net.ActorCritic(self.features, self.actions, list(self.hidden), 0)
            net.set_params(self.params)
            self._cache["net"] = net
        obs = np.asarray(observations, dtype=np.float32).reshape(-1, self.features)
        ok = np.ones((obs.shape[0], self.actions), bool) if mask is None else np.asarray(
            mask, bool).reshape(-1, self.actions)
        return self._cache["net"].probs(obs, ok)


def _split(space: Any, obs: Any, agent_info: dict) -> tuple[Any, Any, Array | None]:
    """``(space, observation, mask)``: PettingZoo's masked form ``{"observation", "action_mask"}``
    unpacked; else the mask from ``infos[agent]["action_mask"]`` if any."""
    from gymnasium import spaces

    if isinstance(space, spaces.Dict) and "action_mask" in space.spaces:
        return space["observation"], obs["observation"], np.asarray(obs["action_mask"], bool)
    mask = agent_info.get("action_mask") if isinstance(agent_info, dict) else None
    return space, obs, None if mask is None else np.asarray(mask, bool)


def train_ppo(env: Any, config: PPOConfig | dict | None = None, rounds: int | None = None,
              rng: np.random.Generator | None = None, init: TrainedAgents | None = None,
              progress: Progress | None = None) -> TrainedAgents:
    """Train shared-parameter PPO agents on any PettingZoo ``ParallelEnv``.

    Every agent of ``env`` acts from one shared network on its own flattened observation
    (``gymnasium.spaces.flatten``; a masked ``{"observation", "action_mask"}`` observation
    or an ``infos[agent]["action_mask"]`` restricts its actions). Each round is one episode
    (until no agent is left), then one PPO update; an agent truncated mid-episode is
    bootstrapped from the critic. Add a reward modifier first with
    :func:`crowdsteer.envs.modify_rewards`.

    Parameters
    ----------
    env
        A PettingZoo ``ParallelEnv`` with ``Discrete`` action spaces.
    config
        :class:`PPOConfig` (or its mapping); ``agents``, ``tolerance`` (unless given),
        ``check_every`` and ``patience`` do not apply: the env fixes the agents and has no
        model to certify with.
    rounds
        Episodes to train for (default ``config.max_iterations``); with ``config.tolerance``
        set, training stops early once the mean estimate of the last ``check_every`` rounds
        is at most it.
    rng
        Source of every random draw (env seed, weights, actions, minibatches).
    init
        A previous result to continue from (same spaces and hidden widths).
    """
    from gymnasium import spaces

    from crowdsteer.config_base import validate
    from crowdsteer.learners import ppo_net

    check_installed()
    cfg = config if isinstance(config, PPOConfig) else validate(
        PPOConfig, {"name": "ppo", **(config or {})}, "config")
    if not (callable(getattr(env, "reset", None)) and callable(getattr(env, "step", None))):
        raise ConfigError("env", f"expected a PettingZoo ParallelEnv, got {type(env).__name__}")
    rng = np.random.default_rng() if rng is None else rng
    rounds = cfg.max_iterations if rounds is None else int(rounds)
    agents0 = list(env.possible_agents)
    act_space = env.action_space(agents0[0])
    if not isinstance(act_space, spaces.Discrete):
        raise ConfigError("env", f"ppo needs Discrete action spaces; got {act_space}")
    A = int(act_space.n)
    obs_space, _, _ = _split(env.observation_space(agents0[0]), None, {})
    F = int(spaces.flatdim(obs_space))
    start = time.perf_counter()
    history: list[float] = []
    returns: list[float] = []
    with ppo_net.deterministic(cfg.threads):
        if init is not None:
            if (init.features, init.actions, tuple(init.hidden)) != (F, A, tuple(cfg.hidden)):
                raise ConfigError("init", "the network does not fit this env and config: "
                                  f"({init.features}, {init.actions}, {init.hidden}) against "
                                  f"({F}, {A}, {tuple(cfg.hidden)})")
        seed = int(rng.integers(2**63))
        net, update = _network(ppo_net, cfg, F, A, rng, None if init is None else init.params)
        for k in range(1, rounds + 1):
            ep = play_env(env, net, F, A, cfg.temperature, rng, seed if k == 1 else None)
            estimate = own_estimate(ep, cfg.temperature)
            history.append(estimate)
            returns.append(float(np.where(ep.valid, ep.reward, 0.0).sum()) / ep.valid.shape[0])
            if progress:
                progress(k, estimate)
            if (cfg.tolerance is not None and k >= cfg.check_every
                    and np.mean(history[-cfg.check_every:]) <= cfg.tolerance):
                break
            lr = cfg.learning_rate * cfg.step_halving / (cfg.step_halving + k)
            update.step(_batch(ppo_net, ep), ep.features, ep.mask, ep.valid, lr, rng)
        params = net.get_params()
    return TrainedAgents(params, F, A, tuple(cfg.hidden), history[-1], np.asarray(history), k,
                         np.asarray(returns), time.perf_counter() - start)


def play_env(env: Any, net: Any, F: int, A: int, tau: float, rng: np.random.Generator,
             seed: int | None) -> Episodes:
    """One episode of every agent of a PettingZoo ``ParallelEnv`` acting from ``net``."""
    from gymnasium import spaces

    obs, infos = env.reset(seed=seed)
    ids: dict[bytes, int] = {}
    rows: list[tuple[Array, Array]] = []

    def encode(agent: Any, o: Any, info: Any) -> int:
        space, inner, mask = _split(env.observation_space(agent), o, info)
        x = np.asarray(spaces.flatten(space, inner), dtype=np.float32)
        m = np.ones(A, bool) if mask is None else mask
        k = ids.setdefault(x.tobytes() + m.tobytes(), len(ids))
        if k == len(rows):
            rows.append((x, m))
        return k

    paths: dict[Any, list[tuple]] = {}
    last = {agent: encode(agent, obs[agent], infos.get(agent, {})) for agent in env.agents}
    while env.agents:
        live = list(env.agents)
        k = np.array([last[a] for a in live])
        p = net.probs(np.stack([rows[i][0] for i in k]), np.stack([rows[i][1] for i in k]))
        act, logp = draw_actions(p, rng)
        obs, rewards, terms, truncs, infos = env.step(dict(zip(live, act.tolist())))
        for i, agent in enumerate(live):
            nxt = encode(agent, obs[agent], infos.get(agent, {})) if agent in obs else k[i]
            term = bool(terms.get(agent, False))
            done = term or bool(truncs.get(agent, False)) or agent not in env.agents
            r = float(rewards.get(agent, 0.0)) + tau * float(entropy(p[i]))
            paths.setdefault(agent, []).append((k[i], nxt, act[i], logp[i], r, term, done))
            last[agent] = nxt
    features = np.stack([r[0] for r in rows])
    mask = np.stack([r[1] for r in rows])
    ep = _pad(list(paths.values()), features, mask, net.probs(features, mask))
    check_finite(ep.reward, "rewards")
    return ep


def _pad(paths: list[list[tuple]], features: Array, mask: Array, policy: Array) -> Episodes:
    """Stack the agents' paths ``(key, next_key, action, log_prob, reward, terminated,
    done)`` per step into padded ``(M, L)`` arrays (see :class:`Episodes`)."""
    M, L = len(paths), max(len(p) for p in paths)
    cols = [np.zeros((M, L), np.int64), np.zeros((M, L), np.int64), np.zeros((M, L), np.int64),
            np.zeros((M, L)), np.zeros((M, L)), np.ones((M, L), bool), np.ones((M, L), bool)]
    valid = np.zeros((M, L), bool)  # padding: terminated and done, never trained on
    for i, path in enumerate(paths):
        n = len(path)
        for col, values in zip(cols, zip(*path)):
            col[i, :n] = values
        valid[i, :n] = True
    key, next_key, action, log_prob, reward, terminated, done = cols
    return Episodes(features, mask, policy, key, next_key, action, log_prob, reward,
                    terminated, done, valid)


@learners.register("ppo")
def build(cfg: PPOConfig) -> PPOLearner:
    check_installed()
    return PPOLearner(cfg)


build.config = PPOConfig  # type: ignore[attr-defined]
