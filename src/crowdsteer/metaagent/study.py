"""The study: every evaluation is a trial of an Optuna study (SQLite by default), which is
what makes ``--resume``, ``evaluations.csv`` and the report work for every optimiser.

Crash safety rests on three rules, kept by the helpers here (functions taking a study, so
any outer loop can use them):

1. a candidate ``w`` is stored whole, in one write, before it is evaluated
   (:func:`ask`): Optuna writes a trial's parameters one by one, so a trial that is
   ``RUNNING`` without the stored ``w`` was killed in the middle of its ask and is
   discarded, and its ask is repeated with the same seed (:func:`reclaim`); the baseline
   is created with its parameters in one transaction (:func:`enqueue_baseline`);
2. a trial whose ``w`` is stored and whose process died is evaluated again as the *same*
   trial (:func:`reclaim` returns it), so the baseline keeps its mark;
3. a study with no trial is no run: a run killed while creating it starts again.

Evaluations are numbered in the order they finished (``0`` is the baseline): the
``trial`` column of ``evaluations.csv`` and ``best.trial`` of ``result.json`` are these
numbers, the same whatever was killed and resumed; Optuna's own trial numbers may skip a
discarded ask.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna

from crowdsteer import faults, rundir
from crowdsteer.errors import ConfigError, CrowdsteerError
from crowdsteer.metaagent.evaluation import Outcome, trial_w  # noqa: F401  (re-exported)
from crowdsteer.optimisers import param_names

STUDY = "crowdsteer"
"""Name of the study in a run folder's own ``study.db``."""
CANDIDATE = "crowdsteer:candidate"
"""Trial system attribute: ``{"w": [...], "owner": holder}``, written in one transaction."""
SIGNATURE = "crowdsteer:run"
"""Study user attribute: the resolved config (or problem) the study was started with."""
INPUTS = "crowdsteer:inputs"
"""Study user attribute: ``{field: {"path": ..., "sha256": ...}}`` of every file the config
names, as they were when the run started (a resume refuses files that changed)."""
ELAPSED = "crowdsteer:seconds"
"""Study user attribute: wall-clock seconds of the run over all its sessions so far."""
RUNNING = optuna.trial.TrialState.RUNNING
COMPLETE = optuna.trial.TrialState.COMPLETE
FAIL = optuna.trial.TrialState.FAIL


# ----------------------------------------------------------------------------- storage

@dataclass(frozen=True)
class Storage:
    """Where a run's study lives.

    Attributes
    ----------
    url
        SQLAlchemy URL; ``None`` keeps the study in memory.
    name
        The study's name in the storage.
    own
        The run folder's own ``study.db``: only the run holding the folder's lock uses it.
    """

    url: str | None
    name: str
    own: bool = False

    @property
    def file(self) -> Path | None:
        """The SQLite file, if the storage is one."""
        if self.url is None or not self.url.startswith("sqlite:///"):
            return None
        path = self.url.removeprefix("sqlite:///").split("?", 1)[0]
        return None if path in ("", ":memory:") else Path(path)

    @property
    def shown(self) -> str:
        return str(self.file) if self.own else f"study {self.name!r} in {self.url}"


def storage_for(url: str | None, name: str | None, out: Path | None) -> Storage:
    """The storage of a run, checked without writing anything.

    The name defaults to ``crowdsteer`` in a run folder's own ``study.db`` and to the run
    folder's name in a shared ``url`` (several runs share one database, one study each).

    Raises
    ------
    ConfigError
        ``optimiser.storage`` is not a database URL, names a database whose driver is
        not installed, a folder that does not exist, or a server that refuses to connect.
    """
    if url is None:
        if out is None:
            return Storage(None, name or STUDY)
        return Storage(f"sqlite:///{(Path(out) / 'study.db').resolve()}", name or STUDY, own=True)
    url = with_driver(url)
    check_url(url)
    folder = None if out is None else Path(out).resolve()
    shared = Storage(url, name or (folder.name if folder is not None else STUDY))
    if folder is not None and shared.file is not None and (
            shared.file.resolve() == folder / "study.db"):
        return Storage(url, name or STUDY, own=True)  # the default, spelled out
    return shared


