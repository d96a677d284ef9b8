"""Policy-gradient agents: the paper's learners (sampled trajectories, an estimated value
function, stochastic gradient ascent on softmax policies).

``N`` agents play the game as an ``(N,)`` array of states and never see the model: each
observes where it lands and its own (modified) reward. Round ``k``:

1. Play: every agent samples its own trajectory. Agent ``i`` in state ``x`` at step ``t``
   draws ``a`` from its softmax policy :math:`\\pi_i[t, x] = \\operatorname{softmax}(z_i[t, x]
   / \\tau)` (with probability :math:`\\epsilon_k = \\epsilon / \\sqrt k` uniformly over
   the allowed actions instead, ``exploration``), lands in ``s'`` and receives

   .. math::

       r = r_t(s'; \\hat\\mu_t) + \\Theta_t(x, a; \\hat\\mu_t),

   :math:`\\hat\\mu_t` the empirical histogram of the ``N`` agents after the move. With
   ``sharing: population`` all agents hold one set of parameters ``z`` ``(T, S, A)``; with
   ``sharing: none`` each holds its own, ``(N, T, S, A)`` float32.
2. Critic: the soft action values of the policy, :math:`Q_t(x, a) = \\mathbb E[r_t +
   V_{t+1}(s')]` with :math:`V_t(s) = \\sum_a \\pi_t(s, a) Q_t(s, a) + \\tau H(\\pi_t(s))`,
   are estimated from the round's samples, with one of two targets per agent-step:

   - ``td`` (default): :math:`r_t + \\hat V_{t+1}(x_{t+1})`, with :math:`\\hat V_{t+1}(s) =
     \\sum_a \\pi_{t+1}(s, a) z_{t+1}(s, a) + \\tau H(\\pi_{t+1}(s))` the soft value of
     the actor's own averaged estimates (step 3; the agent's own ``z_i`` with ``sharing:
     none``): a slowly moving target, as a target network is;
   - ``monte_carlo``: the agent's soft return-to-go :math:`G_t = r_t + \\tau
     H(\\pi_i[t+1, x_{t+1}]) + G_{t+1}` (:math:`G_{T-1} = r_{T-1}`), unbiased for the
     round's crowd but noisier (measured on dynamic.yaml: 115 rounds to the tolerance
     against 75 with ``td`` bootstrapped on the critic, 65 on ``z``).

   ``critic: joint`` (the paper's joint value function, :class:`JointCritic`): one table
   from all agents' samples, the value of landing in each state shared by every move that
   lands there, plus a per-move offset (see the class). ``critic: agent`` (``sharing:
   none`` only): each agent its own table from its own samples, step ``max(1/n,
   critic_rate)`` after ``n`` visits, untried actions valued at the best tried action of
   the state (optimism, so each is tried).
3. Actor: a natural policy-gradient step. For a softmax policy the Fisher information of
   row ``(t, s)`` is its state mass times the covariance of the score, so the natural
   gradient of the regularised return :math:`\\mathbb E \\sum_t (r_t + \\tau H)` with
   respect to the logits ``y = z / tau`` is the soft advantage
   :math:`Q_t(s, a) - \\tau \\log \\pi_t(s, a)` up to a per-state constant (Kakade 2001;
   Cen et al. 2021, "Fast global convergence of natural policy gradient methods with
   entropy regularization", in the finite-horizon undiscounted form, where the state
   occupancies cancel). With :math:`\\log \\pi = y - \\operatorname{lse}(y)` a step
   :math:`y \\leftarrow y + \\eta (\\hat Q - \\tau \\log\\pi)` is, with
   :math:`\\alpha = \\eta \\tau` and ``z = tau y``,

   .. math::

       z_{k+1} = (1 - \\alpha_k)\\, z_k + \\alpha_k \\hat Q_k,

   mirror descent with a KL proximal term (soft policy iteration at ``alpha = 1``; the
   exact solver's ``omd`` runs the same map on the model's ``Q``). Its fixed point is
   :math:`\\pi = \\operatorname{softmax}(Q^{\\pi, \\mu(\\pi)} / \\tau)`, the regularised
   mean-field equilibrium. The step schedule is

   .. math::

       \\alpha_k = \\max\\big(1 / (k + k_0), \\alpha\\big), \\qquad k_0 = \\texttt{offset}
       = \\operatorname{round}(1 / \\tau), \\quad \\alpha = \\texttt{step} = 10^{-3}:

   ``z`` is the running mean of the critic's estimates, with the uniform first policy
   (``z = 0``) counted as ``k0`` rounds. Why a mean and not a constant step: with
   :math:`\\hat Q_k = Q(\\pi_k) + \\xi_k` (critic noise of variance
   :math:`\\sigma^2`, from the crowd's sampling noise) and ``G`` the stiffness of the game
   at the equilibrium (``c / tau`` for the one-shot game :math:`r = d - c \\log\\mu`, so
   :math:`Q(\\pi) \\approx Q^* - G (z - z^*)`), a constant step leaves a stationary error
   :math:`e` in ``z`` of variance :math:`\\alpha^2 \\sigma^2 / (1 - (1 - \\alpha(1 + G))^2)`,
   and the certificate compares :math:`\\pi` with the soft best response to its own crowd,
   whose logits differ by :math:`(1 + G) e / \\tau`: an exploitability of about
   :math:`\\alpha (1 + G) \\sigma^2 / (2 (2 - \\alpha (1 + G)) \\tau)` per action and
   state, which does not shrink with ``k`` (measured on oneshot.yaml, ``G = 10``: 0.33 at
   ``alpha = 0.1``, 0.08-0.13 at 0.05, against a tolerance of 0.025). With the running
   mean the error is the mean of the noises, of variance :math:`\\sigma^2 / k`, and the
   exploitability falls like :math:`\\sigma^2 / (2 \\tau k)` whatever ``G``: the
   certificate is noise-limited (with ``N = 20000`` instead of 2000, dynamic.yaml
   certifies 0.0025 instead of 0.034 after 55 rounds). Weights growing like ``k^p``
   (forgetting the first rounds faster) cost more noise than they save in bias (measured,
   ``N = 2000``, 5 seeds: ``p = 0.5, 1`` took a median of 390-600k agent-steps on
   dynamic.yaml against 300k with ``p = 0``). ``k0`` damps the first steps: the first,
   a soft best response to the uniform crowd, overshoots by a factor ``1 + G`` unless
   :math:`\\alpha_1 \\lesssim 1 / (1 + G)`, so ``k0`` should be about the stiffness ``G``;
   the default takes that of log congestion of unit strength, ``1 / tau``. Measured
   (``N = 2000``, ``tau = 0.1``, medians of 5 seeds, agent-steps to the tolerance):
   ``k0`` = 5 / 10 / 20 / 40 / 80: dynamic.yaml 300k / 300k / 300k / 300k / 420k,
   oneshot.yaml 130k / 110k / 90k / 60k / 50k; on weakly coupled games (kernel
   congestion, the model-free benchmark's two games, seed 0) over-damping costs rounds:
   10 / 15 / 25-30 / 50-60 rounds for ``k0`` = 5 / 10 / 20 / 40. With
   ``sharing: none`` agent ``i`` steps only the rows it visited, with
   :math:`\\alpha = \\max(1/(n + k_0), \\alpha)` after ``n`` visits of the row (counts
   saturate at 255).

Stopping, on the same certificate as the other learners: every ``check_every`` rounds the
policy the agents play is certified with the model (its mean field, then the
exploitability against it): ``softmax(z / tau)`` mixed with the round's exploration
:math:`\\epsilon_k` (``sharing: none``: at each ``(t, s)`` the mean policy of the agents
that stood there in the round, the last one seen for states nobody visited, so mixed).
The learner stops when that is at most ``tolerance`` (default ``T (S - 1) / (2 N)``,
:func:`crowdsteer.objectives.kl_floor`). Certifying what is played, exploration included,
matters under log congestion: a cell the equilibrium gives a mass ~1/N is rarely reached,
its landing value goes stale, and the softmax alone can give it 1e-10, where ``-log mu``
pays 23 (two modified dynamic.yaml games: certificates 2-4 for the softmax, 0.6-0.8 for
the played policy). If the tolerance is never met, the best certified policy is
returned with ``converged = False``. ``history`` and ``Solution.estimate`` are the
agents' own estimate of the exploitability, from the critic:
:math:`\\sum_{t, s} \\hat d_t(s)\\, \\tau\\, \\mathrm{KL}(\\pi_t(s) \\,\\|\\,
\\operatorname{softmax}(\\hat Q_t(s) / \\tau))` (:math:`\\hat d_t` the agents' state
histogram before step ``t``), the one-step improvement the critic sees; it carries
the round's sampling noise (measured 1-30x the certificate), so it is shown, not used to stop.

Warm starts: ``solve(..., init=solution)`` starts every agent from ``init.pi``
(``z = tau log pi``, with ``sharing: population`` shifted per state to the level of the
first round's critic, which the softmax ignores but the TD targets use) and counts it as
``max(k0, 20)`` rounds, so that a nearby equilibrium is refined rather than re-learnt
(measured, dynamic.yaml and oneshot.yaml, seeds 0-2: from the exact equilibrium 25-40
and 45-55 rounds against 35-50 and 55-60 cold); the same ``init``, game and seed give
the same result.

Memory: ``sharing: population`` needs ``O(N + T S A)``; ``sharing: none`` holds
``4 N T S A`` bytes of float32 logits (``critic: agent`` adds a float32 value and a
one-byte count per entry) and refuses above :data:`MAX_ENTRIES` entries up front.

Examples
--------
>>> from crowdsteer.games.crowd import CrowdConfig, build
>>> game = build(CrowdConfig(height=3, width=3, congestion={"kind": "log"}))
>>> sol = PolicyGradient(PolicyGradientConfig(temperature=0.3, agents=500)).solve(
...     game, rng=np.random.default_rng(0))
>>> sol.converged, sol.pi.shape, sol.mu_sample.shape
(True, (1, 9, 9), (1, 9))
"""

