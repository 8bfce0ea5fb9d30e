"""How each engine's events are shown live and logged to TensorBoard: every view, in one place.

A view module (one per engine) defines ``present_*(event, state)`` functions, which change the
live view's :class:`~nbopt.ui.state.ProgressState`, and ``log_*(reporter, event)`` functions,
which write to TensorBoard, and maps event types to them in ``PRESENTERS`` and ``LOGGERS``.
They are gathered here, explicitly, so that no view depends on which module was imported
first. An event without a view of its own is shown by its nearest base class's (a
``PlanTrialFinished`` by ``TrialFinished``'s, if it had none), or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from nbopt.events import Event
from nbopt.ui.views import batching, launching, learning_rate, optimize, optimize_auto, run, tuning

if TYPE_CHECKING:
    from nbopt.ui.state import ProgressState
    from nbopt.ui.tensorboard import TensorBoardReporter

_VIEWS = (run, tuning, optimize, optimize_auto, batching, launching, learning_rate)


def _gather(tables: list[Mapping[type, Callable[..., None]]]) -> dict[type, Callable[..., None]]:
    gathered: dict[type, Callable[..., None]] = {}
    for table in tables:
        for event_type, handler in table.items():
            if event_type in gathered:
                raise RuntimeError(f"two views handle {event_type.__name__}")
            gathered[event_type] = handler
    return gathered


PRESENTERS = _gather([view.PRESENTERS for view in _VIEWS])
LOGGERS = _gather([view.LOGGERS for view in _VIEWS])


def _handler(table: dict[type, Callable[..., None]], event: Event) -> Any:
    return next((table[cls] for cls in type(event).__mro__ if cls in table), None)


def present(event: Event, state: ProgressState) -> None:
    """Apply ``event`` to the live view's ``state``."""
    handler = _handler(PRESENTERS, event)
    if handler is not None:
        handler(event, state)


def log(reporter: TensorBoardReporter, event: Event) -> None:
    """Write ``event`` to ``reporter``'s TensorBoard run."""
    handler = _handler(LOGGERS, event)
    if handler is not None:
        handler(reporter, event)