def with_driver(url: str) -> str:
    """``postgresql://...`` names no driver, and SQLAlchemy then imports psycopg2; with
    only psycopg (3, the ``[postgres]`` extra) installed, use that one."""
    import importlib.util

    if (url.startswith("postgresql://") and importlib.util.find_spec("psycopg2") is None
            and importlib.util.find_spec("psycopg") is not None):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def check_url(url: str) -> None:
    """Refuse a storage URL that cannot work, with one line; writes nothing."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    field = "optimiser.storage"
    try:
        parsed = make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        raise ConfigError(field, f"{url!r} is not a database URL; expected e.g. "
                          "sqlite:///runs/study.db or postgresql://user@host/db") from None
    try:
        dialect = parsed.get_dialect()
    except sqlalchemy.exc.NoSuchModuleError:
        raise ConfigError(field, f"unknown database kind {parsed.drivername!r} in {url!r}; "
                          "allowed: the SQLAlchemy dialects (sqlite, postgresql, mysql, ...)") from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        module = exc.name or str(exc)
        raise ConfigError(field, f"the {parsed.drivername} driver is not installed (no module "
                          f"{module!r}); install it: pip install "
                          f"'{_DRIVERS.get(module, module)}'") from None
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database or ""
        if db and db != ":memory:" and not db.startswith("file:"):
            folder = Path(db).resolve().parent
            if not folder.is_dir():
                raise ConfigError(field, f"folder {folder} does not exist (create it first)")
        return  # connecting would create the file: the folder check is as far as we go
    engine = sqlalchemy.create_engine(parsed)
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise ConfigError(field, f"cannot connect to {parsed.render_as_string()}: "
                          f"{first_line(exc)}") from None
    finally:
        engine.dispose()


_DRIVERS = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary", "MySQLdb": "mysqlclient"}
"""pip package of a database driver module, where the names differ."""


class Unreadable(CrowdsteerError):
    """The storage exists but its study cannot be read (a corrupt or foreign file)."""


def first_line(exc: BaseException) -> str:
    """The first line of what went wrong, following ``raise ... from`` to the cause."""
    cause = exc.__cause__ or exc.__context__
    text = str(cause if cause is not None and not str(exc).strip() else exc).strip()
    if isinstance(exc, optuna.exceptions.StorageInternalError) and cause is not None:
        text = str(cause).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line.split(" [SQL:")[0]


def _rdb(store: Storage, create: bool) -> optuna.storages.RDBStorage:
    rdb = optuna.storages.RDBStorage(store.url, skip_table_creation=not create)
    return faults.instrument(rdb)


def state(store: Storage) -> int | None:
    """Trials in the study: ``None`` if there is no study (no file, no tables, no study of
    that name); reads only.

    Raises
    ------
    Unreadable
        The database exists but cannot be read.
    """
    import sqlalchemy

    if store.url is None:
        return None
    if store.file is not None and not store.file.exists():
        return None
    engine = sqlalchemy.create_engine(store.url)
    try:
        with engine.connect() as conn:
            if "studies" not in sqlalchemy.inspect(conn).get_table_names():
                return None
        rdb = optuna.storages.RDBStorage(store.url, skip_table_creation=True)
        try:
            study_id = rdb.get_study_id_from_name(store.name)
        except KeyError:
            return None
        return len(rdb.get_all_trials(study_id, deepcopy=False))
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError,
            RuntimeError, ValueError) as exc:
        raise Unreadable(f"{store.shown}: cannot read the study ({first_line(exc)}); it is "
                         "left as it is") from None
    finally:
        engine.dispose()


def open_run(store: Storage, out: Path | None, direction: str, signature: Any,
             resume: bool, force: bool, starting: Any = None) -> tuple[optuna.Study, bool]:
    """Create the run's study, or load it to resume; returns ``(study, resumed)``.
    ``starting()`` (if given) is called just before a study is created: the run folder's
    record, written then, is what lets ``--resume`` start a run killed before its study
    existed (a shared storage leaves no file in the folder).

    Call it holding the run folder's lock (:func:`crowdsteer.rundir.locked`).

    * a study with trials is a run: resumed with ``resume`` (if ``signature`` matches the
      one it was started with), refused without, replaced with ``force``, which keeps
      it: the run folder's files move into ``previous/``, a shared study is copied to
      ``NAME-previous`` before it is deleted;
    * no study, or a study without trials (a run killed while creating it), is no run:
      started (again) from the beginning, by ``run`` or by ``--resume``.

    Raises
    ------
    ConfigError
        The folder or storage holds a run (without ``resume``/``force``), there is nothing
        to resume, or the run was started with another ``signature``.
    Unreadable
        The study cannot be read (and ``force`` cannot set it aside).
    """
    signature = json.loads(json.dumps(signature))
    held = [m for m in rundir.MARKERS if out is not None and (out / m).exists()
            and not (store.own and m == "study.db")]
    try:
        trials = state(store)
    except Unreadable as exc:
        if not (force and store.own and not resume):
            how = "" if resume else "; pass --force to move it into previous/ and start again"
            raise Unreadable(f"{exc}{how}") from None
        trials = -1  # set aside below, as it is
    if resume:
        if trials:
            study = _load(store)
            started = study.user_attrs.get(SIGNATURE)
            if started is not None and not same_run(started, signature):
                raise ConfigError("--resume", f"the config differs from the one {store.shown} "
                                  "was started with; resume with that config")
            return study, True
        traces = out is not None and any((out / f).exists() for f in ("config.yaml",
                                                                      "problem.json",
                                                                      "study.db"))
        if trials is None and not traces:
            where = out if out is not None else store.shown
            raise ConfigError("--resume", f"nothing to resume in {where}: no study there; "
                              "run without --resume to start")
    elif trials or held:
        if not force:
            raise ConfigError(*_refusal(store, out, trials, held))
        if out is not None:
            rundir.set_aside(out)
        if trials and not store.own:
            _keep_previous(store)
        trials = state(store)
    if trials == 0:
        optuna.delete_study(study_name=store.name, storage=_rdb(store, False))
    if starting is not None:
        starting()
    try:
        return _create(store, direction, signature), False
    except optuna.exceptions.DuplicatedStudyError:
        # another process created the study between the look above and here (two runs
        # started together on one shared storage; a run folder's own is locked)
        raise ConfigError("optimiser.study", f"{store.shown}: another run created this "
                          "study a moment ago; pass --resume to join it, or set "
                          "optimiser.study to another name") from None


def same_run(started: Any, now: Any) -> bool:
    """Whether a resume's config is the run's: equal but for the ``executor`` section
    (where evaluations run changes none of them: ``--resume --executor local``)."""
    def what(x: Any) -> Any:
        return {k: v for k, v in x.items() if k != "executor"} if isinstance(x, dict) else x

    return what(started) == what(now)


def _refusal(store: Storage, out: Path | None, trials: int | None,
             held: list[str]) -> tuple[str, str]:
    if trials and not store.own:
        return ("optimiser.study", f"{store.shown} already holds a run ({trials} trials); pass "
                "--resume to continue (or join) it, --force to replace it (kept as "
                f"{store.name}-previous), or set optimiser.study to another name")
    what = f"study.db with {trials} trials" if trials and trials > 0 else (
        held[0] if held else "study.db")
    return ("--out", f"{out} already holds a run ({what}); pass --resume to continue it or "
            f"--force to replace it (it is kept in {out / rundir.PREVIOUS}), or choose "
            "another folder")


def _keep_previous(store: Storage) -> None:
    """``--force`` on a shared storage: copy the study to ``NAME-previous``, then delete it."""
    kept = f"{store.name}-previous"
    rdb = _rdb(store, False)
    try:
        optuna.delete_study(study_name=kept, storage=rdb)
    except KeyError:
        pass
    optuna.copy_study(from_study_name=store.name, from_storage=rdb, to_storage=rdb,
                      to_study_name=kept)
    optuna.delete_study(study_name=store.name, storage=rdb)


def _load(store: Storage) -> optuna.Study:
    return optuna.load_study(study_name=store.name, storage=_rdb(store, False))


def _create(store: Storage, direction: str, signature: Any) -> optuna.Study:
    if store.url is None:
        return optuna.create_study(study_name=store.name, direction=direction)
    import sqlalchemy

    try:
        rdb = _rdb(store, True)
    except sqlalchemy.exc.IntegrityError:  # another process created the tables meanwhile
        rdb = _rdb(store, False)  # (PostgreSQL: a UniqueViolation on the types' names)
    faults.point("storage")
    study = optuna.create_study(study_name=store.name, storage=rdb, direction=direction)
    study.set_user_attr(SIGNATURE, signature)
    faults.point("study")
    return study


@contextmanager
def storage_errors(store: Storage) -> Iterator[None]:
    """Turn a failing storage (full disk, lost server, corrupt file) into one line; what was
    committed before stays committed."""
    import sqlalchemy

    try:
        yield
    except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError) as exc:
        raise CrowdsteerError(f"the study storage failed ({first_line(exc)}): {store.shown}; "
                              "every evaluation recorded before is kept: fix the cause (free "
                              "disk space?) and continue with --resume") from None


# ----------------------------------------------------------------------------- trials

@dataclass(frozen=True)
class Candidate:
    """A trial whose ``w`` is stored: asked, or reclaimed from a killed run."""

    trial_id: int
    number: int
    w: list[float]
    baseline: bool = False


def ask(study: optuna.Study, dists: dict[str, Any]) -> Candidate:
    """Ask the study's sampler for a candidate and store its ``w`` whole, in one write.

    Until that write, the trial has only some of its parameters (Optuna writes them one by
    one); :func:`reclaim` discards such a trial.
    """
    trial = study.ask(dists)
    w = [float(trial.params[k]) for k in dists]
    study._storage.set_trial_system_attr(trial._trial_id, CANDIDATE,
                                         {"w": w, "owner": rundir.holder()})
    return Candidate(trial._trial_id, trial.number, w, bool(trial.user_attrs.get("baseline")))


def enqueue_baseline(study: optuna.Study, dists: dict[str, Any]) -> None:
    """Queue ``w = 0`` (marked ``baseline``) with its parameters, in one transaction; the
    next :func:`ask` takes it without writing a parameter."""
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.WAITING, params={k: 0.0 for k in dists},
        distributions=dists, user_attrs={"baseline": True}))


def reclaim(study: optuna.Study, own: bool) -> list[Candidate]:
    """Take over the trials a killed run left ``RUNNING``; returns those to evaluate again.

    A trial is orphaned if its study is the run folder's own (``own``: the folder's lock
    guarantees no other run uses it) or its owner is a dead process on this host; trials of
    live runs, and of other hosts, sharing the study are left alone. An orphan whose ``w``
    is stored is returned, owned by this process (same trial: a baseline keeps its mark);
    one killed in the middle of its ask is discarded (``FAIL``, ``interrupted``; never
    counted) and its ask is repeated, seeded as before.
    """
    again = []
    storage = study._storage
    for t in study.get_trials(deepcopy=False, states=(RUNNING,)):
        stored = t.system_attrs.get(CANDIDATE)
        if not own and (stored is None or rundir.alive(stored["owner"]) is not False):
            continue
        if stored is None:
            storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            storage.set_trial_state_values(t._trial_id, FAIL)
            continue
        storage.set_trial_system_attr(t._trial_id, CANDIDATE,
                                      {"w": stored["w"], "owner": rundir.holder()})
        again.append(Candidate(t._trial_id, t.number, [float(v) for v in stored["w"]],
                               bool(t.user_attrs.get("baseline"))))
    return again


def has_baseline(study: optuna.Study) -> bool:
    """Whether ``w = 0`` is evaluated, under way, or queued."""
    return any(t.user_attrs.get("baseline") and not t.user_attrs.get("interrupted")
               for t in study.get_trials(deepcopy=False))


def tell(study: optuna.Study, c: Candidate, outcome: Outcome, required: bool = False,
         direction: str = "minimize", constraints: Any = None) -> None:
    """Record a finished evaluation: its diagnostics (J among them), its ``constraints``
    (``trial -> values``, feasible at <= 0; stored as Optuna's ``set_constraint`` does, for
    the samplers that model them), then the value the optimiser is told: J, or with
    ``required`` for an evaluation that did not converge :func:`infeasible_value` (its own
    J stays in the ``objective`` attribute)."""
    storage = study._storage
    for k, v in attrs(outcome).items():
        storage.set_trial_user_attr(c.trial_id, k, v)
    set_constraints(study, c.trial_id, constraints)
    faults.point("tell")
    value = outcome.objective
    if required and not outcome.converged:
        value = infeasible_value(study, value, direction)
    _tell(study, c.number, value)


CONSTRAINT = "constraints:"
"""Prefix of the trial system attributes Optuna's samplers read constraints from."""


