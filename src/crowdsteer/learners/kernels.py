"""Compiled kernels for the ``newton`` method's conjugate gradients on games whose
transition is a :class:`~crowdsteer.games.base.SparseMoves` (the crowd games'
``NoisyMoves`` among them, with a kernel of their own).

A conjugate-gradient iteration of :mod:`crowdsteer.learners.newton` is one tangent pass,
one adjoint pass and a handful of vector updates over ``(T, A, S)`` arrays. In NumPy
each of these is a separate sweep through memory (about 20 sweeps of 4 MB at 100x100,
T = 10); the kernels here do the same arithmetic in three fused sweeps, compiled by
Numba (``cache=True``: compiled once per installation, in the package's
``__pycache__``). The caller (:meth:`crowdsteer.learners.newton._Problem._fused_cg`)
passes the policy, the metric and the work vectors in single precision, which halves
the memory traffic; the residual and every sum stay in double. ``benchmarks/kernels.py``
measures both paths side by side (BENCHMARKS.md: 3.7x per CG iteration at 100x100, T = 10).

The NumPy path stays, and is tested against these kernels
(``tests/test_kernels.py``): it is used when Numba is missing, for any other
transition, below an exploitability of ``newton.SINGLE_ABOVE``, and when the
environment sets ``CROWDSTEER_KERNELS=numpy``.
"""

from __future__ import annotations

import os

import numpy as np

Array = np.ndarray

try:  # pragma: no cover - exercised by whichever path the environment has
    from numba import njit
except ImportError:  # pragma: no cover
    njit = None


def enabled() -> bool:
    """Whether the compiled kernels are used (Numba present, not switched off)."""
    return njit is not None and os.environ.get("CROWDSTEER_KERNELS", "numba") != "numpy"


def applies(transition: object) -> bool:
    """Whether the kernels can stand in for the passes of ``transition``: a
    :class:`~crowdsteer.games.base.SparseMoves` (``NoisyMoves`` included)."""
    return enabled() and hasattr(transition, "next_state") and hasattr(transition, "prob")


def _mass_row(da, sa, beta, pa, prev, bt, first, ma):  # pragma: no cover - compiled
    # one action's row of the tangent: d <- s_new + beta d (the conjugate-gradient
    # direction), then the mass it moves, m = d * beta_t + pi * dbeta_t
    for s in range(da.shape[0]):
        da[s] = sa[s] + beta * da[s]
        ma[s] = da[s] * bt[s] if first else pa[s] * prev[s] + da[s] * bt[s]


def _matvec_row(oa, keep, add, pa, fa, va, bt, after):  # pragma: no cover - compiled
    # one action's row of the adjoint: the action values are q = keep * oa + add (oa holds
    # the gathered values on entry) and oa holds b * q + fisher * v on exit; accumulates
    # pi * q into the values before the step and returns this row's share of v . out
    acc = 0.0
    for s in range(oa.shape[0]):
        q = keep * oa[s] + add[s]
        after[s] += pa[s] * q
        o = q * bt[s] + fa[s] * va[s]
        oa[s] = o
        acc += o * va[s]
    return acc


def _tangent(pi, before, d, s_new, beta, targets, noise, out):  # pragma: no cover
    # dmu = tangent of the updated direction d, NoisyMoves: 1 - p of a move's mass to its
    # target, p / A of the state's to every target
    T, A, S = pi.shape
    keep = 1.0 - noise
    share = noise / A
    m = np.empty((A, S))
    tot = np.empty(S)
    for t in range(T):
        cur = out[t]
        cur[:] = 0.0
        tot[:] = 0.0
        for a in range(A):
            _mass_row(d[t, a], s_new[t, a], beta, pi[t, a], out[t - 1], before[t], t == 0,
                      m[a])
            for s in range(S):
                tot[s] += m[a, s]
        for s in range(S):
            tot[s] *= share
        for a in range(A):
            ta = targets[a]
            ma = m[a]
            for s in range(S):
                cur[ta[s]] += keep * ma[s] + tot[s]


def _tangent_sparse(pi, before, d, s_new, beta, nxt, prob, out):  # pragma: no cover
    # as _tangent, for a kernel with K successors per (a, s): nxt, prob (A, S, K)
    T, A, S = pi.shape
    K = nxt.shape[2]
    m = np.empty(S)
    for t in range(T):
        cur = out[t]
        cur[:] = 0.0
        for a in range(A):
            _mass_row(d[t, a], s_new[t, a], beta, pi[t, a], out[t - 1], before[t], t == 0,
                      m)
            for s in range(S):
                for k in range(K):
                    cur[nxt[a, s, k]] += prob[a, s, k] * m[s]


