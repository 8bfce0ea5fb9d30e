"""The Gaussian process of ``algo=auto``: a Matérn 5/2 kernel with a length scale per label.

Rows come from :class:`~nbopt.tuning.gp._space.SpaceTable`. The kernel is a function of a
Euclidean distance in an embedding of the rows, which keeps it positive definite for every
kind of label: a numeric label contributes its unit coordinate (an inactive one sits at the
centre, 0.5), a categorical label a one-hot vector scaled so that two different options are at
distance 1 (an inactive one is all zeros, half-way to every option). Each label's contribution
is divided by its own length scale. The hyperparameters (length scales, signal and noise
variances) are the maximum a posteriori estimate under a log-normal prior on the length scales
whose median grows with the square root of the number of labels, as proposed by Hvarfner et
al. ("Vanilla Bayesian optimization performs great in high dimensions", ICML 2024), and a
log-normal prior on the noise, found with L-BFGS-B from the previous estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import linalg, optimize
from scipy.special import erfcx, log_ndtr

_SQRT5 = math.sqrt(5.0)
# Length scales in unit coordinates. Below 5% of a range, a GP fitted on a few trials can
# explain them as unrelated points and then explores at random (seen on a 2-D quadratic).
_LOG_LENGTH = (math.log(0.05), math.log(20.0))
_LOG_SIGNAL = (math.log(0.05), math.log(20.0))
_LOG_NOISE = (math.log(1e-6), math.log(0.5))
_NOISE_PRIOR = (math.log(1e-3), 2.0)  # mean and deviation of log noise variance
# Length-scale prior: log-normal, median _LENGTH_PRIOR[0] * sqrt(labels), log-deviation [1].
_LENGTH_PRIOR = (0.5, math.sqrt(3.0))
_JITTER = 1e-9
# L-BFGS-B iterations of a first fit, and of a fit that starts from the last estimate.
FIT_STEPS = 40
REFIT_STEPS = 15


class Embedding:
    """Maps rows of unit coordinates (NaN where inactive) to the kernel's Euclidean space."""

    def __init__(self, categories: list[int]) -> None:
        """``categories[j]`` is the number of options of label j, or 0 for a numeric label."""
        self.categories = categories
        self.labels = len(categories)
        # Length-scale prior: log-normal with median sqrt(D) / 2 and log-deviation sqrt(3).
        # Hvarfner et al. scale the median with sqrt(D) too, as e^sqrt(2) sqrt(D) (about 8
        # times longer); shorter ones found the optima of benchmarks/bench_search.py sooner
        # (Hartmann6, 50 trials, 25 seeds: median regret 0.003 against 0.20).
        self.prior_mean = math.log(_LENGTH_PRIOR[0] * math.sqrt(self.labels))
        self.prior_sd = _LENGTH_PRIOR[1]
        widths = [size or 1 for size in categories]
        # The first column of each label's block in the embedding, and the embedding's width.
        self.offsets = np.cumsum([0, *widths])[:-1]
        self.width = sum(widths)
        self.categorical = np.array([size > 0 for size in categories], dtype=bool)
        self.numeric = ~self.categorical

    def blocks(self, units: np.ndarray) -> list[np.ndarray]:
        """One block of columns per label: its coordinate, or its one-hot vector / sqrt(2)."""
        blocks = []
        for j, size in enumerate(self.categories):
            column = units[:, j]
            if size:
                onehot = np.zeros((len(units), size))
                known = ~np.isnan(column)
                onehot[np.flatnonzero(known), column[known].astype(int)] = math.sqrt(0.5)
                blocks.append(onehot)
            else:
                blocks.append(np.where(np.isnan(column), 0.5, column)[:, None])
        return blocks

    def points(self, units: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Rows in the embedding, each label's block divided by its length scale."""
        if not self.categorical.any():
            return np.where(np.isnan(units), 0.5, units) / lengths
        out = np.zeros((len(units), self.width))
        numeric = units[:, self.numeric]
        out[:, self.offsets[self.numeric]] = np.where(np.isnan(numeric), 0.5, numeric)
        out[:, self.offsets[self.numeric]] /= lengths[self.numeric]
        options = units[:, self.categorical]
        row, label = np.nonzero(~np.isnan(options))
        columns = self.offsets[self.categorical][label] + options[row, label].astype(int)
        out[row, columns] = math.sqrt(0.5) / lengths[self.categorical][label]
        return out

    def squared_distances(self, units: np.ndarray) -> np.ndarray:
        """Per-label squared distances between all rows, shape (labels, n, n)."""
        out = np.empty((self.labels, len(units), len(units)))
        for j, block in enumerate(self.blocks(units)):
            out[j] = _squared_distances(block, block)
        return out


@dataclass
class GaussianProcess:
    """A fitted GP on standardised values; ``theta`` = log(length scales, signal, noise).

    ``inverse_factor`` is the inverse of the Cholesky factor of the training covariance: the
    many small predictions of a suggestion are matrix products with it rather than solves.
    """

    embedding: Embedding
    theta: np.ndarray
    lengths: np.ndarray
    signal: float
    train: np.ndarray
    inverse_factor: np.ndarray
    alpha: np.ndarray

    @classmethod
    def condition(
        cls, embedding: Embedding, theta: np.ndarray, units: np.ndarray, y: np.ndarray
    ) -> GaussianProcess:
        lengths, signal, noise = _unpack(theta, embedding.labels)
        train = embedding.points(units, lengths)
        gram = signal * _matern(_squared_distances(train, train))
        gram[np.diag_indices_from(gram)] += noise + _JITTER
        factor = _cholesky(gram)
        inverse_factor = linalg.solve_triangular(factor, np.eye(len(factor)), lower=True)
        alpha = inverse_factor.T @ (inverse_factor @ y)
        return cls(embedding, theta, lengths, signal, train, inverse_factor, alpha)

    def predict(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of the (noise-free) function at rows."""
        points = self.embedding.points(units, self.lengths)
        cross = self.signal * _matern(_squared_distances(points, self.train))
        v = cross @ self.inverse_factor.T
        variance = np.maximum(self.signal - np.einsum("ij,ij->i", v, v), 1e-12)
        return cross @ self.alpha, np.sqrt(variance)

    def log_expected_improvement(self, units: np.ndarray, best: float) -> np.ndarray:
        """log E[max(best - f(x), 0)], computed stably far from the best."""
        mean, sd = self.predict(units)
        return np.log(sd) + _log_h((best - mean) / sd)

    def log_expected_improvement_gradient(
        self, units: np.ndarray, best: float, columns: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """log EI at rows and its gradient with respect to the rows' numeric ``columns``.

        The gradient of a column a row leaves inactive (NaN) is zero: it sits at a constant
        position in the embedding.
        """
        points = self.embedding.points(units, self.lengths)
        r2 = _squared_distances(points, self.train)
        r = np.sqrt(r2)
        decay = self.signal * np.exp(-_SQRT5 * r)
        cross = (1.0 + _SQRT5 * r + (5.0 / 3.0) * r2) * decay
        v = cross @ self.inverse_factor.T
        variance = self.signal - np.einsum("ij,ij->i", v, v)
        sd = np.sqrt(np.maximum(variance, 1e-12))
        # d cross_i / d x = slope_i (x - train_i) / length in the embedding's coordinates, so a
        # sum over training rows i of w_i d cross_i is (sum_i w_i slope_i) x - (w slope) @ train.
        slope = (-5.0 / 3.0) * (1.0 + _SQRT5 * r) * decay
        at = self.embedding.offsets[columns]
        x, train = points[:, at], self.train[:, at]
        mean_w = slope * self.alpha
        var_w = slope * (v @ self.inverse_factor)
        d_mean = mean_w.sum(1)[:, None] * x - mean_w @ train
        d_sd = (var_w @ train - var_w.sum(1)[:, None] * x) * (variance > 1e-12)[:, None]
        z = (best - cross @ self.alpha) / sd
        log_h = _log_h(z)
        ratio = np.exp(log_ndtr(z) - log_h)[:, None]  # Phi(z) / h(z)
        gradient = (d_sd * (1.0 - ratio * z[:, None]) / sd[:, None] - ratio * d_mean) / sd[:, None]
        gradient *= ~np.isnan(units[:, columns]) / self.lengths[columns]
        return np.log(sd) + log_h, gradient


def fit(
    embedding: Embedding, units: np.ndarray, y: np.ndarray, start: np.ndarray | None
) -> np.ndarray:
    """The MAP hyperparameters ``theta`` for rows ``units`` with standardised values ``y``."""
    labels = embedding.labels
    distances = embedding.squared_distances(units).reshape(embedding.labels, -1)
    bounds = [_LOG_LENGTH] * labels + [_LOG_SIGNAL, _LOG_NOISE]
    # A first fit tries two starts; later ones start from the last estimate only.
    starts = (
        [start]
        if start is not None
        else [
            np.r_[np.full(labels, math.log(0.5)), 0.0, math.log(1e-3)],
            np.r_[np.full(labels, embedding.prior_mean), 0.0, math.log(1e-3)],
        ]
    )
    best: tuple[float, np.ndarray] | None = None
    for theta0 in starts:
        result = optimize.minimize(
            _neg_log_posterior,
            np.clip(theta0, *np.array(bounds).T),
            args=(distances, y, embedding),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": FIT_STEPS if start is None else REFIT_STEPS},
        )
        if best is None or result.fun < best[0]:
            best = (float(result.fun), result.x)
    assert best is not None
    return best[1]


def _neg_log_posterior(
    theta: np.ndarray, distances: np.ndarray, y: np.ndarray, embedding: Embedding
) -> tuple[float, np.ndarray]:
    """The negative log posterior of ``theta`` and its gradient; ``distances`` holds each
    label's squared distances between the rows, flattened: shape (labels, n * n)."""
    labels, n = embedding.labels, len(y)
    lengths, signal, noise = _unpack(theta, labels)
    r2 = (lengths**-2 @ distances).reshape(n, n)
    r = np.sqrt(np.maximum(r2, 0.0))
    decay = signal * np.exp(-_SQRT5 * r)
    gram = (1.0 + _SQRT5 * r + (5.0 / 3.0) * r2) * decay
    gram.flat[:: n + 1] += noise + _JITTER
    try:
        factor = linalg.cholesky(gram, lower=True, check_finite=False)
    except linalg.LinAlgError:
        return 1e10, np.zeros_like(theta)
    inverse = linalg.cho_solve((factor, True), np.eye(n), check_finite=False)
    alpha = inverse @ y
    value = 0.5 * y @ alpha + np.log(np.diag(factor)).sum() + 0.5 * n * math.log(2 * math.pi)
    w = np.outer(alpha, alpha) - inverse
    trace = np.trace(w)
    grad = np.empty_like(theta)
    # d gram / d log(length_j) = signal * 5/3 (1 + sqrt5 r) e^(-sqrt5 r) * d_j / length_j^2
    slope = w * ((5.0 / 3.0) * (1.0 + _SQRT5 * r) * decay)
    grad[:labels] = -0.5 * (distances @ slope.ravel()) / lengths**2
    grad[labels] = -0.5 * np.vdot(w, gram) + 0.5 * trace * (noise + _JITTER)
    grad[labels + 1] = -0.5 * trace * noise
    # Priors: log-normal length scales and noise variance.
    z = (theta[:labels] - embedding.prior_mean) / embedding.prior_sd
    value += 0.5 * np.sum(z**2)
    grad[:labels] += z / embedding.prior_sd
    zn = (theta[labels + 1] - _NOISE_PRIOR[0]) / _NOISE_PRIOR[1]
    value += 0.5 * zn**2
    grad[labels + 1] += zn / _NOISE_PRIOR[1]
    return float(value), grad


def _cholesky(gram: np.ndarray) -> np.ndarray:
    """The Cholesky factor, with more jitter if rounding made ``gram`` indefinite."""
    jitter = 0.0
    while True:
        try:
            return linalg.cholesky(gram + jitter * np.eye(len(gram)), lower=True)
        except linalg.LinAlgError:
            jitter = max(10 * jitter, 1e-8 * float(np.mean(np.diag(gram))))


def _unpack(theta: np.ndarray, labels: int) -> tuple[np.ndarray, float, float]:
    return np.exp(theta[:labels]), float(np.exp(theta[labels])), float(np.exp(theta[labels + 1]))


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d2, 0.0)


def _matern(r2: np.ndarray) -> np.ndarray:
    r = np.sqrt(r2)
    return (1.0 + _SQRT5 * r + (5.0 / 3.0) * r2) * np.exp(-_SQRT5 * r)


def _log_h(z: np.ndarray) -> np.ndarray:
    """log(z Phi(z) + phi(z)), accurate for very negative z (where it underflows)."""
    out = np.empty_like(z)
    near = z > -1.0
    zn = z[near]
    phi = np.exp(-0.5 * zn**2) / math.sqrt(2 * math.pi)
    out[near] = np.log(zn * np.exp(log_ndtr(zn)) + phi)
    zf = z[~near]
    # phi(z) (1 + z Phi(z)/phi(z)), with Phi(z)/phi(z) = sqrt(pi/2) erfcx(-z/sqrt2)
    ratio = math.sqrt(math.pi / 2) * erfcx(-zf / math.sqrt(2))
    out[~near] = -0.5 * zf**2 - 0.5 * math.log(2 * math.pi) + np.log1p(zf * ratio)
    return out
