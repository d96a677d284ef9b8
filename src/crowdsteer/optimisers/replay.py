"""Sequential search algorithms as Optuna samplers whose state is the study's history.

A search algorithm is written as a plain function ``algorithm(search: Search)`` that calls
``search.evaluate(X)`` whenever it needs J at the rows of ``X`` (points of the unit cube,
``(k, d)``) and gets their values back, as if the objective were a local function. It may
be any deterministic code, including a callback-based optimiser such as SciPy's COBYQA.
:class:`ReplaySampler` runs it as a coroutine (a greenlet) beside the study:

1. the study's finished evaluations are fed to the algorithm in order: an evaluation at
   a point it asked for answers that request; any other (the baseline, a batch's extra
   candidates, a requeued or user-enqueued trial) is only *observed* (``search.X``,
   ``search.y`` hold everything seen, in order);
2. once all points of a request have values, the algorithm resumes until it asks again;
3. an ask returns the first requested point not yet asked; if all are under way (a batch
   wider than the request), the algorithm's ``extra`` hook proposes one more point.

The algorithm's requests are therefore a function of the ordered finished history only:
a resumed run, which rebuilds the coroutine by replaying the study, asks exactly what an
uninterrupted run asks. Sessions are cached per study, so a normal run feeds each
evaluation once (no replay); a cache miss (a new process, a resumed run) replays.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from greenlet import greenlet
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState

from crowdsteer.errors import ConfigError

Array = np.ndarray


class Search:
    """What an algorithm sees: the history so far and a way to ask for more.

    Attributes
    ----------
    d
        Number of parameters.
    X, y
        ``(N, d)`` every finished evaluation seen so far (unit cube) and ``(N,)`` its J, in
        the sign the algorithm minimises.
    x0
        ``(d,)`` the starting point (unit cube).
    width
        ``(d,)`` the box's widths (to convert lengths given in parameter units).
    rng
        Generator seeded by the run's seed only (deterministic replay).
    """

    def __init__(self, d: int, x0: Array, seed: int, width: Array) -> None:
        self.d = d
        self.x0 = x0
        self.width = width
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 20240917]))
        self._X: list[Array] = []
        self._y: list[float] = []
        self.request: Array | None = None  # (k, d), waiting for values
        self._answers: dict[int, float] = {}
        self._parent: Any = None

    @property
    def X(self) -> Array:
        return np.array(self._X).reshape(-1, self.d)

    @property
    def y(self) -> Array:
        return np.array(self._y, dtype=float)

    def evaluate(self, X: Array) -> Array:
        """J at the rows of ``X`` ``(k, d)`` (unit cube): ``(k,)``. Suspends the algorithm
        until the study holds the values."""
        X = np.atleast_2d(np.clip(np.asarray(X, dtype=float), 0.0, 1.0))
        self.request = X
        self._answers = {}
        self._parent.switch()
        out = np.array([self._answers[i] for i in range(len(X))])
        self.request = None
        return out

    def extra(self, pending: Array, rng: np.random.Generator) -> Array | None:  # noqa: ARG002
        """One more point while every requested point is under way (``pending``, ``(P, d)``);
        ``None``: the driver draws one near the request. Must not touch :attr:`rng` (a replay
        does not call it) nor change the algorithm's state: use ``rng``."""
        return None


def _same(a: Array, b: Array) -> bool:
    return bool(np.all(np.abs(a - b) <= 1e-12))