def set_constraints(study: optuna.Study, trial_id: int, constraints: Any) -> None:
    """Store ``constraints(trial)`` (``{name: value}``, feasible at <= 0, the same names on
    every trial) on a trial as Optuna's ``Trial.set_constraint`` does: the samplers that
    model constraints read them there."""
    if constraints is None:
        return
    storage = study._storage
    for name, v in constraints(storage.get_trial(trial_id)).items():
        storage.set_trial_system_attr(trial_id, CONSTRAINT + name, float(v))


def infeasible_value(study: optuna.Study, objective: float, direction: str) -> float:
    """What an optimiser is told for an evaluation that did not reach equilibrium: its J or
    the worst J of the converged evaluations, whichever is worse (of every evaluation's
    own J when none has converged yet), so that it never looks better than an equilibrium.
    """
    done = [t for t in study.get_trials(deepcopy=False, states=(COMPLETE,))
            if not t.user_attrs.get("failed")]
    pool = [own_objective(t) for t in done if t.user_attrs.get("converged") is not False]
    if not pool:
        pool = [own_objective(t) for t in done]
    pool.append(objective)
    return max(pool) if direction == "minimize" else min(pool)


def own_objective(t: optuna.trial.FrozenTrial) -> float | None:
    """The J an evaluation measured (what it was told may be :func:`infeasible_value`)."""
    if t.user_attrs.get("failed"):
        return None
    own = t.user_attrs.get("objective")
    return float(own) if own is not None else (None if t.value is None else float(t.value))


