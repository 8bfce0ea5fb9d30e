"""Numbers behind the plots of a search: plain data, no drawing (see ``nbopt.ui.plots``)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import NamedTuple

from nbopt.tuning._trial import Trial
from nbopt.ui.format import flatten_params


class HistoryPoint(NamedTuple):
    number: int
    value: float
    best: float


class Importance(NamedTuple):
    param: str
    importance: float


def history(trials: Sequence[Trial], mode: str) -> list[HistoryPoint]:
    """Each usable trial's value and the best value so far, in trial order."""
    better = min if mode == "min" else max
    points: list[HistoryPoint] = []
    for trial in trials:
        if not trial.usable:
            continue
        best = trial.value if not points else better(points[-1].best, trial.value)
        points.append(HistoryPoint(trial.number, trial.value, best))
    return points


def importance(trials: Sequence[Trial], bins: int = 5) -> list[Importance]:
    """How much of the variance of the value each parameter explains, most important first.

    Each parameter's values are grouped (categories as they are, numbers into ``bins``
    quantile bins) and the correlation ratio eta² of the value over the groups is computed;
    the ratios are scaled to sum to 1. Empty with fewer than three usable trials.
    """
    usable = [t for t in trials if t.usable]
    if len(usable) < 3:
        return []
    values = [float(t.value) for t in usable]
    rows = [flatten_params(t.params) if isinstance(t.params, dict) else {} for t in usable]
    names = sorted({name for row in rows for name in row})
    scores = []
    for name in names:
        present = [(row[name], v) for row, v in zip(rows, values, strict=True) if name in row]
        if len(present) < 3:
            continue
        groups = _groups([p for p, _ in present], bins)
        scores.append((name, _eta_squared(groups, [v for _, v in present])))
    total = sum(score for _, score in scores)
    if total <= 0:
        return [Importance(name, 0.0) for name, _ in scores]
    ranked = [Importance(name, score / total) for name, score in scores]
    return sorted(ranked, key=lambda item: item.importance, reverse=True)


def _groups(params: list[object], bins: int) -> list[object]:
    numeric = all(isinstance(p, numbers.Real) and not isinstance(p, bool) for p in params)
    if not numeric or len(set(params)) <= bins:
        return [repr(p) for p in params]
    ordered = sorted(float(p) for p in params)  # type: ignore[arg-type]
    edges = [ordered[min(len(ordered) - 1, (len(ordered) * k) // bins)] for k in range(1, bins)]
    return [sum(float(p) > edge for edge in edges) for p in params]  # type: ignore[arg-type]


def _eta_squared(groups: list[object], values: list[float]) -> float:
    mean = sum(values) / len(values)
    total = sum((v - mean) ** 2 for v in values)
    if total == 0 or not math.isfinite(total):
        return 0.0
    by_group: dict[object, list[float]] = {}
    for group, value in zip(groups, values, strict=True):
        by_group.setdefault(group, []).append(value)
    between = sum(len(vs) * (sum(vs) / len(vs) - mean) ** 2 for vs in by_group.values())
    return between / total
