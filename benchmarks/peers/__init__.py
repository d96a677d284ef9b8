"""Peer benchmarks: OpenSpiel's and MFGLib's fictitious play against crowdsteer's exact
solver, on the peers' own crowd games rebuilt in crowdsteer, measured in one run.

``benchmarks/run.py --only peers`` runs it (see :mod:`peers.suite`); the peers are
optional dependencies: ``benchmarks/peers/requirements.txt``.
"""

from peers.suite import run_suite

__all__ = ["run_suite"]