from __future__ import annotations

import time
from collections import deque
from typing import Annotated, Literal, NamedTuple

import numpy as np
from pydantic import Field, model_validator

from crowdsteer import guards
from crowdsteer.config_base import Strict
from crowdsteer.equilibrium import entropy, exploitability, mean_field
from crowdsteer.errors import ConfigError
from crowdsteer.games.base import Game, ThetaLike
from crowdsteer.learners.base import (
    Progress, Solution, check_finite, exploration_rate, learners,
)
from crowdsteer.learners.simulate import (
    MAX_COUNT, PooledCrowd, counted_step, landing_rewards,
    draw_own, explore, sample_actions, sample_population, sample_slot, sample_states,
    successors,
)
from crowdsteer.objectives import kl_floor

Array = np.ndarray
MAX_ENTRIES = 200_000_000  # N * T * S * A with sharing: none (0.8-1.8 GB)
SAMPLE_ROUNDS = 5  # mu_sample averages the empirical histograms of this many final rounds
CHECK_EVERY = 5  # default rounds between certified checks
EXPLORATION = 0.05  # default epsilon: acting uniformly at random w.p. epsilon / sqrt(k)
CROWD_POWER = 4
"""The rewards are paid at the agents' histograms pooled over about the last ``k / 5``
rounds (:class:`~crowdsteer.learners.simulate.PooledCrowd` with this power), not at the
round's own. With the round's own, the critic prices the states a strong modifier leaves
nearly empty too low, and the certificate (for which such a state is worth up to
``(mu* / mu)^(1/tau)`` times its mass) stays far above the tolerance, rising while the
policy learns to avoid them. Measured (N = 2000, tau = 0.1, seeds 0 and 1, rounds to the
tolerance, 2000 = not converged): examples/oneshot.yaml's game under the demo's best
``w``, under half of it, and examples/dynamic.yaml's under two random ``w`` in its bounds:
with the round's own histogram none of the 8 converged (certificates 0.14-0.84; under the
demo's ``w`` it rose from 1.2 to 2.5 over the rounds); pooled with powers 4 / 8 / 16 / 32
all 8 converged, in 2,065 / 3,255 / 3,965 / 5,690 rounds in all; the unmodified games (4
solves) took 165 rounds with the own histogram and 165-205 pooled."""
STEP = 0.001  # default floor of the actor's step alpha_k = max(1 / (k + k0), step)
WARM_OFFSET = 20  # k0 of a warm start: the earlier policy weighs as 20 rounds