class Session:
    """One run of an algorithm as a greenlet, fed the study's finished evaluations."""

    def __init__(self, algorithm: Callable[[Search], None], search: Search) -> None:
        self.search = search
        self.fed: list[tuple[int, float]] = []  # (trial number, value) consumed, in order
        self.done = False
        self._algorithm = algorithm
        self._g = greenlet(self._run)
        self._resume()  # run to the first request

    def _resume(self) -> None:
        here = greenlet.getcurrent()
        self.search._parent = here
        self._g.parent = here  # where an exception or the algorithm's end returns to
        self._g.switch()

    def _run(self) -> None:
        self._algorithm(self.search)
        self.done = True
        self.search.request = None

    def feed(self, number: int, x: Array, value: float) -> None:
        """One finished evaluation: answer the request it matches, or observe it."""
        s = self.search
        s._X.append(x)
        s._y.append(value)
        self.fed.append((number, value))
        if s.request is None:
            return
        for i, r in enumerate(s.request):
            if i not in s._answers and _same(r, x):
                s._answers[i] = value
                break
        if len(s._answers) == len(s.request):
            self._resume()


_SESSIONS: weakref.WeakKeyDictionary[Any, OrderedDict[Any, Session]] = weakref.WeakKeyDictionary()
_MAX_SESSIONS = 8


