"""How a search's events are shown live and logged to TensorBoard.

Live: a line (text) or a table row (widget) per finished trial, the best trial so far, the
best-so-far curve, and each running trial's reports. TensorBoard, for a search named ``NAME``
under ``logdir``::

    logdir/NAME/            value and best-so-far of every trial (step = trial number); with
                            several objectives, every metric and the size of the front
    logdir/NAME/trial-0007/ the trial's learning curve (nbopt.report), its final value and
                            its hyperparameters, for TensorBoard's HParams tab

The HParams records go in each trial's own run (``SummaryWriter.add_hparams`` would create a
new run per call).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nbopt.events import StepReported
from nbopt.tuning import Trial, TrialState
from nbopt.tuning.events import TrialFinished, TrialStarted
from nbopt.ui import format as fmt
from nbopt.ui.format import param_items
from nbopt.ui.state import ProgressState, Row
from nbopt.ui.tensorboard_files import EventFile, hparams_end, hparams_start

if TYPE_CHECKING:
    from nbopt.ui.tensorboard import TensorBoardReporter


def present_trial_started(event: TrialStarted, state: ProgressState) -> None:
    state.live[f"trial {event.number}"] = fmt.params(param_items(event.params))


def present_trial_finished(event: TrialFinished, state: ProgressState) -> None:
    trial, best = event.trial, event.best
    state.done, state.failed = event.n_complete, event.n_failed
    state.live.pop(f"trial {trial.number}", None)
    state.trial_curves.pop(trial.number, None)
    new_best = best is not None and best.number == trial.number
    if event.objectives:
        new_best = any(member.number == trial.number for member in event.front)
        state.headline = f"{len(event.front)} trials on the front of {', '.join(event.objectives)}"
        _draw_front(event, state)
    elif trial.usable:
        state.scatter.append((trial.number, trial.value))
    if best is not None:
        state.curve.append((trial.number, best.value))
        state.headline = f"best {fmt.number(best.value, 6)} at trial {best.number}: " + fmt.params(
            param_items(best.params), 200
        )
    total = f"/{state.total}" if state.total else ""
    marker = "  *" if new_best else ""
    result = outcome(trial, event.objectives)
    if event.broken:
        result += f" (breaks {', '.join(event.broken)})"
    text = (
        f"trial {trial.number:>3} [{state.done}{total}]  {result}{marker}  "
        f"{fmt.params(param_items(trial.params))}  ({fmt.duration(trial.duration)})"
    )
    cells = (
        trial.number,
        result,
        fmt.number(best.value, 6) if best else ("front" if new_best else ""),
        fmt.params(param_items(trial.params), 60),
        fmt.duration(trial.duration),
    )
    important = new_best or trial.status != TrialState.OK
    state.rows.append(Row(cells, text, important=important))


def _draw_front(event: TrialFinished, state: ProgressState) -> None:
    """The live picture of several objectives: every trial as a dot in the plane of the first
    two metrics, and the front through them as a line."""
    first, second = event.objectives[:2]
    pair = dict(_objective_values(event.trial, event.objectives[:2]))
    if event.trial.usable and len(pair) == 2:
        state.scatter.append((pair[first], pair[second]))
    points = [dict(_objective_values(member, event.objectives[:2])) for member in event.front]
    state.curve = sorted((p[first], p[second]) for p in points if len(p) == 2)
    state.curve_label = f"front: {second} (up) against {first} (across)"


def outcome(trial: Trial, objectives: tuple[str, ...] = ()) -> str:
    """``0.0123``, ``0.05 (stopped)``, ``FAILED ValueError: ...`` or ``interrupted``; with
    several objectives, ``val_acc=0.91 latency=3.2``."""
    if trial.status == TrialState.FAILED:
        return f"FAILED {trial.error}"
    if trial.status == TrialState.INTERRUPTED:
        return "interrupted"
    stopped = " (stopped)" if trial.status == TrialState.STOPPED else ""
    if objectives:
        return " ".join(
            f"{name}={fmt.number(value, 6)}" for name, value in _objective_values(trial, objectives)
        )
    return f"{fmt.number(trial.value, 6)}{stopped}"


def _objective_values(trial: Trial, objectives: tuple[str, ...]) -> list[tuple[str, float]]:
    """Each metric of a multi-objective trial with its value (the first is ``trial.value``)."""
    values = [(objectives[0], trial.value)] if trial.value is not None else []
    values += [(name, trial.metrics[name]) for name in objectives[1:] if name in trial.metrics]
    return values


def _trial_run(number: int) -> str:
    return f"trial-{number:04d}"


def log_trial_started(reporter: TensorBoardReporter, event: TrialStarted) -> None:
    reporter.run_file(_trial_run(event.number))


def log_step(reporter: TensorBoardReporter, event: StepReported) -> None:
    if event.trial is None:
        return
    writer = reporter.run_file(_trial_run(event.trial))
    if event.value is not None:
        writer.scalar(reporter.metric, event.value, event.step)
    for name, value in event.metrics.items():
        writer.scalar(name, value, event.step)


def log_trial_finished(reporter: TensorBoardReporter, event: TrialFinished) -> None:
    trial = event.trial
    name = _trial_run(trial.number)
    _log_trial(reporter, reporter.run_file(name), trial, event.objectives)
    reporter.close_run_file(name)
    root = reporter.root
    if root is not None and trial.usable and event.objectives:
        for metric, value in _objective_values(trial, event.objectives):
            root.scalar(metric, value, trial.number)
        root.scalar("front_size", len(event.front), trial.number)
        root.flush()
    elif root is not None and trial.usable:
        root.scalar(reporter.metric, trial.value, trial.number)
        if event.best is not None:
            root.scalar(f"best_{reporter.metric}", event.best.value, trial.number)
        root.flush()


def _log_trial(
    reporter: TensorBoardReporter, writer: EventFile, trial: Trial, objectives: tuple[str, ...]
) -> None:
    group = f"{reporter.run}/{trial.number}"
    writer.summary(hparams_start(param_items(trial.params), group=group))
    last_step = max((step for step, _ in trial.intermediate), default=-1)
    if objectives:
        for metric, value in _objective_values(trial, objectives):
            writer.scalar(metric, value, last_step + 1)
    elif trial.value is not None:
        writer.scalar(reporter.metric, trial.value, last_step + 1)
    # HParams has no "stopped early" status: a stopped trial did finish, with a value.
    writer.summary(hparams_end(success=trial.status in (TrialState.OK, TrialState.STOPPED)))


PRESENTERS = {TrialStarted: present_trial_started, TrialFinished: present_trial_finished}
LOGGERS = {
    TrialStarted: log_trial_started,
    StepReported: log_step,
    TrialFinished: log_trial_finished,
}