def default_offset(tau: float) -> int:
    """``k0 = round(1 / tau)``, at least 1: the stiffness ``c / tau`` of log congestion of
    unit strength, which the first steps must not exceed (module docstring).

    >>> default_offset(0.1), default_offset(2.0)
    (10, 1)
    """
    return max(1, int(round(1.0 / tau)))


class PolicyGradientConfig(Strict):
    """The ``learner`` section for ``name: policy_gradient``."""

    name: Literal["policy_gradient"] = "policy_gradient"
    temperature: Annotated[float, Field(gt=0)] = 0.1
    """``tau`` > 0: entropy regularisation of every agent's softmax policy."""
    agents: Annotated[int, Field(gt=0)] = 2000
    """``N``: agents, each sampling its own trajectory every round."""
    sharing: Literal["population", "none"] = "population"
    """``population``: one set of policy parameters updated from all agents' samples
    (memory ``N + T S A``); ``none``: each agent its own (``N T S A`` float32, at most
    ``2e8`` entries)."""
    critic: Literal["joint", "agent"] = "joint"
    """``joint``: one value table estimated from every agent's samples (the paper's joint
    value function); ``agent``: each agent its own, from its own samples (``sharing:
    none`` only)."""
    target: Literal["monte_carlo", "td"] = "td"
    """The critic's sample of ``Q_t(x, a)``: the soft return-to-go, or the reward plus the
    critic's own value of the landing state."""
    step: Annotated[float, Field(gt=0, le=1)] = STEP
    """``alpha``: the actor's step in round ``k`` is ``max(1 / (k + offset), alpha)`` (see
    the module docstring for why a running mean)."""
    offset: Annotated[int, Field(ge=0)] | None = None
    """``k0``: the actor's step in round ``k`` is ``max(1 / (k + k0), step)``: the uniform
    first policy counts as ``k0`` rounds of the averaged values. Default ``round(1 /
    temperature)`` (at least 1), the stiffness of unit log congestion (module docstring)."""
    critic_rate: Annotated[float, Field(gt=0, le=1)] = 1.0
    """``beta``: a visited entry of the critic moves this far to the round's mean target
    (``critic: agent``: ``max(1/n, beta)`` after ``n`` visits)."""
    exploration: Annotated[float, Field(ge=0, le=1)] = EXPLORATION
    """``epsilon``: in round ``k`` an agent acts uniformly at random (over allowed actions)
    with probability ``epsilon / sqrt(k)``, so that every landing state keeps being
    reached and priced by the critic (see the module docstring)."""
    tolerance: Annotated[float, Field(gt=0)] | None = None
    """Stop when the certified (model-based) exploitability of the population policy,
    checked every ``check_every`` rounds, is at most this. Default ``T (S - 1) / (2 N)``."""
    check_every: Annotated[int, Field(gt=0)] = CHECK_EVERY
    """Rounds between certified checks of the stopping rule."""
    max_iterations: Annotated[int, Field(gt=0)] = 2000
    """Rounds of play (each round is one episode of all ``N`` agents)."""

    @model_validator(mode="after")
    def _agent_critic_needs_own_policies(self) -> "PolicyGradientConfig":
        if self.critic == "agent" and self.sharing == "population":
            raise ValueError("critic: agent needs sharing: none (one shared policy learns "
                             "from one joint critic); allowed: critic: joint with sharing: "
                             "population")
        return self


