"""Independent learners: every agent keeps its own action values and softmax policy.

Nothing is pooled. Agent ``i`` has a table ``Q_i[t, s, a]`` (all agents together: an
``(N, T, S, A)`` float32 array) and learns from its own rewards only, by (soft)
Q-learning along its own trajectory. Per round (one episode of all ``N`` agents):

1. Act: agent ``i`` in state ``x`` at step ``t`` draws ``a`` from
   :math:`\\pi_i = \\operatorname{softmax}(Q_i[t, x] / \\tau)` (greedy at ``tau = 0``), mixed
   with exploration ``epsilon_k`` (uniform over allowed actions), lands in ``s'`` and
   receives :math:`r = r_t(s'; \\hat\\mu_t) + \\Theta_t(x, a; \\hat\\mu_t)`, with
   :math:`\\hat\\mu_t` the empirical histogram of the ``N`` agents after the move.
2. Learn, backwards over ``t`` so values propagate within one round:

   .. math::

       Q_i[t, x, a] \\mathrel{+}= \\alpha_n \\big(r + V_i[t+1, s'] - Q_i[t, x, a]\\big),
       \\qquad V_i[t, s] = \\tau \\log \\sum_a e^{Q_i[t, s, a]/\\tau}
       \\;(\\max \\text{ at } \\tau=0),

   with :math:`\\alpha_n = \\max(1/n, \\alpha_k)`, ``n`` the agent's visits to ``(t, x, a)``
   (counted up to 255) and :math:`\\alpha_k = \\alpha\\, h / (h + k)` in round ``k``
   (``h`` = :data:`STEP_HALVING` rounds): a sample average at first (the first visit sets
   the value), then a step that decreases as the crowd settles, so the agents' values stop
   chasing the noise of the crowd they meet. Untried actions count as the best value the
   agent has tried in that state (optimism), so each agent tries every action of a state it
   visits.
3. The population policy :math:`\\pi_k[t, s]` is the average of the policies of the agents
   standing in ``s`` before step ``t`` (for states nobody visited in the round, the last
   one seen there; uniform if never). Its running average :math:`\\bar\\pi_k` weighs
   round ``k`` by ``k^2`` times its state masses (the early, far-from-equilibrium rounds
   fade, as in ``fictitious_play``'s reward means).

Why the average. At ``tau = 0`` greedy agents facing a mixed equilibrium (log congestion:
everyone wants the cell where, this round, fewest stood) keep switching: their
population policy changes by 0.1-0.3 per round forever and its exploitability stays
around 0.07-0.4, while the time average :math:`\\bar\\pi_k` sits near the equilibrium
(measured on 3 x 3 and 5 x 5 log games, ``N = 2000``, 2000 rounds: 0.07 and 0.35 for
:math:`\\pi_k` against 0.005 and 0.03 for :math:`\\bar\\pi_k`). Where the equilibrium is
pure (kernel congestion) the agents do settle and :math:`\\pi_k` is the better of the two
(the average lags it). So the learner offers both.

Stopping, on a certified check: every ``check_every`` rounds the exploitability of both
:math:`\\pi_k` and :math:`\\bar\\pi_k` is computed with the model, and the learner stops when
the lower one is at most ``tolerance`` (default ``T (S - 1) / (2 N)``, as for
``fictitious_play``). The returned policy is the one with the lower certificate (at the
last check), and ``mu_sample`` the matching histogram of the agents (the last
:data:`SAMPLE_ROUNDS` rounds for :math:`\\pi_k`, the same ``k^2``-weighted average of the
rounds' histograms for :math:`\\bar\\pi_k`). ``history`` is the agent-weighted total
variation between consecutive population policies, and ``Solution.estimate`` the
agents' own view of the exploitability (:func:`population_gap`). Where the certificate
does not reach the tolerance within ``max_iterations`` (``tau = 0`` with many actions is
slow: each agent must first try all of them), the solution says ``converged = False``.

Where it does not converge (measured, BENCHMARKS.md "Stopping" and "Learners", N = 2000,
2000 rounds): at ``tau = 0`` with log congestion (a mixed equilibrium: 3 x 3, 5 x 5 and the
paper's dynamic game) neither :math:`\\pi_k` nor :math:`\\bar\\pi_k` reaches
``T (S - 1) / (2 N)`` (0.005 against 0.002, 0.032 against 0.006, 0.076 against 0.026):
greedy agents' switching averages out only like ``1/k``; at ``tau = 0`` on the dynamic game
with kernel congestion (0.042 against 0.026); and at ``tau = 0.1`` on the examples' games:
``examples/oneshot.yaml``'s (100 states x 100 actions, each agent must first try every
action: 0.81 against 0.025) and ``dynamic.yaml``'s (0.029 against 0.026). It converges on
the benchmark's 7 x 9, ``T = 2`` log game at ``tau = 0.1``. A meta-agent run with
``independent`` says where it was measured not to converge when it starts
(:func:`crowdsteer.metaagent.runner.learner_caution`), and its non-converged evaluations
are never taken as the best (``require_convergence``).

Memory is ``5 N T S A`` bytes (values plus one-byte visit counts), so the learner refuses
configurations above :data:`MAX_ENTRIES` entries.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Annotated, Literal, NamedTuple

import numpy as np
from pydantic import Field

from crowdsteer import guards
from crowdsteer.config_base import Strict
from crowdsteer.equilibrium import entropy, exploitability, mean_field, soft_response
from crowdsteer.errors import ConfigError
from crowdsteer.games.base import Game, ThetaLike, theta_at
from crowdsteer.learners.base import (
    Progress, Solution, check_finite, exploration_rate, learners,
)
from crowdsteer.learners.sampled_fp import average
from crowdsteer.learners.simulate import (
    counted_step,
    draw_own, sample_states, sample_step, weighted_tv,
)
from crowdsteer.objectives import kl_floor

Array = np.ndarray
MAX_ENTRIES = 200_000_000  # N * T * S * A; 1 GB of float32 values plus one-byte counts
SAMPLE_ROUNDS = 5  # mu_sample averages the empirical histograms of this many final rounds
STEP_HALVING = 200  # the step floor learning_rate * h / (h + k) halves after h rounds
# (measured at N = 2000, tau = 0, 2000 rounds, h = 50 / 200 / 1000 / constant: the 3 x 3 log
# game 0.0048 / 0.0051 / 0.0069 / 0.0103, the paper's dynamic game with log congestion
# 0.077 / 0.076 / 0.083 / 0.091, with kernel congestion 0.045 / 0.042 / 0.042 / 0.037)
AVERAGE_POWER = 2  # round k weighs k^2 in the averaged policy
CHECK_EVERY = 5  # default rounds between certified checks


class IndependentConfig(Strict):
    """The ``learner`` section for ``name: independent``."""

    name: Literal["independent"] = "independent"
    temperature: Annotated[float, Field(ge=0)] = 0.0
    """``tau``: entropy regularisation of every agent (0: greedy, with exploration)."""
    agents: Annotated[int, Field(gt=0)] = 2000
    """``N``: agents, each with its own ``T x S x A`` table (``N T S A <= 2e8``)."""
    tolerance: Annotated[float, Field(gt=0)] | None = None
    """Stop when the certified (model-based) exploitability of the population policy or
    of its running average, checked every ``check_every`` rounds, is at most this.
    Default: ``T (S - 1) / (2 N)`` (see the module docstring)."""
    check_every: Annotated[int, Field(gt=0)] = CHECK_EVERY
    """Rounds between certified checks of the stopping rule."""
    max_iterations: Annotated[int, Field(gt=0)] = 2000
    """Rounds of play (each round is one episode of all ``N`` agents)."""
    learning_rate: Annotated[float, Field(ge=0.005, le=1)] = 0.1
    """``alpha``: in round ``k`` the step is ``max(1/n, alpha h / (h + k))`` after ``n``
    visits (counts saturate at 255; ``h`` = 200 rounds)."""
    exploration: Annotated[float, Field(ge=0, le=1)] | None = None
    """``epsilon``: in round ``k`` an agent acts uniformly at random (over allowed actions)
    with probability ``epsilon / sqrt(k)``. Default: 0.1 at ``temperature: 0`` (argmax
    responses need it), else 0 (soft responses already try every action, and exploring
    agents shift the crowd everyone learns from)."""


class IndependentLearners:
    """``N`` independent soft Q-learners (see module docstring)."""

    def __init__(self, config: IndependentConfig | None = None) -> None:
        self.config = config or IndependentConfig()

    def solve(self, game: Game, theta: ThetaLike = None, rng: np.random.Generator | None = None,
              progress: Progress | None = None, init: Solution | None = None) -> Solution:
        """Learn from scratch; ``init`` (a warm start) is accepted and ignored: the simulated
        agents' experience, not a policy, is what this learner starts from."""
        start = time.perf_counter()
        cfg = self.config
        rng = np.random.default_rng() if rng is None else rng
        N, T, S, A, tau = cfg.agents, game.T, game.S, game.A, cfg.temperature
        tolerance = cfg.tolerance if cfg.tolerance is not None else kl_floor(S, N, T)
        check_memory(N, T, S, A)
        guards.check_solve(game, cfg)
        memory = Memory(N, T, S, A, game.allowed)
        pi_now = np.broadcast_to(memory.uniform.T, (T, S, A)).copy()
        pi_avg, weight = pi_now.copy(), np.zeros((T, S))
        mu_avg, mu_weight = np.zeros((T, S)), 0.0
        recent: deque[Array] = deque(maxlen=SAMPLE_ROUNDS)
        history = []
        converged = False
        for k in range(1, cfg.max_iterations + 1):
            eps = exploration_rate(cfg.exploration, cfg.temperature, k)
            rnd = play_round(game, theta, memory, tau, eps, rng)
            step_floor = cfg.learning_rate * STEP_HALVING / (STEP_HALVING + k)
            learn(memory, rnd.path, tau, step_floor)
            recent.append(rnd.mu_hat)
            here = rnd.visits > 0
            pi_pop = np.where(here[..., None], rnd.policy_sum
                              / np.where(here, rnd.visits, 1.0)[..., None], pi_now)
            # round 1 has no previous population policy to compare with
            change = weighted_tv(pi_pop, pi_now, rnd.visits / (N * T)) if k > 1 else 1.0
            pi_now = pi_pop
            w_k = float(k) ** AVERAGE_POWER
            pi_avg, weight = average(pi_avg, weight, pi_now, w_k * rnd.visits / N)
            mu_avg += w_k * rnd.mu_hat
            mu_weight += w_k
            history.append(change)
            if progress:
                progress(k, change)
            if k % cfg.check_every == 0 or k == cfg.max_iterations:
                now = certify(game, pi_now, tau, theta)
                avg = certify(game, pi_avg, tau, theta)
                if min(now.exploitability, avg.exploitability) <= tolerance:
                    converged = True
                    break
        if now.exploitability <= avg.exploitability:
            best, mu_sample = now, np.mean(recent, axis=0)
        else:
            best, mu_sample = avg, mu_avg / mu_weight
        estimate = population_gap(memory, rnd.path[0][0], best.pi, tau)
        return Solution(best.pi, best.mu, best.exploitability, k, time.perf_counter() - start,
                        converged, mu_sample=mu_sample, agents=N,
                        history=np.asarray(history), estimate=estimate)


