"""The study: every evaluation is a trial of an Optuna study (SQLite by default), which is
what makes ``--resume``, ``evaluations.csv`` and the report work for every optimiser."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from pathlib import Path
from typing import Any

import optuna

from crowdsteer import rundir
from crowdsteer.errors import ConfigError, CrowdsteerError
from crowdsteer.metaagent.evaluation import Outcome
from crowdsteer.optimisers import param_names

STUDY = "crowdsteer"


def attrs(o: Outcome) -> dict[str, Any]:
    d = asdict(o)
    d.pop("w")
    if not d["diagnostics"]:
        d.pop("diagnostics")
    return d


def outcome(trial: optuna.trial.FrozenTrial, n: int) -> Outcome:
    a = trial.user_attrs
    w = trial_w(trial, n)
    known = {k: a[k] for k in Outcome.__dataclass_fields__ if k in a and k not in ("w",
                                                                                 "objective")}
    return Outcome(objective=float(trial.value), w=w, **known)


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that count as evaluations: complete, or failed for a reason other than a kill."""
    return [t for t in study.get_trials(deepcopy=False)
            if t.state == optuna.trial.TrialState.COMPLETE
            or (t.state == optuna.trial.TrialState.FAIL and not t.user_attrs.get("interrupted"))]


def feasible(t: optuna.trial.FrozenTrial, constrained: bool) -> bool:
    if t.user_attrs.get("failed"):
        return False
    return not constrained or (t.user_attrs.get("net_transfer") or 0.0) <= 1e-9


def best_trial_of(study: optuna.Study, direction: str, constrained: bool) -> optuna.trial.FrozenTrial:
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if feasible(t, constrained)]
    key = (lambda t: t.value) if direction == "minimize" else (lambda t: -t.value)
    return min(done, key=key)


def write_evaluations(study: optuna.Study, n: int, path: Path) -> None:
    """evaluations.csv: one row per finished evaluation, in order."""
    names = param_names(n)
    cols = ["trial", "state", "J", "J_std", "kl", "welfare", "maxmin", "exploitability",
            "net_transfer", "seconds", "error", *names]
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(cols)
    for t in finished(study):
        a = t.user_attrs
        failed = a.get("failed") or t.state == optuna.trial.TrialState.FAIL
        wr.writerow([t.number, "FAIL" if failed else t.state.name,
                     "" if failed or t.value is None else repr(t.value),
                     *(_fmt(a.get(k)) for k in ("objective_std", "kl", "welfare", "maxmin",
                                                "exploitability", "net_transfer", "seconds")),
                     a.get("error", ""), *(repr(v) for v in trial_w(t, n))])
    rundir.atomic_write(path, buf.getvalue().encode())


def _fmt(x: Any) -> str:
    return "" if x is None else repr(float(x))


def open_study(direction: str, url: str | None, out: Path | None, resume: bool) -> optuna.Study:
    if url is None and out is not None:
        url = f"sqlite:///{(out / 'study.db').resolve()}"
    storage: Any = optuna.storages.InMemoryStorage() if url is None else url
    if resume:
        try:
            return optuna.load_study(study_name=STUDY, storage=storage)
        except KeyError:
            raise ConfigError("--resume", f"no study to resume in {url}") from None
    return optuna.create_study(study_name=STUDY, storage=storage, direction=direction)


def tell_failure(study: optuna.Study, trial: optuna.Trial, reason: str, direction: str) -> None:
    """Record a failed evaluation with its reason. The optimiser is told the worst J seen so
    far, so it learns the region is bad; the trial stays marked failed everywhere else."""
    trial.set_user_attr("error", reason)
    trial.set_user_attr("failed", True)
    done = [t.value for t in study.get_trials(deepcopy=False,
                                              states=(optuna.trial.TrialState.COMPLETE,))
            if not t.user_attrs.get("failed")]
    if not done:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return
    study.tell(trial, max(done) if direction == "minimize" else min(done))


def reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def best_or_none(study: optuna.Study, direction: str, constrained: bool) -> float | None:
    try:
        return float(best_trial_of(study, direction, constrained).value)
    except ValueError:
        return None




def baseline_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The finished baseline evaluation (``w = 0``); raises if it failed."""
    base = next(t for t in study.trials if t.user_attrs.get("baseline"))
    if base.state != optuna.trial.TrialState.COMPLETE or base.user_attrs.get("failed"):
        raise CrowdsteerError(f"the baseline (w = 0) failed: {base.user_attrs.get('error')}")
    return base


def history(study: optuna.Study) -> tuple[float, ...]:
    """J of every finished evaluation, in order (``nan`` for failed ones)."""
    return tuple(float("nan") if t.value is None or t.user_attrs.get("failed")
                 else float(t.value) for t in finished(study))


def trial_w(trial: optuna.trial.FrozenTrial, n: int) -> list[float]:
    """The ``w`` a trial evaluated: its ``w`` attribute (written whole, in one transaction,
    by :func:`record`) or else its Optuna parameters."""
    w = trial.user_attrs.get("w")
    if w is not None:
        return [float(v) for v in w]
    return [trial.params[k] for k in param_names(n)]


def worst_value(study: optuna.Study, direction: str) -> float | None:
    """The worst J among the completed evaluations (what a failed one is told), or ``None``."""
    done = [t.value for t in study.get_trials(deepcopy=False,
                                              states=(optuna.trial.TrialState.COMPLETE,))
            if not t.user_attrs.get("failed")]
    if not done:
        return None
    return max(done) if direction == "minimize" else min(done)


def record(study: optuna.Study, w: list[float], value: float | None,
           user_attrs: dict[str, Any]) -> None:
    """Add one finished evaluation in a single transaction: ``w`` whole (as the ``w``
    attribute, one row however many weights), ``J`` and its attributes; a kill can lose the
    evaluation, never leave half of it. ``value=None`` records a failed one (state FAIL).
    For optimisers that ask no Optuna sampler (the ``gradient`` optimiser)."""
    state = optuna.trial.TrialState.FAIL if value is None else optuna.trial.TrialState.COMPLETE
    study.add_trial(optuna.trial.create_trial(
        state=state, value=value, params={}, distributions={},
        user_attrs={**user_attrs, "w": [float(v) for v in w]}))
