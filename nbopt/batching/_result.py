"""``BatchSizeResult``: what :func:`nbopt.batching.find_batch_size` returns and ``%batchsize``
stores in ``out=`` and ``_nbopt``."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nbopt.ui import format as fmt
from nbopt.units import format_bytes, format_rate

OK = "ok"
OOM = "oom"
OVER_MEMORY = "over memory"


@dataclass(frozen=True)
class BatchMeasurement:
    """One batch size tried.

    Attributes:
        batch_size: The batch size.
        status: ``"ok"``; ``"oom"`` (an out-of-memory error was raised); or ``"over memory"``
            (the step's peak memory was above the cap).
        phase: Which part of the search tried it: ``"doubling"``, ``"repeat"`` (a doubling
            measured again because it came out slower than a smaller batch), ``"binary
            search"`` or ``"refine"``.
        samples_per_second: ``batch_size`` divided by the time of the fastest timed step:
            what the step does when nothing else on the machine gets in its way (``timeit``'s
            rule). The median step time moves with the machine's load.
        step_time: Median seconds per step.
        spread: Interquartile range of the step times over their median: about 0 on a quiet
            machine, large when other processes were competing for it.
        repeats: Timed steps (after warm-up).
        noise: How far the speed could move if measured again: the gap between the fastest
            and the second fastest timed step, relative to the fastest (0.02: 2%). A gain
            smaller than the noise of the two measurements compared is not a gain.
        peak_memory: Peak bytes of a step above the level when measuring began (after the
            training copy of the model was made); None where it cannot be measured.
        error: What went wrong, for a batch size that failed.
    """

    batch_size: int
    status: str
    phase: str
    samples_per_second: float | None = None
    step_time: float | None = None
    spread: float | None = None
    repeats: int = 0
    peak_memory: int | None = None
    error: str = ""
    noise: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == OK


@dataclass(frozen=True)
class NoiseScale:
    """One measurement of the gradient noise scale ``B_noise = tr(Σ) / |G|²`` (McCandlish et
    al., 2018) on the rows of ``example``.

    Attributes:
        value: ``B_noise`` in samples; ``math.inf`` when the gradient is lost in the noise at
            every batch size the data allows.
        low: The 10th percentile of a bootstrap over the groups of rows measured.
        high: The 90th percentile (``math.inf`` when some resamples lose the gradient).
        gradient_norm: ``|G|²`` as estimated.
        trace: ``tr(Σ)`` as estimated.
        loss: The mean loss of the batches measured.
        steps: Training steps the throwaway copy had taken before this measurement (the last
            of them for a pooled one).
        rows: Rows of the data the measurement used (all measurements pooled).
        pooled: How many measurements, at different points of training, were pooled.
    """

    value: float
    low: float
    high: float
    gradient_norm: float
    trace: float
    loss: float
    steps: int
    rows: int
    pooled: int = 1

    def text(self) -> str:
        """``62 (48 to 80)``: the value and the 10th to 90th percentile of its bootstrap."""
        if math.isinf(self.value):
            return "beyond what the data can measure"
        high = "inf" if math.isinf(self.high) else f"{self.high:.0f}"
        return f"{self.value:.0f} ({self.low:.0f} to {high})"


@dataclass
class BatchSizeResult:
    """The outcome of a batch-size search.

    Attributes:
        batch_size: The batch size to use. With ``mode="efficient"``, the smallest batch
            whose predicted time to a given loss is within ``tolerance`` of the shortest;
            with ``mode="throughput"``, the smallest batch whose speed is within
            ``tolerance`` of the fastest (smaller batches tend to generalise better, for the
            same speed); with ``mode="max"``, the largest batch that fits. None if the search
            was interrupted before any batch succeeded.
        best_batch_size: The fastest batch measured, in samples per second (``mode="max"``:
            the largest that fits).
        mode: ``"efficient"``, ``"throughput"`` or ``"max"``.
        mode_reason: Why this mode: asked for, or the default and why.
        train: Whether training steps were measured (else inference).
        device: The device the model ran on.
        measurements: Every batch size tried, in order.
        tolerance: Share of the fastest speed that ``batch_size`` may give up.
        memory_limit: The cap on a step's peak memory in bytes; None if none was enforced.
        stop_reason: Why the search stopped growing the batch.
        status: ``"done"``, or ``"interrupted"`` or ``"failed"`` for the partial result that
            the final event of an unfinished search carries.
        duration: Seconds the search took.
        noise_scale: ``mode="efficient"``: the gradient noise scale the choice used, the
            critical batch size ``B_noise`` (its ``value``); every measurement of it is in
            ``noise_scales``.
        predicted_time: ``mode="efficient"``: the predicted time to a given loss of each
            batch size that ran, relative to the shortest (1.0).
        learning_rate: ``mode="efficient"`` with ``lr=``: the learning rate for
            ``batch_size``, scaled by ``lr_rule`` from ``lr`` at ``lr_batch``.
        lr_rule: How ``learning_rate`` was scaled.
        warnings: What made the result less certain (a machine too noisy to tell batch sizes
            apart); also shown in the live view.
    """

    batch_size: int | None
    best_batch_size: int | None
    mode: str
    train: bool
    device: str
    measurements: list[BatchMeasurement] = field(default_factory=list)
    tolerance: float = 0.05
    memory_limit: int | None = None
    stop_reason: str = ""
    status: str = "done"
    duration: float = 0.0
    mode_reason: str = ""
    noise_scale: NoiseScale | None = None
    noise_scales: list[NoiseScale] = field(default_factory=list)
    predicted_time: dict[int, float] = field(default_factory=dict)
    learning_rate: float | None = None
    lr_rule: str = ""
    warnings: list[str] = field(default_factory=list)

    def throughput(self, batch_size: int) -> float | None:
        """The measured samples per second of ``batch_size`` (the faster one if measured
        twice); None if it was not measured or failed."""
        return fastest_rate(self.measurements, batch_size)

    def to_dataframe(self) -> Any:
        """One row per batch size tried, in order: batch_size, status, samples_per_second,
        step_time, spread, noise, repeats, peak_memory (bytes), phase, error, and with
        ``mode="efficient"`` predicted_time (relative to the shortest)."""
        import pandas as pd

        columns = [
            "batch_size",
            "status",
            "samples_per_second",
            "step_time",
            "spread",
            "noise",
            "repeats",
            "peak_memory",
            "phase",
            "error",
        ]
        rows = [{name: getattr(m, name) for name in columns} for m in self.measurements]
        if self.mode == "efficient":
            columns.append("predicted_time")
            for row in rows:
                row["predicted_time"] = self.predicted_time.get(row["batch_size"])
        return pd.DataFrame(rows, columns=columns)

    def plot(self) -> Any:
        """A matplotlib figure: samples per second (and, with ``mode="efficient"``, the
        predicted time to a given loss) and peak memory against the batch size."""
        from nbopt.ui.plots.batching import plot_batch_size_result

        return plot_batch_size_result(self)

    def summary(self) -> str:
        """One line: the chosen batch size and why."""
        if self.batch_size is None:
            return f"no batch size succeeded ({self.status})"
        rate = self.throughput(self.batch_size)
        speed = f" at {format_rate(rate)} samples/s" if rate is not None else ""
        if self.mode == "max":
            return f"largest batch that fits: {self.batch_size}{speed}"
        if self.mode == "efficient":
            return self._efficient_summary(speed)
        text = f"batch size {self.batch_size}{speed}"
        if self.best_batch_size != self.batch_size and self.best_batch_size is not None:
            best_rate = self.throughput(self.best_batch_size)
            text += (
                f", within {self.tolerance:.0%} of the fastest, {self.best_batch_size} at "
                f"{format_rate(best_rate)} samples/s"
            )
        else:
            text += ", the fastest measured"
        return text

    def _efficient_summary(self, speed: str) -> str:
        text = f"batch size {self.batch_size}{speed}, the shortest predicted time to a given loss"
        if self.noise_scale is not None:
            text += f"; critical batch B_noise {self.noise_scale.text()}"
        if self.best_batch_size not in (None, self.batch_size):
            slower = self.predicted_time.get(self.best_batch_size)
            if slower is not None:
                text += (
                    f"; the fastest in samples/s, {self.best_batch_size}, would take "
                    f"{slower:.2f}x as long"
                )
        if self.learning_rate is not None:
            text += f"; learning rate {self.learning_rate:.3g}"
        return text

    def __repr__(self) -> str:
        what = "training" if self.train else "inference"
        return (
            f"<BatchSizeResult {self.mode}, {what} on {self.device}: {self.summary()}; "
            f"{len(self.measurements)} batch sizes tried>"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def _repr_html_(self) -> str:
        what = "training" if self.train else "inference"
        title = (
            f"<b>BatchSizeResult</b> · mode={html.escape(self.mode)} · {what} on "
            f"{html.escape(self.device)}"
        )
        if self.status != "done":
            title += f" · {html.escape(self.status)}"
        efficient = self.mode == "efficient"
        rows = [
            (
                m.batch_size,
                format_rate(m.samples_per_second) if m.samples_per_second is not None else "",
                *((_relative(self.predicted_time.get(m.batch_size)),) if efficient else ()),
                format_bytes(m.peak_memory) if m.peak_memory is not None else "",
                m.status + ("" if m.batch_size != self.batch_size or not m.ok else " ← chosen"),
                m.phase,
            )
            for m in sorted(self.measurements, key=lambda m: m.batch_size)
        ]
        headers = ["batch", "samples/s", *(["predicted time"] if efficient else [])]
        table = fmt.html_table([*headers, "peak memory", "status", "phase"], rows)
        cap = f"memory cap {format_bytes(self.memory_limit)}; " if self.memory_limit else ""
        notes = f"{cap}stopped: {self.stop_reason}; {fmt.duration(self.duration)}"
        details = [self.mode_reason] if self.mode_reason else []
        if self.learning_rate is not None:
            details.append(f"learning rate {self.learning_rate:.3g} by {self.lr_rule}")
        warnings = "".join(
            f"<br><span style='color:#b00'>⚠ {html.escape(text)}</span>" for text in self.warnings
        )
        extra = "".join(f"<br>{html.escape(text)}" for text in details)
        return (
            f"<div>{title}<br><b>{html.escape(self.summary())}</b>{extra}{warnings}"
            f"<details><summary>{len(self.measurements)} batch sizes tried</summary>{table}"
            f"</details><span style='color:#555'>{html.escape(notes)}</span></div>"
        )


def _relative(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def fastest_rate(measurements: Sequence[BatchMeasurement], batch_size: int) -> float | None:
    """Samples per second of ``batch_size``, the faster if measured twice: load from other
    processes only ever slows a step down."""
    rates = [
        m.samples_per_second
        for m in measurements
        if m.batch_size == batch_size and m.ok and m.samples_per_second is not None
    ]
    return max(rates) if rates else None


def best_measurement(
    measurements: Sequence[BatchMeasurement], mode: str
) -> BatchMeasurement | None:
    """The fastest measurement (``mode="throughput"``; the smaller batch on a tie) or the
    largest batch that ran (``mode="max"``)."""
    ran = [m for m in measurements if m.ok and m.samples_per_second is not None]
    if mode == "max":
        return max(ran, key=lambda m: m.batch_size, default=None)
    return max(ran, key=lambda m: (m.samples_per_second, -m.batch_size), default=None)


def chosen_size(
    measurements: Sequence[BatchMeasurement], mode: str, tolerance: float
) -> int | None:
    """The batch size to use: the largest that ran (``mode="max"``), or the smallest whose
    speed is within ``tolerance`` of the fastest."""
    best = best_measurement(measurements, mode)
    if best is None or mode == "max":
        return None if best is None else best.batch_size
    floor = (1 - tolerance) * (best.samples_per_second or 0.0)
    sizes = sorted({m.batch_size for m in measurements if m.ok})
    return min(s for s in sizes if (fastest_rate(measurements, s) or 0.0) >= floor)