class Certified(NamedTuple):
    """A policy with its mean field and its model-based exploitability."""

    pi: Array
    mu: Array
    exploitability: float


def certify(game: Game, pi: Array, tau: float, theta: ThetaLike) -> Certified:
    """The certificate of ``pi``: its mean field and the exploitability against it."""
    mu = mean_field(game, pi)
    expl = exploitability(game, pi, tau, theta, mu=mu)
    check_finite(expl, "exploitability")
    return Certified(pi, mu, expl)


def population_gap(memory: "Memory", x0: Array, pi: Array, tau: float) -> float:
    """The agents' own estimate of the exploitability of ``pi``, from their values alone.

    With :math:`\\bar Q(s, a)` the mean of ``Q_i[0, s, a]`` over the agents ``i`` that
    started the last round in ``s`` (``x0``, ``(N,)``) and had tried ``a`` there (their
    values include what follows, through their own ``V_i[1]``), and :math:`\\hat\\mu_0` the
    histogram of ``x0``,

    .. math::

        \\hat e = \\sum_s \\hat\\mu_0(s) \\big(V(\\bar Q(s, \\cdot))
                  - \\textstyle\\sum_a \\pi_0(s, a) \\bar Q(s, a) - \\tau H(\\pi_0(s))\\big),

    ``V`` the (soft) maximum over allowed actions; actions nobody there tried count as
    the best tried value of their state. ``O(N A)``: one row per agent.
    """
    N, T, S, A = memory.shape
    rows = memory.rows(0, x0)  # (A, N)
    tried = memory.visits[rows] > 0
    at = (x0[None, :] * A + memory.actions).ravel()
    total = np.bincount(at, weights=np.where(tried, memory.Q[rows], 0.0).ravel(),
                        minlength=S * A).reshape(S, A)
    count = np.bincount(at, weights=tried.ravel(), minlength=S * A).reshape(S, A)
    seen = count > 0
    q = np.where(seen, total / np.maximum(count, 1), -np.inf)
    best = np.where(seen.any(axis=1), q.max(axis=1), 0.0)
    q = np.where(seen, q, best[:, None])
    _, v_br = soft_response(q, tau, None if memory.allowed is None else memory.allowed.T)
    held = pi[0] > 0
    v_pi = (pi[0] * np.where(held, q, 0.0)).sum(axis=1)
    if tau > 0:
        v_pi += tau * entropy(pi[0])
    mu0 = np.bincount(x0, minlength=S) / N
    return max(float(mu0 @ (v_br - v_pi)), 0.0)


