"""Nothing lost, whatever the moment of the kill: SIGKILL at named points (the fault hook
CROWDSTEER_TEST_KILL_AT, see crowdsteer/faults.py), then --resume, through the CLI.

The reference is the same run left alone: after every kill and resume, evaluations.csv must
equal it row for row (every column but the wall-clock ``seconds``), the baseline w = 0
first. Rounds of ``batch: 2``; with ``gp``, whose GP also looks at the candidates of the
round still being evaluated, and ``bo``, which replays its search from the study, the
resumed asks are as demanding as they get.
"""

import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys

import optuna
import pytest

import crowdsteer as cs
from tests.test_cli import write_config

RUN = {
    "seed": 11,
    "game": {"name": "crowd", "height": 3, "width": 3, "horizon": 2, "moves": "local",
             "congestion": {"kind": "log", "strength": 1.0}},
    "learner": {"name": "exact", "temperature": 0.2, "tolerance": 1e-7},
    "modifier": {"name": "power_series", "order": 1},  # 3 weights
    "objective": {"name": "kl", "target": {"bumps": [{"center": [2, 2], "width": 1.5}]}},
    "optimiser": {"name": "tpe", "evaluations": 5, "initial": 2, "batch": 2},
}
# rounds: [baseline, 1], [2, 3], [4, 5]; the baseline is created with its parameters in one
# transaction, and trial k >= 1 writes its 3 as the (3k-2)-th to 3k-th parameter writes


def environment(kill=None):
    """This environment, with the fault hook set to ``kill`` (or unset)."""
    env = {k: v for k, v in os.environ.items() if k != "CROWDSTEER_TEST_KILL_AT"}
    return {**env, "CROWDSTEER_TEST_KILL_AT": kill} if kill else env


def crowdsteer(*args, kill=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "crowdsteer", *map(str, args)],
                          capture_output=True, text=True, env=environment(kill), timeout=timeout)


def table(out):
    """evaluations.csv without the wall-clock column."""
    with open(out / "evaluations.csv") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


def trials(out):
    study = optuna.load_study(study_name="crowdsteer", storage=f"sqlite:///{out / 'study.db'}")
    return study.get_trials(deepcopy=False)


