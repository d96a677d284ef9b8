"""Issue 20: a real PostgreSQL study. A throwaway server (initdb + pg_ctl, on loopback, trust
authentication, run as an unprivileged user: initdb refuses root, so as root a system user
``crowdsteer_pg`` is created with useradd) holds the study of runs through the CLI:
two processes share one study; SIGKILL then --resume gives the evaluations.csv of the same
run on SQLite; a server that goes away mid-run gives one line and exit 2, nothing lost,
and the run resumes when it returns; a kill before the study exists leaves a folder that
--resume starts. Skipped (with the reason) without initdb/pg_ctl or psycopg."""

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest

import crowdsteer as cs
from tests.test_cli import write_config
from tests.test_crash import RUN, crowdsteer, environment, killed, table

PG_USER = "crowdsteer_pg"

pytestmark = [
    pytest.mark.skipif(shutil.which("initdb") is None or shutil.which("pg_ctl") is None,
                       reason="PostgreSQL's initdb and pg_ctl are not on PATH"),
    pytest.mark.skipif(importlib.util.find_spec("psycopg") is None,
                       reason="no PostgreSQL driver: pip install '.[postgres]'"),
]


class Server:
    """A PostgreSQL server in a temporary folder, on a free loopback port."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="crowdsteer-pg-"))
        self.data = self.root / "data"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.user = None
        if os.geteuid() == 0:  # initdb refuses root: run the server as an ordinary user
            if subprocess.run(["id", PG_USER], capture_output=True).returncode != 0:
                made = subprocess.run(["useradd", "--system", "--no-create-home", PG_USER],
                                      capture_output=True, text=True)
                if made.returncode != 0:
                    pytest.skip(f"running as root and cannot create {PG_USER}: {made.stderr}")
            self.user = PG_USER
            shutil.chown(self.root, PG_USER)
            self.root.chmod(0o700)
        self.as_user(["initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                      "--no-sync"])
        self.start()

    def as_user(self, cmd: list[str]) -> None:
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"{cmd}: {r.stdout}{r.stderr}")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        self.as_user(["pg_ctl", "-D", str(self.data), "-w", "-l", str(self.root / "log"),
                      "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                      "-c fsync=off", "start"])

    def stop(self) -> None:
        self.as_user(["pg_ctl", "-D", str(self.data), "-w", "-m", "immediate", "stop"])

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.close()


def shared(server, name, **opt):
    return {**RUN, "optimiser": {**RUN["optimiser"], "storage": server.url, "study": name,
                                 **opt}}


def trials(server, name):
    rdb = optuna.storages.RDBStorage(server.url.replace("postgresql://", "postgresql+psycopg://"),
                                     skip_table_creation=True)
    try:
        return optuna.load_study(study_name=name, storage=rdb).get_trials()
    finally:
        rdb.engine.dispose()  # no connection left open (warnings are errors)


@pytest.fixture(scope="module")
def sqlite_reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sqlite")
    cs.run(RUN, out=tmp / "run")
    return table(tmp / "run")


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_evaluations_of_sqlite(server, tmp_path, sqlite_reference):
    cfg = write_config(tmp_path, shared(server, "killed"))
    out = tmp_path / "run"
    killed(cfg, out, "tell")
    r = crowdsteer("run", cfg, "--out", out, "--resume")
    assert r.returncode == 0, r.stderr
    assert table(out) == sqlite_reference


def test_a_kill_before_the_study_exists_leaves_a_folder_resume_starts(server, tmp_path,
                                                                       sqlite_reference):
    cfg = write_config(tmp_path, shared(server, "early"))
    out = tmp_path / "run"
    killed(cfg, out, "storage")  # the tables may exist, the study does not
    r = crowdsteer("run", cfg, "--out", out, "--resume")
    assert r.returncode == 0, r.stderr
    assert table(out) == sqlite_reference


def test_two_processes_share_one_study(server, tmp_path):
    cfg = write_config(tmp_path, shared(server, "two", evaluations=12))
    a = subprocess.Popen([sys.executable, "-m", "crowdsteer", "run", str(cfg), "--out",
                          str(tmp_path / "a" / "two")], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, env=environment())
    for _ in range(3000):  # until A has evaluated its first round (the study exists)
        if (tmp_path / "a" / "two" / "evaluations.csv").exists() or a.poll() is not None:
            break
        time.sleep(0.1)
    r = crowdsteer("run", cfg, "--out", tmp_path / "b" / "two", "--resume")
    a_err = a.communicate(timeout=300)[1]
    assert a.returncode == 0, a_err
    assert r.returncode == 0, r.stderr
    done = [t for t in trials(server, "two") if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) >= 13  # the budget, evaluated between the two
    assert sum(bool(t.user_attrs.get("baseline")) for t in done) == 1
    assert not [t for t in trials(server, "two") if t.state == optuna.trial.TrialState.RUNNING]


@pytest.mark.slow
def test_a_server_that_goes_away_is_one_line_and_the_run_resumes(server, tmp_path,
                                                                 sqlite_reference):
    cfg = write_config(tmp_path, shared(server, "away"))
    out = tmp_path / "run"
    killed(cfg, out, "tell")  # part of the run is in the study
    kept = len(trials(server, "away"))
    server.stop()
    try:
        r = crowdsteer("run", cfg, "--out", out, "--resume")
    finally:
        server.start()
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 2 and len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "optimiser.storage" in errors[0] or "storage" in errors[0]
    assert len(trials(server, "away")) == kept  # nothing lost
    r = crowdsteer("run", cfg, "--out", out, "--resume")
    assert r.returncode == 0, r.stderr
    assert table(out) == sqlite_reference
