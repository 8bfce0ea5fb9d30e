"""How the live views and TensorBoard show a learning-rate range test.

Live: the running sweep's step, rate and loss, its moving-average curve against log10(rate),
and a row per finished sweep with its own suggestion. TensorBoard: one run per sweep under
the test's directory (``sweep-0``, ``sweep-1`` ...) with ``lr_find/loss``,
``lr_find/smoothed_loss`` and ``lr_find/learning_rate`` by step, so that the sweeps share a
chart; and in the test's own run, each sweep's suggestion as ``lr_find/suggestion`` (step: the
sweep).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from nbopt.learning_rate.events import LRStepMeasured, LRSweepFinished, LRSweepStarted
from nbopt.ui import format as fmt
from nbopt.ui.state import ProgressState, Row

if TYPE_CHECKING:
    from nbopt.ui.tensorboard import TensorBoardReporter

LOSS_TAG = "lr_find/loss"
SMOOTHED_TAG = "lr_find/smoothed_loss"
RATE_TAG = "lr_find/learning_rate"
SUGGESTION_TAG = "lr_find/suggestion"


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.3g}"


def present_sweep_started(event: LRSweepStarted, state: ProgressState) -> None:
    state.total = event.planned
    state.curve = []
    state.curve_label = f"sweep {event.sweep}: loss (moving average) against log10(rate)"
    state.live = {"sweep": f"sweep {event.sweep + 1} of {event.planned}: starting"}


def present_step_measured(event: LRStepMeasured, state: ProgressState) -> None:
    state.live["sweep"] = (
        f"sweep {event.sweep + 1}, step {event.step + 1}: rate {event.learning_rate:.3g}, "
        f"loss {fmt.number(event.loss)}"
    )
    state.curve.append((math.log10(event.learning_rate), event.smoothed_loss))


def present_sweep_finished(event: LRSweepFinished, state: ProgressState) -> None:
    sweep = event.record
    state.total = event.planned
    state.done = sweep.index + 1
    state.live.pop("sweep", None)
    suggested = [row.cells[2] for row in state.rows] + [_rate(sweep.suggestion)]
    state.headline = f"suggested so far: {', '.join(suggested)}"
    text = (
        f"sweep {sweep.index + 1}  {len(sweep.losses):>4} steps  suggests "
        f"{_rate(sweep.suggestion):>8}  ({sweep.stop_reason})"
    )
    cells = (sweep.index + 1, len(sweep.losses), _rate(sweep.suggestion), sweep.stop_reason)
    state.rows.append(Row(cells, text, important=True))


def log_step_measured(reporter: TensorBoardReporter, event: LRStepMeasured) -> None:
    writer = reporter.run_file(f"sweep-{event.sweep}")
    writer.scalar(LOSS_TAG, event.loss, event.step)
    writer.scalar(SMOOTHED_TAG, event.smoothed_loss, event.step)
    writer.scalar(RATE_TAG, event.learning_rate, event.step)


def log_sweep_finished(reporter: TensorBoardReporter, event: LRSweepFinished) -> None:
    sweep = event.record
    reporter.close_run_file(f"sweep-{sweep.index}")
    if reporter.root is not None and sweep.suggestion is not None:
        reporter.root.scalar(SUGGESTION_TAG, sweep.suggestion, sweep.index)
        reporter.root.flush()


PRESENTERS = {
    LRSweepStarted: present_sweep_started,
    LRStepMeasured: present_step_measured,
    LRSweepFinished: present_sweep_finished,
}
LOGGERS = {
    LRStepMeasured: log_step_measured,
    LRSweepFinished: log_sweep_finished,
}
