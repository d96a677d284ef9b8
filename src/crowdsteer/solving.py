"""Solve one game with one learner: the ``crowdsteer solve`` job as a library call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crowdsteer.config import Config, build, build_game, load_config
from crowdsteer.equilibrium import welfare
from crowdsteer.errors import ConfigError
from crowdsteer.games.base import ThetaLike
from crowdsteer.learners.base import Progress, Solution
from crowdsteer import rundir

Array = np.ndarray


@dataclass(frozen=True)
class SolveResult:
    """A solved game: the game object, what the learner reached, and its welfare."""

    game: Any
    solution: Solution
    welfare: float

    def summary(self) -> dict[str, Any]:
        s = self.solution
        if hasattr(self.game, "solve_equilibrium"):  # road networks: no grid fields
            from crowdsteer.report.network import network_summary

            return network_summary(self.game, s, self.welfare)
        return {
            "exploitability": s.exploitability,
            "exploitability_estimate": s.estimate,  # the learner's own (model-free) view
            "welfare": self.welfare,
            "iterations": s.iterations,
            "seconds": s.seconds,
            "converged": s.converged,
            "agents": s.agents,
            "T": self.game.T,
            "S": self.game.S,
            "A": self.game.A,
            **(s.network_summary() if hasattr(s, "network_summary") else {}),
        }


def solve(config: Config | dict | str | Path, theta: ThetaLike = None,
          progress: Progress | None = None, *, w: Any = None) -> SolveResult:
    """Build the game and learner of ``config`` and solve, with the agents' rewards modified
    by the meta-agent's ``w`` or by a saved ``theta``.

    Parameters
    ----------
    config
        A :class:`Config`, a dict, or a YAML path (sections ``game``, ``learner``; the
        ``modifier`` section too with ``w``).
    theta
        What each agent is paid on landing in each state at each step: an array of the
        shape ``best_theta.npy`` of a run folder is saved in, ``(T, height, width)`` for
        grid games, ``(T, S)`` for the others, ``(1, E)`` tolls on a road network; agents
        in ``s`` taking ``a`` get ``E[theta_t(s') | s, a]``. For potential-based shaping,
        transfers and budget-balanced modifiers that file is the modifier's field, not all
        of its effect: pass ``w`` to re-solve a run exactly. Any other shape is refused.
        A callable ``(t, mu_t) -> (S, A)`` is used as the modifier term itself.
    w
        The meta-agent's weights, ``(n_params,)`` as in ``result.json``'s ``best.w``: the
        config's modifier at ``w``. Not together with ``theta``.
    progress
        Callback ``(iteration, value)`` of the learner.

    Returns
    -------
    SolveResult
        ``game``, ``solution`` (``pi`` ``(T, S, A)``, ``mu`` ``(T, S)``, ``exploitability``,
        ``iterations``, ``converged``, ...) and ``welfare``: ``sum_t sum_s mu_t(s) r_t(s)``
        of the learner's mean field, with the intrinsic rewards.
    """
    if not isinstance(config, Config):
        config = load_config(config)
    game = build_game(config)
    from crowdsteer.games.network import check_learner

    check_learner(game, config["learner"].name)
    if w is not None and theta is not None:
        raise ConfigError("w", "give w (the modifier's weights) or theta (a saved table), "
                          "not both")
    if w is not None:
        theta = modifier_at(config, game, w)
    elif theta is not None and not callable(theta):
        theta = theta_from_saved(game, theta)
    learner = build(config, "learner")
    rng = np.random.default_rng(config.seed)
    sol = learner.solve(game, theta, rng=rng, progress=progress)
    return SolveResult(game, sol, welfare(game, sol.mu))


def saved_theta_shape(game: Any) -> tuple[int, ...]:
    """The shape of ``best_theta.npy`` for ``game`` (what :func:`solve` takes as ``theta``)."""
    if hasattr(game, "solve_equilibrium"):  # road networks: one toll per link
        return (1, int(game.E))
    return grid(game, np.zeros((game.T, game.S))).shape


def theta_from_saved(game: Any, theta: Any) -> Any:
    """A saved field (the shape of ``best_theta.npy``) as the modifier term of the game;
    any other shape is a :class:`ConfigError` naming the shape wanted."""
    want = saved_theta_shape(game)
    try:
        arr = np.asarray(theta, dtype=float)
    except (TypeError, ValueError):
        raise ConfigError("theta", f"expected an array of shape {want} (as best_theta.npy), "
                          f"got {type(theta).__name__}") from None
    if arr.shape != want:
        what = "(T, height, width)" if len(want) == 3 else (
            "(1, E): one toll per link" if hasattr(game, "solve_equilibrium") else "(T, S)")
        raise ConfigError("theta", f"expected shape {want} {what}, as best_theta.npy is "
                          f"saved; got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ConfigError("theta", "holds NaN or infinite values")
    if hasattr(game, "solve_equilibrium"):
        return arr[0].copy()
    f = arr.reshape(game.T, game.S)
    return np.stack([game.transition.expect(f[t]) for t in range(game.T)])


def modifier_at(config: Config, game: Any, w: Any) -> Any:
    """The config's modifier term at ``w``; a wrong shape or a NaN is a :class:`ConfigError`."""
    if config["modifier"] is None:
        raise ConfigError("modifier", "w needs a modifier section in the config (which "
                          "modifier w weighs)")
    modifier = build(config, "modifier", game=game)
    try:
        arr = np.asarray(w, dtype=float)
    except (TypeError, ValueError):
        raise ConfigError("w", f"expected {modifier.n_params} numbers, got "
                          f"{type(w).__name__}") from None
    if arr.shape != (modifier.n_params,):
        raise ConfigError("w", f"expected shape ({modifier.n_params},) (the "
                          f"{config['modifier'].name} modifier's weights, as best.w in "
                          f"result.json); got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ConfigError("w", "holds NaN or infinite values")
    return modifier.theta(arr)


def grid(game: Any, per_state: Array) -> Array:
    """Reshape ``(T, S)`` to ``(T, height, width)`` for grid games (unchanged otherwise)."""
    shape = getattr(game, "shape", None)
    return per_state.reshape(per_state.shape[0], *shape) if shape else per_state


def write(result: SolveResult, out: Path) -> list[str]:
    """Write summary.json, mu.npy ``(T, h, w)``, pi.npy ``(T, S, A)`` and mu.png to ``out``
    (road networks: flows.csv, summary.json, map.png); returns the names written."""
    from crowdsteer.report.plots import heatmap_grid

    out = Path(out)
    if hasattr(result.game, "solve_equilibrium"):
        from crowdsteer.report.network import write_solve

        return write_solve(result, out)
    rundir.save_npy(out / "mu.npy", grid(result.game, result.solution.mu))
    rundir.save_npy(out / "pi.npy", result.solution.pi)
    rows = [("mean field", grid(result.game, result.solution.mu))]
    if result.solution.mu_sample is not None:
        rows.append((f"{result.solution.agents} agents", grid(result.game, result.solution.mu_sample)))
    heatmap_grid(rows, out / "mu.png", title="distribution of agents per step")
    rundir.write_json(out / "summary.json", result.summary())
    return ["summary.json", "mu.npy", "pi.npy", "mu.png"]