def _adjoint(pi, w, scale, targets, noise, b, fisher, v, out):  # pragma: no cover
    # out = b * (action values of pi for the landing reward scale * w) + fisher * v,
    # NoisyMoves; returns v . out
    T, A, S = pi.shape
    keep = 1.0 - noise
    share = noise / A
    after = np.zeros(S)
    u = np.empty(S)
    tot = np.empty(S)
    acc = 0.0
    for t in range(T - 1, -1, -1):
        for s in range(S):
            u[s] = scale[t, s] * w[t, s] + after[s]
        tot[:] = 0.0
        for a in range(A):
            ta = targets[a]
            oa = out[t, a]
            for s in range(S):
                q = u[ta[s]]
                oa[s] = q
                tot[s] += q
        for s in range(S):
            tot[s] *= share
        after[:] = 0.0
        for a in range(A):
            acc += _matvec_row(out[t, a], keep, tot, pi[t, a], fisher[t, a], v[t, a], b[t],
                               after)
    return acc


def _adjoint_sparse(pi, w, scale, nxt, prob, b, fisher, v, out):  # pragma: no cover
    # as _adjoint, for a kernel with K successors per (a, s)
    T, A, S = pi.shape
    K = nxt.shape[2]
    after = np.zeros(S)
    u = np.empty(S)
    none = np.zeros(S)
    acc = 0.0
    for t in range(T - 1, -1, -1):
        for s in range(S):
            u[s] = scale[t, s] * w[t, s] + after[s]
        after[:] = 0.0
        for a in range(A):
            oa = out[t, a]
            for s in range(S):
                q = 0.0
                for k in range(K):
                    q += prob[a, s, k] * u[nxt[a, s, k]]
                oa[s] = q
            acc += _matvec_row(oa, 1.0, none, pi[t, a], fisher[t, a], v[t, a], b[t], after)
    return acc


def _update(z, r, d, Ad, step, inv, inv_total, s_out):  # pragma: no cover - compiled
    T, A, S = z.shape
    rs = 0.0
    c = np.empty(S)
    for t in range(T):
        c[:] = 0.0
        for a in range(A):
            za, ra, da, Aa, ia = z[t, a], r[t, a], d[t, a], Ad[t, a], inv[t, a]
            for s in range(S):
                za[s] += step * da[s]
                rr = ra[s] - step * Aa[s]
                ra[s] = rr
                c[s] += ia[s] * rr
        it = inv_total[t]
        for s in range(S):
            c[s] /= it[s]
        for a in range(A):
            ra, ia, sa = r[t, a], inv[t, a], s_out[t, a]
            for s in range(S):
                sv = ia[s] * (ra[s] - c[s])
                sa[s] = sv
                rs += ra[s] * sv
    return rs


if njit is not None:
    _mass_row = njit(cache=True, nogil=True, fastmath=True)(_mass_row)
    _matvec_row = njit(cache=True, nogil=True, fastmath=True)(_matvec_row)
    _tangent = njit(cache=True, nogil=True, fastmath=True)(_tangent)
    _adjoint = njit(cache=True, nogil=True, fastmath=True)(_adjoint)
    _update = njit(cache=True, nogil=True, fastmath=True)(_update)
    _tangent_sparse = njit(cache=True, nogil=True, fastmath=True)(_tangent_sparse)
    _adjoint_sparse = njit(cache=True, nogil=True, fastmath=True)(_adjoint_sparse)


class FusedCG:
    """The fused pieces of one conjugate-gradient solve on a ``SparseMoves`` game (with
    the ``NoisyMoves`` structure used when present: one shared noise term per state)."""

    def __init__(self, transition: object) -> None:
        self.noisy = hasattr(transition, "_targets_as") and hasattr(transition, "noise")
        if self.noisy:
            self.targets = np.ascontiguousarray(transition._targets_as, dtype=np.int64)
            self.noise = float(transition.noise)
        else:
            self.nxt = np.ascontiguousarray(np.swapaxes(transition.next_state, 0, 1),
                                            dtype=np.int64)  # (A, S, K)
            self.prob = np.ascontiguousarray(np.swapaxes(transition.prob, 0, 1), dtype=float)

    def tangent(self, pi: Array, before: Array, d: Array, s_new: Array, beta: float,
                out: Array) -> Array:
        """``d <- s_new + beta d`` in place, then ``dmu`` ``(T, S)`` of
        :meth:`Passes.tangent` in the direction ``d``, written into ``out``."""
        if self.noisy:
            _tangent(pi, before, d, s_new, beta, self.targets, self.noise, out)
        else:
            _tangent_sparse(pi, before, d, s_new, beta, self.nxt, self.prob, out)
        return out

    def matvec_tail(self, pi: Array, w: Array, scale: Array, b: Array, fisher: Array,
                    v: Array, out: Array) -> float:
        """``out = b * adjoint(pi, scale * w) + fisher * v``; returns ``v . out``."""
        if self.noisy:
            return float(_adjoint(pi, w, scale, self.targets, self.noise, b, fisher, v, out))
        return float(_adjoint_sparse(pi, w, scale, self.nxt, self.prob, b, fisher, v, out))

    @staticmethod
    def update(z: Array, r: Array, d: Array, Ad: Array, step: float, inv: Array,
               inv_total: Array, s_out: Array) -> float:
        """``z += step d``, ``r -= step Ad``, ``s_out`` = preconditioned ``r``; returns
        ``r . s_out``."""
        return float(_update(z, r, d, Ad, step, inv, inv_total, s_out))
