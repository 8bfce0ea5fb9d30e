"""Matplotlib rendering of a :class:`BatchSizeResult`; the numbers come from :func:`curves`."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

from nbopt.ui.plots import new_figure
from nbopt.units import format_bytes

if TYPE_CHECKING:
    from nbopt.batching import BatchSizeResult


class Curves(NamedTuple):
    """What the plot shows, sorted by batch size."""

    rates: list[tuple[int, float]]  # (batch size, samples/s), the faster of repeated ones
    memory: list[tuple[int, float]]  # (batch size, peak MB), every measured batch size
    failed: list[tuple[int, str]]  # (batch size, status) of batch sizes that did not run
    times: list[tuple[int, float]]  # (batch size, predicted time, 1 = shortest): efficient


def curves(result: BatchSizeResult) -> Curves:
    """The plotted points of ``result``."""
    sizes = sorted({m.batch_size for m in result.measurements})
    rates = [(s, r) for s in sizes if (r := result.throughput(s)) is not None]
    memory: dict[int, float] = {}
    for m in result.measurements:
        if m.peak_memory is not None:
            memory[m.batch_size] = max(memory.get(m.batch_size, 0.0), m.peak_memory / 1e6)
    failed = sorted(
        (m.batch_size, m.status)
        for m in result.measurements
        if not m.ok and result.throughput(m.batch_size) is None
    )
    return Curves(rates, sorted(memory.items()), failed, sorted(result.predicted_time.items()))


def plot_batch_size_result(result: BatchSizeResult) -> Any:
    """Samples per second and peak memory against the batch size (log scale); with
    ``mode="efficient"``, the predicted time to a given loss in between."""
    data = curves(result)
    panels = 3 if data.times else 2
    figure = new_figure(figsize=(5.5 * panels, 3.8), layout="constrained")
    left, *middle, right = figure.subplots(1, panels)

    left.set_title("Throughput")
    if data.rates:
        sizes, rates = zip(*data.rates, strict=True)
        left.plot(sizes, rates, marker="o", color="C0", label="samples/s")
        fastest = max(rate for _, rate in data.rates)
        if result.mode == "throughput":
            left.axhspan(
                (1 - result.tolerance) * fastest,
                fastest,
                color="C2",
                alpha=0.12,
                label=f"within {result.tolerance:.0%} of the fastest",
            )
    for size, status in data.failed:
        left.axvline(size, color="C3", ls=":", lw=1)
        left.annotate(status, (size, 0), xytext=(2, 2), textcoords="offset points", color="C3")
    if result.batch_size is not None:
        left.axvline(result.batch_size, color="C2", lw=1.5, label=f"chosen: {result.batch_size}")
    left.set_xscale("log", base=2)
    left.set_xlabel("batch size")
    left.set_ylabel("samples per second")
    left.set_ylim(bottom=0)
    left.legend(loc="best")
    if middle:
        _plot_times(middle[0], result, data)

    right.set_title("Peak memory of a step")
    if data.memory:
        sizes, peaks = zip(*data.memory, strict=True)
        right.plot(sizes, peaks, marker="o", color="C1", label="measured")
        cap = result.memory_limit
        if cap is not None and cap / 1e6 <= 2 * max(peaks):
            right.axhline(cap / 1e6, color="C3", ls="--", label="cap")
        elif cap is not None:
            # A default cap of half the free memory would flatten the measured curve to zero.
            right.set_title(f"Peak memory of a step (cap {format_bytes(cap)}, off the chart)")
        right.legend(loc="best")
        right.set_xscale("log", base=2)
        right.set_xlabel("batch size")
        right.set_ylabel("MB above the start")
    else:
        right.text(0.5, 0.5, "peak memory is not measured on this device", ha="center")
        right.set_axis_off()
    return figure


def _plot_times(axes: Any, result: BatchSizeResult, data: Curves) -> None:
    sizes, times = zip(*data.times, strict=True)
    axes.set_title("Predicted time to a given loss")
    axes.plot(sizes, times, marker="o", color="C4", label="(B + B_noise) / samples per second")
    axes.axhspan(1, 1 + result.tolerance, color="C2", alpha=0.12, label="within tolerance")
    noise = result.noise_scale
    if noise is not None and math.isfinite(noise.value):
        axes.axvline(noise.value, color="C1", ls="--", lw=1, label=f"B_noise {noise.value:.0f}")
    if result.batch_size is not None:
        axes.axvline(result.batch_size, color="C2", lw=1.5, label=f"chosen: {result.batch_size}")
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xlabel("batch size")
    axes.set_ylabel("relative to the shortest")
    axes.legend(loc="best")
