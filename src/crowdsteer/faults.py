"""Fault injection for the crash tests: SIGKILL this process at a named point.

``CROWDSTEER_TEST_KILL_AT=<point>[:<count>]`` kills the process (``SIGKILL``, no clean-up,
as the kernel's OOM killer or a power cut would) the ``count``-th time (default: the first)
it reaches ``point``. The points, in the order a run meets them:

``storage``
    the run folder's ``study.db`` exists (schema made) but holds no study yet;
``study``
    the study exists but holds no trial yet;
``param``
    a trial's parameters are being written: the ``count``-th single-parameter write of
    this process has just been committed (Optuna writes them one by one);
``evaluate``
    every candidate of a round is stored and its evaluation is about to start;
``started``
    a ``local`` worker has started a task (its process is busy with it);
``tell``
    a candidate's evaluation finished and is about to be recorded;
``finish``
    every evaluation is recorded; the final re-solves are done, nothing written yet;
``report``
    ``result.json`` is written, ``report.html`` is not.

Unset (the normal case), :func:`point` costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from typing import Any

VARIABLE = "CROWDSTEER_TEST_KILL_AT"
_seen: dict[str, int] = {}


def _target() -> tuple[str, int] | None:
    spec = os.environ.get(VARIABLE)
    if not spec:
        return None
    name, _, count = spec.partition(":")
    return name, int(count or 1)


def point(name: str) -> None:
    """Kill this process if ``CROWDSTEER_TEST_KILL_AT`` names this point and count."""
    target = _target()
    if target is None or target[0] != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] == target[1]:
        os.kill(os.getpid(), signal.SIGKILL)


def instrument(storage: Any) -> Any:
    """Count the single-parameter writes of an Optuna storage as the point ``param``."""
    target = _target()
    if target is None or target[0] != "param":
        return storage
    # Optuna's cached storage front calls the RDB storage's private _set_trial_param
    name = "_set_trial_param" if hasattr(storage, "_set_trial_param") else "set_trial_param"
    write = getattr(storage, name)

    def counted(*args: Any, **kwargs: Any) -> None:
        write(*args, **kwargs)
        point("param")

    setattr(storage, name, counted)
    return storage
