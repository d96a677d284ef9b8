"""Travellers who learn their routes from the travel times they experience.

``learner: {name: routes, agents: N}`` on a road network simulates ``N`` travellers (by
default one per trip: Sioux Falls' 360,600), each carrying ``D / N`` trips of one
origin-destination pair. Day after day:

1. everyone drives their current route; the link flows ``x`` follow, and so do the travel
   times;
2. the times of the links driven that day are what the travellers experience, and all
   they learn: the shared memory ``t_hat`` (a navigation app's) takes the experienced
   time of every link someone drove and keeps its old value on the others (free-flow
   time at first). Nobody is told the flows;
3. every traveller compares the time of its own route with the shortest path under
   ``t_hat`` and switches to it with probability
   ``min(1, alpha_k (c_own - c_short) / c_own)``: the more a traveller stands to gain,
   the likelier it moves (proportional switching, Smith 1984), with a step ``alpha_k``
   that decays like ``1 / sqrt(k)`` once the gains stop falling.

On a small ``edges`` routing game the same learning runs over its enumerated paths.

Arrays, not objects: a traveller is an entry of ``od`` and ``route`` (``(N,)`` integers);
routes index a shared pool of paths (a sparse path-link incidence), so memory grows like
``N`` plus the links and routes in use, never like ``N`` times a route length. The
certificate (not seen by the travellers) is the relative gap at the true times.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from crowdsteer.config_base import Strict
from crowdsteer.errors import ConfigError
from crowdsteer.games.base import Game, ThetaLike, theta_at
from crowdsteer.learners.base import Progress, Solution, learners
from crowdsteer.learners.wardrop import NetworkSolution, PathSet, _solution, trace_paths

Array = np.ndarray


class RoutesConfig(Strict):
    """The ``learner`` section for ``name: routes`` (road networks only)."""

    name: Literal["routes"] = "routes"
    agents: Annotated[int, Field(gt=0)] | None = None
    """Simulated travellers ``N`` (default: one per trip, rounded)."""
    relative_gap: Annotated[float, Field(gt=0, lt=1)] = 1e-3
    """Stop when the (true) relative gap is at most this."""
    max_iterations: Annotated[int, Field(gt=0)] = 3000
    """Days simulated at most."""
    step: Annotated[float, Field(gt=0, le=1)] = 0.5
    """``alpha_0``: the switching propensity per unit relative gain."""


def allocate(demand: Array, N: int) -> Array:
    """``(K,)`` travellers per pair, proportional to ``demand`` and summing to ``N``
    (largest remainders).

    >>> allocate(np.array([1.0, 1.0, 2.0]), 5).tolist()
    [1, 1, 3]
    """
    share = demand / demand.sum() * N
    count = np.floor(share).astype(np.int64)
    rest = N - int(count.sum())
    if rest > 0:
        count[np.argsort(-(share - count), kind="stable")[:rest]] += 1
    return count


class RouteLearners:
    """The day-to-day route-learning population (see the module docstring)."""

    def __init__(self, config: RoutesConfig | None = None) -> None:
        self.config = config or RoutesConfig()

    def solve(self, game: Game, theta: ThetaLike = None, rng: np.random.Generator | None = None,
              progress: Progress | None = None) -> NetworkSolution:
        from crowdsteer import guards

        cfg = self.config
        guards.check_solve(game, cfg)  # before a route per traveller is allocated
        rng = rng if rng is not None else np.random.default_rng(0)
        if not hasattr(game, "solve_equilibrium"):
            if not hasattr(game, "edge_path"):
                raise ConfigError("learner.name", "routes: travellers learning routes need a "
                                  "routing game (edges or a road network)")
            return _learn_paths(game, theta, cfg, rng, progress)
        from crowdsteer.games.network import _toll_vector

        start = time.perf_counter()
        toll = _toll_vector(theta, game.E)
        graph = game.graph
        rows, dest = np.nonzero(graph.od > 0)
        demand = graph.od[rows, dest]
        N = cfg.agents or max(int(round(game.D)), rows.shape[0])
        count = allocate(demand, N)
        od = np.repeat(np.arange(rows.shape[0]), count).astype(np.int32)
        weight = game.D / N  # trips each traveller stands for

        def cost(x: Array) -> Array:
            return game.generalised_cost(x, toll)

        t_hat = cost(np.zeros(game.E))  # free-flow times until experienced
        _, pred = graph.shortest_paths(t_hat)
        links, ptr = trace_paths(graph, pred, rows, dest)
        pool = PathSet(links, ptr, np.arange(rows.shape[0]), np.zeros(rows.shape[0]), game.E)
        route = od.copy()  # pair k's first path is pool entry k
        history: list[float] = []
        alpha, best_gain, gap = cfg.step, np.inf, np.inf
        for day in range(1, cfg.max_iterations + 1):
            x = pool.delta.T @ (weight * np.bincount(route, minlength=pool.P))
            c = cost(x)
            # the certificate, at the true times (the travellers never see it)
            dist, _ = graph.shortest_paths(c)
            total = float(c @ x)
            gap = (total - float(demand @ dist[rows, dest])) / total
            history.append(gap)
            if progress:
                progress(day, gap)
            if gap <= cfg.relative_gap or day == cfg.max_iterations:
                break
            driven = x > 0
            t_hat = np.where(driven, c, t_hat)
            dist_hat, pred = graph.shortest_paths(t_hat)
            short = dist_hat[rows, dest]
            C = pool.delta @ t_hat
            # the shortest path, added to the pool when no pooled route matches it
            best = np.full(rows.shape[0], np.inf)
            np.minimum.at(best, pool.od, C)
            new = np.flatnonzero(short < best - 1e-12 * np.maximum(best, 1.0))
            if new.size:
                nl, nptr = trace_paths(graph, pred, rows[new], dest[new])
                pool = pool.extend(nl, nptr, new)
                C = np.concatenate([C, short[new]])
            best_path = np.full(rows.shape[0], -1)
            is_best = C <= short[pool.od] * (1 + 1e-12)
            cand = np.flatnonzero(is_best)
            best_path[pool.od[cand[::-1]]] = cand[::-1]
            own = C[route]
            gain = (own - short[od]) / np.maximum(own, 1e-300)
            alpha, best_gain = _damped(cfg.step, alpha, best_gain, float(gain.mean()), day)
            switch = rng.random(N) < np.minimum(1.0, alpha * gain)
            route = np.where(switch & (best_path[od] >= 0), best_path[od], route)
            if day % 50 == 0:  # forget routes nobody drives
                used = np.bincount(route, minlength=pool.P) > 0
                keep = used | (np.arange(pool.P) < rows.shape[0])
                remap = np.cumsum(keep) - 1
                pool = pool.keep(keep)
                route = remap[route].astype(np.int32)
        x = pool.delta.T @ (weight * np.bincount(route, minlength=pool.P))
        sol = _solution(game, x, toll, gap, day, time.perf_counter() - start,
                        gap <= cfg.relative_gap, history)
        from dataclasses import replace

        return replace(sol, agents=N, mu_sample=sol.mu)


def _damped(step: float, alpha: float, best_gain: float, mean_gain: float,
            day: int) -> tuple[float, float]:
    """``(alpha, best gain so far)``: the switching step falls to ``step / sqrt(day)`` on days
    when the travellers' mean relative gain stops falling (they overshoot), else stays."""
    if mean_gain >= best_gain:
        alpha = step / np.sqrt(day)
    return alpha, min(best_gain, mean_gain)


