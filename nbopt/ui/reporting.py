"""The event bus every engine reports to: the live view, TensorBoard, and the caller's own."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from nbopt.events import Event, EventBus


def reporting_bus(
    progress: str,
    logdir: str | os.PathLike[str] | None,
    callbacks: Iterable[Callable[[Event], None]] = (),
    run: str = "",
) -> EventBus:
    """A bus with the view ``progress`` asks for, a TensorBoard run ``run`` under ``logdir``
    (none when ``logdir`` is None), then ``callbacks``, in that order.

    Raises:
        ConfigError: for an unknown ``progress`` mode, before anything runs.
    """
    from nbopt.ui.progress import progress_reporter
    from nbopt.ui.tensorboard import TensorBoardReporter

    view = progress_reporter(progress)
    reporters: list[Callable[[Event], None]] = [] if view is None else [view]
    if logdir is not None:
        reporters.append(TensorBoardReporter(logdir, run))
    reporters.extend(callbacks)
    return EventBus(reporters)


def run_name(kind: str = "tune", study: str | None = None) -> str:
    """``mlp`` for ``study=runs/mlp.json``, else ``KIND-`` and a time (``tune-20261129-143015``)."""
    if study:
        return Path(study).stem
    return time.strftime(f"{kind}-%Y%m%d-%H%M%S")
