"""Which batch sizes to measure, and when to stop: the searches of each mode.

``mode="max"`` doubles the batch until a step runs out of memory, would exceed the memory cap
or reaches the largest size allowed, then binary-searches between the last batch that fitted
and the first that did not.

``mode="throughput"`` (and the speed measurements of ``mode="efficient"``) doubles until two
doublings in a row gain nothing beyond the noise of the measurements (a plateau), then
measures the midpoints on both sides of the fastest batch, and one below the smallest batch
within ``tolerance`` of it. While a doubling nearly doubles the speed, the next step
quadruples the batch. A gain counts only if it is larger than the measured noise of the two
measurements compared (at least 3%): on a plateau, speeds that differ by the noise alone
would otherwise read as gains, and the search would double to the largest size allowed. A
doubling that comes out slower than a smaller batch by more than the noise is measured again,
since a burst of load from other processes is the likelier cause, and so is the first
doubling past the fastest before the search calls it a plateau (load that slows every step
of a measurement alike hides a gain); when the two measurements of a batch size disagree by
more than a quarter, the machine was too noisy to tell batch sizes apart, and the result says
so.

``mode="efficient"`` then measures the midpoints around the batch with the shortest predicted
time to a given loss (``_efficient.py``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from nbopt.batching._result import BatchMeasurement, best_measurement, chosen_size, fastest_rate
from nbopt.units import format_rate

if TYPE_CHECKING:
    from nbopt.batching._search import BatchSizeSearch

# The smallest gain that counts, whatever the measured noise: below it, a larger batch is not
# worth its memory (the tolerance of the choice is 5%).
_MIN_GAIN = 0.03
_PATIENCE = 2
# While a doubling still gains this much (nearly twice the speed: the fixed cost of a step
# dominates), the next step quadruples the batch: the fastest batch is far above.
_STEEP = 0.8
# Two measurements of one batch size that differ by more than this mean that the load on the
# machine changed under the search.
_DISAGREEMENT = 0.25


def search_max(search: BatchSizeSearch) -> None:
    size, fitted, failed = search.start, 0, 0
    while True:
        if fitted and search.over_cap(size):
            failed = size
            break
        if not search.probe(size, "doubling").ok:
            failed = size
            break
        fitted = size
        if size >= search.stop:
            search.stop_reason = f"reached max_batch_size={search.stop}"
            break
        size = min(2 * size, search.stop)
    if failed:
        _binary_search(search, fitted, failed)


def _binary_search(search: BatchSizeSearch, low: int, high: int) -> None:
    """Narrow down between a batch that fits (``low``) and one that does not."""
    while high - low > 1:
        middle = (low + high) // 2
        if search.over_cap(middle) or not search.probe(middle, "binary search").ok:
            high = middle
        else:
            low = middle


def search_throughput(search: BatchSizeSearch) -> None:
    size, anchor, previous = search.start, None, None
    missed: list[BatchMeasurement] = []  # doublings since the fastest, none faster than it
    while True:
        measurement = search.probe(size, "doubling")
        if not measurement.ok:
            break
        if anchor is not None and slower(measurement, anchor):
            measurement = _measure_again(search, measurement)
        if anchor is None or faster(measurement, anchor):
            anchor, missed = measurement, []
        else:
            missed.append(measurement)
        if len(missed) >= _PATIENCE:
            anchor, missed = _confirm_plateau(search, anchor, missed)
        if len(missed) >= _PATIENCE:
            search.stop_reason = (
                f"no faster than batch {anchor.batch_size}, beyond the noise, for "
                f"{_PATIENCE} doublings"
            )
            break
        if size >= search.stop:
            search.stop_reason = f"reached max_batch_size={search.stop}"
            break
        steep = previous is not None and _gain_per_doubling(previous, measurement) >= _STEEP
        previous = measurement
        size = min((4 if steep else 2) * size, search.stop)
        if search.over_cap(size):
            break
    refine(search)


def _confirm_plateau(
    search: BatchSizeSearch, anchor: BatchMeasurement, missed: list[BatchMeasurement]
) -> tuple[BatchMeasurement, list[BatchMeasurement]]:
    """Before calling it a plateau, measure the first doubling past the fastest once more:
    load that slowed all of its steps alike looks like a plateau. If it now gains beyond the
    noise, the search goes on from there."""
    first = missed[0]
    if sum(1 for m in search.measurements if m.batch_size == first.batch_size) > 1:
        return anchor, missed
    again = search.probe(first.batch_size, "repeat")
    if not again.ok:
        return anchor, missed
    check_agreement(search, first, again)
    if not faster(again, anchor):
        return anchor, missed
    anchor, still = again, []
    for later in missed[1:]:
        if faster(later, anchor):
            anchor, still = later, []
        else:
            still.append(later)
    return anchor, still


def _measure_again(search: BatchSizeSearch, first: BatchMeasurement) -> BatchMeasurement:
    """Measure a batch size that broke the rise of the speed once more; keep the faster
    measurement (load only ever slows a step), and warn when the two disagree by far more
    than their noise."""
    again = search.probe(first.batch_size, "repeat")
    if not again.ok:
        return first
    check_agreement(search, first, again)
    return again if (again.samples_per_second or 0) > (first.samples_per_second or 0) else first


def check_agreement(search: BatchSizeSearch, a: BatchMeasurement, b: BatchMeasurement) -> None:
    """Warn if two measurements of one batch size disagree by more than ``_DISAGREEMENT``:
    whatever noise each measured, the load changed between them."""
    rate_a, rate_b = a.samples_per_second or 0.0, b.samples_per_second or 0.0
    if not rate_a or not rate_b:
        return
    apart = abs(rate_a - rate_b) / max(rate_a, rate_b)
    if apart > _DISAGREEMENT:
        search.warn(
            f"the machine was too noisy to decide: batch {a.batch_size} ran at "
            f"{format_rate(rate_a)} then {format_rate(rate_b)} samples/s ({apart:.0%} apart); "
            "other processes were competing for it, so measure again when it is quieter"
        )


def refine(search: BatchSizeSearch) -> None:
    """Measure the midpoints around the fastest batch, then below the chosen one."""
    fastest = best_measurement(search.measurements, "throughput")
    if fastest is None:
        return
    best = fastest.batch_size
    tried = sorted({m.batch_size for m in search.measurements})
    smaller = [s for s in tried if s < best and fastest_rate(search.measurements, s)]
    larger = [s for s in tried if s > best]
    for neighbour in smaller[-1:] + larger[:1]:
        probe_midpoint(search, best, neighbour)
    chosen = chosen_size(search.measurements, "throughput", search.tolerance)
    if chosen is not None:
        below = sorted({m.batch_size for m in search.measurements if m.ok})
        below = [size for size in below if size < chosen]
        if below:
            probe_midpoint(search, chosen, below[-1])


def refine_around(search: BatchSizeSearch, best: int) -> None:
    """Measure the midpoints between ``best`` and the measured batch sizes on either side."""
    tried = sorted({m.batch_size for m in search.measurements if m.ok})
    for neighbour in [s for s in tried if s < best][-1:] + [s for s in tried if s > best][:1]:
        probe_midpoint(search, best, neighbour)


def probe_midpoint(search: BatchSizeSearch, a: int, b: int) -> None:
    middle = (a + b) // 2
    tried = {m.batch_size for m in search.measurements}
    if middle in tried or middle in (a, b) or search.over_cap(middle):
        return
    search.probe(middle, "refine")


def noise_band(a: BatchMeasurement, b: BatchMeasurement) -> float:
    """The relative difference between two speeds that their measurements' noise explains."""
    return max(_MIN_GAIN, (a.noise or 0.0) + (b.noise or 0.0))


def faster(candidate: BatchMeasurement, reference: BatchMeasurement) -> bool:
    """Whether ``candidate`` is faster than ``reference`` beyond the noise of both."""
    return (candidate.samples_per_second or 0.0) > (reference.samples_per_second or 0.0) * (
        1 + noise_band(candidate, reference)
    )


def slower(candidate: BatchMeasurement, reference: BatchMeasurement) -> bool:
    """Whether ``candidate`` is slower than ``reference`` beyond the noise of both."""
    return (candidate.samples_per_second or 0.0) < (reference.samples_per_second or 0.0) * (
        1 - noise_band(candidate, reference)
    )


def _gain_per_doubling(smaller: BatchMeasurement, larger: BatchMeasurement) -> float:
    doublings = math.log2(larger.batch_size / smaller.batch_size)
    ratio = (larger.samples_per_second or 0.0) / (smaller.samples_per_second or 1.0)
    return ratio ** (1 / doublings) - 1 if ratio > 0 else -1.0
