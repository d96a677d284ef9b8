"""Where evaluations run: in process (``serial``), local processes (``local``), a Ray
cluster (``ray``).

An executor maps a picklable function over a list of tasks and returns the results
in order. A task that raises, or whose worker dies, is retried once; if it fails
again its exception is returned in place of a result, so the caller records the
failure and nothing already finished is lost. Every task carries its own seed, so
the results do not depend on where or in which order tasks ran.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Annotated, Any, Literal, Protocol

from pydantic import Field, model_validator

from crowdsteer.config_base import Strict


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
    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> list[Any]:
        """``[fn(t) for t in tasks]`` in order; a twice-failed task gives its exception."""
        ...

    def close(self) -> None: ...


def _call(fn: Callable[[Any], Any], task: Any) -> Any:
    try:
        return fn(task)
    except Exception as exc:
        return exc


class Serial:
    """Runs every task in this process, one after another."""

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> list[Any]:
        out = [_call(fn, t) for t in tasks]
        return [_call(fn, t) if isinstance(r, Exception) else r for t, r in zip(tasks, out)]

    def close(self) -> None:
        pass


class Local:
    """A pool of ``workers`` processes started with ``spawn`` (safe once torch is loaded)."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._pool: ProcessPoolExecutor | None = None

    def _get(self) -> ProcessPoolExecutor:
        if self._pool is None:
            ctx = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx)
        return self._pool

    def _round(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> list[Any]:
        futures = [self._get().submit(_call, fn, t) for t in tasks]
        out: list[Any] = []
        broken = False
        for f in futures:
            try:
                out.append(f.result())
            except BrokenProcessPool as exc:  # a worker died (killed, segfault, out of memory)
                broken = True
                out.append(RuntimeError(f"worker died: {exc}"))
        if broken:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        return out

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> list[Any]:
        out = self._round(fn, tasks)
        again = [i for i, r in enumerate(out) if isinstance(r, Exception)]
        if again:
            for i, r in zip(again, self._round(fn, [tasks[i] for i in again])):
                out[i] = r
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


class Ray:
    """Tasks as Ray remote functions; ``address`` names the cluster (``auto``: the one this
    machine belongs to); none starts a local Ray instance."""

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            from crowdsteer.errors import ConfigError

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

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> list[Any]:
        refs = [self._remote.remote(fn, t) for t in tasks]
        out: list[Any] = []
        for t, ref in zip(tasks, refs):
            try:
                r = self.ray.get(ref)
            except Exception as exc:  # the worker died twice (max_retries=1)
                r = RuntimeError(f"worker died: {exc}")
            out.append(r)
        again = [i for i, r in enumerate(out) if isinstance(r, Exception)]
        for i in again:
            try:
                out[i] = self.ray.get(self._remote.remote(fn, tasks[i]))
            except Exception as exc:
                out[i] = RuntimeError(f"worker died: {exc}")
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
