"""How the live view shows what every run does: it starts, user code reports, it ends."""

from __future__ import annotations

from nbopt.events import RunFinished, RunStarted, StepReported
from nbopt.ui import format as fmt
from nbopt.ui.state import ProgressState


def present_run_started(event: RunStarted, state: ProgressState) -> None:
    state.kind, state.title, state.total = event.kind, event.title, event.total
    state.done = event.resumed
    state.columns = event.columns
    state.curve_label = f"best {event.metric} ({event.mode})"
    resumed = [f"resuming: {event.resumed} {event.unit} done"] if event.resumed else []
    state.note = "; ".join([*resumed, *event.notes])


def present_step(event: StepReported, state: ProgressState) -> None:
    label = f"rank {event.rank}" if event.rank is not None else f"trial {event.trial}"
    shown = {"value": event.value} if event.value is not None else {}
    shown.update(event.metrics)
    state.live[label] = f"step {event.step}: {fmt.params(shown)}"
    if event.trial is not None and event.value is not None:
        state.trial_curves.setdefault(event.trial, []).append((event.step, event.value))


def present_run_finished(event: RunFinished, state: ProgressState) -> None:
    state.status = event.status
    state.message = event.message
    state.live.clear()


PRESENTERS = {
    RunStarted: present_run_started,
    StepReported: present_step,
    RunFinished: present_run_finished,
}
LOGGERS: dict[type, object] = {}
