"""Events of a search, besides the generic ones of :mod:`nbopt.events`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nbopt.events import Event
from nbopt.tuning._trial import Trial


@dataclass(frozen=True)
class TrialStarted(Event):
    """Trial ``number`` starts with the configuration ``params``."""

    number: int
    params: dict[str, Any]


@dataclass(frozen=True)
class TrialFinished(Event):
    """A trial ended (``trial.status`` says how); ``best`` is the best trial so far.

    With several objectives, ``objectives`` names the metrics (the first is ``trial.value``,
    the others are in ``trial.metrics``), ``best`` is None and ``front`` holds the
    non-dominated trials so far. ``broken`` lists the constraints (``"latency <= 5"``) the
    trial broke, which make it feasible for nothing.
    """

    trial: Trial
    best: Trial | None
    n_complete: int
    n_failed: int
    objectives: tuple[str, ...] = field(default=(), kw_only=True)
    front: tuple[Trial, ...] = field(default=(), kw_only=True)
    broken: tuple[str, ...] = field(default=(), kw_only=True)
