"""The Pareto front of compression plans: the metric against the target ratio.

Plain numbers in, indices out: the result object, the plot and the live view all read it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def dominates(a: tuple[float, float], b: tuple[float, float], mode: str = "max") -> bool:
    """Whether point ``a`` = ``(ratio, metric)`` is at least as good as ``b`` on both (a lower
    ratio; a higher metric for ``mode="max"``, a lower one for ``"min"``) and better on one."""
    sign = 1.0 if mode == "max" else -1.0
    ratio_a, metric_a = a[0], sign * a[1]
    ratio_b, metric_b = b[0], sign * b[1]
    return (
        ratio_a <= ratio_b and metric_a >= metric_b and (ratio_a, metric_a) != (ratio_b, metric_b)
    )


def pareto_front(points: Sequence[tuple[float, float]], mode: str = "max") -> list[int]:
    """Indices of the points no other point dominates, by increasing ratio.

    A point with a NaN is never on the front; of several identical points only the first is.
    """
    valid = [
        index
        for index, (ratio, metric) in enumerate(points)
        if not (math.isnan(ratio) or math.isnan(metric))
    ]
    front = []
    seen: set[tuple[float, float]] = set()
    for index in valid:
        point = (points[index][0], points[index][1])
        if point in seen:
            continue
        if not any(dominates(points[other], point, mode) for other in valid):
            front.append(index)
            seen.add(point)
    return sorted(front, key=lambda index: points[index][0])
