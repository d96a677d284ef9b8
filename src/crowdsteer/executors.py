"""Where evaluations run: in process (``serial``), local processes, a Ray cluster.

An executor maps a picklable function over a list of tasks and returns the results
in order; a task that raises comes back as the exception (never lost, never fatal).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol


class Executor(Protocol):
    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> list[Any]:
        """``[fn(t) for t in tasks]``, in order; an exception is returned in place of a result."""
        ...

    def close(self) -> None: ...


class Serial:
    """Runs every task in this process, one after another."""

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> list[Any]:
        out: list[Any] = []
        for t in tasks:
            try:
                out.append(fn(t))
            except Exception as exc:  # recorded in the study as a failed evaluation
                out.append(exc)
        return out

    def close(self) -> None:
        pass


def make_executor(name: str = "serial", **kwargs: Any) -> Executor:
    if name == "serial":
        return Serial()
    from crowdsteer.errors import ConfigError

    raise ConfigError("executor.name", f"unknown executor {name!r}; allowed: serial")
