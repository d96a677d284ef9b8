"""Run folders: one run per folder (a lock), never losing an earlier run, atomic writes.

A run folder is locked while a run uses it: ``run.lock`` holds the PID, host and start
time of its holder, and the holder keeps an exclusive ``flock`` on it. The kernel drops
the ``flock`` when the holder dies, however it dies, so a lock left by a killed run is
stale by construction and the next run takes it over; a live holder makes a second run
stop with one line naming it. ``--force`` moves the run it replaces into ``previous/``
instead of deleting it.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import json
import math
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from crowdsteer.errors import ConfigError

MARKERS = ("summary.json", "result.json", "study.db", "evaluations.csv")
"""Files that say a folder holds a run."""
OUTPUTS = (*MARKERS, "study.db-journal", "study.db-wal", "study.db-shm", "config.yaml",
           "problem.json", "best_mu.npy", "baseline_mu.npy", "best_theta.npy", "target.npy",
           "mu.npy", "pi.npy", "mu.png", "report.html", "finite_n.json", "finite_n.png",
           "run.log", "network.npz", "map.png", "flows.csv")
"""Every file a run or a solve writes into its folder."""
LOCK = "run.lock"
PREVIOUS = "previous"


def check_folder(out: Path) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError("--out", f"{out} exists and is not a folder")
    return out


def prepare(out: Path, force: bool = False, resume: bool = False,
            resumable: bool = True) -> Path:
    """Create ``out``; refuse a folder that holds another run unless ``force`` or ``resume``
    (``resumable``: whether the command has a ``--resume`` to suggest). ``force`` moves the
    run it replaces into ``out/previous/``."""
    out = check_folder(out)
    held = [m for m in MARKERS if (out / m).exists()]
    if held and not (force or resume):
        how = "--resume to continue it or --force" if resumable else "--force"
        raise ConfigError("--out", f"{out} already holds a run ({held[0]}); pass {how} to "
                          f"replace it (it is kept in {out / PREVIOUS}), or choose another folder")
    if force and not resume:
        set_aside(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def set_aside(out: Path) -> list[str]:
    """Move the files of the run in ``out`` into ``out/previous/``; returns the names moved.
    An older ``previous/`` is renamed ``previous.1`` (``previous.2``, ... the first free
    name: a higher number is more recent), so a second ``--force`` after a failed
    replacement keeps the finished run. Renames only: nothing is copied or lost."""
    names = [n for n in OUTPUTS if (out / n).exists()]
    if not names:
        return []
    aside = out / PREVIOUS
    if aside.exists() or aside.is_symlink():
        k = 1
        while (out / f"{PREVIOUS}.{k}").exists() or (out / f"{PREVIOUS}.{k}").is_symlink():
            k += 1
        os.replace(aside, out / f"{PREVIOUS}.{k}")
    aside.mkdir()
    for n in names:
        os.replace(out / n, aside / n)
    return names


def holder() -> dict[str, Any]:
    """Who this process is, as a lock or a study trial records it."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": _start_time(os.getpid()),
            "since": time.strftime("%Y-%m-%d %H:%M:%S %z")}


def alive(who: dict[str, Any]) -> bool | None:
    """Whether the process ``who`` (from :func:`holder`) still runs: ``None`` when it ran on
    another host (unknowable from here)."""
    if who.get("host") != socket.gethostname():
        return None
    pid = who.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    started = who.get("started")
    return started is None or _start_time(pid) == started  # a reused PID is another process


def _start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (Linux), to tell reused PIDs apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


@contextmanager
def locked(out: Path) -> Iterator[Path]:
    """Hold ``out/run.lock`` for the duration: one run per folder.

    Raises
    ------
    ConfigError
        Another live process holds the folder (the message names its PID, host and
        start time).
    """
    path = out / LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            text = os.read(fd, 4096).decode(errors="replace")
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                raise
            raise ConfigError("--out", f"{out} is in use by another run ({_describe(text)}); "
                              "wait for it to finish or stop it, or choose another folder") from None
        try:  # a holder that just finished may have unlinked the file we opened: retry
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(holder()) + "\n").encode())
        yield out
    finally:
        os.unlink(path)  # before the flock is released, so a waiter sees a fresh file
        os.close(fd)


@contextmanager
def claimed(out: Path | None) -> Iterator[Path | None]:
    """Create ``out`` (if missing) and hold its lock for the duration; ``None`` passes
    through. A folder created here and left empty by a refusal is removed again."""
    if out is None:
        yield None
        return
    out = check_folder(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with locked(out):
            yield out
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise


def _describe(text: str) -> str:
    try:
        who = json.loads(text)
        return f"pid {who['pid']} on {who['host']}, since {who['since']}"
    except (ValueError, KeyError, TypeError):
        return "a process that has not yet written its name"


def _clean(x: Any) -> Any:
    """JSON-safe: arrays to lists, non-finite floats to None."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (a crash never leaves half a file)."""
    atomic_write(path, (json.dumps(_clean(data), indent=2) + "\n").encode())


def save_npy(path: Path, arr: np.ndarray) -> None:
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    atomic_write(path, buf.getvalue())


@functools.cache
def _umask() -> int:
    """The process's umask, read once: from ``/proc/self/status`` where there is one, as
    ``os.umask`` can only read it by setting it (a thread creating a file meanwhile would
    get umask 0)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o077)
    os.umask(umask)
    return umask


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (a crash leaves the old file or none), with the
    mode a plain ``open()`` gives (``0o666`` less the umask; ``mkstemp`` makes it ``0o600``,
    unreadable by others), on disk before it replaces the old file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
