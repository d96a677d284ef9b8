"""Fictitious play with sampled best responses and shared experience (model-free).

``N`` agents play the game as an ``(N,)`` array of states. They never see the model:
each agent observes only its own sampled reward. The population pools that experience
into tables of size ``T x S x A`` (``x K`` successor slots for stochastic moves), so
memory grows like ``N + T S A`` and not ``N S A``. Fictitious play (Perrin et al. 2020,
"Fictitious play for mean field games"), with the model-based best response replaced by
one computed from the pooled samples:

1. Play: every agent in state ``x`` at step ``t`` draws ``a`` from the current best
   response ``pi_br`` mixed with exploration (``epsilon_k``, uniform over allowed
   actions), lands in ``s' ~ P(.|x, a)`` and receives

   .. math::

       r = r_t(s'; \\hat\\mu_t) + \\Theta_t(x, a; \\hat\\mu_t),

   where :math:`\\hat\\mu_t` is the empirical histogram of the ``N`` agents after the move.
2. Record: :math:`\\hat R_t(x, a)` is the average over rounds of each round's mean
   reward of ``(t, x, a)`` (a round in which nobody played it repeats the latest value),
   and :math:`\\hat P_t(k | x, a)` the share of all its moves that landed in successor
   slot ``k``. Weighing every round equally is the fictitious-play average:
   :math:`\\hat R_t` estimates the reward against the historical mixture of mean fields,
   exactly so when rewards are linear in the mean field (kernel congestion). A per-sample
   mean would instead weigh rounds by how often the action was sampled in them, and an
   action tried mostly early (the uniform first round, exploration that decays) would
   keep an estimate from a crowd long gone. The kernel's probabilities do not depend on
   the crowd, so :math:`\\hat P` pools all samples.
3. Respond: backward induction on the estimates,

   .. math::

       Q_t(x, a) = \\hat R_t(x, a) + \\sum_k \\hat P_t(k | x, a)\\, V_{t+1}(s'_k(x, a)),
       \\qquad V_{t+1} = \\tau \\log \\sum_a e^{Q_{t+1}/\\tau} \\;(\\max \\text{ at } \\tau = 0),

   and :math:`\\pi^{br}_t = \\operatorname{softmax}(Q_t / \\tau)` (argmax at ``tau = 0``).
   A pair ``(t, x, a)`` nobody has tried yet gets the best value seen at step ``t``
   (optimism), so the next best response tries it.
4. Average: ``pi_bar`` is the state-weighted average of the best responses played, the
   weights being how many agents stood in ``x`` before step ``t`` (as in the exact
   solver's ``fp``, with counts in place of model masses).

Why backing up through :math:`\\hat P` rather than averaging sampled targets
``r + V_{t+1}(s')``: ``V_{t+1}`` changes every iteration, so a running mean of sampled
targets would mix stale values in for ever; keeping reward and transition estimates
apart lets every backup use the current ``V_{t+1}``. The successor slots are the
``(S, A, K)`` layout the kernel reports (``AnyMove``: one slot, landing state ``a``); only
the counts of observed landings are learned, never the probabilities.

Stopping: the *gap* ``sum_{t,s} w(t,s) TV(pi_br(t,s), pi_bar(t,s))`` between the next
best response and the average, weighted by where the agents were (``w`` sums to 1). It
is zero at a fixed point of FP; ``history`` records it. The policy change of ``pi_bar``
itself is at most ``gap / k`` and shrinks by construction, so it would prove nothing.

The certificate in the returned :class:`~crowdsteer.learners.base.Solution` is model-based:
``mu = mean_field(game, pi_bar)`` and its exploitability.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from crowdsteer.config_base import Strict
from crowdsteer.equilibrium import exploitability, mean_field, soft_response
from crowdsteer.games.base import AnyMove, Game, ThetaLike, theta_at
from crowdsteer.learners.base import (
    Progress, Solution, check_finite, initial_policy, learners,
)
from crowdsteer.learners.simulate import (
    explore, sample_actions, sample_population, sample_slot, successors, weighted_tv,
)

Array = np.ndarray
DEFAULT_EXPLORATION = 0.1  # at temperature 0
SAMPLE_ROUNDS = 5  # mu_sample averages the empirical histograms of this many final rounds


class FictitiousPlayConfig(Strict):
    """The ``learner`` section for ``name: fictitious_play``."""

    name: Literal["fictitious_play"] = "fictitious_play"
    temperature: Annotated[float, Field(ge=0)] = 0.0
    """``tau``: entropy regularisation of the agents (0: plain Nash, argmax responses)."""
    agents: Annotated[int, Field(gt=0)] = 2000
    """``N``: simulated agents. Memory grows like ``N + T S A``."""
    tolerance: Annotated[float, Field(gt=0)] = 1e-3
    """Stop when the agent-weighted total variation between the next best response and the
    averaged policy is at most this."""
    max_iterations: Annotated[int, Field(gt=0)] = 2000
    """Rounds of play (each round is one episode of all ``N`` agents)."""
    exploration: Annotated[float, Field(ge=0, le=1)] | None = None
    """``epsilon``: in round ``k`` an agent acts uniformly at random (over allowed actions)
    with probability ``epsilon / sqrt(k)``. Default: 0.1 at ``temperature: 0`` (argmax
    responses need it), else 0 (soft responses already try every action, and exploring
    agents shift the crowd everyone learns from)."""


def epsilon(cfg: FictitiousPlayConfig, k: int) -> float:
    """Exploration rate of round ``k`` (1-based): ``exploration / sqrt(k)``."""
    base = cfg.exploration
    if base is None:
        base = DEFAULT_EXPLORATION if cfg.temperature == 0 else 0.0
    return base / np.sqrt(k)


class SampledFictitiousPlay:
    """Fictitious play from pooled samples of ``N`` agents (see module docstring)."""

    def __init__(self, config: FictitiousPlayConfig | None = None) -> None:
        self.config = config or FictitiousPlayConfig()

    def solve(self, game: Game, theta: ThetaLike = None, rng: np.random.Generator | None = None,
              progress: Progress | None = None) -> Solution:
        start = time.perf_counter()
        cfg = self.config
        rng = np.random.default_rng() if rng is None else rng
        N, T, S, A, tau = cfg.agents, game.T, game.S, game.A, cfg.temperature
        nxt = successors(game.transition)  # (S, A, K)
        K = nxt.shape[2]
        tables = Tables(T, S, A, K)
        pi_bar = initial_policy(game)
        weight = np.zeros((T, S))  # agents seen in (t, s) so far: the averaging weights
        pi_br = initial_policy(game)  # round 1 explores uniformly
        recent: deque[Array] = deque(maxlen=SAMPLE_ROUNDS)
        history = []
        converged = False
        for k in range(1, cfg.max_iterations + 1):
            play = explore(pi_br, epsilon(cfg, k), game.allowed)
            visits, mu_hat = play_round(game, theta, play, N, tables, rng)
            recent.append(mu_hat)
            total = weight + visits
            seen = total > 0
            mixed = (weight[..., None] * pi_bar + visits[..., None] * pi_br) / np.where(
                seen, total, 1.0)[..., None]
            pi_bar = np.where(seen[..., None], mixed, pi_br)  # never-visited: latest response
            weight = total
            pi_br = respond(tables, nxt, tau, game.allowed)
            check_finite(pi_br, "best response")
            gap = weighted_tv(pi_br, pi_bar, visits / (N * T))
            history.append(gap)
            if progress:
                progress(k, gap)
            if gap <= cfg.tolerance:
                converged = True
                break
        mu = mean_field(game, pi_bar)
        expl = exploitability(game, pi_bar, tau, theta, mu=mu)
        check_finite(expl, "exploitability")
        return Solution(pi_bar, mu, expl, k, time.perf_counter() - start, converged,
                        mu_sample=np.mean(recent, axis=0), agents=N,
                        history=np.asarray(history))


class Tables:
    """Pooled experience, ``O(T S A K)`` memory whatever ``N`` is.

    Attributes
    ----------
    reward
        ``(T, S, A)`` :math:`\\hat R_t(x, a)`: mean over rounds, since ``(t, x, a)`` was first
        tried, of the round's mean observed reward (a round without a visit counts with
        the latest value seen).
    latest
        ``(T, S, A)`` mean reward of ``(t, x, a)`` in the last round it was played.
    rounds
        ``(T, S, A)`` rounds since ``(t, x, a)`` was first tried; ``0``: never tried.
    count
        ``(T, S, A)`` times ``(t, x, a)`` was played, all rounds together.
    slot_count
        ``(T, S, A, K)`` landings per successor slot, or ``None`` when ``K = 1``.
    """

    def __init__(self, T: int, S: int, A: int, K: int) -> None:
        self.reward = np.zeros((T, S, A))
        self.latest = np.zeros((T, S, A))
        self.rounds = np.zeros((T, S, A))
        self.count = np.zeros((T, S, A))
        self.slot_count = np.zeros((T, S, A, K)) if K > 1 else None

    def arrays(self) -> list[Array]:
        """Every table held (for memory accounting)."""
        return [a for a in (self.reward, self.latest, self.rounds, self.count, self.slot_count)
                if a is not None]

    def record(self, t: int, reward_sum: Array, n: Array, slot_n: Array | None) -> None:
        """Fold in step ``t`` of a round: reward sums and plays ``(S, A)``, landings ``(S, A, K)``.

        Every round weighs the same in :attr:`reward`, as in fictitious play's average of
        mean fields; a plain per-sample mean would over-weigh the rounds in which an
        action happened to be sampled often (e.g. the uniform first round).
        """
        seen = n > 0
        self.latest[t] = np.where(seen, reward_sum / np.where(seen, n, 1.0), self.latest[t])
        active = seen | (self.rounds[t] > 0)
        self.rounds[t] += active
        self.reward[t] += active * (self.latest[t] - self.reward[t]) / np.maximum(
            self.rounds[t], 1.0)
        self.count[t] += n
        if slot_n is not None:
            self.slot_count[t] += slot_n


def play_round(game: Game, theta: ThetaLike, play: Array, N: int, tables: Tables,
               rng: np.random.Generator) -> tuple[Array, Array]:
    """One episode of ``N`` agents following ``play`` ``(T, S, A)``; records into ``tables``.

    Returns
    -------
    visits
        ``(T, S)`` agents in each state before each step.
    mu_hat
        ``(T, S)`` empirical distribution after each step's move.
    """
    T, S, A = game.T, game.S, game.A
    nxt = successors(game.transition)  # (S, A, K) landing state of each slot
    K = nxt.shape[2]
    visits = np.empty((T, S))
    mu_hat = np.empty((T, S))
    x = sample_population(game.mu0, N, rng)  # agents share all memory: order is immaterial
    for t in range(T):
        a = sample_actions(play[t], x, rng)
        slot = sample_slot(game.transition, x, a, rng)
        cell = x * A + a
        x_next = a if isinstance(game.transition, AnyMove) else nxt[x, a, slot]
        visits[t] = np.bincount(x, minlength=S)
        mu_hat[t] = np.bincount(x_next, minlength=S) / N
        landing = np.asarray(game.reward(t, mu_hat[t]), dtype=float)
        th = theta_at(theta, t, mu_hat[t], (S, A))
        r = landing[x_next]  # each agent's own reward
        if np.ndim(th):
            r = r + np.asarray(th).ravel()[cell]
        elif th:
            r = r + th
        reward_sum = np.bincount(cell, weights=r, minlength=S * A).reshape(S, A)
        n = np.bincount(cell, minlength=S * A).reshape(S, A)
        slot_n = (np.bincount(cell * K + slot, minlength=S * A * K).reshape(S, A, K)
                  if tables.slot_count is not None else None)
        tables.record(t, reward_sum, n, slot_n)
        x = x_next
    check_finite(mu_hat, "empirical mean field")
    return visits, mu_hat


def respond(tables: Tables, nxt: Array, tau: float, allowed: Array | None) -> Array:
    """(Soft) best response ``(T, S, A)`` to the pooled estimates, by backward induction.

    Untried ``(t, x, a)`` get the best ``Q`` seen at step ``t`` (optimism in the face of
    uncertainty); a step nobody has reached gets ``Q = 0`` (uniform response).
    """
    T, S, A = tables.count.shape
    pi = np.empty((T, S, A))
    V_next = np.zeros(S)
    for t in range(T - 1, -1, -1):
        n = tables.count[t]
        seen = n > 0
        q = tables.reward[t]
        if t < T - 1:
            if tables.slot_count is None:
                q = q + V_next[nxt[:, :, 0]]
            else:
                q = q + np.einsum("sak,sak->sa", tables.slot_count[t], V_next[nxt]) / np.where(
                    seen, n, 1.0)
        best_seen = q[seen].max() if seen.any() else 0.0
        q = np.where(seen, q, best_seen)
        pi[t], V_next = soft_response(q, tau, allowed)
    return pi


@learners.register("fictitious_play")
def build(cfg: FictitiousPlayConfig) -> SampledFictitiousPlay:
    return SampledFictitiousPlay(cfg)


build.config = FictitiousPlayConfig  # type: ignore[attr-defined]
