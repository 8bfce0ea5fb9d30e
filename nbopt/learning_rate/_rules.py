"""Suggestion rules: a learning rate read off a range test's curve of loss against rate.

Every rule takes the learning rates of a sweep and the raw loss of each step (one loss per
rate, rates growing geometrically) and returns a rate, or None when the curve says nothing
(the loss never fell). Each rule smooths the raw losses as its source does, so that the rules
of fastai and Lightning are computed here as they compute them:

* ``steepest`` (Lightning's ``suggestion()``): the debiased exponential moving average of the
  losses (beta 0.98), without the first 10 points and the last one; the rate where the
  gradient of that curve, along the index, is most negative.
* ``steep`` (fastai's ``steep``): the same moving average, without the first tenth and the
  last 5 points; the rate where the slope against log(rate) is most negative.
* ``valley`` (fastai's default): on that same curve, the longest run of points each lower than
  some earlier point of the run (the longest decreasing subsequence), and the rate half-way
  along it.
* ``minimum`` (fastai's ``minimum``): on that same curve, a tenth of the rate of the lowest
  loss.
* ``minimum_centered`` (nbopt's): the rate of the lowest loss on a *centered* smoothing of the
  curve (capped at the starting loss, a running median of 5 points, then a Gaussian kernel
  0.15 decades wide along log(rate)), divided by 5. The moving average of the others weighs
  only the past (its time constant is fifty steps, several decades of rates in a sweep of a
  hundred steps), so what it shows lies at higher rates than where the loss did it: half a
  decade for a dip one decade wide. A centered smoothing has no lag, the median drops the
  spikes of single batches, and a minimum is a feature that noise moves little, where the
  steepest point of a noisy curve jumps from one spike to the next. Why this rule and not
  another, and a fifth rather than fastai's tenth, is measured in
  ``benchmarks/bench_lr_find.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from nbopt.errors import ConfigError, did_you_mean

Rule = Callable[[np.ndarray, np.ndarray], float | None]

EMA_BETA = 0.98
# A centered smoothing that is wide enough to calm the step-to-step noise of a minibatch
# loss, and narrow enough that a dip half a decade wide keeps its place.
_MEDIAN_POINTS = 5
_KERNEL_DECADES = 0.15
_MIN_POINTS = 5
# The lowest loss lies where training is already on the edge of diverging; a fifth of that
# rate trained within a point of the best rate of a sweep on every model of the benchmark,
# where a tenth fell 1.3 points short on one of them.
_MINIMUM_DIVISOR = 5


def ema(losses: Sequence[float], beta: float = EMA_BETA) -> np.ndarray:
    """The debiased exponential moving average that fastai and Lightning show and read."""
    smoothed = np.empty(len(losses))
    average = 0.0
    for index, loss in enumerate(losses):
        average = beta * average + (1 - beta) * loss
        smoothed[index] = average / (1 - beta ** (index + 1))
    return smoothed


def centered(lrs: Sequence[float], losses: Sequence[float]) -> np.ndarray:
    """The losses smoothed without lag: capped at the loss where the sweep began (how far a
    diverging loss shoots up says nothing, and would pull the smoothing), a running median of
    5 points (spikes of one batch go), then a Gaussian kernel of 0.15 decades along
    log10(rate), renormalised at the ends."""
    values = np.asarray(losses, dtype=float)
    values = np.minimum(values, np.median(values[:_MEDIAN_POINTS]))
    half = _MEDIAN_POINTS // 2
    padded = np.pad(values, half, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, _MEDIAN_POINTS)
    medians = np.median(windows, axis=1)
    position = np.log10(np.asarray(lrs, dtype=float))
    weights = np.exp(-0.5 * ((position[:, None] - position[None, :]) / _KERNEL_DECADES) ** 2)
    return (weights @ medians) / weights.sum(axis=1)


def steepest(lrs: np.ndarray, losses: np.ndarray) -> float | None:
    """Lightning: the most negative gradient of the moving average, skipping 10 and 1 points."""
    smoothed = ema(losses)[10:-1]
    rates = lrs[10:-1]
    finite = np.isfinite(smoothed)
    smoothed, rates = smoothed[finite], rates[finite]
    if len(smoothed) < 2:
        return None
    return float(rates[int(np.argmin(np.gradient(smoothed)))])


def _fastai_curve(lrs: np.ndarray, losses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fastai reads its curve without the first tenth of the planned steps and the last 5."""
    skip = max(len(lrs) // 10, 0)
    smoothed = ema(losses)[skip:-5]
    return lrs[skip:-5], smoothed


def steep(lrs: np.ndarray, losses: np.ndarray) -> float | None:
    """fastai: where the slope of the moving average against log(rate) is most negative."""
    rates, smoothed = _fastai_curve(lrs, losses)
    if len(smoothed) < 2:
        return None
    slopes = np.diff(smoothed) / np.diff(np.log(rates))
    return float(rates[int(np.argmin(slopes))])


def valley(lrs: np.ndarray, losses: np.ndarray) -> float | None:
    """fastai: half-way along the longest decreasing run of the moving average."""
    return longest_valley(*_fastai_curve(lrs, losses))


def longest_valley(rates: np.ndarray, curve: np.ndarray) -> float | None:
    """The rate half-way along the longest run of points each lower than some earlier point
    of the run (the longest decreasing subsequence) of ``curve``."""
    count = len(curve)
    if count < 2:
        return None
    # run[i]: the length of the longest decreasing subsequence ending at point i.
    run = np.ones(count, dtype=int)
    end = 0
    for i in range(1, count):
        lower = curve[:i] > curve[i]
        if lower.any():
            run[i] = run[:i][lower].max() + 1
        if run[i] > run[end]:
            end = i
    start = end - run[end]
    third = (end - start) / 3
    return float(rates[max(start + int(third) + int(third / 2), 0)])


def minimum(lrs: np.ndarray, losses: np.ndarray) -> float | None:
    """fastai: a tenth of the rate where the moving average is lowest."""
    rates, smoothed = _fastai_curve(lrs, losses)
    if len(smoothed) == 0:
        return None
    return float(rates[int(np.argmin(smoothed))]) / 10


def minimum_centered(lrs: np.ndarray, losses: np.ndarray) -> float | None:
    """nbopt: a fifth of the rate where the centered smoothing of the losses is lowest, if
    the loss fell there at all."""
    if len(losses) < _MIN_POINTS:
        return None
    smoothed = centered(lrs, losses)
    lowest = int(np.argmin(smoothed))
    if lowest == 0 or not smoothed[lowest] < smoothed[0]:
        return None  # the loss never fell below where it started
    return float(lrs[lowest]) / _MINIMUM_DIVISOR


RULES: dict[str, Rule] = {
    "minimum_centered": minimum_centered,
    "valley": valley,
    "minimum": minimum,
    "steep": steep,
    "steepest": steepest,
}
DEFAULT_RULE = "minimum_centered"


def check_rule(name: str) -> str:
    """``name`` if it is a known rule, else ConfigError with "did you mean" and the list."""
    if name not in RULES:
        raise ConfigError(
            f"unknown rule {name!r}{did_you_mean(name, RULES)}; known rules: {', '.join(RULES)}"
        )
    return name


def suggest(rule: str, lrs: Sequence[float], losses: Sequence[float]) -> float | None:
    """The rate that ``rule`` reads off the curve, or None."""
    rates = np.asarray(lrs, dtype=float)
    values = np.asarray(losses, dtype=float)
    finite = np.isfinite(values)
    if not finite.all():
        # Only the finite start of a curve is a curve: after a non-finite loss, nothing is.
        cut = int(np.argmin(finite))
        rates, values = rates[:cut], values[:cut]
    if len(values) == 0:
        return None
    return RULES[rule](rates, values)


def median_curve(curves: Sequence[Sequence[float]]) -> np.ndarray:
    """The median loss at each step over several sweeps of the same rates, up to the first
    step where half of them or more had stopped (diverged: infinitely bad)."""
    longest = max(len(curve) for curve in curves)
    table = np.full((len(curves), longest), np.inf)
    for row, curve in enumerate(curves):
        values = np.asarray(curve, dtype=float)
        table[row, : len(values)] = np.where(np.isfinite(values), values, np.inf)
    median = np.median(table, axis=0)
    finite = np.isfinite(median)
    return median if finite.all() else median[: int(np.argmin(finite))]
