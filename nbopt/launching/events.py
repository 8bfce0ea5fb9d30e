"""Events of a launched job, in addition to ``RunStarted`` and ``RunFinished``."""

from __future__ import annotations

from dataclasses import dataclass

from nbopt.events import Event, StepReported

DONE = "done"
FAILED = "failed"
STOPPED = "stopped"  # ended by the launcher because another rank failed, or on timeout


@dataclass(frozen=True)
class RankStepReported(StepReported):
    """A rank's code called ``nbopt.report(step, value, **metrics)``; ``rank`` is set."""


@dataclass(frozen=True)
class RankFinished(Event):
    """A rank ended: ``status`` is ``"done"``, ``"failed"`` or ``"stopped"``.

    ``detail`` is a short reason for a rank that did not finish (``"ValueError: boom"``).
    """

    rank: int
    status: str
    seconds: float
    detail: str = ""
