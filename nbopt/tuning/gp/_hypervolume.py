"""Expected hypervolume improvement (EHVI) of Gaussian predictions over a front of losses.

The part of the objective space that the front does not dominate, inside the reference box,
is cut into disjoint boxes: a grid on the front's coordinates in every objective but the last,
and in each grid cell one box reaching down to minus infinity in the last objective, up to the
lowest last loss of the members that dominate the cell in the others. A point ``y`` improves
the hypervolume by the part of each box it dominates, ``prod_j (u_j - max(y_j, l_j))^+``.
With independent Gaussian predictions per objective the expectation of each factor is a
difference of two expected improvements, ``psi(u_j) - psi(l_j)`` with
``psi(t) = E[(t - y_j)^+]``, so EHVI is exact and closed-form for any number of objectives
(for two it is the usual staircase of Emmerich et al.). It is computed in logarithms, so that
candidates far from improving still differ.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from nbopt.tuning.gp._model import _log_h

# Most boxes a decomposition may have; a larger front is thinned to evenly spaced members
# (along the first objective) until it fits. Two objectives never need it (k + 1 boxes).
BOX_LIMIT = 16384
# Candidate rows scored at once: bounds the (rows, boxes) arrays to a few megabytes.
_CHUNK_ENTRIES = 1 << 20


def nondominated(points: np.ndarray) -> np.ndarray:
    """A mask of the rows of ``points`` (lower is better) no other row dominates."""
    if not len(points):
        return np.zeros(0, dtype=bool)
    weakly = np.all(points[:, None, :] <= points[None, :, :], axis=2)
    strictly = np.any(points[:, None, :] < points[None, :, :], axis=2)
    # dominated[i]: some row k is nowhere worse than row i and somewhere better.
    dominated = np.any(weakly & strictly, axis=0)
    return ~dominated


class Boxes:
    """The region inside ``reference`` that no row of ``front`` dominates, as disjoint boxes.

    ``lower`` and ``upper`` are (boxes, objectives); ``lower`` holds minus infinity where a
    box is unbounded below. Rows of ``front`` not below the reference in every objective are
    ignored, dominated ones are harmless.
    """

    def __init__(self, front: np.ndarray, reference: np.ndarray) -> None:
        reference = np.asarray(reference, dtype=float)
        front = np.asarray(front, dtype=float).reshape(-1, len(reference))
        front = front[np.all(front < reference, axis=1)]
        front = _thinned(np.unique(front, axis=0), len(reference))
        self.reference = reference
        self.front = front
        head = len(reference) - 1
        # Cells along each of the first objectives: (-inf, g0), [g0, g1), ..., [g_last, r_j).
        lows, highs = [], []
        for j in range(head):
            grid = np.unique(np.append(front[:, j], reference[j]))
            lows.append(np.concatenate([[-np.inf], grid[:-1]]))
            highs.append(grid)
        self.lows, self.highs = lows, highs
        index = np.stack(
            [
                axis.ravel()
                for axis in np.meshgrid(*[np.arange(len(g)) for g in highs], indexing="ij")
            ],
            axis=1,
        )
        self.index = index
        corner = np.stack([lows[j][index[:, j]] for j in range(head)], axis=1)
        covers = np.all(front[None, :, :head] <= corner[:, None, :], axis=2)
        last = np.where(covers, front[None, :, head], reference[head])
        self.ceiling = np.minimum(last.min(axis=1, initial=np.inf), reference[head])
        self.lower = np.column_stack([corner, np.full(len(corner), -np.inf)])
        self.upper = np.column_stack(
            [np.stack([highs[j][index[:, j]] for j in range(head)], axis=1), self.ceiling]
        )

    def improvement(self, points: np.ndarray) -> np.ndarray:
        """The exact hypervolume each row of ``points`` adds to the front's."""
        points = np.asarray(points, dtype=float)
        out = np.zeros(len(points))
        for chunk in self._chunks(len(points)):
            sides = self.upper[None] - np.maximum(points[chunk, None, :], self.lower[None])
            out[chunk] = np.prod(np.maximum(sides, 0.0), axis=2).sum(axis=1)
        return out

    def log_expected_improvement(self, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
        """log EHVI of independent Gaussian predictions, ``mean`` and ``sd`` of shape
        (rows, objectives)."""
        head = len(self.reference) - 1
        out = np.empty(len(mean))
        # Per objective, the log of the expected side of every cell; the last objective's
        # boxes are unbounded below, so their side is one expected improvement.
        sides = [
            _log_expected_side(mean[:, j], sd[:, j], self.lows[j], self.highs[j])
            for j in range(head)
        ]
        last = _log_psi(mean[:, head, None], sd[:, head, None], self.ceiling[None, :])
        for chunk in self._chunks(len(mean)):
            total = last[chunk].copy()
            for j in range(head):
                total += sides[j][chunk][:, self.index[:, j]]
            out[chunk] = logsumexp(total, axis=1)
        return out

    def _chunks(self, rows: int) -> list[slice]:
        step = max(1, _CHUNK_ENTRIES // max(1, len(self.lower)))
        return [slice(start, start + step) for start in range(0, rows, step)]


def _thinned(front: np.ndarray, objectives: int) -> np.ndarray:
    """At most as many members as keep the decomposition within BOX_LIMIT boxes."""
    if objectives <= 2:
        return front
    keep = int(BOX_LIMIT ** (1.0 / (objectives - 1))) - 1
    if len(front) <= keep:
        return front
    order = np.argsort(front[:, 0], kind="stable")
    return front[order[np.unique(np.linspace(0, len(front) - 1, keep).round().astype(int))]]


def _log_psi(mean: np.ndarray, sd: np.ndarray, t: np.ndarray) -> np.ndarray:
    """log E[(t - y)^+] for y ~ N(mean, sd^2), broadcast; minus infinity where t is."""
    t, mean, sd = np.broadcast_arrays(t, mean, sd)
    out = np.full(t.shape, -np.inf)
    finite = np.isfinite(t)
    s = sd[finite]
    out[finite] = np.log(s) + _log_h((t[finite] - mean[finite]) / s)
    return out


def _log_expected_side(
    mean: np.ndarray, sd: np.ndarray, lows: np.ndarray, highs: np.ndarray
) -> np.ndarray:
    """log E[(high - max(y, low))^+] = log(psi(high) - psi(low)) per row and cell."""
    upper = _log_psi(mean[:, None], sd[:, None], highs[None, :])
    lower = _log_psi(mean[:, None], sd[:, None], lows[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        # psi is increasing, so lower < upper; -expm1 keeps the difference of close values.
        side = upper + np.log(-np.expm1(np.minimum(lower - upper, -1e-300)))
    return np.where(np.isneginf(upper), -np.inf, side)


def log_expected_improvement(
    mean: np.ndarray, sd: np.ndarray, front: np.ndarray, reference: np.ndarray
) -> np.ndarray:
    """log EHVI over ``front`` and ``reference`` of predictions ``mean``, ``sd`` (rows,
    objectives); a convenience for one-off scoring (a search keeps its :class:`Boxes`)."""
    return Boxes(front, reference).log_expected_improvement(mean, sd)


def reference_point(values: np.ndarray, margin: float = 0.1) -> np.ndarray:
    """A reference point a little beyond the worst of ``values`` (rows) in each objective:
    ``margin`` times the range (at least 1) past the maximum."""
    high, low = values.max(axis=0), values.min(axis=0)
    return high + margin * np.maximum(high - low, 1.0)