class PolicyGradient:
    """``N`` natural-policy-gradient agents with a sampled critic (see module docstring)."""

    def __init__(self, config: PolicyGradientConfig | None = None) -> None:
        self.config = config or PolicyGradientConfig()

    def solve(self, game: Game, theta: ThetaLike = None, rng: np.random.Generator | None = None,
              progress: Progress | None = None, init: Solution | None = None) -> Solution:
        """Learn until the certificate is within ``tolerance`` (or ``max_iterations``);
        ``init``: start every agent from its policy (a warm start)."""
        start = time.perf_counter()
        cfg = self.config
        rng = np.random.default_rng() if rng is None else rng
        N, T, S, A, tau = cfg.agents, game.T, game.S, game.A, cfg.temperature
        if cfg.sharing == "none":
            check_memory(N, T, S, A, cfg.critic)
        guards.check_solve(game, cfg)
        tolerance = cfg.tolerance if cfg.tolerance is not None else kl_floor(S, N, T)
        z0 = np.zeros((T, S, A))
        k0 = cfg.offset if cfg.offset is not None else default_offset(tau)
        if init is not None and init.pi.shape == (T, S, A):
            z0 = tau * np.log(np.maximum(init.pi, 1e-300))
            k0 = max(k0, WARM_OFFSET)  # a warm start is refined, not re-learnt
        warm = init is not None and init.pi.shape == (T, S, A)
        agents = (Population(game, z0, tau, warm) if cfg.sharing == "population"
                  else OwnPolicies(game, N, z0, tau, cfg.critic, k0))
        recent: deque[Array] = deque(maxlen=SAMPLE_ROUNDS)
        crowd = PooledCrowd(T, S, CROWD_POWER)
        history = []
        converged = False
        best: Certified | None = None
        for k in range(1, cfg.max_iterations + 1):
            alpha = max(1.0 / (k + k0), cfg.step)
            eps = exploration_rate(cfg.exploration, tau, k + k0)
            rnd = agents.play(game, theta, N, rng, eps, crowd)
            recent.append(rnd.mu_hat)
            agents.learn(rnd, cfg, alpha)
            gap = agents.gap(rnd)
            history.append(gap)
            if progress:
                progress(k, gap)
            if k % cfg.check_every == 0 or k == cfg.max_iterations:
                pi = explore(agents.policy(), eps, game.allowed)  # as the agents play
                mu = mean_field(game, pi)
                expl = exploitability(game, pi, tau, theta, mu=mu)
                check_finite(expl, "exploitability")
                now = Certified(pi, mu, expl, np.mean(recent, axis=0))
                if best is None or expl < best.exploitability:
                    best = now
                if expl <= tolerance:
                    converged = True
                    break
        assert best is not None  # the last round is always checked
        if converged:
            best = now
        return Solution(best.pi, best.mu, best.exploitability, k, time.perf_counter() - start,
                        converged, mu_sample=best.sample, agents=N,
                        history=np.asarray(history), estimate=history[-1])


