"""The suggest function of the Gaussian-process search; :mod:`nbopt.tuning.gp` says what it does."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np
from hyperopt import base

from nbopt.space import to_hyperopt
from nbopt.tuning._algorithms import SearchContext, trial_doc
from nbopt.tuning.gp._acquisition import LOCAL_STARTS, Acquisition, expected_improvement
from nbopt.tuning.gp._hypervolume import Boxes, nondominated, reference_point
from nbopt.tuning.gp._model import Embedding, GaussianProcess, fit
from nbopt.tuning.gp._space import SpaceTable, row_keys, unseen_rows

# A finite space of at most this many configurations is scored exhaustively.
GRID_LIMIT = 1024
# Rows the hyperparameters are fitted on (the best quarter and a random rest beyond this), and
# rows the GP is conditioned on: they bound the cost of a suggestion in a long search.
FIT_LIMIT = 64
CONDITION_LIMIT = 300
# Hyperparameters are refitted at every trial up to REFIT_ALWAYS trials, later once the
# trials have grown by the factor REFIT since the last fit.
REFIT_ALWAYS = 30
REFIT = 1.1
# Losses above the median are compressed logarithmically, to at most TAIL_CAP units of the
# median's distance from the best beyond it (see _warp).
TAIL_CAP = math.log1p(1e3)
# Proposals not finished yet (a parallel backend asks before trials end) the model assumes
# done at its predicted value, so that it proposes elsewhere; the oldest are forgotten.
PENDING_LIMIT = 32
# With several objectives (trials carrying ``losses``): "ehvi" fits a GP per objective and
# proposes by expected hypervolume improvement; "parego" fits one GP to the random augmented
# Chebyshev scalarisation the proposer writes as each trial's ``loss``. "ehvi" applies up to
# EHVI_MAX_OBJECTIVES objectives, "parego" beyond. Both chosen by measurement: see the
# docstring of nbopt.tuning.gp.
MULTI_OBJECTIVE_ACQUISITION = "ehvi"
EHVI_MAX_OBJECTIVES = 2
# EHVI's GPs model each objective on a linear scale (see _linear), with losses more than
# FENCE interquartile ranges above the third quartile clipped there.
FENCE = 3.0


def initial_trials(labels: int, max_evals: int | None) -> int:
    """Sobol trials before the GP: labels + 2 (at least 5), at most a quarter of the budget."""
    n = max(5, labels + 2)
    if max_evals is not None:
        n = min(n, max(3, max_evals // 4))
    return n


class GaussianProcessSearch:
    """Hyperopt's ``suggest`` for one search, with what it keeps between trials."""

    def __init__(self, context: SearchContext) -> None:
        # The search loop's Domain is built from the same space: reading it now reports a
        # space auto cannot search before the search starts.
        self.table = SpaceTable.from_domain(base.Domain(_not_called, to_hyperopt(context.space)))
        self.grid = self.table.enumerate(GRID_LIMIT)
        self.n_initial = initial_trials(self.table.width, context.max_evals)
        self.embedding = Embedding(
            [len(c.probabilities()) if c.categorical else 0 for c in self.table.columns]
        )
        self.design: np.ndarray | None = None
        self.handed = 0
        self.pending: dict[int, np.ndarray] = {}
        self.finished: dict[int, np.ndarray] = {}
        self.seen: set[bytes] = set()
        self.theta: np.ndarray | None = None
        self.thetas: list[np.ndarray] | None = None
        self.fitted_on = 0
        self.acquisition = Acquisition(self.table)
        self.blas = _blas_controller()

    def __call__(
        self, new_ids: list[int], domain: Any, trials: Any, seed: int
    ) -> list[dict[str, Any]]:
        # Small matrices: BLAS threads only wait for each other, badly so on a busy machine.
        limit = self.blas.limit(limits=1, user_api="blas") if self.blas else None
        with limit or contextlib.nullcontext():
            return self._suggest(new_ids, domain, trials, seed)

    def _suggest(
        self, new_ids: list[int], domain: Any, trials: Any, seed: int
    ) -> list[dict[str, Any]]:
        rng = np.random.default_rng(seed)
        units, losses, objectives, tids = self._history(trials)
        for tid in tids & self.pending.keys():
            del self.pending[tid]
        seen = self.seen | set(row_keys(self._pending_rows()))
        count = max(self.handed, len(units))
        if objectives is not None and (
            MULTI_OBJECTIVE_ACQUISITION != "ehvi" or objectives.shape[1] > EHVI_MAX_OBJECTIVES
        ):
            objectives = None  # the scalarised ``loss`` is modelled instead
        usable = ~np.isnan(objectives[:, 0] if objectives is not None else losses)
        if count < self.n_initial or np.sum(usable) < 2:
            row = self._initial(count, seen, rng)
        elif objectives is not None:
            row = self._propose_front(units, objectives, seen, rng)
        else:
            row = self._propose(units, losses, seen, rng)
        if row is None:
            return []
        self.handed = count + 1
        self.pending[new_ids[0]] = row
        if len(self.pending) > PENDING_LIMIT:
            del self.pending[next(iter(self.pending))]
        return [trial_doc(domain, trials, new_ids[0], self.table.configuration(row))]

    def _history(self, trials: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, set[int]]:
        """Rows of the finished trials, their losses (NaN if failed), their losses in every
        objective (rows of NaN if failed; None unless trials carry ``losses``), their ids."""
        new: dict[int, dict[str, Any]] = {}
        loss_of: dict[int, float] = {}
        losses_of: dict[int, list[float]] = {}
        for doc in trials.trials:
            result = doc["result"]
            if result.get("status") not in ("ok", "fail"):
                continue
            tid = doc["tid"]
            # A loss is read each time: with several objectives it is a scalarisation that
            # changes from one proposal to the next.
            loss = result.get("loss") if result["status"] == "ok" else None
            loss_of[tid] = math.nan if loss is None else float(loss)
            # Read anew too: the proposer may penalise trials in them (constraints).
            if result["status"] == "ok" and len(result.get("losses") or ()) >= 2:
                losses_of[tid] = [float(value) for value in result["losses"]]
            if tid not in self.finished:
                new[tid] = {k: v[0] for k, v in doc["misc"]["vals"].items() if v}
        # A finished trial's configuration never changes: each is encoded once.
        rows = self.table.encode(list(new.values()))
        for tid, row in zip(new, rows, strict=True):
            self.finished[tid] = row
        self.seen.update(row_keys(rows))
        tids = sorted(loss_of)
        units = np.array([self.finished[tid] for tid in tids]).reshape(-1, self.table.width)
        objectives = None
        if losses_of:
            width = len(next(iter(losses_of.values())))
            objectives = np.array([losses_of.get(tid, [math.nan] * width) for tid in tids])
        losses = np.array([loss_of[tid] for tid in tids], dtype=float)
        return units, losses, objectives, set(tids)

    def _pending_rows(self) -> np.ndarray:
        return np.array(list(self.pending.values())).reshape(-1, self.table.width)

    def _initial(self, count: int, seen: set[bytes], rng: np.random.Generator) -> np.ndarray | None:
        """The next point of a scrambled Sobol design, or a random one once it is used up."""
        if self.design is None:
            self.design = self.table.snap(self.table.draw(rng, self.n_initial, sobol=True))
        rows = self.design[count:] if count < len(self.design) else self.table.sample(rng, 64)
        fresh = unseen_rows(rows, seen)
        return fresh[0] if len(fresh) else self._unseen(seen, rng)

    def _unseen(self, seen: set[bytes], rng: np.random.Generator) -> np.ndarray | None:
        """A random configuration not tried yet; None once a finite space is exhausted."""
        pool = self.grid if self.grid is not None else self.table.sample(rng, 256)
        fresh = unseen_rows(pool, seen)
        if not len(fresh):
            # An infinite space that random draws keep missing: the search loop skips repeats.
            return None if self.grid is not None else pool[0]
        return fresh[int(rng.integers(len(fresh)))]

    def _propose(
        self, units: np.ndarray, losses: np.ndarray, seen: set[bytes], rng: np.random.Generator
    ) -> np.ndarray | None:
        """The configuration of highest expected improvement under the GP of the trials."""
        y = _warp(losses)
        if self.theta is None or len(y) < REFIT_ALWAYS or len(y) >= REFIT * self.fitted_on:
            rows = _subset(y, FIT_LIMIT, rng)
            self.theta = fit(self.embedding, units[rows], y[rows], self.theta)
            self.fitted_on = len(y)
        rows = _subset(y, CONDITION_LIMIT, rng)
        gp = GaussianProcess.condition(self.embedding, self.theta, units[rows], y[rows])
        pending = self._pending_rows()
        if len(pending):
            believed, _ = gp.predict(pending)
            gp = GaussianProcess.condition(
                self.embedding,
                self.theta,
                np.vstack([units[rows], pending]),
                np.concatenate([y[rows], believed]),
            )
        best = float(y.min())
        if self.grid is not None:
            pool = unseen_rows(self.grid, seen)
            if not len(pool):
                return None
            return pool[int(np.argmax(gp.log_expected_improvement(pool, best)))]
        top = units[np.argsort(y)[:LOCAL_STARTS]]
        score, climb = expected_improvement(gp, best, self.table)
        row = self.acquisition.best(score, top, seen, rng, climb)
        return row if row is not None else self._unseen(seen, rng)

    def _propose_front(
        self, units: np.ndarray, losses: np.ndarray, seen: set[bytes], rng: np.random.Generator
    ) -> np.ndarray | None:
        """The configuration of highest expected hypervolume improvement under one GP per
        objective, over the front of the trials (and of the pending ones, at their predicted
        losses), in the GPs' units: each objective on a linear scale (:func:`_linear`).

        ``losses`` has a column per objective, rows of NaN for failed trials. No gradient
        ascent: candidates are Sobol points, perturbations of the front's members, and their
        refinements.
        """
        y = np.column_stack([_linear(column) for column in losses.T])
        if self.thetas is None or len(y) < REFIT_ALWAYS or len(y) >= REFIT * self.fitted_on:
            starts = self.thetas or [None] * y.shape[1]
            self.thetas = []
            for column, start in zip(y.T, starts, strict=True):
                rows = _subset(column, FIT_LIMIT, rng)
                self.thetas.append(fit(self.embedding, units[rows], column[rows], start))
            self.fitted_on = len(y)
        pending = self._pending_rows()
        models, believed = [], []
        for column, theta in zip(y.T, self.thetas, strict=True):
            rows = _subset(column, CONDITION_LIMIT, rng)
            gp = GaussianProcess.condition(self.embedding, theta, units[rows], column[rows])
            if len(pending):
                predicted, _ = gp.predict(pending)
                believed.append(predicted)
                gp = GaussianProcess.condition(
                    self.embedding,
                    theta,
                    np.vstack([units[rows], pending]),
                    np.concatenate([column[rows], predicted]),
                )
            models.append(gp)
        usable = ~np.isnan(losses[:, 0])
        members = nondominated(y[usable])
        points = y[usable][members]
        if len(pending):
            points = np.vstack([points, np.column_stack(believed)])
        boxes = Boxes(points[nondominated(points)], reference_point(y))

        def score(rows: np.ndarray) -> np.ndarray:
            predictions = [gp.predict(rows) for gp in models]
            mean = np.column_stack([m for m, _ in predictions]).reshape(len(rows), -1)
            sd = np.column_stack([s for _, s in predictions]).reshape(len(rows), -1)
            return boxes.log_expected_improvement(mean, sd)

        if self.grid is not None:
            pool = unseen_rows(self.grid, seen)
            if not len(pool):
                return None
            return pool[int(np.argmax(score(pool)))]
        row = self.acquisition.best(score, units[usable][members], seen, rng)
        return row if row is not None else self._unseen(seen, rng)


