"""Where evaluations run: in process (``serial``), local processes (``local``), a Ray
cluster (``ray``).

An executor maps a picklable function over a list of tasks and returns the results
in order. A task that raises, or whose worker dies, is retried once; if it fails
again its exception is returned in place of a result, so the caller records the
failure and nothing already finished is lost. Every task carries its own seed, so
the results do not depend on where or in which order tasks ran.

With a ``timeout`` (seconds per task) a task that runs longer is stopped and a
:class:`TaskTimeout` ("timed out after N s") is returned in its place, without a retry:
``local`` kills the worker running it and starts a fresh one, ``ray`` cancels the task,
and ``serial`` runs each task in one child process it can kill (so the function and its
task must then be picklable, as for ``local``).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait as wait_for
from typing import Annotated, Any, Literal, Protocol

from pydantic import Field, model_validator

from crowdsteer import faults
from crowdsteer.config_base import Strict
from crowdsteer.errors import ConfigError


class ExecutorConfig(Strict):
    """The ``executor`` section (or ``--executor NAME``)."""

    name: Literal["serial", "local", "ray"] = "serial"
    """``serial``: in this process; ``local``: a pool of processes; ``ray``: a Ray cluster."""
    workers: Annotated[int, Field(gt=0)] | None = None
    """Processes (``local``; default: the number of cores) or CPUs to ask Ray for."""
    address: str | None = None
    """Ray: ``auto`` or ``ray://host:10001``; none starts Ray on this machine."""

    @model_validator(mode="after")
    def _address_is_for_ray(self) -> "ExecutorConfig":
        if self.address is not None and self.name != "ray":
            raise ValueError(f"address: only the ray executor connects to a cluster, not "
                             f"{self.name}; set name: ray or drop the address")
        return self


class Executor(Protocol):
    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any],
            timeout: float | None = None) -> list[Any]:
        """``[fn(t) for t in tasks]`` in order; a twice-failed task gives its exception, a
        task running past ``timeout`` seconds a :class:`TaskTimeout`."""
        ...

    def close(self) -> None: ...


class TaskTimeout(TimeoutError):
    """A task ran past its timeout and was stopped."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"timed out after {seconds:g} s")


def _call(fn: Callable[[Any], Any], task: Any) -> Any:
    try:
        return fn(task)
    except Exception as exc:
        return exc


def _retry(result: Any, tries: int) -> bool:
    """A failure is retried once; a timeout is not (it would double the wait)."""
    return isinstance(result, Exception) and not isinstance(result, TaskTimeout) and tries == 0


def needs_pickle(executor: Any, timeout: float | None) -> bool:
    """Whether ``executor`` sends functions to other processes by reference (``pickle``)."""
    return isinstance(executor, Local) or (isinstance(executor, Serial) and timeout is not None)


def check_picklable(fn: Any, name: str, executor: Any, timeout: float | None) -> None:
    """Refuse, before anything runs, a function the executor cannot send to its workers."""
    if not needs_pickle(executor, timeout):
        return
    try:
        pickle.dumps(fn)
    except Exception as exc:  # pickle raises PicklingError, AttributeError, TypeError
        why = "for the local executor" if isinstance(executor, Local) else "with a timeout"
        raise ConfigError(name, f"{name} must be picklable {why}: define it at module level "
                          f"({type(exc).__name__}: {exc})") from None


class Serial:
    """Runs every task in this process, one after another (in one child process when a
    ``timeout`` is given, so that a task past it can be stopped)."""

    def __init__(self) -> None:
        self._child: Local | None = None

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any],
            timeout: float | None = None) -> list[Any]:
        if timeout is not None:
            self._child = self._child or Local(1)
            return self._child.map(fn, tasks, timeout)
        out = [_call(fn, t) for t in tasks]
        return [_call(fn, t) if _retry(r, 0) else r for t, r in zip(tasks, out)]

    def close(self) -> None:
        if self._child is not None:
            self._child.close()
            self._child = None


PR_SET_PDEATHSIG = 1


def _follow_parent(parent: int, pdeathsig: bool) -> None:
    """Make this worker exit when its parent dies, however the parent dies.

    Linux: the kernel sends ``SIGKILL`` when the parent goes (``PR_SET_PDEATHSIG``; only
    when the parent started us from its main thread, since the signal follows the thread).
    Everywhere: a daemon thread polls the parent's PID twice a second.
    """
    if pdeathsig:
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before we got here
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


STARTED = "crowdsteer-task-started"


def _work(conn: Any, parent: int, pdeathsig: bool) -> None:
    """A worker: run ``(fn, task)`` messages until ``None`` or the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _follow_parent(parent, pdeathsig)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        conn.send(STARTED)  # the task's clock starts now, not while the worker was starting
        result = _call(*msg)
        try:
            conn.send(result)
        except Exception as exc:  # the result (or the exception) does not pickle
            conn.send(RuntimeError(f"the task's result could not be sent back "
                                   f"({type(exc).__name__}: {exc})"))