class Certified(NamedTuple):
    """A certified population policy with its mean field and the agents' histograms."""

    pi: Array
    mu: Array
    exploitability: float
    sample: Array


class Round(NamedTuple):
    """One episode of all agents.

    Attributes
    ----------
    path
        Per step ``t``: ``(x, a, slot, x_next, r, h)``, each ``(N,)``: state, action,
        successor slot, landing state, reward, and ``h`` the entropy of the policy row the
        agent drew ``a`` from.
    mu_hat
        ``(T, S)`` empirical distribution after each move.
    visits
        ``(T, S)`` agents in each state before each step.
    """

    path: list[tuple[Array, Array, Array, Array, Array, Array]]
    mu_hat: Array
    visits: Array


def softmax_rows(z: Array, tau: float, allowed: Array | None) -> Array:
    """``softmax(z / tau)`` along the last axis, masked actions at 0 (``allowed`` broadcasts)."""
    y = z / tau
    if allowed is not None:
        y = np.where(allowed, y, -np.inf)
    y -= y.max(axis=-1, keepdims=True)
    np.exp(y, out=y)
    y /= y.sum(axis=-1, keepdims=True)
    return y


def row_mean(q: Array, allowed: Array | None) -> Array:
    """``(..., 1)`` mean of each row of ``q`` over the allowed actions: a per-state constant,
    which ``softmax(q / tau)`` ignores but the soft value ``tau lse(q / tau)`` carries."""
    if allowed is None:
        return q.mean(axis=-1, keepdims=True)
    ok = np.broadcast_to(allowed, q.shape)
    return (np.where(ok, q, 0.0).sum(axis=-1, keepdims=True)
            / np.maximum(ok.sum(axis=-1, keepdims=True), 1))


def critic_gap(Q: Array, pi: Array, visits: Array, tau: float) -> float:
    """:math:`\\sum_{t,s} \\hat d_t(s) \\tau \\mathrm{KL}(\\pi_t(s) \\| \\mathrm{softmax}
    (Q_t(s)/\\tau))` for ``(T, S, A)`` ``Q`` and ``pi`` and ``(T, S)`` visit counts."""
    held = pi > 0
    q = np.where(held, Q, -np.inf)
    top = q.max(axis=-1, keepdims=True)
    v_br = (top[..., 0] + tau * np.log(np.exp((q - top) / tau).sum(axis=-1)))
    v_pi = (pi * np.where(held, Q, 0.0)).sum(axis=-1) + tau * entropy(pi)
    d = visits / visits[0].sum()
    return max(float(np.sum(d * (v_br - v_pi))), 0.0)


