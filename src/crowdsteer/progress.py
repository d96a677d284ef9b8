"""Progress as plain lines, for output that is not a terminal (a pipe, a file, ``nohup``).

A rich progress bar redraws one line of a terminal; written to a file it is either nothing
or thousands of lines. :class:`Lines` prints one line at a time instead, at most every
``every`` steps *and* ``seconds`` seconds (whichever comes later), with the best value so
far, the time spent and an estimate of the time left:

* for a run of ``total`` evaluations, from the mean time per evaluation of this session;
* for an equilibrium solve (no known number of iterations), by extrapolating the decay of
  the stopping measure (exploitability, change) to the ``target`` tolerance on a log scale.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


def duration(seconds: float) -> str:
    """``seconds`` as ``42 s``, ``3 min 05 s`` or ``2 h 04 min``."""
    if not math.isfinite(seconds):
        return "?"
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def number(x: float | None) -> str:
    """A value for people: 6 significant digits; below 1e-100 in magnitude, ``0`` with
    the exponent said plainly (``-1.66596e-260`` is zero to any J that matters)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x != 0 and abs(x) < 1e-100:
        return f"{x:.3g} (zero to machine precision)"
    return f"{x:.6g}"


def plural(n: int, word: str) -> str:
    """``1 iteration``, ``2 iterations``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class Lines:
    """Print progress lines: ``emit(line)`` at most every ``every`` steps and ``seconds``.

    Call it as ``lines(done, value)`` after each step. With ``total`` the time left is
    extrapolated from the mean time per step of this session; with ``target`` (and no
    ``total``) from the decay of ``value`` towards ``target`` on a log scale.
    """

    def __init__(self, label: str, emit: Callable[[str], None], total: int | None = None,
                 every: int = 5, seconds: float = 10.0, metric: str = "best J",
                 target: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label, self.emit, self.total = label, emit, total
        self.every, self.seconds, self.metric, self.target = every, seconds, metric, target
        self.clock = clock
        self.start = clock()
        self.first: tuple[int, float, float | None] | None = None  # (done, time, value)
        self.last_done: int | None = None
        self.last_time = self.start

    def __call__(self, done: int, value: float | None) -> None:
        now = self.clock()
        if self.first is None:
            self.first = (done, now, value)
            self.last_done = done
            return
        finished = self.total is not None and done >= self.total
        if not finished and (done - (self.last_done or 0) < self.every
                             or now - self.last_time < self.seconds):
            return
        self.last_done, self.last_time = done, now
        self.emit(self.line(done, value, now))

    def line(self, done: int, value: float | None, now: float) -> str:
        of = f"/{self.total}" if self.total is not None else ""
        text = (f"{self.label}: {done}{of}, {self.metric} {number(value)}, "
                f"{duration(now - self.start)} elapsed")
        left = self.left(done, value, now)
        if left is not None:
            text += f", about {duration(left)} left"
        return text

    def left(self, done: int, value: float | None, now: float) -> float | None:
        """Seconds left, or ``None`` when there is no estimate yet."""
        assert self.first is not None
        done0, t0, v0 = self.first
        if done <= done0 or now <= t0:
            return None
        if self.total is not None:
            return (now - t0) / (done - done0) * max(self.total - done, 0)
        if self.target is None or value is None or v0 is None:
            return None
        if value <= self.target:
            return 0.0
        if not (value > 0 and v0 > value):
            return None  # not decaying (yet): no honest estimate
        rate = (math.log(v0) - math.log(value)) / (now - t0)  # decades per second, in e
        return (math.log(value) - math.log(self.target)) / rate
