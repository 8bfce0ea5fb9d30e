"""Live progress: one core state that events update, and thin front ends that draw it.

As in tqdm, the logic lives here and the front ends (``text.py``, ``widget.py``) only decide
how to show a :class:`ProgressState`. :func:`present` turns each event into a change of the
state; an engine that defines new events registers how to present them with
``@present.register``. :func:`progress_reporter` picks a front end the way ``tqdm.auto`` does.
"""

from __future__ import annotations

import abc
import functools
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from nbopt.ui import _format as fmt
from nbopt.ui.events import Event, RunFinished, RunStarted, StepReported

PROGRESS_MODES = ("auto", "widget", "text", "none")


@dataclass
class Row:
    """One line of the live table; ``important`` rows are never skipped by throttling."""

    cells: tuple[Any, ...]
    text: str
    important: bool = False


@dataclass
class ProgressState:
    """Everything a live view shows, independent of how it is drawn."""

    kind: str = ""
    title: str = ""
    total: int | None = None
    done: int = 0
    failed: int = 0
    status: str = "running"  # running | done | interrupted | failed
    note: str = ""
    headline: str = ""
    columns: tuple[str, ...] = ()
    rows: list[Row] = field(default_factory=list)
    curve: list[tuple[float, float]] = field(default_factory=list)
    scatter: list[tuple[float, float]] = field(default_factory=list)
    curve_label: str = ""
    live: dict[str, str] = field(default_factory=dict)
    trial_curves: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    message: str = ""
    started: float = field(default_factory=time.perf_counter)

    @property
    def finished(self) -> bool:
        return self.status != "running"


@functools.singledispatch
def present(event: Event, state: ProgressState) -> None:
    """Apply ``event`` to ``state``; events without a presenter change nothing."""


@present.register
def _(event: RunStarted, state: ProgressState) -> None:
    state.kind, state.title, state.total = event.kind, event.title, event.total
    state.done = event.resumed
    state.columns = event.columns
    state.curve_label = f"best {event.metric} ({event.mode})"
    if event.resumed:
        state.note = f"resuming: {event.resumed} {event.unit} done"


@present.register
def _(event: StepReported, state: ProgressState) -> None:
    label = f"rank {event.rank}" if event.rank is not None else f"trial {event.trial}"
    shown = {"value": event.value} if event.value is not None else {}
    shown.update(event.metrics)
    state.live[label] = f"step {event.step}: {fmt.params(shown)}"
    if event.trial is not None and event.value is not None:
        state.trial_curves.setdefault(event.trial, []).append((event.step, event.value))


@present.register
def _(event: RunFinished, state: ProgressState) -> None:
    state.status = event.status
    state.message = event.message
    state.live.clear()


class ProgressReporter(abc.ABC):
    """The shared core of the live views: keeps the state, redraws at a throttled rate.

    Subclasses implement :meth:`draw`; it is called at most every ``min_interval`` seconds,
    and always for the first and the final state.
    """

    def __init__(self, min_interval: float = 0.2) -> None:
        self.state = ProgressState()
        self.min_interval = min_interval
        self._last_draw = -float("inf")

    def __call__(self, event: Event) -> None:
        present(event, self.state)
        now = time.perf_counter()
        if (
            isinstance(event, (RunStarted, RunFinished))
            or now - self._last_draw >= self.min_interval
        ):
            self._last_draw = now
            self.draw()

    @abc.abstractmethod
    def draw(self) -> None:
        """Show the current state."""


def in_widget_frontend() -> bool:
    """True inside a Jupyter kernel (where widgets can render) with ipywidgets installed."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    if shell is None or "IPKernelApp" not in getattr(shell, "config", {}):
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def progress_reporter(mode: str) -> ProgressReporter | None:
    """The live view for ``progress=mode``: ``auto`` picks a widget in a notebook, else text."""
    if mode not in PROGRESS_MODES:
        from nbopt.errors import ConfigError

        raise ConfigError(f"progress must be one of {', '.join(PROGRESS_MODES)}, got {mode!r}")
    if mode == "none":
        return None
    if mode == "widget" or (mode == "auto" and in_widget_frontend()):
        from nbopt.ui.widget import WidgetReporter

        return WidgetReporter()
    from nbopt.ui.text import TextReporter

    return TextReporter()