class JointCritic:
    """The joint value function: soft action values of the population's policy, from every
    agent's samples, ``O(T S A K)`` memory.

    A game's reward is a landing term ``r_t(s'; mu)`` plus the modifier ``Theta_t(x, a)``,
    so the critic estimates

    .. math::

        \\hat Q_t(x, a) = b_t(x, a) + \\sum_j \\hat P_t(j \\mid x, a)\\, W_t(s'_j(x, a)),

    with :math:`W_t(s')` the value of landing in ``s'`` at step ``t`` (landing reward plus
    what follows), shared by every ``(x, a)`` that can land there and re-estimated each
    round from all agents who landed there, as the mean of their targets minus their
    offsets ``b``; :math:`b_t(x, a)` the mean, over the rounds that visited ``(t, x, a)``,
    of the target minus ``W_t(s')`` (what depends on the move itself, e.g. the modifier);
    and :math:`\\hat P` the share of landings in successor slot ``j`` (uniform until tried;
    known after one try for deterministic moves). So one round's crowd prices every move
    towards the states it reached, not only the moves tried in it. A landing state nobody
    reached keeps its last ``W``; a move never tried has ``b = 0``.

    Attributes
    ----------
    Q
        ``(T, S, A)`` the current estimate.
    W
        ``(T, S)`` landing values.
    b
        ``(T, S, A)`` per-move offsets, with ``rounds`` ``(T, S, A)`` the rounds behind each.
    nxt
        ``(S, A, K)`` landing state of each successor slot.
    """

    def __init__(self, game: Game) -> None:
        T, S, A = game.T, game.S, game.A
        self.nxt = successors(game.transition)
        self.K = self.nxt.shape[2]
        self.W = np.zeros((T, S))
        self.b = np.zeros((T, S, A))
        self.rounds = np.zeros((T, S, A))
        self.count = np.zeros((T, S, A, self.K)) if self.K > 1 else None
        self.Q = np.zeros((T, S, A))
        self._refresh_all()

    def _refresh_all(self) -> None:
        for t in range(self.Q.shape[0]):
            self._refresh(t)

    def _refresh(self, t: int) -> None:
        W = self.W[t][self.nxt]  # (S, A, K)
        if self.K == 1:
            self.Q[t] = self.b[t] + W[:, :, 0]
            return
        n = self.count[t].sum(axis=-1, keepdims=True)
        P = np.where(n > 0, self.count[t] / np.maximum(n, 1), 1.0 / self.K)
        self.Q[t] = self.b[t] + np.einsum("sak,sak->sa", P, W)

    def update(self, t: int, x: Array, a: Array, slot: Array, x_next: Array, G: Array,
               beta: float) -> None:
        """Fold in step ``t`` of a round: targets ``G`` ``(N,)`` of the agents' moves."""
        _, S, A = self.b.shape
        cell = x * A + a
        b = self.b[t].reshape(-1)
        n_land = np.bincount(x_next, minlength=S)
        landed = n_land > 0
        mean = np.bincount(x_next, weights=G - b[cell], minlength=S)[landed] / n_land[landed]
        self.W[t][landed] += beta * (mean - self.W[t][landed])
        n = np.bincount(cell, minlength=S * A)
        seen = np.flatnonzero(n)
        resid = np.bincount(cell, weights=G - self.W[t][x_next], minlength=S * A)[seen] / n[seen]
        rounds = self.rounds[t].reshape(-1)
        rounds[seen] += 1
        b[seen] += (resid - b[seen]) / rounds[seen]
        if self.count is not None:
            self.count[t].reshape(-1)[:] += np.bincount(cell * self.K + slot,
                                                        minlength=S * A * self.K)
        self._refresh(t)


def move(game: Game, nxt: Array, x: Array, a: Array,
         rng: np.random.Generator) -> tuple[Array, Array]:
    """Successor slot and landing state of each agent's move, ``(N,)`` each."""
    slot = sample_slot(game.transition, x, a, rng)
    return slot, nxt[x, a, slot]


def targets(rnd: Round, t: int, G: Array | None, tau: float, td: bool,
            v_next: Array | None) -> Array:
    """The critic's samples at step ``t`` (backwards): the soft return-to-go (``G`` the one
    of step ``t + 1``) or, with ``td``, the reward plus ``v_next`` ``(N,)``, the critic's
    soft value of each agent's landing state."""
    r = rnd.path[t][4]
    if t == len(rnd.path) - 1:
        return r
    if td:
        return r + v_next
    return r + tau * rnd.path[t + 1][5] + G


