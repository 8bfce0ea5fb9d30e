"""The event bus every engine reports to: the live view, TensorBoard, and the caller's own."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from nbopt.ui.events import Event, EventBus
from nbopt.ui.progress import progress_reporter
from nbopt.ui.tensorboard import TensorBoardReporter


def reporting_bus(
    progress: str,
    logdir: str | os.PathLike[str] | None,
    callbacks: Iterable[Callable[[Event], None]] = (),
    run: str = "",
) -> EventBus:
    """A bus with the view ``progress`` asks for, a TensorBoard run ``run`` under ``logdir``
    (none when ``logdir`` is None), then ``callbacks``, in that order."""
    view = progress_reporter(progress)
    reporters: list[Callable[[Event], None]] = [] if view is None else [view]
    if logdir is not None:
        reporters.append(TensorBoardReporter(logdir, run))
    reporters.extend(callbacks)
    return EventBus(reporters)