class _Worker:
    """One spawned process and its pipe; runs one task at a time."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        main = threading.current_thread() is threading.main_thread()
        self.proc = ctx.Process(target=_work, args=(child, os.getpid(), main), daemon=True,
                                name="crowdsteer-worker")
        self.proc.start()
        child.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join(5)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(5)
        if self.proc.is_alive():
            self.kill()
        self.conn.close()


class Local:
    """A pool of ``workers`` processes started with ``spawn`` (safe once torch is loaded).

    Each worker runs one task at a time, so the pool knows which task each runs: a task
    past its timeout is stopped by killing its worker, and a worker that dies (killed,
    segfault, out of memory) costs only its own task; a fresh worker replaces it. The
    workers exit when this process dies (see :func:`_follow_parent`).
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._idle: list[_Worker] = []

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any],
            timeout: float | None = None) -> list[Any]:
        out: list[Any] = [None] * len(tasks)
        tries = [0] * len(tasks)
        queue = deque(range(len(tasks)))
        busy: dict[_Worker, tuple[int, float]] = {}
        try:
            while queue or busy:
                while queue and len(busy) < self.workers:
                    i = queue.popleft()
                    worker = self._idle.pop() if self._idle else _Worker()
                    try:
                        worker.conn.send((fn, tasks[i]))
                    except Exception as exc:  # fn or the task does not pickle
                        self._idle.append(worker)
                        out[i] = exc
                        continue
                    busy[worker] = (i, math.inf)  # the clock starts when the task does
                if not busy:
                    continue
                left = None if timeout is None else max(
                    0.0, min(t0 for _, t0 in busy.values()) + timeout - time.monotonic())
                ready = wait_for([w.conn for w in busy], None if left == math.inf else left)
                for worker in list(busy):
                    i, t0 = busy[worker]
                    if worker.conn in ready:
                        try:
                            result = worker.conn.recv()
                        except (EOFError, OSError):
                            worker.kill()
                            result = RuntimeError(f"worker died (exit code {worker.proc.exitcode})")
                        else:
                            if isinstance(result, str) and result == STARTED:
                                busy[worker] = (i, time.monotonic())
                                faults.point("started")
                                continue
                            self._idle.append(worker)
                        del busy[worker]
                    elif timeout is not None and time.monotonic() - t0 >= timeout:
                        del busy[worker]
                        worker.kill()
                        result = TaskTimeout(timeout)
                    else:
                        continue
                    if _retry(result, tries[i]):
                        tries[i] += 1
                        queue.append(i)
                    else:
                        out[i] = result
        except BaseException:
            for worker in busy:
                worker.kill()
            raise
        return out

    def close(self) -> None:
        for worker in self._idle:
            worker.stop()
        self._idle = []


class Ray:
    """Tasks as Ray remote functions; ``address`` names the cluster (``auto``: the one this
    machine belongs to); none starts a local Ray instance."""

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("executor.name", "ray is not installed; install the extra: "
                              "pip install 'crowdsteer[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address:
                kwargs["address"] = address
            elif workers:
                kwargs["num_cpus"] = workers
            ray.init(**kwargs)
        self._remote = ray.remote(max_retries=1, retry_exceptions=False)(_call)

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any],
            timeout: float | None = None) -> list[Any]:
        """With a ``timeout``, at most as many tasks as the cluster has CPUs are in flight,
        so a task's clock starts about when it starts running."""
        ray = self.ray
        out: list[Any] = [None] * len(tasks)
        tries = [0] * len(tasks)
        queue = deque(range(len(tasks)))
        width = len(tasks) if timeout is None else max(
            1, int(ray.cluster_resources().get("CPU", 1)))
        flying: dict[Any, tuple[int, float]] = {}
        while queue or flying:
            while queue and len(flying) < width:
                i = queue.popleft()
                flying[self._remote.remote(fn, tasks[i])] = (i, time.monotonic())
            left = None if timeout is None else max(
                0.0, min(t0 for _, t0 in flying.values()) + timeout - time.monotonic())
            ready, _ = ray.wait(list(flying), num_returns=1, timeout=left)
            for ref in list(flying):
                i, t0 = flying[ref]
                if ref in ready:
                    try:
                        result = ray.get(ref)
                    except Exception as exc:  # the worker died twice (max_retries=1)
                        result = RuntimeError(f"worker died: {exc}")
                elif timeout is not None and time.monotonic() - t0 >= timeout:
                    ray.cancel(ref, force=True)
                    result = TaskTimeout(timeout)
                else:
                    continue
                del flying[ref]
                if _retry(result, tries[i]):
                    tries[i] += 1
                    queue.append(i)
                else:
                    out[i] = result
        return out

    def close(self) -> None:
        pass  # the cluster outlives the run; ray.shutdown() is the caller's choice


def make_executor(cfg: ExecutorConfig | None = None) -> Executor:
    cfg = cfg or ExecutorConfig()
    if cfg.name == "local":
        return Local(cfg.workers)
    if cfg.name == "ray":
        return Ray(cfg.address, cfg.workers)
    return Serial()