class Memory:
    """What the ``N`` agents remember, flat so one index ``((i T + t) S + s) A + a`` reaches it.

    Attributes
    ----------
    Q
        ``(N T S A,)`` float32 action values ``Q_i[t, s, a]``.
    visits
        ``(N T S A,)`` uint8 visit counts (saturating at :data:`crowdsteer.learners.simulate.MAX_COUNT`).
    allowed
        ``(A, S)`` allowed actions, transposed (columns are states), or ``None`` for all.
    uniform
        ``(A, S)`` uniform policy over the allowed actions.
    """

    def __init__(self, N: int, T: int, S: int, A: int, allowed: Array | None) -> None:
        self.shape = (N, T, S, A)
        self.Q = np.zeros(N * T * S * A, dtype=np.float32)
        self.visits = np.zeros(N * T * S * A, dtype=np.uint8)
        self.allowed = None if allowed is None else np.ascontiguousarray(np.asarray(allowed).T)
        ok = np.ones((A, S)) if allowed is None else self.allowed.astype(float)
        self.uniform = ok / ok.sum(axis=0)
        self._agent = np.arange(N, dtype=np.int64) * T
        self.actions = np.arange(A, dtype=np.int64)[:, None]  # (A, 1): a column of action ids

    def cell(self, t: int, x: Array, a: Array) -> Array:
        """``(N,)`` flat index of agent ``i``'s ``(t, x[i], a[i])``; distinct across agents."""
        _, T, S, A = self.shape
        return ((self._agent + t) * S + x) * A + a

    def rows(self, t: int, x: Array) -> Array:
        """``(A, N)`` flat indices of agent ``i``'s row ``(t, x[i], :)`` (columns are agents)."""
        return self.cell(t, x, 0) + self.actions

    def ok(self, x: Array) -> Array | None:
        """``(A, N)`` allowed actions at each agent's state, or ``None`` when all are."""
        return None if self.allowed is None else self.allowed[:, x]

    def table(self) -> tuple[Array, Array]:
        """``Q`` and visit counts as ``(N, T, S, A)`` views."""
        return self.Q.reshape(self.shape), self.visits.reshape(self.shape)