def tell_failure(study: optuna.Study, c: Candidate, reason: str, direction: str,
                 constraints: Any = None) -> None:
    """Record a failed evaluation with its reason. The optimiser is told the worst J seen so
    far, so it learns the region is bad; the trial stays marked failed everywhere else."""
    study._storage.set_trial_user_attr(c.trial_id, "error", reason)
    study._storage.set_trial_user_attr(c.trial_id, "failed", True)
    set_constraints(study, c.trial_id, constraints)
    faults.point("tell")
    done = [t.value for t in study.get_trials(deepcopy=False, states=(COMPLETE,))
            if not t.user_attrs.get("failed")]
    if not done:
        _tell(study, c.number, state=FAIL)
        return
    _tell(study, c.number, max(done) if direction == "minimize" else min(done))


def _tell(study: optuna.Study, number: int, value: float | None = None,
          state: optuna.trial.TrialState | None = None) -> None:
    try:
        study.tell(number, value, state=state)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass  # a run sharing the study reclaimed the trial and told it first


# ----------------------------------------------------------------------------- reading

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
    return Outcome(objective=own_objective(trial), w=w, **known)


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The evaluations, in order: complete trials, and failed ones other than killed asks."""
    return [t for t in study.get_trials(deepcopy=False)
            if t.state == COMPLETE or (t.state == FAIL and not t.user_attrs.get("interrupted"))]


def evaluation_number(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> int:
    """The position of ``trial`` among the evaluations (``0``: the baseline)."""
    return next(i for i, t in enumerate(finished(study)) if t.number == trial.number)


def feasible(t: optuna.trial.FrozenTrial, constrained: bool, required: bool = False) -> bool:
    """Whether ``t`` may be the best: not failed, within the budget (``constrained``) and,
    with ``required`` (``require_convergence``), at equilibrium."""
    if t.user_attrs.get("failed"):
        return False
    if required and t.user_attrs.get("converged") is False:
        return False
    return not constrained or (t.user_attrs.get("net_transfer") or 0.0) <= 1e-9


def best_trial_of(study: optuna.Study, direction: str, constrained: bool,
                  required: bool = False) -> optuna.trial.FrozenTrial:
    """The best feasible evaluation by its own J; ``ValueError`` if none is feasible."""
    done = [t for t in study.get_trials(deepcopy=False, states=(COMPLETE,))
            if feasible(t, constrained, required)]
    sign = 1.0 if direction == "minimize" else -1.0
    return min(done, key=lambda t: sign * own_objective(t))


def converged_count(study: optuna.Study) -> tuple[int, int]:
    """``(converged, finished)``: evaluations whose inner loop reached its tolerance, of all
    finished ones (failed ones count as not converged)."""
    done = finished(study)
    ok = sum(1 for t in done if t.state == COMPLETE and not t.user_attrs.get("failed")
             and t.user_attrs.get("converged") is not False)
    return ok, len(done)


def write_evaluations(study: optuna.Study, n: int, path: Path) -> None:
    """evaluations.csv: one row per finished evaluation, numbered in order."""
    names = param_names(n)
    trials = finished(study)
    # a user's Outcome.diagnostics: one column each, after the weights
    extra = sorted(set().union(*(t.user_attrs.get("diagnostics") or {} for t in trials)))
    cols = ["trial", "state", "J", "J_std", "kl", "welfare", "maxmin", "exploitability",
            "converged", "net_transfer", "seconds", "error", *names,
            *(f"diagnostics.{k}" for k in extra)]
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(cols)
    for i, t in enumerate(trials):
        a = t.user_attrs
        failed = a.get("failed") or t.state == FAIL
        own = own_objective(t)
        conv = a.get("converged")
        diag = a.get("diagnostics") or {}
        wr.writerow([i, "FAIL" if failed else t.state.name,
                     "" if failed or own is None else repr(own),
                     *(_fmt(a.get(k)) for k in ("objective_std", "kl", "welfare", "maxmin",
                                                "exploitability")),
                     "" if failed or conv is None else str(bool(conv)),
                     *(_fmt(a.get(k)) for k in ("net_transfer", "seconds")),
                     a.get("error", ""), *(repr(v) for v in trial_w(t, n)),
                     *(_fmt(diag.get(k)) for k in extra)])
    rundir.atomic_write(path, buf.getvalue().encode())


def _fmt(x: Any) -> str:
    return "" if x is None else repr(float(x))


def reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def failures(study: optuna.Study) -> tuple[int, str | None]:
    """How many evaluations failed, and the first one's reason (``trial k: reason``)."""
    bad = [(i, t) for i, t in enumerate(finished(study))
           if t.user_attrs.get("failed") or t.state == FAIL]
    if not bad:
        return 0, None
    i, t = bad[0]
    return len(bad), f"trial {i}: {t.user_attrs.get('error') or 'failed'}"