class Population:
    """``sharing: population``: one set of logits ``z`` ``(T, S, A)`` and a joint critic."""

    def __init__(self, game: Game, z0: Array, tau: float, warm: bool = False) -> None:
        self.z = z0.copy()
        self.relevel = warm
        self.critic = JointCritic(game)
        self.tau = tau
        self.allowed = game.allowed
        self.pi = softmax_rows(self.z, tau, self.allowed)

    def policy(self) -> Array:
        return self.pi

    def play(self, game: Game, theta: ThetaLike, N: int, rng: np.random.Generator,
             eps: float, crowd: PooledCrowd) -> Round:
        T, S = game.T, game.S
        H = entropy(self.pi.reshape(T * S, -1)).reshape(T, S)
        act = explore(self.pi, eps, game.allowed)
        x = sample_population(game.mu0, N, rng)  # exchangeable agents: order is immaterial
        path, mu_hat, visits = [], np.empty((T, S)), np.empty((T, S))
        for t in range(T):
            a = sample_actions(act[t], x, rng)
            slot, x_next = move(game, self.critic.nxt, x, a, rng)
            r, mu_hat[t] = landing_rewards(game, theta, t, x, a, x_next, N, crowd)
            visits[t] = np.bincount(x, minlength=S)
            path.append((x, a, slot, x_next, r, H[t][x]))
            x = x_next
        check_finite(mu_hat, "empirical mean field")
        return Round(path, mu_hat, visits)

    def learn(self, rnd: Round, cfg: PolicyGradientConfig, alpha: float) -> None:
        T, S, A = self.z.shape
        tau, td = self.tau, cfg.target == "td"
        H = entropy(self.pi.reshape(T * S, A)).reshape(T, S)
        G = None
        for t in range(T - 1, -1, -1):
            x, a, slot, x_next = rnd.path[t][:4]
            v_next = None
            if td and t < T - 1:
                held = self.pi[t + 1] > 0
                v = (self.pi[t + 1] * np.where(held, self.z[t + 1], 0.0)).sum(axis=-1)
                v_next = (v + tau * H[t + 1])[x_next]
            G = targets(rnd, t, G, tau, td, v_next)
            self.critic.update(t, x, a, slot, x_next, G, cfg.critic_rate)
        check_finite(self.critic.Q, "critic")
        if self.relevel:  # a warm start's logits take the critic's per-state level
            self.z += row_mean(self.critic.Q, self.allowed) - row_mean(self.z, self.allowed)
            self.relevel = False
        self.z *= 1 - alpha
        self.z += alpha * self.critic.Q
        self.pi = softmax_rows(self.z, tau, self.allowed)

    def gap(self, rnd: Round) -> float:
        return critic_gap(self.critic.Q, self.pi, rnd.visits, self.tau)