def with_optimiser(name):
    return {**RUN, "optimiser": {**RUN["optimiser"], "name": name}}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The runs left alone (in process: the same code as the CLI's), by optimiser."""
    runs = {}
    for name in ("tpe", "gp", "bo"):
        tmp = tmp_path_factory.mktemp(name)
        cs.run(with_optimiser(name), out=tmp / "run")
        rows = table(tmp / "run")
        assert len(rows) == 6 and rows[0]["w_0"] == "0.0"
        runs[name] = (write_config(tmp, with_optimiser(name)), rows,
                      json.loads((tmp / "run" / "result.json").read_text()))
    return runs


def killed(cfg, out, point, *extra):
    r = crowdsteer("run", cfg, "--out", out, *extra, kill=point)
    assert r.returncode == -signal.SIGKILL, f"not killed at {point}: {r.stderr}"


def resumed(cfg, out, reference_rows, how="--resume"):
    r = crowdsteer("run", cfg, "--out", out, *how.split())
    assert r.returncode == 0, r.stderr
    assert table(out) == reference_rows
    assert table(out)[0]["w_0"] == table(out)[0]["w_2"] == "0.0"  # the baseline first


QUICK = {**RUN, "optimiser": {"name": "random", "evaluations": 3}}


def one_line(r):
    """A refusal as a user sees it: exit code 2 and one error line, no traceback (other
    lines are what the run said before, e.g. which optimiser it uses)."""
    assert r.returncode == 2, (r.returncode, r.stderr)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    return errors[0]


@pytest.mark.parametrize("name, points", [
    ("tpe", ["evaluate:1"]),  # during the baseline's round
    ("tpe", ["param:2"]),     # between the parameter writes of trial 1 (baseline pending)
    pytest.param("tpe", ["tell:4"], marks=pytest.mark.slow),  # round [2, 3] half recorded
    # between the parameter writes of trial 3 while trial 2 of its round is stored and
    # pending (the GP conditions on it), then during that round's evaluation when resumed
    pytest.param("gp", ["param:8", "evaluate:1"], marks=pytest.mark.slow),
    # the default bo (a trust-region search replayed from the study): the same mid-ask
    ("bo", ["param:8"]),
], ids=["baseline-evaluation", "parameter-writes", "round-half-recorded",
        "gp-mid-ask-then-evaluation", "bo-mid-ask"])
def test_kill_then_resume_matches_the_uninterrupted_run(reference, tmp_path, name, points):
    cfg, rows, _ = reference[name]
    out = tmp_path / "run"
    finished = {}
    for i, point in enumerate(points):
        killed(cfg, out, point, *(["--resume"] if i else []))
        finished |= {t.number: t.datetime_complete for t in trials(out) if t.datetime_complete}
    resumed(cfg, out, rows)
    after = trials(out)
    # nothing finished was evaluated again; killed evaluations were finished as the same
    # trial (the baseline keeps its mark), and only an ask cut short was asked again
    assert all(t.datetime_complete == finished[t.number] for t in after if t.number in finished)
    cut_asks = [t for t in after if t.user_attrs.get("interrupted")]
    kept = [t for t in after if not t.user_attrs.get("interrupted")]
    assert [t.user_attrs.get("baseline", False) for t in kept] == [True] + [False] * 5
    assert len(cut_asks) == sum(p.startswith("param") for p in points)
    assert len(after) == 6 + len(cut_asks)


def test_resume_on_a_folder_without_a_run_creates_nothing(tmp_path):
    cfg = write_config(tmp_path, QUICK)
    line = one_line(crowdsteer("run", cfg, "--out", tmp_path / "new", "--resume"))
    assert "nothing to resume" in line and "run without --resume" in line
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("point, way_out", [("storage", ""), ("study", "--resume")])
def test_kill_during_study_creation_leaves_a_way_out(reference, tmp_path, point, way_out):
    """A study.db without a study (`storage`), or a study without trials (`study`), is no
    run: `run` and `run --resume` both start it from the beginning."""
    cfg, rows, _ = reference["tpe"]
    out = tmp_path / "run"
    killed(cfg, out, point)
    assert (out / "study.db").exists() and not (out / "evaluations.csv").exists()
    resumed(cfg, out, rows, way_out)


def test_kill_during_the_final_resolve_then_during_the_report(reference, tmp_path):
    cfg, rows, result = reference["tpe"]
    out = tmp_path / "run"
    killed(cfg, out, "finish")
    killed(cfg, out, "report", "--resume")
    resumed(cfg, out, rows)
    assert timeless(json.loads((out / "result.json").read_text())) == timeless(result)
    assert (out / "report.html").exists()


def timeless(d):
    return {k: timeless(v) if isinstance(v, dict) else v for k, v in d.items() if k != "seconds"}


BYO = '''
import sys
import numpy as np
import crowdsteer

def evaluate(w, seed):
    """A bowl with its minimum at (0.4, -0.2) and seeded noise."""
    return float(np.sum((w - np.array([0.4, -0.2])) ** 2)
                 + np.random.default_rng(seed).normal(0, 1e-3))

if __name__ == "__main__":
    crowdsteer.optimise(evaluate, 2, seed=5, out=sys.argv[1], resume=len(sys.argv) > 2,
                        optimiser={"name": "tpe", "evaluations": 6, "initial": 2, "batch": 2})
'''


@pytest.mark.slow
def test_optimise_resumes_the_same_way(tmp_path):
    """crowdsteer.optimise around a user's evaluate: killed between the parameter writes of
    trial 5 (its round's trial 4 pending), then killed in the resumed run's first round,
    each time resumed; the evaluations are those of the run left alone."""
    script = tmp_path / "byo.py"
    script.write_text(BYO)

    def call(out, *extra, kill=None):
        return subprocess.run([sys.executable, str(script), str(out), *extra],
                              env=environment(kill), capture_output=True, text=True,
                              timeout=300).returncode

    assert call(tmp_path / "full") == 0
    assert call(tmp_path / "cut", kill="param:9") == -signal.SIGKILL
    assert call(tmp_path / "cut", "--resume", kill="evaluate:1") == -signal.SIGKILL
    assert call(tmp_path / "cut", "--resume") == 0
    assert table(tmp_path / "cut") == table(tmp_path / "full")
    assert table(tmp_path / "cut")[0]["w_0"] == "0.0"


# ----------------------------------------------------------------------------- one run per folder

def test_a_second_run_on_a_locked_folder_names_the_holder(tmp_path):
    from crowdsteer import rundir

    cfg = write_config(tmp_path, QUICK)
    out = tmp_path / "run"
    out.mkdir()
    with rundir.locked(out):  # this test process holds the folder
        line = one_line(crowdsteer("run", cfg, "--out", out))
        assert f"pid {os.getpid()} on {os.uname().nodename}, since " in line
        assert sorted(p.name for p in out.iterdir()) == ["run.lock"]  # nothing written
    assert not (out / "run.lock").exists()  # released


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    cfg = write_config(tmp_path, QUICK)
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (out / "run.lock").write_text(json.dumps({"pid": int(dead), "host": os.uname().nodename,
                                              "since": "yesterday"}))
    r = crowdsteer("run", cfg, "--out", out)
    assert r.returncode == 0, r.stderr
    assert not (out / "run.lock").exists()  # released at the end


def test_two_runs_started_together_on_one_folder(tmp_path):
    """One wins; the other stops with one line; config.yaml is the winner's, as the study's."""
    out = tmp_path / "run"
    procs = [subprocess.Popen([sys.executable, "-m", "crowdsteer", "run",
                               str(write_config(tmp_path, {**QUICK, "seed": seed}, f"{seed}.yaml")),
                               "--out", str(out)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, env=environment())
             for seed in (1, 2)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], errors
    loser = errors[codes.index(2)]
    assert len(loser.strip().splitlines()) == 1 and "Traceback" not in loser
    assert "in use by another run" in loser or "already holds a run" in loser
    study = optuna.load_study(study_name="crowdsteer", storage=f"sqlite:///{out / 'study.db'}")
    import yaml

    winner = (1, 2)[codes.index(0)]
    assert yaml.safe_load((out / "config.yaml").read_text())["seed"] == winner
    assert study.user_attrs["crowdsteer:run"]["seed"] == winner


def test_force_keeps_the_old_run_until_the_new_one_exists(tmp_path):
    out = tmp_path / "run"
    cs.run(QUICK, out=out)
    old = table(out)
    other = write_config(tmp_path, {**QUICK, "seed": 5}, "other.yaml")
    killed(other, out, "storage", "--force")  # the new study is being created
    assert table(out / "previous") == old  # moved aside whole, not deleted
    assert len(trials(out / "previous")) == 4
    r = crowdsteer("run", other, "--out", out, "--force")  # the half-made run is no run:
    assert r.returncode == 0, r.stderr                     # previous/ still holds the old one
    assert table(out / "previous") == old and table(out) != old


# ----------------------------------------------------------------------------- storage

@pytest.mark.parametrize("url, words", [
    ("not a url", "not a database URL"),
    ("nosuchdb://host/x", "unknown database kind"),
    pytest.param("postgresql+pg8000://user@localhost/db", "driver is not installed",
                 marks=pytest.mark.skipif(importlib.util.find_spec("pg8000") is not None,
                                          reason="pg8000 is installed here")),
    ("sqlite:////no/such/folder/study.db", "does not exist"),
])
def test_a_bad_storage_is_refused_before_anything_is_written(tmp_path, url, words):
    cfg = write_config(tmp_path, {**QUICK, "optimiser": {**QUICK["optimiser"], "storage": url}})
    line = one_line(crowdsteer("run", cfg, "--out", tmp_path / "run"))
    assert "optimiser.storage" in line and words in line
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_shared_storage_holds_one_study_per_run_name(tmp_path):
    """Two folders named `run` against one database: the second fresh run is refused with one
    line; --resume joins the study (same config); --force keeps the old one as run-previous."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    shared = {**QUICK, "optimiser": {**QUICK["optimiser"], "storage": url}}
    cfg = write_config(tmp_path, shared)
    a, b = tmp_path / "a" / "run", tmp_path / "b" / "run"
    cs.run(shared, out=a)
    line = one_line(crowdsteer("run", cfg, "--out", b))
    assert "'run'" in line and "optimiser.study" in line and "--resume" in line
    assert crowdsteer("run", cfg, "--out", b, "--resume").returncode == 0
    assert table(b) == table(a)  # nothing more to evaluate: the same study
    assert crowdsteer("run", cfg, "--out", b, "--force").returncode == 0
    names = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(url)}
    assert names == {"run": 4, "run-previous": 4}
    other = {**shared, "optimiser": {**shared["optimiser"], "study": "second"}}
    with pytest.raises(cs.ConfigError, match="already holds a run"):
        cs.run(other, out=b)  # b holds a run (its files), whatever the study's name
    cs.run(other, out=tmp_path / "c")
    assert {s.study_name for s in optuna.get_all_study_summaries(url)} == {
        "run", "run-previous", "second"}


def test_the_default_storage_spelled_out_is_the_run_folders_own(tmp_path):
    """optimiser.storage naming DIR/study.db is the default: study `crowdsteer`, kept with
    the folder by --force."""
    out = tmp_path / "run"
    out.mkdir()
    explicit = {**QUICK, "optimiser": {**QUICK["optimiser"],
                                       "storage": f"sqlite:///{out / 'study.db'}"}}
    cs.run(explicit, out=out)
    assert len(trials(out)) == 4
    cs.run(explicit, out=out, force=True)
    assert len(trials(out)) == len(trials(out / "previous")) == 4


@pytest.mark.parametrize("damage", [pytest.param("random", marks=pytest.mark.slow), "truncated"])
def test_a_damaged_study_db_is_refused_and_left_as_it_is(tmp_path, damage):
    cfg = write_config(tmp_path, QUICK)
    out = tmp_path / "run"
    cs.run(QUICK, out=out)
    db = out / "study.db"
    data = db.read_bytes()
    db.write_bytes(os.urandom(len(data)) if damage == "random" else data[: len(data) // 2])
    before = db.read_bytes()
    line = one_line(crowdsteer("run", cfg, "--out", out, "--resume"))
    assert "study.db" in line and "cannot read" in line
    assert db.read_bytes() == before
    line = one_line(crowdsteer("run", cfg, "--out", out))
    assert "--force" in line and db.read_bytes() == before
    cs.run(QUICK, out=out, force=True)
    assert (out / "previous" / "study.db").read_bytes() == before  # kept, as it was


def test_a_full_disk_during_a_commit_stops_with_one_line_and_loses_nothing(tmp_path):
    """The disk fills up while the run records: simulated with a file-size limit
    (RLIMIT_FSIZE at study.db's current size, SIGXFSZ ignored), so SQLite's next write
    that grows the file fails as on a full disk, inside the real CLI process."""
    import resource

    many = {**RUN, "optimiser": {"name": "random", "evaluations": 20}}
    cs.run(many, out=tmp_path / "full")
    cfg = write_config(tmp_path, many)
    out = tmp_path / "run"
    killed(cfg, out, "evaluate:3")
    size = (out / "study.db").stat().st_size

    def full_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    r = subprocess.run([sys.executable, "-m", "crowdsteer", "run", str(cfg), "--out", str(out),
                        "--resume"], capture_output=True, text=True, env=environment(),
                       preexec_fn=full_disk, timeout=300)
    line = one_line(r)
    assert "storage failed" in line and "--resume" in line
    resumed(cfg, out, table(tmp_path / "full"))


def test_two_runs_creating_one_shared_study_together_refuse_the_second_in_one_line(tmp_path):
    """Two runs started together on one shared storage both find no study, then both
    create it: the one that comes second (here: the study appears between its look and its
    creation, as another process would make it) is refused naming optimiser.study and
    --resume, not with Optuna's DuplicatedStudyError, and the first's study is untouched."""
    from crowdsteer.metaagent.study import open_run, storage_for

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    store = storage_for(url, "run", tmp_path / "b" / "run")
    other = lambda: optuna.create_study(study_name="run", storage=url)  # noqa: E731
    with pytest.raises(cs.ConfigError) as info:
        open_run(store, tmp_path / "b" / "run", "minimize", {"x": 1}, resume=False,
                 force=False, starting=other)
    assert info.value.field == "optimiser.study" and "--resume" in info.value.message
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["run"]
