"""Live progress: one core state that events update, and thin front ends that draw it.

As in tqdm, the logic lives here and the front ends (``text.py``, ``widget.py``) only decide
how to show a :class:`~nbopt.ui.state.ProgressState`. How each event changes the state is said
by :mod:`nbopt.ui.views`, where every engine's view is registered. :func:`progress_reporter`
picks a front end the way ``tqdm.auto`` does.
"""

from __future__ import annotations

import abc
import time

from nbopt.events import Event, RunFinished, RunStarted
from nbopt.ui import PROGRESS_MODES, views
from nbopt.ui.interactive import in_widget_frontend
from nbopt.ui.state import ProgressState


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
        views.present(event, self.state)
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
