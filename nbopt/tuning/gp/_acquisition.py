"""How ``algo=auto`` finds the configuration of highest expected improvement (EI).

Candidates come from three sources: scrambled Sobol points over the prior (the whole space),
perturbations of the best trials (their neighbourhoods), and gradient ascent of log EI from the
best of those. The ascent moves every numeric label of a row at once (integers and ``q`` steps
as real numbers, rounded afterwards), in coordinates scaled by the GP's length scales so that
one step means as much along every label; choices stay where they are. Every candidate is
rounded to what the space can produce, and rounds of ever smaller perturbations of the best
candidates then search the neighbourhood of the rounded points, choices included.

The score is a parameter: with several objectives it is the log of the expected hypervolume
improvement, the perturbed trials are the front's members, and there is no ascent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from nbopt.tuning.gp._model import GaussianProcess
from nbopt.tuning.gp._space import SpaceTable, unseen_rows

# Candidates: Sobol points over the prior, and perturbations of the LOCAL_STARTS best trials
# at scales drawn log-uniformly from LOCAL_SCALES (in unit coordinates; a choice is re-drawn
# with probability FLIP).
GLOBAL_CANDIDATES = 128
LOCAL_CANDIDATES = 128
LOCAL_STARTS = 5
LOCAL_SCALES = (1e-3, 0.3)
FLIP = 0.2
# Gradient ascent from the ASCENT_STARTS best candidates, all at once: ASCENT_STEPS steps, the
# first ASCENT_STEP length scales long, then longer after a success, shorter after a failure.
ASCENT_STARTS = 3
ASCENT_STEPS = 10
ASCENT_STEP = 0.3
STEP_GROWTH = 1.5
STEP_SHRINK = 0.3
# Then rounds of smaller perturbations of the REFINE_KEEP best candidates, REFINE_EACH each.
REFINE_SCALES = (0.03, 0.01, 0.003)
REFINE_KEEP = 3
REFINE_EACH = 16


# A score of candidate rows (higher is better), and a move of rows uphill in it.
Score = Callable[[np.ndarray], np.ndarray]
Climb = Callable[[np.ndarray], np.ndarray]


class Acquisition:
    """Finds the configuration of highest score for one search, keeping its Sobol sequence."""

    def __init__(self, table: SpaceTable) -> None:
        self.table = table
        self.sobol: Any = None

    def best(
        self,
        score: Score,
        top: np.ndarray,
        seen: set[bytes],
        rng: np.random.Generator,
        climb: Climb | None = None,
    ) -> np.ndarray | None:
        """The unseen row of highest ``score`` that the search finds, or None if every
        candidate was seen; ``top`` holds the rows whose neighbourhoods are searched (the best
        trials'), ``climb`` moves the best candidates uphill before the refinements."""
        table = self.table
        if self.sobol is None:
            from scipy.stats import qmc

            self.sobol = qmc.Sobol(table.width, scramble=True, seed=rng)
        starts = top[rng.integers(len(top), size=LOCAL_CANDIDATES)]
        scales = np.exp(rng.uniform(*np.log(LOCAL_SCALES), size=(LOCAL_CANDIDATES, 1)))
        pool = np.vstack(
            [
                table.from_cube(self.sobol.random(GLOBAL_CANDIDATES)),
                perturb(table, starts, scales, FLIP, rng),
            ]
        )
        pool = unseen_rows(table.snap(pool), seen)
        if not len(pool):
            return None
        scores = score(pool)
        if climb is not None:
            keep = np.argsort(-scores)[:ASCENT_STARTS]
            climbed = unseen_rows(table.snap(climb(pool[keep])), seen)
            pool = np.vstack([pool[keep], climbed])
            scores = np.concatenate([scores[keep], score(climbed)])
        for scale in REFINE_SCALES:
            keep = np.argsort(-scores)[:REFINE_KEEP]
            starts = np.repeat(pool[keep], REFINE_EACH, axis=0)
            moved = unseen_rows(table.snap(perturb(table, starts, scale, 0.0, rng)), seen)
            pool = np.vstack([pool[keep], moved])
            scores = np.concatenate([scores[keep], score(moved)])
        return pool[int(np.argmax(scores))]


def expected_improvement(
    gp: GaussianProcess, best: float, table: SpaceTable
) -> tuple[Score, Climb]:
    """log EI over ``best`` under ``gp``, and gradient ascent of it: the single-objective rule."""
    return (
        lambda rows: gp.log_expected_improvement(rows, best),
        lambda rows: ascend(gp, best, rows, table),
    )


def ascend(gp: GaussianProcess, best: float, rows: np.ndarray, table: SpaceTable) -> np.ndarray:
    """``rows`` moved uphill in log EI along their active numeric labels (not rounded).

    Each row climbs by steps along its gradient, all rows at once, in unit coordinates divided
    by the length scales, where the kernel, and so EI, varies at the same rate along every
    label. A row's step grows by STEP_GROWTH after a move that raised its log EI and shrinks by
    STEP_SHRINK after one that did not (which is then undone).
    """
    columns = np.flatnonzero(~table.categorical)
    if not len(columns):
        return rows
    lengths = gp.lengths[columns]
    active = ~np.isnan(rows[:, columns])
    x = np.where(active, rows[:, columns], 0.5) / lengths
    upper = 1.0 / lengths
    moved = rows.copy()

    def evaluate(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        moved[:, columns] = np.where(active, x * lengths, np.nan)
        value, gradient = gp.log_expected_improvement_gradient(moved, best, columns)
        return value, gradient * lengths

    value, gradient = evaluate(x)
    step = np.full(len(rows), ASCENT_STEP)
    for _ in range(ASCENT_STEPS):
        norm = np.linalg.norm(gradient, axis=1, keepdims=True)
        trial = np.clip(x + step[:, None] * gradient / np.maximum(norm, 1e-12), 0.0, upper)
        trial_value, trial_gradient = evaluate(trial)
        better = trial_value > value
        x[better], value[better], gradient[better] = (
            trial[better],
            trial_value[better],
            trial_gradient[better],
        )
        step = np.where(better, step * STEP_GROWTH, step * STEP_SHRINK)
    moved[:, columns] = np.where(active, np.clip(x * lengths, 0.0, 1.0), np.nan)
    return moved


def perturb(
    table: SpaceTable, rows: np.ndarray, scale: Any, flip: float, rng: np.random.Generator
) -> np.ndarray:
    """Rows moved by Gaussian steps of ``scale``, choices re-drawn with probability ``flip``.

    Labels a row leaves inactive get a draw from the prior first, so that a choice flipped to
    another option has values for that option's parameters.
    """
    fresh = table.draw(rng, len(rows))
    moved = np.where(np.isnan(rows), fresh, rows)
    numeric = ~table.categorical
    steps = scale * rng.standard_normal((len(rows), int(numeric.sum())))
    moved[:, numeric] = np.clip(moved[:, numeric] + steps, 0.0, 1.0)
    if flip:
        redraw = rng.random(moved.shape) < flip
        moved = np.where(redraw & ~numeric, fresh, moved)
    return moved
