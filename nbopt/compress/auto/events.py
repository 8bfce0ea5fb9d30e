"""What :func:`nbopt.compress.optimize_auto` says while it runs, besides the tuning engine's
trial events (``TrialStarted``, ``StepReported``) and RunStarted/RunFinished.

How the live view shows these and how TensorBoard logs them is registered in
``_auto_views.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from nbopt.compress._result import ModelMeasurement
from nbopt.compress.auto._result import LayerSensitivity
from nbopt.compress.auto._tolerance import Tolerance
from nbopt.events import Event
from nbopt.tuning.events import TrialFinished

if TYPE_CHECKING:
    from nbopt.compress.auto._result import AutoOptimizeResult


@dataclass(frozen=True)
class AutoBaselineMeasured(Event):
    """The original model was measured; plans must keep its metric within ``tolerance``."""

    measurement: ModelMeasurement
    metric_name: str
    tolerance: Tolerance


@dataclass(frozen=True)
class LayerMeasured(Event):
    """The sensitivity pass compressed one layer alone (``index`` of ``total``, from 1)."""

    sensitivity: LayerSensitivity
    index: int
    total: int
    metric_name: str


@dataclass(frozen=True)
class SearchStarted(Event):
    """The search over plans begins; ``resumed`` trials come from an earlier session's study."""

    total: int | None
    resumed: int
    dimensions: tuple[str, ...]


@dataclass(frozen=True)
class PlanTrialFinished(TrialFinished):
    """A plan was evaluated: the tuning engine's trial (``trial.metrics`` holds ``ratio``, the
    metric and ``within``), with the plan said in words."""

    plan: str
    target: str
    metric_key: str


@dataclass(frozen=True)
class AutoFinished(Event):
    """The search ended and the result was assembled."""

    result: AutoOptimizeResult