def _warp(losses: np.ndarray) -> np.ndarray:
    """Losses as the GP models them, finite and of moderate size whatever finite losses came.

    Failed trials (NaN) count as the worst loss. Losses up to the median are kept linear, as
    distances from the best in units of the median's distance from it, so that the good half
    keeps its shape. Losses above the median are compressed logarithmically and capped at
    ``1 + TAIL_CAP`` units: one diverged run, even one that returned the largest float, must
    not flatten the good region. Then zero mean and unit deviation. Every step
    works on halved losses and takes logarithms of ratios rather than dividing, so that no
    difference of two finite floats, however far apart, overflows.
    """
    usable = ~np.isnan(losses)
    half = np.where(usable, losses, np.max(losses[usable])) / 2.0
    best, median = half.min(), np.median(half)
    scale = median - best
    if scale <= 0:  # half the trials or more tie at the best: scale by the next loss up
        above = half[half > best]
        if not len(above):
            return np.zeros_like(half)
        scale = above.min() - best
    with np.errstate(divide="ignore"):
        ratio = np.log(np.maximum(half - median, 0.0)) - math.log(scale)
    tail = 1.0 + np.minimum(np.logaddexp(0.0, ratio), TAIL_CAP)
    y = np.where(half <= median, (np.minimum(half, median) - best) / scale, tail)
    sd = y.std()
    return (y - y.mean()) / (sd if sd > 0 else 1.0)


