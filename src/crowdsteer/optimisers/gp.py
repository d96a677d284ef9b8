"""A small Gaussian-process regressor for the trust-region search (NumPy/SciPy only).

The model is the usual one of Bayesian optimisation:

.. math::

    y = f(x) + \\varepsilon, \\quad f \\sim \\mathcal{GP}(0, k), \\quad
    \\varepsilon \\sim \\mathcal{N}(0, \\sigma_n^2),

    k(x, x') = \\sigma_f^2 \\left(1 + \\sqrt5 r + \\tfrac53 r^2\\right) e^{-\\sqrt5 r}, \\quad
    r^2 = \\sum_i (x_i - x'_i)^2 / \\ell_i^2

(Matern 5/2 with one length scale per input, automatic relevance determination), fitted to
standardised ``y`` by maximising the marginal likelihood times a prior on the
hyperparameters (MAP). The length-scale prior is the dimension-scaled log-normal of
Hvarfner, Hellsten and Nardi (ICML 2024, "Vanilla Bayesian optimization performs great in
high dimensions"): ``log l ~ N(sqrt(2) + log(d) / 2, 3)`` for inputs in the unit cube, which
keeps the model from explaining a handful of points in 15 dimensions with wiggles.

Inputs are points of the unit cube ``[0, 1]^d``; the caller maps its box onto it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_factor, cho_solve, solve_triangular
from scipy.optimize import minimize

Array = np.ndarray

SQRT5 = np.sqrt(5.0)
NOISE_MIN = 1e-6
"""Smallest noise variance (of standardised y): jitter that keeps the Cholesky factor sane."""


def _matern(r: Array) -> Array:
    return (1.0 + SQRT5 * r + 5.0 / 3.0 * r**2) * np.exp(-SQRT5 * r)


@dataclass(frozen=True)
class Hyper:
    """GP hyperparameters.

    Attributes
    ----------
    lengthscales
        ``(d,)`` length scales ``l_i`` in unit-cube coordinates.
    signal
        ``sigma_f^2``, variance of ``f`` (standardised units).
    noise
        ``sigma_n^2``, observation noise variance (standardised units).
    """

    lengthscales: Array
    signal: float
    noise: float

    @staticmethod
    def unpack(theta: Array) -> Hyper:
        """From ``theta`` = (log length scales, log signal variance, log noise variance)."""
        return Hyper(np.exp(theta[:-2]), float(np.exp(theta[-2])), float(np.exp(theta[-1])))


def prior_mean_log_lengthscale(d: int) -> float:
    """Mean of the log-normal length-scale prior for ``d`` inputs (Hvarfner et al., 2024)."""
    return float(np.sqrt(2.0) + 0.5 * np.log(d))


LOG_L_SD = np.sqrt(3.0)
LOG_SIGNAL_SD = 1.0
LOG_NOISE_MEAN, LOG_NOISE_SD = np.log(1e-3), 2.0


def neg_log_posterior(theta: Array, D: Array, y: Array) -> tuple[float, Array]:
    """Negative log marginal likelihood plus negative log prior, and its gradient.

    Parameters
    ----------
    theta
        ``(d + 2,)``: log length scales, log signal variance, log noise variance.
    D
        ``(d, N, N)`` squared differences ``(x_i - x'_i)^2`` per input.
    y
        ``(N,)`` standardised observations.
    """
    d, N = D.shape[0], D.shape[1]
    h = Hyper.unpack(theta)
    inv_l2 = 1.0 / h.lengthscales**2
    S = np.einsum("i,ijk->jk", inv_l2, D)  # scaled squared distances
    r = np.sqrt(np.maximum(S, 0.0))
    e = np.exp(-SQRT5 * r)
    Kf = h.signal * (1.0 + SQRT5 * r + 5.0 / 3.0 * S) * e
    K = Kf + (h.noise + NOISE_MIN) * np.eye(N)
    try:
        c = cho_factor(K, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        return 1e10, np.zeros_like(theta)
    alpha = cho_solve(c, y, check_finite=False)
    logdet = 2.0 * np.sum(np.log(np.diag(c[0])))
    nll = 0.5 * y @ alpha + 0.5 * logdet + 0.5 * N * np.log(2 * np.pi)
    # d nll / d theta_j = -1/2 tr((alpha alpha' - K^-1) dK/dtheta_j)
    W = np.outer(alpha, alpha) - cho_solve(c, np.eye(N), check_finite=False)
    # dk/dlog l_i = sigma_f^2 (5/3)(1 + sqrt5 r) e^{-sqrt5 r} (x_i - x'_i)^2 / l_i^2
    G = h.signal * 5.0 / 3.0 * (1.0 + SQRT5 * r) * e
    g_nll = np.concatenate([-0.5 * inv_l2 * np.einsum("jk,ijk->i", W * G, D),
                            [-0.5 * np.sum(W * Kf), -0.5 * np.trace(W) * h.noise]])
    mean = np.concatenate([np.full(d, prior_mean_log_lengthscale(d)), [0.0, LOG_NOISE_MEAN]])
    sd = np.concatenate([np.full(d, LOG_L_SD), [LOG_SIGNAL_SD, LOG_NOISE_SD]])
    z = (theta - mean) / sd
    return float(nll + 0.5 * z @ z), g_nll + z / sd


def fit_hyper(X: Array, y: Array, maxiter: int = 60) -> Hyper:
    """MAP hyperparameters for ``(X, y)``; a pure function of its inputs.

    Parameters
    ----------
    X
        ``(N, d)`` points of the unit cube.
    y
        ``(N,)`` observations (standardised here).
    """
    N, d = X.shape
    ys = standardise(y)[0]
    D = (X[:, None, :] - X[None, :, :]).transpose(2, 0, 1) ** 2
    theta0 = np.concatenate([np.full(d, prior_mean_log_lengthscale(d) - 1.0), [0.0, np.log(1e-3)]])
    lo = np.concatenate([np.full(d, np.log(1e-2)), [np.log(1e-2), np.log(NOISE_MIN)]])
    hi = np.concatenate([np.full(d, np.log(1e3)), [np.log(1e2), 0.0]])
    res = minimize(neg_log_posterior, theta0, args=(D, ys), jac=True, method="L-BFGS-B",
                   bounds=list(zip(lo, hi)), options={"maxiter": maxiter})
    return Hyper.unpack(np.clip(res.x, lo, hi))


def standardise(y: Array) -> tuple[Array, float, float]:
    m = float(np.mean(y))
    s = float(np.std(y))
    s = s if s > 1e-12 else 1.0
    return (y - m) / s, m, s


@dataclass(frozen=True)
class GP:
    """A GP conditioned on ``(X, y)`` with fixed hyperparameters.

    Attributes
    ----------
    X
        ``(N, d)`` training inputs (unit cube).
    hyper
        Hyperparameters (standardised units).
    y_mean, y_std
        Standardisation of ``y``: predictions are returned in the units of ``y``.
    chol
        ``(N, N)`` lower Cholesky factor of ``K + sigma_n^2 I``.
    alpha
        ``(N,)`` ``(K + sigma_n^2 I)^{-1} y_standardised``.
    """

    X: Array
    hyper: Hyper
    y_mean: float
    y_std: float
    chol: Array
    alpha: Array

    @staticmethod
    def condition(X: Array, y: Array, hyper: Hyper) -> GP:
        """Condition on ``(X, y)`` (``(N, d)``, ``(N,)``) with the given hyperparameters.

        Examples
        --------
        >>> X = np.array([[0.1], [0.5], [0.9]]); y = np.array([1.0, 0.0, 1.0])
        >>> gp = GP.condition(X, y, Hyper(np.array([0.3]), 1.0, 1e-6))
        >>> m, v = gp.predict(X)
        >>> bool(np.allclose(m, y, atol=1e-3) and np.all(v < 1e-3))
        True
        """
        ys, m, s = standardise(y)
        K = hyper.signal * _matern(_dist(X, X, hyper.lengthscales))
        K[np.diag_indices_from(K)] += hyper.noise + NOISE_MIN
        L = np.linalg.cholesky(K)
        alpha = cho_solve((L, True), ys, check_finite=False)
        return GP(X, hyper, m, s, L, alpha)

    def predict(self, Xs: Array) -> tuple[Array, Array]:
        """Posterior mean and variance of ``f`` at ``Xs`` ``(M, d)``: two ``(M,)`` arrays."""
        Ks = self.hyper.signal * _matern(_dist(Xs, self.X, self.hyper.lengthscales))
        mean = Ks @ self.alpha
        v = solve_triangular(self.chol, Ks.T, lower=True, check_finite=False)
        var = np.maximum(self.hyper.signal - np.sum(v**2, axis=0), 1e-12)
        return self.y_mean + self.y_std * mean, self.y_std**2 * var


def _dist(A: Array, B: Array, lengthscales: Array) -> Array:
    """``(M, N)`` scaled Euclidean distances between the rows of ``A`` and ``B``."""
    a, b = A / lengthscales, B / lengthscales
    s = np.sum(a**2, 1)[:, None] + np.sum(b**2, 1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(s, 0.0))