class Round(NamedTuple):
    """One episode of all agents.

    Attributes
    ----------
    path
        Per step ``t``: ``(x, a, x_next, r)``, each ``(N,)``.
    visits
        ``(T, S)`` agents in each state before each step.
    policy_sum
        ``(T, S, A)`` sum over the agents in ``s`` before step ``t`` of their policies there.
    mu_hat
        ``(T, S)`` empirical distribution after each move.
    untried
        Agent-steps taken from a state where the agent had an allowed action still untried.
    """

    path: list[tuple[Array, Array, Array, Array]]
    visits: Array
    policy_sum: Array
    mu_hat: Array
    untried: int


def play_round(game: Game, theta: ThetaLike, memory: Memory, tau: float, eps: float,
               rng: np.random.Generator) -> Round:
    """All agents play one episode from ``mu0``, each following its own (explored) policy."""
    N, T, S, A = memory.shape
    x = sample_states(game.mu0, N, rng)
    path = []
    visits = np.empty((T, S))
    policy_sum = np.empty((T, S * A))
    mu_hat = np.empty((T, S))
    untried = 0
    for t in range(T):
        rows = memory.rows(t, x)
        n_x, ok = memory.visits[rows], memory.ok(x)
        fresh = (n_x == 0) if ok is None else (n_x == 0) & ok
        untried += int(np.count_nonzero(fresh.any(axis=0)))
        pi_i = agent_policy(memory.Q[rows], n_x, ok, tau)
        if eps > 0:
            act = (1 - eps) * pi_i + eps * (1.0 / A if ok is None else memory.uniform[:, x])
        else:
            act = pi_i
        a = draw_own(act, rng)
        x_next = sample_step(game.transition, x, a, rng)
        visits[t] = np.bincount(x, minlength=S)
        policy_sum[t] = np.bincount((x * A + memory.actions).ravel(), weights=pi_i.ravel(),
                                    minlength=S * A)
        mu_hat[t] = np.bincount(x_next, minlength=S) / N
        r = np.asarray(game.reward(t, mu_hat[t]), dtype=float)[x_next]
        th = theta_at(theta, t, mu_hat[t], (S, A))
        if np.ndim(th):
            r = r + np.asarray(th)[x, a]
        elif th:
            r = r + th
        path.append((x, a, x_next, r))
        x = x_next
    check_finite(mu_hat, "empirical mean field")
    return Round(path, visits, policy_sum.reshape(T, S, A), mu_hat, untried)


