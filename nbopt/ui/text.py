"""Plain-text progress: a header, one line per finished unit (throttled), and a summary.

Used outside a widget front end (a terminal, a script, a log) or with ``progress=text``.
"""

from __future__ import annotations

import sys
from typing import TextIO

from nbopt.ui.progress import ProgressReporter


class TextReporter(ProgressReporter):
    """Prints progress lines to ``stream`` (standard output by default).

    When units finish faster than ``min_interval``, only the important lines (a new best,
    a failure) and the latest one are printed.
    """

    def __init__(self, stream: TextIO | None = None, min_interval: float = 0.2) -> None:
        super().__init__(min_interval)
        self.stream = stream
        self._printed_rows = 0
        self._header_printed = False
        self._message_printed = False

    def draw(self) -> None:
        state = self.state
        out = self.stream or sys.stdout
        lines = []
        if not self._header_printed and state.title:
            total = f": {state.total} planned" if state.total else ""
            lines.append(f"[nbopt] {state.title}{total}")
            if state.note:
                lines.append(f"[nbopt] {state.note}")
            self._header_printed = True
        new_rows = state.rows[self._printed_rows :]
        for index, row in enumerate(new_rows):
            if row.important or index == len(new_rows) - 1:
                lines.append(row.text)
        self._printed_rows = len(state.rows)
        if state.finished and not self._message_printed:
            lines.append(f"[nbopt] {state.status}: {state.message}")
            if state.headline:
                lines.append(f"[nbopt] {state.headline}")
            self._message_printed = True
        if lines:
            out.write("\n".join(lines) + "\n")
            out.flush()
