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

   with :math:`\\alpha_n = \\max(1/n, \\alpha)`, ``n`` the agent's visits to ``(t, x, a)``:
   a sample average at first (the first visit sets the value), then a constant step that
   keeps tracking the moving crowd. Untried actions count as the best value the agent has
   tried in that state (optimism), so each agent tries every action of a state it visits.
3. The population policy :math:`\\pi[t, s]` is the average of the policies of the agents
   standing in ``s`` before step ``t`` (falling back, for states nobody visited in the last
   round, to the mean over all agents).

Stops when the population policy stops changing: the agent-weighted total variation
between consecutive rounds' population policies is at most ``tolerance``, and no agent
stood in a state where it had not yet tried every allowed action (before that the policy
can sit still only because agents have not learned anything yet). Memory is
``5 N T S A`` bytes (values plus one-byte visit counts), so the learner refuses
configurations above :data:`MAX_ENTRIES` entries.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Annotated, Literal, NamedTuple

import numpy as np
from pydantic import Field

from crowdsteer.config_base import Strict
from crowdsteer.equilibrium import exploitability, mean_field
from crowdsteer.errors import ConfigError
from crowdsteer.games.base import Game, ThetaLike, theta_at
from crowdsteer.learners.base import (
    Progress, Solution, check_finite, exploration_rate, learners,
)
from crowdsteer.learners.simulate import (
    draw_own, sample_states, sample_step, weighted_tv,
)

Array = np.ndarray
MAX_ENTRIES = 200_000_000  # N * T * S * A; 1 GB of float32 values plus one-byte counts
SAMPLE_ROUNDS = 5  # mu_sample averages the empirical histograms of this many final rounds
MAX_COUNT = 255  # visit counts saturate here (uint8)


class IndependentConfig(Strict):
    """The ``learner`` section for ``name: independent``."""

    name: Literal["independent"] = "independent"
    temperature: Annotated[float, Field(ge=0)] = 0.0
    """``tau``: entropy regularisation of every agent (0: greedy, with exploration)."""
    agents: Annotated[int, Field(gt=0)] = 2000
    """``N``: agents, each with its own ``T x S x A`` table (``N T S A <= 2e8``)."""
    tolerance: Annotated[float, Field(gt=0)] = 1e-3
    """Stop when the agent-weighted total variation between consecutive population
    policies is at most this."""
    max_iterations: Annotated[int, Field(gt=0)] = 2000
    """Rounds of play (each round is one episode of all ``N`` agents)."""
    learning_rate: Annotated[float, Field(ge=0.005, le=1)] = 0.1
    """``alpha``: the step is ``max(1/n, alpha)`` after ``n`` visits (counts saturate at 255)."""
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
        check_memory(N, T, S, A)
        memory = Memory(N, T, S, A, game.allowed)
        pi_known = np.broadcast_to(memory.uniform.T, (T, S, A)).copy()
        recent: deque[Array] = deque(maxlen=SAMPLE_ROUNDS)
        history = []
        converged = False
        for k in range(1, cfg.max_iterations + 1):
            eps = exploration_rate(cfg.exploration, cfg.temperature, k)
            rnd = play_round(game, theta, memory, tau, eps, rng)
            learn(memory, rnd.path, tau, cfg.learning_rate)
            recent.append(rnd.mu_hat)
            here = rnd.visits > 0
            pi_pop = np.where(here[..., None], rnd.policy_sum
                              / np.where(here, rnd.visits, 1.0)[..., None], pi_known)
            # round 1 has no previous population policy to compare with
            change = weighted_tv(pi_pop, pi_known, rnd.visits / (N * T)) if k > 1 else 1.0
            pi_known = pi_pop
            history.append(change)
            if progress:
                progress(k, change)
            if change <= cfg.tolerance and rnd.untried == 0:
                converged = True
                break
        pi = fill_unvisited(pi_known, here, memory, tau)
        mu = mean_field(game, pi)
        expl = exploitability(game, pi, tau, theta, mu=mu)
        check_finite(expl, "exploitability")
        return Solution(pi, mu, expl, k, time.perf_counter() - start, converged,
                        mu_sample=np.mean(recent, axis=0), agents=N,
                        history=np.asarray(history))


class Memory:
    """What the ``N`` agents remember, flat so one index ``((i T + t) S + s) A + a`` reaches it.

    Attributes
    ----------
    Q
        ``(N T S A,)`` float32 action values ``Q_i[t, s, a]``.
    visits
        ``(N T S A,)`` uint8 visit counts (saturating at :data:`MAX_COUNT`).
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
    """Each agent's (soft) Q-learning update along its own path, backwards in ``t``."""
    T = memory.shape[1]
    for t in range(T - 1, -1, -1):
        x, a, x_next, r = path[t]
        target = r
        if t < T - 1:
            rows = memory.rows(t + 1, x_next)
            target = r + agent_value(memory.Q[rows], memory.visits[rows], memory.ok(x_next), tau)
        check_finite(target, "learning target")
        cell = memory.cell(t, x, a)
        n = memory.visits[cell]
        np.minimum(n, MAX_COUNT - 1, out=n)
        n += 1
        memory.visits[cell] = n
        q = memory.Q[cell]
        memory.Q[cell] = q + np.maximum(1.0 / n, learning_rate) * (target - q)


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


def fill_unvisited(pi: Array, here: Array, memory: Memory, tau: float) -> Array:
    """Where nobody stood in the last round, use the mean policy of all agents at ``(t, s)``.

    The unvisited pairs are handled in blocks of at most about ``10^7`` values, all agents
    at once.
    """
    pi = pi.copy()
    N, _, _, A = memory.shape
    Q, visits = memory.table()
    tt, ss = np.nonzero(~here)
    block = max(1, 10_000_000 // (N * A))
    for lo in range(0, tt.size, block):
        t, s = tt[lo:lo + block], ss[lo:lo + block]
        m = t.size
        # columns are (agent, pair): (N, m, A) -> (A, N m)
        q = np.moveaxis(Q[:, t, s], 2, 0).reshape(A, N * m)
        n = np.moveaxis(visits[:, t, s], 2, 0).reshape(A, N * m)
        ok = None if memory.allowed is None else np.broadcast_to(
            memory.allowed[:, s][:, None, :], (A, N, m)).reshape(A, N * m)
        pi[t, s] = agent_policy(q, n, ok, tau).reshape(A, N, m).mean(axis=1).T
    return pi


@learners.register("independent")
def build(cfg: IndependentConfig) -> IndependentLearners:
    return IndependentLearners(cfg)


build.config = IndependentConfig  # type: ignore[attr-defined]