def failure_note(study: optuna.Study) -> str | None:
    """The end-of-run line on failed evaluations (``None`` when none failed)."""
    n, first = failures(study)
    if not n:
        return None
    total = len(finished(study))
    return (f"{n} of {total} evaluation{'s' if total != 1 else ''} failed (recorded with the "
            f"worst J, column error of evaluations.csv); the first: {first}")


def best_or_none(study: optuna.Study, direction: str, constrained: bool,
                 required: bool = False) -> float | None:
    try:
        return own_objective(best_trial_of(study, direction, constrained, required))
    except ValueError:
        return None


def baseline_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The finished baseline evaluation (``w = 0``); raises if it failed."""
    base = next(t for t in finished(study) if t.user_attrs.get("baseline"))
    if base.state != COMPLETE or base.user_attrs.get("failed"):
        raise CrowdsteerError(f"the baseline (w = 0) failed: {base.user_attrs.get('error')}; "
                              "every w is measured against it, so the run stops: fix the "
                              "cause and start again with --force")
    return base


def history(study: optuna.Study) -> tuple[float, ...]:
    """J of every finished evaluation, in order (``nan`` for failed ones)."""
    return tuple(float("nan") if (j := own_objective(t)) is None else j
                 for t in finished(study))


def input_files(signature: Any, base_dir: Path) -> dict[str, dict[str, str]]:
    """The files a resolved config names (any string value naming a file, relative to
    ``base_dir``), by dotted field: their path and SHA-256."""
    import hashlib

    found: dict[str, dict[str, str]] = {}

    def walk(x: Any, field: str) -> None:
        if isinstance(x, dict):
            for k, v in x.items():
                walk(v, f"{field}.{k}" if field else str(k))
        elif isinstance(x, list):
            for i, v in enumerate(x):
                walk(v, f"{field}.{i}")
        elif isinstance(x, str) and ("." in x or "/" in x) and (base_dir / x).is_file():
            digest = hashlib.sha256()
            with open(base_dir / x, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            found[field] = {"path": x, "sha256": digest.hexdigest()}

    walk(signature, "")
    return found


def check_inputs(study: optuna.Study, now: dict[str, dict[str, str]]) -> None:
    """Refuse to resume ``study`` when a file it was started with changed (or went)."""
    started = study.user_attrs.get(INPUTS) or {}
    for field, was in started.items():
        if now.get(field, {}).get("sha256") != was.get("sha256"):
            how = "is gone" if field not in now else "changed"
            raise ConfigError(field, f"{was.get('path')} {how} since the run started (its "
                              "evaluations used the file as it was then); restore it to "
                              "--resume, or start again with --force")


def begin(store: Storage, out: Path | None, direction: str, signature: Any, record: str,
          resume: bool, force: bool, inputs: dict[str, dict[str, str]] | None = None
          ) -> optuna.Study:
    """:func:`open_run`, then the run folder's record of what the run is (``record``:
    ``config.yaml`` or ``problem.json``): checked when resuming, written when starting.
    ``inputs`` (:func:`input_files`): checked against the study's when resuming (it joins
    or continues), kept in the study when starting."""
    import yaml

    path = None if out is None else out / record
    as_yaml = record.endswith(".yaml")

    def write_record() -> None:
        if path is None:
            return
        if as_yaml:
            rundir.atomic_write(path, yaml.safe_dump(signature, sort_keys=False).encode())
        else:
            rundir.write_json(path, signature)

    study, resumed = open_run(store, out, direction, signature, resume, force, write_record)
    if inputs is not None:
        if resumed:
            check_inputs(study, inputs)
        elif store.url is not None:
            study.set_user_attr(INPUTS, inputs)
    if path is None:
        return study
    if resumed and path.exists():
        text = path.read_text()
        saved = yaml.safe_load(text) if as_yaml else json.loads(text)
        if not same_run(saved, json.loads(json.dumps(signature))):
            raise ConfigError("--resume", f"the config differs from the one the run in {out} "
                              f"started with ({record}); resume with that config")
    else:
        write_record()
    return study


def worst_value(study: optuna.Study, direction: str) -> float | None:
    """The worst J among the completed evaluations (what a failed one is told), or ``None``."""
    done = [own_objective(t) for t in study.get_trials(
        deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
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


class Clock:
    """The run's wall-clock time over its sessions: a resumed run continues the count
    stored in the study (updated after every round), so its ``seconds`` is the total."""

    def __init__(self, study: optuna.Study, start: float) -> None:
        self.study, self.start = study, start
        self.before = float(study.user_attrs.get(ELAPSED) or 0.0)

    def session(self) -> float:
        return time.perf_counter() - self.start

    def total(self) -> float:
        return self.before + self.session()

    def wrap(self, progress: Any) -> Any:
        """``progress`` that also stores the total time in the study."""
        def tick(done: int, total: int, best: float | None) -> None:
            self.study.set_user_attr(ELAPSED, self.total())
            if progress is not None:
                progress(done, total, best)
        return tick
