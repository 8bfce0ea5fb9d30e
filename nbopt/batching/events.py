"""Events of a batch-size search, for the live view and TensorBoard
(``nbopt.ui.views.batching``)."""

from __future__ import annotations

from dataclasses import dataclass

from nbopt.batching._result import BatchMeasurement, NoiseScale
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


@dataclass(frozen=True)
class NoiseScaleMeasured(Event):
    """``mode="efficient"``: the gradient noise scale was measured on a throwaway copy, after
    ``noise.steps`` training steps of it; ``final``: the one the choice uses (several
    measurements pooled, ``noise.pooled``)."""

    noise: NoiseScale
    final: bool


@dataclass(frozen=True)
class BatchSizeWarning(Event):
    """Something makes the result less certain (a machine too noisy to decide)."""

    message: str