def _linear(losses: np.ndarray) -> np.ndarray:
    """Losses of one objective as EHVI's GP models them: linear, clipped above at ``FENCE``
    interquartile ranges past the third quartile, then zero mean and unit deviation.

    Linear because the hypervolume EHVI improves is measured in these units: under
    :func:`_warp`, which stretches the good half of the trials and compresses the rest, the
    gaps between the smallest models of a size-vs-error search counted several times their
    share of the user's hypervolume, and the search spent a third of its trials on the
    smallest model (``benchmarks/bench_multi.py``, digits MLP). Clipped so that one diverged
    run cannot flatten the rest. Failed trials (NaN) count as the worst loss. Works on
    quartered losses, so that no difference of two finite floats overflows.
    """
    usable = ~np.isnan(losses)
    quarter = np.where(usable, losses, np.max(losses[usable])) / 4.0
    low_quartile, high_quartile = np.quantile(quarter, [0.25, 0.75])
    spread = high_quartile - low_quartile
    if spread <= 0:  # a quarter of the trials or more tie: scale by the next loss up
        above = quarter[quarter > high_quartile]
        spread = above.min() - high_quartile if len(above) else 0.0
    with np.errstate(over="ignore"):
        fence = high_quartile + FENCE * spread
    clipped = np.minimum(quarter, fence)
    low, high = clipped.min(), clipped.max()
    if high <= low:
        return np.zeros_like(clipped)
    y = (clipped - low) / (high - low)
    return (y - y.mean()) / y.std()


def _subset(y: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of at most ``limit`` rows: the best quarter and a random draw of the rest."""
    if len(y) <= limit:
        return np.arange(len(y))
    order = np.argsort(y)
    best = order[: limit // 4]
    rest = rng.choice(order[limit // 4 :], size=limit - len(best), replace=False)
    return np.sort(np.concatenate([best, rest]))


def _not_called(params: Any) -> Any:
    raise AssertionError("auto reads the space; it never evaluates the objective")


def _blas_controller() -> Any:
    """threadpoolctl's handle on the BLAS libraries loaded now (NumPy's, SciPy's), or None.

    Made once per search: finding the libraries takes milliseconds, limiting them microseconds.
    """
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # an optional speed-up; scikit-learn, among others, installs it
        return None
    return ThreadpoolController()
