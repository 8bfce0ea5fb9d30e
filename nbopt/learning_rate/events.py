"""Events of a learning-rate range test, for the live view and TensorBoard
(``nbopt.ui.views.learning_rate``)."""

from __future__ import annotations

from dataclasses import dataclass

from nbopt.events import Event
from nbopt.learning_rate._result import LRSweep


@dataclass(frozen=True)
class LRSweepStarted(Event):
    """Sweep ``sweep`` (0 first) of the ``planned`` ones begins, ``steps`` steps at most."""

    sweep: int
    planned: int
    steps: int


@dataclass(frozen=True)
class LRStepMeasured(Event):
    """One step of a sweep: its rate, the loss of its batch, and the moving average of the
    losses (debiased, beta 0.98) that divergence is judged on."""

    sweep: int
    step: int
    learning_rate: float
    loss: float
    smoothed_loss: float


@dataclass(frozen=True)
class LRSweepFinished(Event):
    """A sweep ended; ``record`` holds its curve, why it stopped and its own suggestion."""

    record: LRSweep
    planned: int
