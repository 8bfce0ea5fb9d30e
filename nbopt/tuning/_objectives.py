"""Several objectives: which metrics a search optimises, the front of non-dominated trials,
and the random scalarisation the proposers learn from.

A multi-objective trial keeps its first metric in ``value`` (so every view that shows one
number shows that one) and the others in ``metrics``; :meth:`Objectives.values` reads them
all back, in the order given.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nbopt.errors import ConfigError
from nbopt.tuning._trial import Trial

if TYPE_CHECKING:
    import numpy as np

# ParEGO's augmentation: the weighted sum added to the Chebyshev term, small enough that the
# maximum decides, large enough that weakly dominated points lose ties.
AUGMENTATION = 0.05


@dataclass(frozen=True)
class Objectives:
    """The metrics of a multi-objective search and the direction of each (``"min"``/``"max"``)."""

    names: tuple[str, ...]
    modes: tuple[str, ...]

    @classmethod
    def parse(cls, metric: Any, mode: Any) -> Objectives | None:
        """The objectives ``metric=``/``mode=`` ask for; None for a single objective.

        ``metric`` is a name or a list of names; ``mode`` one direction for every metric, or a
        list with one per metric.

        Raises:
            ConfigError: a mode other than min/max, a list of modes of another length than the
                metrics, a name given twice or empty.
        """
        names = [metric] if metric is None or isinstance(metric, str) else list(metric)
        modes = [mode] if isinstance(mode, str) else list(mode)
        for direction in modes:
            if direction not in ("min", "max"):
                raise ConfigError(f"mode must be 'min' or 'max', got {direction!r}")
        if len(names) == 1 and len(modes) == 1:
            return None
        if metric is None:
            raise ConfigError(
                f"mode= gives {len(modes)} directions but metric= names no metric; "
                "name one metric per direction, e.g. metric=val_acc,latency"
            )
        if not all(isinstance(name, str) and name for name in names):
            raise ConfigError(f"metric names must be non-empty strings, got {names!r}")
        if len(names) != len(set(names)):
            raise ConfigError(f"metric names a metric twice: {', '.join(names)}")
        if isinstance(mode, str):
            modes = modes * len(names)
        if len(modes) != len(names):
            raise ConfigError(
                f"mode= gives {len(modes)} directions for {len(names)} "
                f"metric{'s' if len(names) > 1 else ''} ({', '.join(map(str, names))}): "
                "give one per metric, e.g. mode=" + ",".join(["max", "min", "min"][: len(names)])
            )
        return cls(tuple(names), tuple(modes))

    def values(self, trial: Trial) -> tuple[float, ...] | None:
        """The trial's value of every metric, in order; None if it has no value."""
        if not trial.usable:
            return None
        rest = [trial.metrics.get(name) for name in self.names[1:]]
        if any(value is None or not math.isfinite(value) for value in rest):
            return None
        return (float(trial.value), *(float(value) for value in rest))  # type: ignore[arg-type]

    def losses(self, trial: Trial) -> tuple[float, ...] | None:
        """:meth:`values` turned into losses (negated for ``max``), so lower is better."""
        values = self.values(trial)
        if values is None:
            return None
        return tuple(v if m == "min" else -v for v, m in zip(values, self.modes, strict=True))


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """True if losses ``a`` are nowhere worse than ``b`` and somewhere better."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True)
    )


class Front:
    """The non-dominated trials, kept up to date one trial at a time (a trial equal to one on
    the front in every metric joins it)."""

    def __init__(self, objectives: Objectives) -> None:
        self.objectives = objectives
        self._members: list[tuple[tuple[float, ...], Trial]] = []

    def add(self, trial: Trial) -> bool:
        """Take ``trial`` in; True if it is on the front now."""
        losses = self.objectives.losses(trial)
        if losses is None:
            return False
        if any(dominates(other, losses) for other, _ in self._members):
            return False
        self._members = [item for item in self._members if not dominates(losses, item[0])]
        self._members.append((losses, trial))
        return True

    @property
    def trials(self) -> list[Trial]:
        return sorted((trial for _, trial in self._members), key=lambda trial: trial.number)


def front(trials: Sequence[Trial], objectives: Objectives) -> list[Trial]:
    """The trials no other usable trial dominates, in trial order."""
    kept = Front(objectives)
    for trial in trials:
        kept.add(trial)
    return kept.trials


def hypervolume(losses: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """The volume dominated by the points ``losses`` (rows, lower is better) and bounded by
    ``reference``; points not better than the reference in every objective add nothing.

    Exact: a sweep for two objectives, slices along the last objective for more (fine for the
    fronts of a notebook's search, tens to hundreds of points).
    """
    bound = tuple(float(r) for r in reference)
    points = [
        tuple(map(float, p)) for p in losses if all(x < r for x, r in zip(p, bound, strict=True))
    ]
    return _volume(points, bound)


def _volume(points: list[tuple[float, ...]], bound: tuple[float, ...]) -> float:
    if not points:
        return 0.0
    if len(bound) == 1:
        return bound[0] - min(p[0] for p in points)
    if len(bound) == 2:
        total, ceiling = 0.0, bound[1]
        for x, y in sorted(points):
            if y < ceiling:
                total += (bound[0] - x) * (ceiling - y)
                ceiling = y
        return total
    # Slices between consecutive values of the last objective: in each, the points at or
    # below it dominate a region of the remaining objectives.
    levels = [*sorted({p[-1] for p in points}), bound[-1]]
    total = 0.0
    for low, high in itertools.pairwise(levels):
        below = [p[:-1] for p in points if p[-1] <= low]
        total += (high - low) * _volume(below, bound[:-1])
    return total


def scalarised(losses: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ParEGO's augmented Chebyshev scalarisation of rows of ``losses`` (one column per
    objective, lower is better): each column is scaled to [0, 1] over the rows, then
    ``max_j w_j f_j + AUGMENTATION * sum_j w_j f_j``."""
    import numpy as np

    low, high = losses.min(axis=0), losses.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    scaled = (losses - low) / span * weights
    return scaled.max(axis=1) + AUGMENTATION * scaled.sum(axis=1)


def random_weights(count: int, rng: np.random.Generator) -> np.ndarray:
    """A weight vector drawn uniformly from the simplex (summing to 1)."""
    import numpy as np

    return rng.dirichlet(np.ones(count))
