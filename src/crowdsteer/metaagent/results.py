"""What a run found: :class:`RunResult`, the final re-solves and ``result.json``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from crowdsteer import faults, rundir
from crowdsteer.learners.base import Solution
from crowdsteer.errors import CrowdsteerError, NoEquilibrium
from crowdsteer.metaagent.evaluation import (
    Outcome, Setup, evaluate_once, requires_convergence, solve_at,
)
from crowdsteer.metaagent.study import (
    baseline_trial, best_trial_of, converged_count, evaluation_number, failures, finished,
    history as run_history,
    outcome,
    write_evaluations,
)
from crowdsteer.objectives import iid_sample_kl
from crowdsteer.solving import grid

Array = np.ndarray


@dataclass(frozen=True)
class RunResult:
    """What a meta-agent run found.

    Attributes
    ----------
    baseline, best
        Outcomes at ``w = 0`` and at the best ``w``.
    best_trial
        Number of the best evaluation (``0``: the baseline), as in ``evaluations.csv``.
    evaluations
        Finished evaluations (baseline included).
    history
        J of every finished evaluation, in order (``nan`` for failed ones).
    """

    baseline: Outcome
    best: Outcome
    best_trial: int
    evaluations: int
    direction: str
    history: tuple[float, ...]
    seconds: float
    out: Path | None = None
    iid_sample_kl: dict[str, Any] | None = None
    """``{mean, std, agents}``: the KL of ``N`` agents drawn iid from the target (model-free learners with a
    target): what independent, perfectly placed agents would score; not a floor."""
    best_mu: Array | None = field(default=None, repr=False)
    baseline_mu: Array | None = field(default=None, repr=False)
    baseline_validation: dict[str, Any] | None = None
    """J at ``w = 0`` on fresh seeds: ``{mean, std, seeds, values}`` (``validation: M``)."""
    best_validation: dict[str, Any] | None = None
    """J at the best ``w`` on the same fresh seeds."""
    best_mean_field: dict[str, Any] | None = None
    """The best ``w`` at the exact equilibrium (model-free learners): would fully rational
    agents do the same? ``{objective, kl, welfare, exploitability, converged}``."""
    inner_iterations: int = 0
    """Inner iterations over every evaluation of the run (the final re-solves excluded)."""
    optimiser: str = ""
    """The optimiser that ran (what ``auto`` chose)."""
    evaluation_seconds: tuple[float, ...] = ()
    """Seconds each finished evaluation spent in the inner loop (and adjoint), in order."""
    warm_start: dict[str, Any] | None = None
    """The mean-field warm start, when one ran: ``{w, objective, baseline, temperature,
    evaluations, seconds, radius}`` (J values of the exact learner)."""
    converged_evaluations: int | None = None
    """Finished evaluations whose inner loop reached its tolerance (failed ones excluded)."""
    require_convergence: bool = True
    """Whether only converged evaluations could be the best (``optimiser.require_convergence``)."""
    network: dict[str, Any] | None = None
    """Road networks: TSTT without tolls, with the best and at the system optimum, the
    share of the UE-to-SO gap closed (:func:`crowdsteer.report.network.run_outputs`)."""
    session_seconds: float = 0.0
    """Wall-clock seconds of this session; ``seconds`` counts every session of a resumed
    run."""


def finish(s: Setup, study: optuna.Study, out: Path | None, constrained: bool,
           seconds: float, optimiser_reason: str = "",
           warm_start: dict[str, Any] | None = None) -> RunResult:
    n = s.modifier.n_params
    direction = s.objective.direction
    base_trial = baseline_trial(study)
    required = requires_convergence(s.optimiser)
    learner = s.config["learner"]
    network = hasattr(s.game, "solve_equilibrium")  # stops at learner.relative_gap
    fields = ("max_iterations", "relative_gap") if network else ("max_iterations", "tolerance")
    caps = ", ".join(f"{k} = {getattr(learner, k):g}" for k in fields
                     if getattr(learner, k, None) is not None)
    if network and s.optimiser.name in ("auto", "gradient"):
        from crowdsteer.metaagent.gradient import NETWORK_GAP, gradient_support

        if gradient_support(s) is None:  # the gradient optimiser ran: its own gap
            caps += (f"{', ' if caps else ''}relative gap {NETWORK_GAP:g} under the "
                     "gradient optimiser")
    best_trial = best_of(study, direction, constrained, required,
                         None if out is None else out / "evaluations.csv", n, caps, network)
    baseline, best = outcome(base_trial, n), outcome(best_trial, n)
    # Re-solve (deterministic for the seed) to get the distributions to save and plot.
    mu_base = solve_at(s, np.zeros(n), 0)
    mu_best = solve_at(s, np.asarray(best.w), 0)

    def shown(sol: Solution) -> Array:
        return sol.mu_sample if sol.mu_sample is not None else sol.mu

    iid = None
    agents = mu_best.agents
    if agents and s.objective.target is not None:
        rng = np.random.default_rng(np.random.SeedSequence([s.config.seed, VALIDATION_SEEDS]))
        mean, std = iid_sample_kl(s.objective.target, agents, rng)
        iid = {"mean": mean, "std": std, "agents": agents}
    model_free = mu_best.mu_sample is not None
    M = s.optimiser.validation
    M = (10 if model_free else 0) if M is None else M
    history = run_history(study)
    inner = sum(int(t.user_attrs.get("iterations") or 0) for t in finished(study))
    result = RunResult(baseline, best, evaluation_number(study, best_trial), len(history),
                       direction, history, seconds, out, iid, shown(mu_best), shown(mu_base),
                       validate(s, np.zeros(n), M), validate(s, np.asarray(best.w), M),
                       at_mean_field(s, np.asarray(best.w)) if model_free else None,
                       inner, s.optimiser.name,
                       tuple(float(t.user_attrs.get("seconds") or 0.0) for t in finished(study)),
                       warm_start, converged_count(study)[0], required)
    if hasattr(s.game, "solve_equilibrium"):  # road networks: the SO and the gap closed
        import dataclasses

        from crowdsteer.report.network import run_outputs

        result = dataclasses.replace(result, network=run_outputs(
            s, np.asarray(best.w), shown(mu_base), shown(mu_best), best.exploitability, out))
    faults.point("finish")
    if out is not None:
        g = s.game
        rundir.save_npy(out / "baseline_mu.npy", grid(g, shown(mu_base)))
        rundir.save_npy(out / "best_mu.npy", grid(g, shown(mu_best)))
        rundir.save_npy(out / "best_theta.npy", grid(g, np.asarray(s.modifier.field(np.asarray(best.w)))))
        if s.objective.target is not None:
            rundir.save_npy(out / "target.npy", grid(g, s.objective.target))
        from crowdsteer.report.labels import save_labels

        save_labels(out, s.config, g, n, mu_base.mu, grid)  # names the report shows
        failed, first_failure = failures(study)
        rundir.write_json(out / "result.json", {**result_json(s, result),
                                                "optimiser_reason": optimiser_reason,
                                                "failed": failed, "first_failure": first_failure})
        write_evaluations(study, n, out / "evaluations.csv")
        if hasattr(g, "solve_equilibrium"):  # road networks: what the report's maps need
            from crowdsteer.report.network import save_network

            save_network(g, out / "network.npz")
        faults.point("report")
        try:
            from crowdsteer.report.html import write_report

            write_report(out)
        except ImportError:  # pragma: no cover - report module not installed
            pass
    return result


def best_of(study: optuna.Study, direction: str, constrained: bool, required: bool,
            csv_path: Path | None, n: int, caps: str = "",
            network: bool = False) -> optuna.trial.FrozenTrial:
    """The best feasible evaluation.

    Raises
    ------
    NoEquilibrium
        ``required`` and no evaluation converged (``evaluations.csv`` is written first).
    CrowdsteerError
        No evaluation is feasible otherwise (all failed, or all over the budget).
    """
    try:
        return best_trial_of(study, direction, constrained, required)
    except ValueError:
        pass
    if csv_path is not None:
        write_evaluations(study, n, csv_path)
    ok, total = converged_count(study)
    where = f"; {csv_path} and study.db keep every evaluation" if csv_path else ""
    if required and ok == 0:
        test, more = (("relative gap at most the learner's relative_gap", "max_iterations")
                      if network else
                      ("certified exploitability at most the learner's tolerance",
                       "max_iterations or agents"))
        raise NoEquilibrium(
            f"none of the {total} evaluations reached equilibrium ({test}), so there is no "
            f"best w{where}; give the learner more {more}"
            + (f" (configured: {caps})" if caps else "")
            + ", or set optimiser.require_convergence: false to compare non-equilibria"
            ) from None
    raise CrowdsteerError(f"no evaluation of the {total} is feasible (failed"
                          + (", over the budget" if constrained else "")
                          + (" or not converged" if required else "") + f"){where}") from None


VALIDATION_SEEDS = 1_000_000
"""Repeat index of the first fresh seed: tuning uses repeats ``0 .. repeats - 1``, so the
validation seeds ``SeedSequence([seed, 1_000_000 + k])`` are never seen while tuning."""


def validate(s: Setup, w: Array, M: int) -> dict[str, Any] | None:
    """J at ``w`` on ``M`` fresh seeds: ``{mean, std, seeds, values}`` (``None`` if ``M = 0``).
    An evaluation that fails counts as ``nan`` and is left out of the mean."""
    if M <= 0:
        return None
    seeds = [VALIDATION_SEEDS + k for k in range(M)]
    values = []
    for r in seeds:
        try:
            values.append(evaluate_once(s, w, r).objective)
        except CrowdsteerError:
            values.append(float("nan"))
    ok = [v for v in values if np.isfinite(v)]
    return {"mean": float(np.mean(ok)) if ok else None,
            "std": float(np.std(ok)) if ok else None, "seeds": seeds, "values": values}


def at_mean_field(s: Setup, w: Array) -> dict[str, Any] | None:
    """The modifier ``w`` at the exact (mean-field) equilibrium, same temperature."""
    from crowdsteer.learners.exact import ExactConfig, ExactSolver

    try:
        sol = ExactSolver(ExactConfig(temperature=s.tau)).solve(s.game, s.modifier.theta(w))
        m = s.objective.measure(s.game, sol, s.tau)
    except (CrowdsteerError, ValueError, FloatingPointError) as exc:
        return {"error": str(exc)}
    return {"objective": m.objective, "kl": m.kl, "welfare": m.welfare,
            "exploitability": sol.exploitability, "converged": sol.converged}


def summary(o: Outcome) -> dict[str, Any]:
    return {"w": o.w, "objective": o.objective, "objective_std": o.objective_std, "kl": o.kl,
            "welfare": o.welfare, "maxmin": o.maxmin, "exploitability": o.exploitability,
            "converged": o.converged, "net_transfer": o.net_transfer, "seconds": o.seconds,
            **({"diagnostics": o.diagnostics} if o.diagnostics else {})}


def result_json(s: Setup, r: RunResult) -> dict[str, Any]:
    cfg = s.config
    baseline = summary(r.baseline)
    best = {**summary(r.best), "trial": r.best_trial}
    if r.baseline_validation is not None:
        baseline["validation"] = r.baseline_validation
    if r.best_validation is not None:
        best["validation"] = r.best_validation
    if r.best_mean_field is not None:
        best["mean_field"] = r.best_mean_field
    return {
        "objective": {"name": s.objective.name, "direction": r.direction},
        "baseline": baseline,
        "best": best,
        "evaluations": r.evaluations,
        "inner_iterations": r.inner_iterations,
        "iid_sample_kl": r.iid_sample_kl,
        "learner": cfg["learner"].name,
        "modifier": cfg["modifier"].name,
        "optimiser": s.optimiser.name,
        "seconds": r.seconds,
        "warm_start": r.warm_start,
        "converged_evaluations": r.converged_evaluations,
        "require_convergence": r.require_convergence,
        **({"network": r.network} if r.network is not None else {}),
    }