def learn(memory: Memory, path: list, tau: float, learning_rate: float) -> None:
    """Each agent's (soft) Q-learning update along its own path, backwards in ``t``; the
    step after ``n`` visits is ``max(1/n, learning_rate)``."""
    T = memory.shape[1]
    for t in range(T - 1, -1, -1):
        x, a, x_next, r = path[t]
        target = r
        if t < T - 1:
            rows = memory.rows(t + 1, x_next)
            target = r + agent_value(memory.Q[rows], memory.visits[rows], memory.ok(x_next), tau)
        check_finite(target, "learning target")
        counted_step(memory.Q, memory.visits, memory.cell(t, x, a), target, learning_rate)


def check_memory(N: int, T: int, S: int, A: int) -> None:
    """Refuse ``N T S A`` above :data:`MAX_ENTRIES` with a one-line :class:`ConfigError`."""
    entries = N * T * S * A
    if entries > MAX_ENTRIES:
        gb = entries * (np.dtype(np.float32).itemsize + 1) / 1e9
        raise ConfigError(
            "learner.agents",
            f"{N} independent agents x {T * S * A} (T*S*A) action values = {entries:.3g} "
            f"entries, about {gb:.1f} GB of memory; allowed: at most {MAX_ENTRIES:.0e} entries "
            f"(use fewer agents, or the fictitious_play learner, whose memory is N + T*S*A)",
        )


def optimistic(q: Array, n: Array, ok: Array | None) -> Array:
    """Agents' values with untried actions raised to the best tried one (``-inf`` if masked).

    ``q``, ``n`` and ``ok`` are ``(A, M)`` (columns are agents): values, visit counts and
    allowed actions (``None``: all) of ``M`` agents at their states. A column with nothing
    tried keeps its values (all zero): a uniform start. Returns float64.
    """
    q = q.astype(float)
    tried = n > 0
    if ok is not None:
        tried &= ok
        q[~ok] = -np.inf
    if not tried.all():
        best = np.where(tried, q, -np.inf).max(axis=0)
        best[np.isneginf(best)] = 0.0  # nothing tried yet: every value is still the initial 0
        q = np.where(~tried if ok is None else ~tried & ok, best, q)
    return q


def agent_policy(q: Array, n: Array, ok: Array | None, tau: float) -> Array:
    """Each agent's policy at its state, ``(A, M)`` float64, columns on the simplex.

    ``softmax(q / tau)`` over allowed actions, or greedy at ``tau = 0`` (uniform over the
    maximisers); arguments as in :func:`optimistic`.
    """
    z = optimistic(q, n, ok)
    if tau > 0:
        z /= tau
        z -= z.max(axis=0)
        np.exp(z, out=z)
        z /= z.sum(axis=0)
        return z
    best = z == z.max(axis=0)  # ties split evenly: untried actions tie, and agents then
    return best / best.sum(axis=0)  # spread over them instead of herding onto the first


def agent_value(q: Array, n: Array, ok: Array | None, tau: float) -> Array:
    """Each agent's (soft) state value at its state, ``(M,)``; arguments as :func:`optimistic`.

    ``tau * log sum_a exp(q / tau)`` over allowed actions, ``max`` at ``tau = 0``.
    """
    q = optimistic(q, n, ok)
    top = q.max(axis=0)
    if tau > 0:
        return top + tau * np.log(np.exp((q - top) / tau).sum(axis=0))
    return top


@learners.register("independent")
def build(cfg: IndependentConfig) -> IndependentLearners:
    return IndependentLearners(cfg)


build.config = IndependentConfig  # type: ignore[attr-defined]
