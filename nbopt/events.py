"""Events: what engines say while they run, for views to show or log.

Engines know nothing of widgets, text or TensorBoard: they call :meth:`EventBus.emit` with
small immutable objects, and each subscribed reporter (any callable taking an event) handles
the kinds it knows and ignores the rest. This module holds the bus and the events every engine
shares (a run starts, user code reports a step, a run ends); each engine defines its own in its
public ``events`` module (``nbopt.tuning.events``, ``nbopt.compress.events`` ...).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

Reporter = Callable[["Event"], None]


class Event:
    """Base class of every event."""


@dataclass(frozen=True)
class RunStarted(Event):
    """A run (a search, an optimisation ...) begins.

    ``kind`` names the engine (``"tune"``); ``total`` is the planned number of ``unit``s
    (trials, steps, batch sizes) or None when unknown; ``resumed`` counts units already done
    by an earlier session; ``columns`` head the live table of finished units; ``name`` names
    the run's TensorBoard directory; ``notes`` say once what the user should know about the
    run before it starts (a budget the search cannot use, say).
    """

    kind: str
    title: str
    total: int | None
    unit: str = "trials"
    resumed: int = 0
    metric: str = "value"
    mode: str = "min"
    name: str = ""
    columns: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class StepReported(Event):
    """User code called ``nbopt.report(step, value, **metrics)``: inside trial ``trial`` of a
    search, or on rank ``rank`` of a launched job (each None elsewhere)."""

    trial: int | None
    step: int
    value: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    rank: int | None = None


@dataclass(frozen=True)
class RunFinished(Event):
    """A run ended; ``status`` is ``"done"``, ``"interrupted"`` or ``"failed"``.

    ``result`` is the run's result object (a ``TuneResult`` for a search), complete or, after
    an interrupt or a failure, partial: what finished before it. The magics store it in every
    case.
    """

    kind: str
    status: str
    message: str
    result: Any = None


class EventBus:
    """Delivers events to reporters, in order.

    A reporter that raises is reported once with a warning and then dropped, so that a broken
    view (a full disk under the TensorBoard log, say) never loses the user's run.
    ``KeyboardInterrupt`` is not caught.
    """

    def __init__(self, reporters: Iterable[Reporter] = ()) -> None:
        self._reporters = list(reporters)

    def subscribe(self, reporter: Reporter) -> None:
        self._reporters.append(reporter)

    def emit(self, event: Event) -> None:
        for reporter in list(self._reporters):
            try:
                reporter(event)
            except Exception as exc:
                self._reporters.remove(reporter)
                warnings.warn(
                    f"nbopt: progress reporter {reporter!r} failed and was turned off: "
                    f"{type(exc).__name__}: {exc}",
                    RuntimeWarning,
                    stacklevel=2,
                )

    def close(self) -> None:
        """Close every reporter that has a ``close`` method (flush files, end live views)."""
        for reporter in self._reporters:
            close = getattr(reporter, "close", None)
            if close is not None:
                close()


@contextlib.contextmanager
def reporting_failure(
    bus: EventBus, kind: str, unchanged: str, partial: Callable[[], Any] | None = None
) -> Iterator[None]:
    """Emit ``RunFinished`` as interrupted or failed when the block raises, then re-raise.

    ``unchanged`` says what the failure left as it was (the user's model, say); it ends the
    message, so that the view tells the user nothing of theirs was harmed. ``partial`` returns
    the result of what finished so far (None if nothing did), carried by the event.
    """
    try:
        yield
    except KeyboardInterrupt:
        bus.emit(RunFinished(kind, "interrupted", unchanged, _partial(partial)))
        raise
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}; {unchanged}"
        bus.emit(RunFinished(kind, "failed", message, _partial(partial)))
        raise


def _partial(partial: Callable[[], Any] | None) -> Any:
    return None if partial is None else partial()