def _learn_paths(game: Any, theta: ThetaLike, cfg: RoutesConfig, rng: np.random.Generator,
                 progress: Progress | None) -> Solution:
    """The same day-to-day learning on a small routing game's enumerated paths (``edges``
    form): the pool is every simple path, the shortest one is looked up among them, and
    the tolls come in as the game's ``(T, S, A)`` modifier table (path states' values)."""
    from crowdsteer.equilibrium import exploitability

    start = time.perf_counter()
    K, P = game.K, game.P
    N = cfg.agents or max(int(round(game.D)), K)
    od = np.repeat(np.arange(K), allocate(game.demand, N))
    weight = game.D / N
    first = np.full(K, -1)
    first[game.path_od[::-1]] = np.arange(P)[::-1]
    route = first[od]
    # a path's toll: the modifier's value of taking it from its own origin state
    extra = np.zeros(P)
    if theta is not None:
        table = theta_at(theta, 0, game.mu0, (game.S, game.A))
        extra = np.asarray(table)[game.path_od, np.arange(P)] / -game.D
    t_hat = game.latency(np.zeros(game.E))
    history: list[float] = []
    alpha, best_gain = cfg.step, np.inf
    for day in range(1, cfg.max_iterations + 1):
        f = weight * np.bincount(route, minlength=P)
        x = game.edge_path @ f
        cost = game.edge_path.T @ game.latency(x) + extra
        best = np.full(K, np.inf)
        np.minimum.at(best, game.path_od, cost)
        total = float(f @ cost)
        gap = (total - float(game.demand @ best)) / total if total > 0 else 0.0
        history.append(gap)
        if progress:
            progress(day, gap)
        if gap <= cfg.relative_gap or day == cfg.max_iterations:
            break
        t_hat = np.where(x > 0, game.latency(x), t_hat)  # experienced on driven edges only
        C = game.edge_path.T @ t_hat + extra
        cheapest = np.full(K, np.inf)
        np.minimum.at(cheapest, game.path_od, C)
        pick = np.full(K, -1)
        hit = np.flatnonzero(C <= cheapest[game.path_od] * (1 + 1e-12))
        pick[game.path_od[hit[::-1]]] = hit[::-1]
        own = C[route]
        gain = (own - cheapest[od]) / np.maximum(own, 1e-300)
        alpha, best_gain = _damped(cfg.step, alpha, best_gain, float(gain.mean()), day)
        route = np.where(rng.random(N) < np.minimum(1.0, alpha * gain), pick[od], route)
    f = np.bincount(route, minlength=P) / N
    mu = np.concatenate([np.zeros(K), f])[None]
    pi = np.zeros((1, game.S, game.A))
    share = np.bincount(route, minlength=P) / np.maximum(np.bincount(od, minlength=K), 1)[
        game.path_od]
    pi[0, game.path_od, np.arange(P)] = share
    pi[0, K + np.arange(P), np.arange(P)] = 1.0
    empty = pi[0, :K].sum(axis=1) == 0  # pairs with no traveller: their first path
    pi[0, np.flatnonzero(empty), first[empty]] = 1.0
    return Solution(pi, mu, exploitability(game, pi, 0.0, theta), day,
                    time.perf_counter() - start, gap <= cfg.relative_gap, mu_sample=mu,
                    agents=N, history=np.asarray(history))


@learners.register("routes")
def build(cfg: RoutesConfig) -> RouteLearners:
    return RouteLearners(cfg)


build.config = RoutesConfig  # type: ignore[attr-defined]
