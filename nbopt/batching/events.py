"""Events of a batch-size search, for the live view and TensorBoard (see ``_views.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from nbopt.batching._result import BatchMeasurement
from nbopt.events import Event


@dataclass(frozen=True)
class BatchSizeStarted(Event):
    """The search starts measuring ``batch_size`` in ``phase``."""

    batch_size: int
    phase: str


@dataclass(frozen=True)
class BatchSizeMeasured(Event):
    """A batch size was measured (or failed); ``best`` is the best so far: the fastest batch
    (``mode="throughput"``) or the largest that fits (``mode="max"``)."""

    measurement: BatchMeasurement
    best: BatchMeasurement | None
    mode: str
    n_tried: int
    n_failed: int
