"""ipywidgets progress: a bar, counts, the best so far, a table of recent units and a curve.

Widgets are updated from the thread that runs the engine (the cell's own thread), at most
every ``min_interval`` seconds, so a thousand quick trials are not slowed down by drawing.
"""

from __future__ import annotations

import html
import time

from nbopt.ui import format as fmt
from nbopt.ui.progress import ProgressReporter

_BAR_STYLE = {"running": "info", "done": "success", "interrupted": "danger", "failed": "danger"}
_RECENT_ROWS = 6


class WidgetReporter(ProgressReporter):
    """Shows progress as an ipywidgets box, displayed when the run starts."""

    def __init__(self, min_interval: float = 0.25) -> None:
        super().__init__(min_interval)
        import ipywidgets as widgets

        self.title = widgets.HTML()
        self.bar = widgets.IntProgress(min=0, max=1, value=0, bar_style="info")
        self.counts = widgets.HTML()
        self.note = widgets.HTML()
        self.headline = widgets.HTML()
        self.live = widgets.HTML()
        self.table = widgets.HTML()
        self.curve = widgets.HTML()
        self.box = widgets.VBox(
            [
                widgets.HBox([self.title, self.bar, self.counts]),
                self.note,
                self.headline,
                self.live,
                widgets.HBox([self.table, self.curve]),
            ]
        )
        self._displayed = False

    def draw(self) -> None:
        state = self.state
        if not self._displayed:
            from IPython.display import display

            bundle = self.box._repr_mimebundle_()
            # Where widgets cannot render (a saved notebook on a static viewer), say what was
            # here instead of the widget's constructor repr; the run's summary follows it.
            bundle["text/plain"] = f"nbopt {state.title} (live progress widget)"
            display(bundle, raw=True)
            self._displayed = True
        self.title.value = f"<b>{html.escape(state.title)}</b>"
        total = state.total if state.total else max(state.done, 1)
        if state.status == "done":
            # A run that ended before its budget (stop_at=, a stop rule) is complete: a full bar;
            # the description still says how many of the budget it used.
            total = state.done
        self.bar.max = max(total, 1)
        self.bar.value = min(state.done, self.bar.max)
        self.bar.description = f"{state.done}/{state.total}" if state.total else str(state.done)
        self.bar.bar_style = _BAR_STYLE.get(state.status, "info")
        counts = [f"{state.done} done"]
        if state.failed:
            counts.append(f"{state.failed} failed")
        counts.append(fmt.duration(time.perf_counter() - state.started))
        if state.finished:
            counts.append(state.status)
        self.counts.value = html.escape(" · ".join(counts))
        self.note.value = html.escape(state.note)
        self.headline.value = html.escape(state.headline)
        self.live.value = "<br>".join(
            f"<span style='color:#555'>{html.escape(label)}: {html.escape(text)}</span>"
            for label, text in state.live.items()
        ) + "".join(
            f"<div style='font-size:90%;color:#555'>trial {number}, running</div>"
            + fmt.svg_curve(points, height=60)
            for number, points in list(state.trial_curves.items())[-2:]
        )
        if state.rows:
            recent = [row.cells for row in state.rows[-_RECENT_ROWS:]]
            self.table.value = fmt.html_table(state.columns, recent, style="font-size:90%")
        if state.curve:
            self.curve.value = (
                f"<div style='font-size:90%;color:#555'>{html.escape(state.curve_label)}</div>"
                + fmt.svg_curve(state.curve, scatter=state.scatter)
            )
        if state.finished and state.message:
            self.note.value = html.escape(state.message)
