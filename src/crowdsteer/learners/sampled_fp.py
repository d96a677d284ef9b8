"""Fictitious play with sampled best responses and shared experience (model-free).

``N`` agents play the game as an ``(N,)`` array of states. They never see the model:
each agent observes only where it lands and its own sampled reward. The population pools
that experience into tables of size ``T x S x A x K`` (``K`` successor slots per move,
``K = 1`` for deterministic moves), so memory grows like ``N + T S A K`` and not ``N S A``.
Fictitious play (Perrin et al. 2020, "Fictitious play for mean field games"), with the
model-based best response replaced by one computed from the pooled samples. Round ``k``:

1. Play: every agent in state ``x`` at step ``t`` draws ``a`` from the *averaged* policy
   :math:`\\bar\\pi_k` (mixed with exploration ``epsilon_k``, uniform over allowed actions),
   lands in ``s'`` (successor slot ``j``) and receives

   .. math::

       r = r_t(s'; \\tilde\\mu_t) + \\Theta_t(x, a; \\tilde\\mu_t),
       \\qquad \\tilde\\mu_t = \\frac{\\sum_{i \\le k} i^{p} \\hat\\mu^{(i)}_t}{\\sum_{i \\le k} i^{p}},

   where :math:`\\hat\\mu^{(i)}_t` is the empirical histogram of the ``N`` agents after the
   move in round ``i`` and ``p`` = :data:`CROWD_POWER`: the mean field the rewards are paid
   at is estimated from the histograms of the last ``~k / (p + 1)`` rounds, a sample that
   grows with ``k`` instead of ``N`` agents. Because :math:`\\bar\\pi_k` is the
   state-weighted average of the best responses (step 4), its mean field is FP's averaged
   mean field :math:`\\bar\\mu_k`, which moves by ``O(1/k)`` per round, so the last rounds'
   histograms are all samples of nearly the same :math:`\\bar\\mu_k`. Why not the round's own
   histogram: a cell the mean field gives a mass of order ``1/N`` or less is, in a round,
   empty or held by one agent, who counts itself, so its reward under ``-c log mu`` is
   ``c log N`` where the mean field pays ``-c log mu`` (more): the agents learn to avoid
   it, and the certificate, for which such a cell is then worth up to
   ``(mu* / mu)^(1/tau)`` times its mass, stays above the tolerance. Measured on the
   demo's evaluations (N = 2000, tau = 0.1): 1 of 9 converged with the round's histogram,
   8 of 9 with the pooled one.
2. Record, per ``(t, x, a, j)``: the number of landings (:math:`\\hat P_t(j | x, a)` is their
   share) and the reward, as :math:`\\hat R_t(x, a, j) = \\hat L_t(s'_j) + \\hat O_t(x, a, j)`:
   :math:`\\hat L_t(s')` is a running mean of the round's mean reward of everyone landing in
   ``s'`` (net of their offsets), :math:`\\hat O_t` a running mean of the pair's own reward
   minus that round's landing mean: a control variate. What everyone landing in ``s'``
   shares (the crowd there) is learnt from all of them, every round, and a pair seen a few
   times only keeps its offset (``Theta``'s dependence on ``(x, a)``), which does not move
   with the crowd (measured on the demo's evaluations: certificates 0.15 -> 0.045 before
   pooling the crowd). Both running means take their ``m``-th observed round with step
   :math:`3 / (m + 2)`, i.e. round weights growing like ``m^2``: the early,
   far-from-equilibrium rounds fade (the first ``j`` keep a share ``(j/m)^3``) at little
   cost in noise (effective sample size ``5 m / 9``, against ``m`` for the plain mean).
   At ``temperature: 0`` both lags hurt more than the noise they remove: the rewards are
   paid at the round's own histogram and the means keep about the last ``1/129`` of a
   pair's rounds (:data:`ARGMAX_REWARD_POWER`, with the measurements).
3. Respond: backward induction on the estimates,

   .. math::

       Q_t(x, a) = \\sum_j \\hat P_t(j | x, a) \\big(\\hat R_t(x, a, j)
                   + V_{t+1}(s'_j(x, a))\\big),
       \\qquad V_{t+1} = \\tau \\log \\sum_a e^{Q_{t+1}/\\tau} \\;(\\max \\text{ at } \\tau = 0),

   and :math:`\\pi^{br}_t = \\operatorname{softmax}(Q_t / \\tau)` (argmax at ``tau = 0``).
   A pair ``(t, x, a)`` nobody has tried yet gets the best value seen at step ``t``
   (optimism), so the next round tries it. The same backward pass evaluates
   :math:`\\bar\\pi_k` on the estimates, which gives the stopping statistic

   .. math::

       \\hat e_k = \\sum_x \\hat\\mu_0(x) \\big(V^{br}_0(x) - V^{\\bar\\pi_k}_0(x)\\big) \\ge 0,

   the exploitability of :math:`\\bar\\pi_k` as the pooled experience sees it.
4. Average: the best response's state masses :math:`m^{br}_t` (a forward pass through
   :math:`\\hat P`) weigh it into the average, as in the exact solver's ``fp``:
   :math:`\\bar\\pi_{k+1}(t, s) \\propto W_t(s) \\bar\\pi_k(t, s) + m^{br}_t(s) \\pi^{br}(t, s)`,
   :math:`W_t \\leftarrow W_t + m^{br}_t`. The first policy (uniform) keeps a ``1/k`` share,
   so every action keeps being tried, at a decaying rate, and no estimate goes stale for
   long.

Stopping, on a certified check: every ``check_every`` rounds the exploitability of
:math:`\\bar\\pi_k` is computed with the model (its mean field, then a best response
against it: the certificate the returned :class:`~crowdsteer.learners.base.Solution`
carries), and the learner stops when that is at most ``tolerance``. The agents never see
it; it is the experimenter's check that they are done. :math:`\\hat e_k` is not used to
stop because it is not a bound: it values both policies on the pooled estimates, which
average the crowds of past rounds, so it sees FP's residual against a lagging crowd
rather than against the crowd of :math:`\\bar\\pi_k`. Measured with ``N = 2000``: on the
paper's examples at ``tau = 0.1`` the certificate is 2-4x :math:`\\hat e_k` (a rule on
:math:`\\hat e_k` stopped at 118 rounds with exploitability 0.044 on the one-shot game,
against a tolerance of 0.025), and at ``tau = 0`` on a 5 x 5 log game 10-12x
(:math:`\\hat e_k` = 0.006 with exploitability 0.069); ``benchmarks/model_free.py``
records both. :math:`\\hat e_k` is kept as ``history`` and the final one as
``Solution.estimate``. The default tolerance ``T (S - 1) / (2 N)`` is about the KL
divergence of ``N`` agents drawn independently from a target
(:func:`crowdsteer.objectives.kl_floor`), the sampling noise of the empirical KL the
meta-agent measures on the agents' histogram: in the log game the exploitability is
about ``(c + tau) KL(mu || mu*)``, so the solve stops once its equilibrium error is of the
order of that noise, tightening like ``1/N``. At ``tau = 0`` on a
game whose equilibrium mixes, FP's averaged policy converges slowly (its best
responses are pure, and chosen on noisy estimates): it may well reach
``max_iterations`` without the certificate meeting the tolerance, and then says so
(``converged = False``).

The certificate in the returned :class:`~crowdsteer.learners.base.Solution` is model-based:
``mu = mean_field(game, pi_bar)`` and its exploitability; ``mu_sample`` is the histogram
of the agents playing ``pi_bar`` in the last rounds.

Examples
--------
>>> from crowdsteer.games.crowd import CrowdConfig, build
>>> game = build(CrowdConfig(height=3, width=3, congestion={"kind": "log"}))
>>> sol = SampledFictitiousPlay(FictitiousPlayConfig(temperature=0.3, agents=500)).solve(
...     game, rng=np.random.default_rng(0))
>>> sol.converged, sol.pi.shape, sol.mu_sample.shape
(True, (1, 9, 9), (1, 9))
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
from crowdsteer.games.base import AnyMove, Game, ThetaLike
from crowdsteer.objectives import kl_floor
from crowdsteer.learners.base import (
    exploration_rate,
    Progress, Solution, check_finite, initial_policy, learners,
)
from crowdsteer.learners.simulate import (
    PooledCrowd, explore, landing_rewards, sample_actions, sample_population, sample_slot,
    successors,
)

Array = np.ndarray
SAMPLE_ROUNDS = 5  # mu_sample averages the empirical histograms of this many final rounds
CHECK_EVERY = 5  # default rounds between certified checks (each costs about one respond)
CROWD_POWER = 32  # round j weighs j^32 in the pooled crowd: the last ~k/33 rounds of k
# (measured on 9 evaluations each of examples/oneshot.yaml (w of a demo run),
# oneshot_warm.yaml and dynamic.yaml (random w), N = 2000: converged with powers 4 / 8 / 16 /
# 32: 0 / 4 / 8 / 8 of oneshot's 9; 16 and 32: 9 / 9 of dynamic's, 8 / 9 of oneshot_warm's;
# without pooling (this round's histogram) 1 / 9 of oneshot's. Short windows follow the
# averaged policy as it moves, long ones resolve the cells the mean field gives ~1/N)
REWARD_WEIGHT_POWER = 2  # round m of a pair weighs m^2 in its reward mean (step 3 / (m + 2))
ARGMAX_REWARD_POWER = 128
"""At ``temperature: 0`` the rewards are paid at each round's own histogram (no pooled
crowd) and a pair's reward mean weighs its ``m``-th round ``m^128`` (about its last
``1/129`` of rounds). Argmax responses jump to whatever looks best, so estimates that lag
the averaged mean field send them the wrong way, and the noise of one round's ``1/N``
cells, which pooling removes for soft responses, does not move an argmax. Measured at
``tau = 0``, ``N = 2000``, 2000 rounds, seed 0, certificate of the returned policy (crowd
power / reward power; "~own": crowd power 1e5, nearly the round's own histogram): 5 x 5
log game (benchmarks/model_free.py) 0.387 (32 / 2, the soft responses' setting), 0.041
(~own / 32), 0.033 (~own / 64), 0.033 (~own / 128), 0.027 (~own / 512), 0.074 (~own / no
mean), 0.026 (own / 128, this setting); 3 x 3 log 0.181, 0.012, 0.014, 0.005, 0.007,
0.018, 0.009; examples/dynamic.yaml's game with log congestion 0.380, 0.059, 0.054,
0.053, 0.067, 0.164, 0.046; kernel congestion (pure equilibria) converges in 50-95 rounds
with every setting. Mixed equilibria at ``tau = 0`` still end above the tolerance
``T (S - 1) / (2 N)`` in 2000 rounds (FP's averaged policy approaches them slowly)."""


class FictitiousPlayConfig(Strict):
    """The ``learner`` section for ``name: fictitious_play``."""

    name: Literal["fictitious_play"] = "fictitious_play"
    temperature: Annotated[float, Field(ge=0)] = 0.0
    """``tau``: entropy regularisation of the agents (0: plain Nash, argmax responses)."""
    agents: Annotated[int, Field(gt=0)] = 2000
    """``N``: simulated agents. Memory grows like ``N + T S A``."""
    tolerance: Annotated[float, Field(gt=0)] | None = None
    """Stop when the certified (model-based) exploitability of the averaged policy, checked
    every ``check_every`` rounds, is at most this. Default: ``T (S - 1) / (2 N)``, about the
    KL of ``N`` agents drawn iid from a target (see the module docstring)."""
    check_every: Annotated[int, Field(gt=0)] = CHECK_EVERY
    """Rounds between certified checks of the stopping rule."""
    patience: Annotated[int, Field(gt=0)] | None = 1000
    """Stop (not converged) when the certified exploitability has not improved on its best
    for this many rounds, and return the best certified policy seen (``null``: play all
    ``max_iterations`` rounds). The certificate falls unevenly: measured on the 10
    evaluations of an ``examples/dynamic.yaml`` run that stopped above the tolerance with
    200 (N = 2000, same seeds), at least 6 of them converge with 1000, in 370-1115
    rounds (one at 1280 without patience)."""
    max_iterations: Annotated[int, Field(gt=0)] = 2000
    """Rounds of play (each round is one episode of all ``N`` agents)."""
    exploration: Annotated[float, Field(ge=0, le=1)] | None = None
    """``epsilon``: in round ``k`` an agent acts uniformly at random (over allowed actions)
    with probability ``epsilon / sqrt(k)``. Default: 0.1 at ``temperature: 0`` (argmax
    responses need it), else 0 (soft responses and the ``1/k`` share of the uniform first
    policy in the averaged policy already try every action, and exploring agents shift the
    crowd everyone learns from)."""


class SampledFictitiousPlay:
    """Fictitious play from pooled samples of ``N`` agents (see module docstring)."""

    def __init__(self, config: FictitiousPlayConfig | None = None) -> None:
        self.config = config or FictitiousPlayConfig()

    def solve(self, game: Game, theta: ThetaLike = None, rng: np.random.Generator | None = None,
              progress: Progress | None = None, init: Solution | None = None) -> Solution:
        """Learn from scratch; ``init`` (a warm start) is accepted and ignored: the simulated
        agents' experience, not a policy, is what this learner starts from."""
        start = time.perf_counter()
        cfg = self.config
        rng = np.random.default_rng() if rng is None else rng
        guards.check_solve(game, cfg)
        N, T, S, A, tau = cfg.agents, game.T, game.S, game.A, cfg.temperature
        tolerance = cfg.tolerance if cfg.tolerance is not None else kl_floor(S, N, T)
        nxt = successors(game.transition)  # (S, A, K)
        tables = Tables(T, S, A, nxt.shape[2],
                        REWARD_WEIGHT_POWER if tau > 0 else ARGMAX_REWARD_POWER)
        pi_bar = initial_policy(game)
        weight = np.zeros((T, S))  # state masses of the policies averaged into pi_bar
        starts = np.zeros(S)  # agents' initial states, all rounds: mu0 as the agents see it
        recent: deque[Array] = deque(maxlen=SAMPLE_ROUNDS)
        # the mean field pooled over the rounds (step 1); at tau = 0 each round's own
        # histogram (ARGMAX_REWARD_POWER says why)
        crowd = PooledCrowd(T, S, CROWD_POWER) if tau > 0 else None
        history = []
        converged = False
        best: tuple[float, int, Array, Array, Array] | None = None  # expl, round, pi, mu, sample
        for k in range(1, cfg.max_iterations + 1):
            eps = exploration_rate(cfg.exploration, cfg.temperature, k)
            play = explore(pi_bar, eps, game.allowed)
            visits, mu_hat = play_round(game, theta, play, N, tables, rng, crowd)
            recent.append(mu_hat)
            starts += visits[0]
            if k == 1:
                weight = visits / N  # the uniform first policy counts as one response
            br = respond(tables, nxt, tau, game.allowed, pi_bar, starts / starts.sum())
            check_finite(br.pi, "best response")
            history.append(br.gap)
            if progress:
                progress(k, br.gap)
            if k % cfg.check_every == 0 or k == cfg.max_iterations:
                mu = mean_field(game, pi_bar)
                expl = exploitability(game, pi_bar, tau, theta, mu=mu)
                check_finite(expl, "exploitability")
                if expl <= tolerance:
                    converged = True
                    break
                if best is None or expl < best[0]:
                    best = (expl, k, pi_bar.copy(), mu, np.mean(recent, axis=0))
                elif cfg.patience is not None and k - best[1] >= cfg.patience:
                    break
            if k < cfg.max_iterations:  # the last round's pi_bar is the one certified
                pi_bar, weight = average(pi_bar, weight, br.pi, br.mass)
        sample = np.mean(recent, axis=0)
        if not converged and best is not None and best[0] < expl:  # the best certified
            expl, _, pi_bar, mu, sample = best
        return Solution(pi_bar, mu, expl, k, time.perf_counter() - start, converged,
                        mu_sample=sample, agents=N,
                        history=np.asarray(history), estimate=history[-1])


def average(pi_bar: Array, weight: Array, pi_br: Array, mass: Array) -> tuple[Array, Array]:
    """State-weighted FP average: ``(W pi_bar + m pi_br) / (W + m)`` per ``(t, s)``.

    ``pi_bar``, ``pi_br`` are ``(T, S, A)``; ``weight`` ``W`` and ``mass`` ``m`` are ``(T, S)``.
    Where neither policy reaches ``(t, s)`` the latest response is kept. Returns the new
    average and ``W + m``.
    """
    total = weight + mass
    seen = total > 0
    mixed = (weight[..., None] * pi_bar + mass[..., None] * pi_br) / np.where(
        seen, total, 1.0)[..., None]
    return np.where(seen[..., None], mixed, pi_br), total


class Tables:
    """Pooled experience, ``O(T S A K)`` memory whatever ``N`` is.

    Attributes
    ----------
    reward
        ``(T, S, A, K)`` :math:`\\hat O_t(x, a, j)`: the pair's offset, a running mean over the
        rounds in which an agent played ``(t, x, a)`` and landed in slot ``j`` of its reward
        minus that round's landing mean, the ``m``-th such round with step ``3 / (m + 2)``
        (round weights ``~ m^2``). The reward estimate is :meth:`estimate`.
    rounds
        ``(T, S, A, K)`` rounds in which ``(t, x, a, j)`` was observed.
    count
        ``(T, S, A, K)`` landings, all rounds together: :math:`\\hat P_t(j | x, a)` is
        ``count / count.sum(-1)``.
    landing
        ``(T, S)`` :math:`\\hat L_t(s')`: running mean (same steps) of the round's mean
        reward, net of offsets, of the agents landing in ``s'`` after step ``t``.
    landing_rounds
        ``(T, S)`` rounds in which someone landed in ``s'`` after step ``t``.
    """

    def __init__(self, T: int, S: int, A: int, K: int,
                 power: int = REWARD_WEIGHT_POWER) -> None:
        self.power = power
        """The reward means' weight power: round ``m`` weighs ``m^power``."""
        self.reward = np.zeros((T, S, A, K))
        self.rounds = np.zeros((T, S, A, K))
        self.count = np.zeros((T, S, A, K))
        self.landing = np.zeros((T, S))
        self.landing_rounds = np.zeros((T, S))

    def arrays(self) -> list[Array]:
        """Every table held (for memory accounting)."""
        return [self.reward, self.rounds, self.count, self.landing, self.landing_rounds]

    def estimate(self, t: int, nxt: Array) -> Array:
        """:math:`\\hat R_t` ``(S, A, K)``: the landing state's mean plus the pair's offset."""
        return self.landing[t][nxt] + self.reward[t]

    def record(self, t: int, reward_sum: Array, n: Array, landing_sum: Array | None = None,
               landed: Array | None = None) -> None:
        """Fold in step ``t`` of a round, flat ``(S A K,)``: ``reward_sum`` of the pairs'
        rewards (minus, when ``landing_sum`` ``(S,)`` is given, the round's mean reward of
        everyone landing in the same state) and landings ``n``; ``landed`` ``(S,)`` counts
        the agents landing in each state.

        Every round weighs the same whatever the number of agents in it: agents landing
        together share one crowd, so they add no independent information about it.
        """
        seen = np.flatnonzero(n)  # at most N entries: the update is O(N), not O(S A K)
        p = self.power
        _fold(self.rounds[t].reshape(-1), self.reward[t].reshape(-1), seen,
              reward_sum[seen] / n[seen], p)
        self.count[t].reshape(-1)[seen] += n[seen]
        if landing_sum is not None:
            there = np.flatnonzero(landed)
            _fold(self.landing_rounds[t], self.landing[t], there,
                  landing_sum[there] / landed[there], p)


def _fold(rounds: Array, mean: Array, seen: Array, value: Array, p: int) -> None:
    """Running means ``mean[seen]`` take in ``value``: the ``m``-th with step ``(p+1)/(m+p)``."""
    rounds[seen] += 1
    mean[seen] += (p + 1) / (rounds[seen] + p) * (value - mean[seen])


def play_round(game: Game, theta: ThetaLike, play: Array, N: int, tables: Tables,
               rng: np.random.Generator,
               crowd: PooledCrowd | None = None) -> tuple[Array, Array]:
    """One episode of ``N`` agents following ``play`` ``(T, S, A)``; records into ``tables``.

    ``crowd``: the mean field pooled over the earlier rounds (power :data:`CROWD_POWER`);
    this round's histograms are folded in and the rewards are paid at it (``None``: at this
    round's own histograms).

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
        r, mu_hat[t] = landing_rewards(game, theta, t, x, a, x_next, N, crowd)
        key = cell * K + slot if K > 1 else cell
        landed = np.bincount(x_next, minlength=S)
        # the round's reward of each landing state, net of the landers' own (estimated) offsets
        landing_sum = np.bincount(x_next, weights=r - tables.reward[t].reshape(-1)[key],
                                  minlength=S)
        offset = r - (landing_sum / np.maximum(landed, 1))[x_next]
        tables.record(t, np.bincount(key, weights=offset, minlength=S * A * K),
                      np.bincount(key, minlength=S * A * K), landing_sum, landed)
        x = x_next
    check_finite(mu_hat, "empirical mean field")
    return visits, mu_hat


class Response(NamedTuple):
    """A (soft) best response to the pooled estimates.

    Attributes
    ----------
    pi
        ``(T, S, A)`` the response.
    gap
        :math:`\\hat e`: its gain over the averaged policy, both valued on the estimates.
    mass
        ``(T, S)`` its state masses before each step (forward pass through :math:`\\hat P`).
    """

    pi: Array
    gap: float
    mass: Array


def respond(tables: Tables, nxt: Array, tau: float, allowed: Array | None, pi_bar: Array,
            mu0: Array) -> Response:
    """(Soft) best response to the pooled estimates, and the averaged policy's gap to it.

    Backward induction values the response (``V_br``) and ``pi_bar`` (``V_bar``) on the same
    estimated ``R`` and ``P``. Untried ``(t, x, a)`` get the best ``Q`` seen at step ``t``
    (optimism in the face of uncertainty); a step nobody has reached gets ``Q = 0``.
    ``mu0`` ``(S,)`` weighs the initial states.
    """
    T, S, A, K = tables.count.shape
    pi = np.empty((T, S, A))
    P = np.ones((T, S, A, K))
    V_br = np.zeros(S)
    V_bar = np.zeros(S)
    for t in range(T - 1, -1, -1):
        if K == 1:  # one successor: the landing state is known once tried
            seen = tables.count[t, :, :, 0] > 0
            R = tables.estimate(t, nxt)[:, :, 0]
            q_br = R + V_br[nxt[:, :, 0]]
            q_bar = R + V_bar[nxt[:, :, 0]]
        else:
            n = tables.count[t].sum(axis=-1)
            seen = n > 0
            P[t] = np.where(seen[..., None], tables.count[t] / np.where(seen, n, 1.0)[..., None],
                            1.0 / K)  # untried: uniform over slots (forward pass only)
            R = tables.estimate(t, nxt)
            q_br = np.einsum("sak,sak->sa", P[t], R + V_br[nxt])
            q_bar = np.einsum("sak,sak->sa", P[t], R + V_bar[nxt])
        if not seen.all():
            q_br = np.where(seen, q_br, q_br[seen].max() if seen.any() else 0.0)
            q_bar = np.where(seen, q_bar, q_bar[seen].max() if seen.any() else 0.0)
        pi[t], V_br = soft_response(q_br, tau, allowed)
        held = pi_bar[t] > 0  # masked actions (Q = -inf there) carry no mass
        V_bar = (pi_bar[t] * np.where(held, q_bar, 0.0)).sum(axis=1)
        if tau > 0:
            V_bar += tau * entropy(pi_bar[t])
    gap = max(float(mu0 @ (V_br - V_bar)), 0.0)  # >= 0 up to rounding: V_br is optimal
    mass = np.empty((T, S))
    mass[0] = mu0
    flat = nxt.ravel()
    for t in range(T - 1):
        w = (mass[t][:, None] * pi[t])[:, :, None] * P[t]
        mass[t + 1] = np.bincount(flat, weights=w.ravel(), minlength=S)
    return Response(pi, gap, mass)


@learners.register("fictitious_play")
def build(cfg: FictitiousPlayConfig) -> SampledFictitiousPlay:
    return SampledFictitiousPlay(cfg)


build.config = FictitiousPlayConfig  # type: ignore[attr-defined]