class OwnPolicies:
    """``sharing: none``: every agent its own logits, flat ``(N T S A,)`` float32, so that
    one index ``((i T + t) S + s) A + a`` reaches agent ``i``'s entry."""

    def __init__(self, game: Game, N: int, z0: Array, tau: float, critic: str,
                 k0: int = 0) -> None:
        T, S, A = z0.shape
        self.k0 = k0  # rounds the start policy counts as in each row's running mean
        self.shape = (N, T, S, A)
        self.tau = tau
        self.z = np.broadcast_to(z0.astype(np.float32), (N, T, S, A)).reshape(-1).copy()
        self.rows_seen = np.zeros(N * T * S, dtype=np.uint8)  # visits of each agent's rows
        self.own_critic = critic == "agent"
        if self.own_critic:
            self.q = np.zeros(N * T * S * A, dtype=np.float32)
            self.n = np.zeros(N * T * S * A, dtype=np.uint8)
        self.critic = JointCritic(game)  # also gives the successor slots with critic: agent
        self.allowed = None if game.allowed is None else np.asarray(game.allowed)
        self.pi_pop = np.broadcast_to(softmax_rows(z0, tau, self.allowed), (T, S, A)).copy()
        self._agent = np.arange(N, dtype=np.int64) * T
        self._actions = np.arange(A, dtype=np.int64)
        self._rows: list[Array] = []  # per step, (N, A) each agent's policy row

    def row(self, t: int, x: Array) -> Array:
        """``(N,)`` flat index of agent ``i``'s row ``(t, x[i])`` (in units of rows)."""
        return (self._agent + t) * self.shape[2] + x

    def policy(self) -> Array:
        return self.pi_pop

    def _uniform(self, x: Array) -> Array | float:
        """``(N, A)`` uniform policies over each agent's allowed actions (or ``1 / A``)."""
        if self.allowed is None:
            return 1.0 / self.shape[3]
        ok = self.allowed[x].astype(float)
        return ok / ok.sum(axis=1, keepdims=True)

    def _mask(self, x: Array) -> Array | None:
        return None if self.allowed is None else self.allowed[x]

    def play(self, game: Game, theta: ThetaLike, N: int, rng: np.random.Generator,
             eps: float, crowd: PooledCrowd) -> Round:
        _, T, S, A = self.shape
        x = sample_states(game.mu0, N, rng)  # agents keep their identity: iid draws
        path, mu_hat, visits = [], np.empty((T, S)), np.empty((T, S))
        self._rows = []
        for t in range(T):
            idx = self.row(t, x)[:, None] * A + self._actions
            p = softmax_rows(self.z[idx].astype(float), self.tau, self._mask(x))  # (N, A)
            act = p if eps <= 0 else (1 - eps) * p + eps * self._uniform(x)
            a = draw_own(np.ascontiguousarray(act.T), rng)
            slot, x_next = move(game, self.critic.nxt, x, a, rng)
            r, mu_hat[t] = landing_rewards(game, theta, t, x, a, x_next, N, crowd)
            visits[t] = np.bincount(x, minlength=S)
            here = visits[t] > 0
            sums = np.bincount((x[:, None] * A + self._actions).ravel(), weights=p.ravel(),
                               minlength=S * A).reshape(S, A)
            self.pi_pop[t][here] = sums[here] / visits[t][here, None]
            path.append((x, a, slot, x_next, r, entropy(p)))
            self._rows.append(p)
            x = x_next
        check_finite(mu_hat, "empirical mean field")
        return Round(path, mu_hat, visits)

    def learn(self, rnd: Round, cfg: PolicyGradientConfig, alpha: float) -> None:
        N, T, S, A = self.shape
        tau, beta, td = self.tau, cfg.critic_rate, cfg.target == "td"
        G = None
        for t in range(T - 1, -1, -1):
            x, a, slot, x_next = rnd.path[t][:4]
            v_next = None
            if td and t < T - 1:
                p = self._rows[t + 1]
                q = self.z[self.row(t + 1, x_next)[:, None] * A + self._actions]
                v_next = (p * np.where(p > 0, q, 0.0)).sum(axis=1) + tau * rnd.path[t + 1][5]
            G = targets(rnd, t, G, tau, td, v_next)
            if self.own_critic:
                counted_step(self.q, self.n, self.row(t, x) * A + a, G, beta)
            else:
                self.critic.update(t, x, a, slot, x_next, G, beta)
        for t in range(T):
            x = rnd.path[t][0]
            rows = self.row(t, x)
            seen = self.rows_seen[rows]
            np.minimum(seen, MAX_COUNT - 1, out=seen)
            seen += 1
            self.rows_seen[rows] = seen
            step = np.maximum(1.0 / (seen + self.k0), cfg.step)[:, None]
            target = self._own_values(t, x) if self.own_critic else self.critic.Q[t][x]
            idx = rows[:, None] * A + self._actions
            z = self.z[idx]
            self.z[idx] = z + step * (target - z)
        check_finite(self.z, "policy logits")

    def _own_values(self, t: int, x: Array) -> Array:
        """``(N, A)`` each agent's own critic row at ``(t, x[i])``, untried actions at the
        best tried value of the row (0 when none is tried)."""
        A = self.shape[3]
        idx = self.row(t, x)[:, None] * A + self._actions
        q = self.q[idx].astype(float)
        tried = self.n[idx] > 0
        best = np.where(tried, q, -np.inf).max(axis=1)
        best[np.isneginf(best)] = 0.0
        return np.where(tried, q, best[:, None])

    def gap(self, rnd: Round) -> float:
        if self.own_critic:  # the agents' mean view: their own values where they stood
            x = rnd.path[0][0]
            Q = np.zeros((1, self.shape[2], self.shape[3]))
            np.add.at(Q[0], x, self._own_values(0, x))
            Q[0] /= np.maximum(rnd.visits[0], 1)[:, None]
            return critic_gap(Q, self.pi_pop[:1], rnd.visits[:1], self.tau)
        return critic_gap(self.critic.Q, self.pi_pop, rnd.visits, self.tau)


def check_memory(N: int, T: int, S: int, A: int, critic: str) -> None:
    """Refuse ``sharing: none`` above :data:`MAX_ENTRIES` entries with one line."""
    entries = N * T * S * A
    if entries > MAX_ENTRIES:
        per = 4 + (5 if critic == "agent" else 0)
        raise ConfigError(
            "learner.agents",
            f"{N} agents with sharing: none x {T * S * A} (T*S*A) policy entries = "
            f"{entries:.3g} entries, about {entries * per / 1e9:.1f} GB of memory; allowed: "
            f"at most {MAX_ENTRIES:.0e} entries (use fewer agents, or sharing: population, "
            "whose memory is N + T*S*A)")


@learners.register("policy_gradient")
def build(cfg: PolicyGradientConfig) -> PolicyGradient:
    return PolicyGradient(cfg)


build.config = PolicyGradientConfig  # type: ignore[attr-defined]
