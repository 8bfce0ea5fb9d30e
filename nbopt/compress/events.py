"""What :func:`nbopt.compress.optimize` says while it runs, besides RunStarted/RunFinished.

How the live view shows these and how TensorBoard logs them is registered in ``_views.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nbopt.compress._result import ModelMeasurement, OptimizeResult, StepRecord
from nbopt.events import Event


@dataclass(frozen=True)
class BaselineMeasured(Event):
    """The original model was measured; ``metric_name`` names ``eval=``."""

    measurement: ModelMeasurement
    metric_name: str


@dataclass(frozen=True)
class StepStarted(Event):
    """Step ``index`` (from 1) of ``total`` begins."""

    index: int
    total: int
    label: str


@dataclass(frozen=True)
class StepFinished(Event):
    """A step ended and the model was measured after it; ``previous`` is the measurement
    before the step, ``baseline`` the original model's."""

    index: int
    record: StepRecord
    baseline: ModelMeasurement
    previous: ModelMeasurement
    metric_name: str


@dataclass(frozen=True)
class FinetuneReported(Event):
    """The fine-tune function called ``nbopt.report(step, value, **metrics)``."""

    step: int
    value: float | None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SoftPruningApplied(Event):
    """Soft pruning zeroed its selection during the fine-tune (the ``count``-th time): channels
    now zero of ``channels`` in the groups pruned, and how many of those zeroed the time before
    had grown back enough to be kept (``revived``)."""

    count: int
    zeroed: int
    channels: int
    revived: int


@dataclass(frozen=True)
class OptimizeFinished(Event):
    """Every step ran and the original and optimised models were measured side by side."""

    result: OptimizeResult
