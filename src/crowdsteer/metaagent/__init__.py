"""The meta-agent: the inner-outer loop.

For a candidate ``w`` the agents learn in the game modified by ``Theta(.; w)`` until
they reach equilibrium (inner loop, a registered learner); the meta-agent sees only
the outcome ``J(w, pi)`` and picks the next ``w`` with an optimiser (outer loop, an
Optuna study). In steps:

1. evaluate ``w = 0`` (the agents left alone) as the baseline;
2. ask the optimiser for ``q`` candidates; for each, solve the modified game
   ``repeats`` times (seeds shared by every candidate: common random numbers) and
   average J;
3. tell the study; the study (SQLite by default) commits every finished evaluation,
   which is what makes ``resume`` and crash safety work;
4. at the end, re-solve at the baseline and the best ``w`` (deterministic for a seed)
   and save distributions, modifier and a report.

One concern per module:

* :mod:`~crowdsteer.metaagent.evaluation`: one evaluation of ``w`` (:class:`Outcome`);
* :mod:`~crowdsteer.metaagent.study`: the Optuna study and ``evaluations.csv``;
* :mod:`~crowdsteer.metaagent.loop`: the ask/evaluate/tell outer loop;
* :mod:`~crowdsteer.metaagent.results`: the final re-solves, ``result.json``;
* :mod:`~crowdsteer.metaagent.runner`: :func:`run`, the meta-agent on a config;
* :mod:`~crowdsteer.metaagent.byo`: :func:`optimise`, around your own inner loop.
"""

from crowdsteer.metaagent.byo import optimise
from crowdsteer.metaagent.evaluation import Outcome, Setup, evaluate_once, setup
from crowdsteer.metaagent.results import RunResult
from crowdsteer.metaagent.runner import run

__all__ = ["Outcome", "RunResult", "Setup", "evaluate_once", "optimise", "run", "setup"]
