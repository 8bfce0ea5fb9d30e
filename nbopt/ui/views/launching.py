"""How a job's events are shown live and logged to TensorBoard.

Live: each rank's last report (``rank N: step 12: loss=0.3``), a table row per finished rank
and rank 0's curve. TensorBoard: one run per rank under the job's directory
(``logdir/accelerate-YYYYmmdd-HHMMSS/rank-N``), so the ranks' curves share a chart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nbopt.launching.events import DONE, FAILED, RankFinished, RankStepReported
from nbopt.ui import format as fmt
from nbopt.ui.state import ProgressState, Row
from nbopt.ui.views.run import present_step

if TYPE_CHECKING:
    from nbopt.ui.tensorboard import TensorBoardReporter

_MAX_CURVE_POINTS = 1000


def present_rank_step_reported(event: RankStepReported, state: ProgressState) -> None:
    present_step(event, state)
    if event.rank != 0:
        return
    if event.value is not None:
        name, value = "value", event.value
    elif event.metrics:
        name, value = next(iter(event.metrics.items()))
    else:
        return
    state.curve_label = f"rank 0: {name}"
    state.curve.append((event.step, value))
    if len(state.curve) > _MAX_CURVE_POINTS:
        # Halve the resolution rather than drop the start: the whole run stays in view.
        state.curve[:] = state.curve[::2]


def present_rank_finished(event: RankFinished, state: ProgressState) -> None:
    state.live.pop(f"rank {event.rank}", None)
    if event.status == DONE:
        state.done += 1
    elif event.status == FAILED:
        state.failed += 1
    took = fmt.duration(event.seconds)
    detail = f"  {event.detail}" if event.detail else ""
    state.rows.append(
        Row(
            (event.rank, event.status, took, event.detail),
            f"rank {event.rank} {event.status} after {took}{detail}",
            # Few rows, each worth printing: never skipped by the text view's throttling.
            important=True,
        )
    )


def log_rank_step_reported(reporter: TensorBoardReporter, event: RankStepReported) -> None:
    writer = reporter.run_file(f"rank-{event.rank}")
    if event.value is not None:
        writer.scalar(reporter.metric, event.value, event.step)
    for name, value in event.metrics.items():
        writer.scalar(name, value, event.step)


def log_rank_finished(reporter: TensorBoardReporter, event: RankFinished) -> None:
    reporter.close_run_file(f"rank-{event.rank}")


PRESENTERS = {
    RankStepReported: present_rank_step_reported,
    RankFinished: present_rank_finished,
}
LOGGERS = {
    RankStepReported: log_rank_step_reported,
    RankFinished: log_rank_finished,
}
