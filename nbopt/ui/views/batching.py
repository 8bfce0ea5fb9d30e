"""How the live views and TensorBoard show a batch-size search.

The live view gets one row per batch size tried, a curve of samples per second against
log2(batch size), each measurement of the gradient noise scale (``mode="efficient"``) and
each warning. TensorBoard gets, in the run's directory, the scalars
``batchsize/samples_per_second`` and ``batchsize/peak_memory_mb`` with the batch size as the
step, so its charts plot both against the batch size; ``batchsize/noise_scale`` with the
training steps of the copy it was measured on as the step; and the warnings as text.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from nbopt.batching import BatchMeasurement
from nbopt.batching.events import (
    BatchSizeMeasured,
    BatchSizeStarted,
    BatchSizeWarning,
    NoiseScaleMeasured,
)
from nbopt.ui.state import ProgressState, Row
from nbopt.ui.tensorboard_files import text_summary
from nbopt.units import format_bytes, format_rate

if TYPE_CHECKING:
    from nbopt.ui.tensorboard import TensorBoardReporter

SAMPLES_TAG = "batchsize/samples_per_second"
MEMORY_TAG = "batchsize/peak_memory_mb"
NOISE_TAG = "batchsize/noise_scale"
WARNING_TAG = "batchsize/warnings"


def _best_text(best: BatchMeasurement, mode: str) -> str:
    rate = format_rate(best.samples_per_second)
    if mode == "max":
        return f"largest batch that ran: {best.batch_size} ({rate} samples/s)"
    return f"fastest batch measured: {best.batch_size} at {rate} samples/s"


def present_batch_size_started(event: BatchSizeStarted, state: ProgressState) -> None:
    state.live = {"running": f"measuring batch size {event.batch_size} ({event.phase})"}


def present_batch_size_measured(event: BatchSizeMeasured, state: ProgressState) -> None:
    m = event.measurement
    state.done, state.failed = event.n_tried, event.n_failed
    state.live.pop("running", None)
    rate = format_rate(m.samples_per_second) if m.samples_per_second is not None else "-"
    memory = format_bytes(m.peak_memory) if m.peak_memory is not None else "-"
    new_best = event.best is not None and event.best is m
    if event.best is not None:
        state.headline = _best_text(event.best, event.mode)
    if m.ok and m.samples_per_second is not None:
        state.curve_label = "samples/s against log2(batch size)"
        points = {x: y for x, y in state.curve}
        x = math.log2(m.batch_size)
        points[x] = max(points.get(x, 0.0), m.samples_per_second)
        state.curve = sorted(points.items())
    outcome = m.status if not m.error else f"{m.status}: {m.error}"
    marker = "  *" if new_best else ""
    text = (
        f"batch {m.batch_size:>6}  {rate:>10} samples/s  peak {memory:>9}  "
        f"{outcome}{marker}  ({m.phase})"
    )
    cells = (m.batch_size, rate, memory, m.status, m.phase)
    state.rows.append(Row(cells, text, important=new_best or not m.ok))


def present_noise_scale(event: NoiseScaleMeasured, state: ProgressState) -> None:
    noise = event.noise
    if event.final:
        where = (
            f"{noise.pooled} measurements pooled, up to {noise.steps} steps"
            if noise.pooled > 1
            else f"after {noise.steps} steps"
        )
        state.note = f"critical batch size B_noise {noise.text()}, {where}"
        text = f"noise scale B_noise {noise.text()}  ({where}; the choice uses it)"
        state.rows.append(Row(("B_noise", noise.text(), "", "", where), text, True))
        state.live.pop("noise", None)
        return
    state.live["noise"] = (
        f"gradient noise scale after {noise.steps} training steps of a copy: "
        f"{noise.text()} (loss {noise.loss:.3g})"
    )


def present_warning(event: BatchSizeWarning, state: ProgressState) -> None:
    state.rows.append(
        Row(("warning", event.message, "", "", ""), f"warning: {event.message}", True)
    )


def log_batch_size_measured(reporter: TensorBoardReporter, event: BatchSizeMeasured) -> None:
    m = event.measurement
    root = reporter.root
    if root is None or not m.ok:
        return
    if m.samples_per_second is not None:
        root.scalar(SAMPLES_TAG, m.samples_per_second, m.batch_size)
    if m.peak_memory is not None:
        root.scalar(MEMORY_TAG, m.peak_memory / 1e6, m.batch_size)
    root.flush()


def log_noise_scale(reporter: TensorBoardReporter, event: NoiseScaleMeasured) -> None:
    root = reporter.root
    if root is None or event.final or math.isinf(event.noise.value):
        return
    root.scalar(NOISE_TAG, event.noise.value, event.noise.steps)
    root.flush()


def log_warning(reporter: TensorBoardReporter, event: BatchSizeWarning) -> None:
    if reporter.root is not None:
        reporter.root.summary(text_summary(WARNING_TAG, event.message))
        reporter.root.flush()


PRESENTERS = {
    BatchSizeStarted: present_batch_size_started,
    BatchSizeMeasured: present_batch_size_measured,
    NoiseScaleMeasured: present_noise_scale,
    BatchSizeWarning: present_warning,
}
LOGGERS = {
    BatchSizeMeasured: log_batch_size_measured,
    NoiseScaleMeasured: log_noise_scale,
    BatchSizeWarning: log_warning,
}