class ReplaySampler(optuna.samplers.BaseSampler):
    """An Optuna sampler running ``algorithm`` over the study's finished evaluations.

    Parameters
    ----------
    algorithm
        ``algorithm(search)``; see the module docstring.
    make_search
        ``make_search(d, x0, seed, width) -> Search`` (a subclass may carry ``extra``).
    seed
        The run's seed (not the evaluation index: the algorithm is one deterministic run).
    index_seed
        Seed of this ask (used for the extra points of a batch).
    x0
        Starting point in parameter units, or ``None`` (0 when inside the box, else the
        box's centre).
    key
        What identifies the algorithm's settings (sessions are shared only between equal keys).
    step, scale
        Step of the extra points drawn around the start while nothing has finished yet (the
        first round of a batch): ``step`` in parameter units, else ``scale`` times the
        box's width.
    """

    def __init__(self, algorithm: Callable[[Search], None],
                 make_search: Callable[[int, Array, int, Array], Search], seed: int,
                 index_seed: int, x0: Sequence[float] | None, key: Any,
                 step: float | None = None, scale: float = 0.1) -> None:
        self._step = step
        self._scale = scale
        self._algorithm = algorithm
        self._make_search = make_search
        self._seed = seed
        self._rng = np.random.default_rng(index_seed)
        self._x0 = None if x0 is None else np.asarray(x0, dtype=float)
        self._key = key
        self._fallback = optuna.samplers.RandomSampler(seed=index_seed)

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        """The uniform float parameters of the latest finished trial (the meta-agent asks the
        same ones every time; reading one trial keeps an ask O(1) in the history)."""
        done = _finished(study)
        if not done:
            return {}
        return {k: v for k, v in done[-1].distributions.items()
                if isinstance(v, FloatDistribution) and not v.log and v.step is None}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, name: str,
                           distribution: BaseDistribution) -> Any:
        """Before anything has finished: the start point, or (when another trial is under
        way: a batch's first round) a Gaussian step from it; else random."""
        if isinstance(distribution, FloatDistribution) and not distribution.log \
                and distribution.step is None and not _finished(study):
            lo, hi = distribution.low, distribution.high
            i = _index(name)
            if self._x0 is not None and i is not None and i < len(self._x0):
                x = float(self._x0[i])
            else:
                x = 0.0 if lo <= 0.0 <= hi else 0.5 * (lo + hi)
            busy = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                    if t.number != trial.number]
            if busy:
                step = self._step if self._step is not None else self._scale * (hi - lo)
                x += step * float(self._rng.standard_normal())
            return float(np.clip(x, lo, hi))
        return self._fallback.sample_independent(study, trial, name, distribution)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        names = sorted(search_space, key=lambda k: (_index(k) is None, _index(k) or 0, k))
        lo = np.array([search_space[k].low for k in names])
        hi = np.array([search_space[k].high for k in names])
        width = np.where(hi > lo, hi - lo, 1.0)
        sign = 1.0 if study.direction == optuna.study.StudyDirection.MINIMIZE else -1.0
        history = [(t, sign * float(t.value)) for t in _finished(study)
                   if all(k in t.params for k in names)]
        session = self._session(study, names, lo, hi, history)
        req = session.search.request
        pending = [(np.array([t.params[k] for k in names]) - lo) / width
                   for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                   if t.number != trial.number and all(k in t.params for k in names)]
        x = None
        if req is not None:
            asked = session.search._answers
            for i, r in enumerate(req):
                if i in asked or any(_same(r, p) for p in pending):
                    continue
                x = r
                break
        if x is None:
            P = np.array(pending).reshape(-1, len(names))
            x = session.search.extra(P, self._rng)
            if x is None:
                x = self._near(session.search, req, P)
        w = lo + width * np.clip(x, 0.0, 1.0)
        return {k: float(np.clip(v, search_space[k].low, search_space[k].high))
                for k, v in zip(names, w)}

    def _near(self, search: Search, req: Array | None, pending: Array) -> Array:
        """An extra candidate: a Gaussian step from the request (or the best point), of the
        size of the algorithm's last move."""
        if req is None and not len(search.y):
            return self._rng.random(search.d)
        base = req[0] if req is not None else search.X[int(np.argmin(search.y))]
        if len(search.y):
            best = search.X[int(np.argmin(search.y))]
            scale = max(float(np.max(np.abs(base - best))), 0.01)
        else:
            scale = 0.05
        return np.clip(base + scale * self._rng.standard_normal(len(base)), 0.0, 1.0)

    def _session(self, study: optuna.Study, names: list[str], lo: Array, hi: Array,
                 history: list[tuple[FrozenTrial, float]]) -> Session:
        """The cached session if it has seen a prefix of ``history`` (finished trials and
        their values, minimised), else a replay."""
        x0 = self._start(names, lo, hi)
        # a greenlet runs in the thread that made it: one session per thread
        key = (study._study_id, tuple(names), tuple(lo), tuple(hi), self._seed, self._key,
               tuple(x0), threading.get_ident())
        try:
            per_storage = _SESSIONS.setdefault(study._storage, OrderedDict())
        except TypeError:  # a storage that cannot be weakly referenced: no cache
            per_storage = OrderedDict()
        s = per_storage.get(key)
        numbers = [(t.number, v) for t, v in history[:len(s.fed)]] if s is not None else []
        if s is None or numbers != s.fed:
            s = Session(self._algorithm,
                        self._make_search(len(names), x0, self._seed, hi - lo))
        per_storage[key] = s
        per_storage.move_to_end(key)
        while len(per_storage) > _MAX_SESSIONS:
            per_storage.popitem(last=False)
        width = np.where(hi > lo, hi - lo, 1.0)
        for t, value in history[len(s.fed):]:
            s.feed(t.number, (np.array([t.params[k] for k in names]) - lo) / width, value)
        return s

    def _start(self, names: list[str], lo: Array, hi: Array) -> Array:
        if self._x0 is not None:
            if len(self._x0) != len(names):
                raise ConfigError("optimiser.x0", f"has {len(self._x0)} values; the problem has "
                                  f"{len(names)} parameters")
            if np.any(self._x0 < lo) or np.any(self._x0 > hi):
                raise ConfigError("optimiser.x0", f"must lie in the bounds [{lo.min():g}, "
                                  f"{hi.max():g}]; got {self._x0.tolist()}")
            x = self._x0
        else:
            x = np.where((lo <= 0) & (0 <= hi), 0.0, 0.5 * (lo + hi))
        return (x - lo) / np.where(hi > lo, hi - lo, 1.0)


def _finished(study: optuna.Study) -> list[FrozenTrial]:
    """Trials with a value, in order: what the algorithm learns from."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None]


def _index(name: str) -> int | None:
    head, _, tail = name.rpartition("_")
    return int(tail) if head and tail.isdigit() else None
