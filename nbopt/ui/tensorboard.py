"""TensorBoard logging of runs: one TensorBoard run per trial, with HParams.

Layout for a search named ``NAME`` under ``logdir``::

    logdir/NAME/            value and best-so-far of every trial (step = trial number)
    logdir/NAME/trial-0007/ the trial's learning curve (nbopt.report), its final value and
                            its hyperparameters for TensorBoard's HParams tab

Events are written synchronously with TensorBoard's own record format and protocol buffers:
this needs neither torch nor TensorFlow, and it adds no thread per run as a ``SummaryWriter``
does. What a trial costs is mostly the file system's: a new directory and event file. The
HParams records go in each trial's own run (``SummaryWriter.add_hparams`` would create a new
run per call).
"""

from __future__ import annotations

import functools
import os
import socket
import time
from pathlib import Path
from typing import Any

from nbopt.tuning._trial import OK, STOPPED, Trial, param_items
from nbopt.ui import DEFAULT_LOGDIR
from nbopt.ui.events import (
    Event,
    RunFinished,
    RunStarted,
    StepReported,
    TrialFinished,
    TrialStarted,
)


class EventFile:
    """An append-only TensorBoard event file for one run directory, written synchronously."""

    _counter = 0

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        self._event_pb2 = event_pb2
        os.makedirs(directory, exist_ok=True)
        EventFile._counter += 1
        name = (
            f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}."
            f"{os.getpid()}.{EventFile._counter}"
        )
        self._file = open(Path(directory) / name, "wb")  # noqa: SIM115 - closed in close()
        self._writer = RecordWriter(self._file)
        self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def scalar(self, tag: str, value: float, step: int) -> None:
        from tensorboard.compat.proto import summary_pb2

        summary = summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(value))]
        )
        self.summary(summary, step)

    def summary(self, summary: Any, step: int = 0) -> None:
        self._write(self._event_pb2.Event(wall_time=time.time(), step=step, summary=summary))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def _write(self, event: Any) -> None:
        self._writer.write(event.SerializeToString())


def hparams_start(params: dict[str, Any], group: str) -> Any:
    """The HParams plugin's session-start summary for a trial with ``params``."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    start = plugin_data_pb2.SessionStartInfo(group_name=group, start_time_secs=time.time())
    for name, value in params.items():
        if isinstance(value, bool):
            start.hparams[name].bool_value = value
        elif isinstance(value, (int, float)):
            start.hparams[name].number_value = float(value)
        elif isinstance(value, str):
            start.hparams[name].string_value = value
        elif value is not None:
            start.hparams[name].string_value = repr(value)
    data = plugin_data_pb2.HParamsPluginData(session_start_info=start)
    return summary_pb2.Summary(
        value=[
            summary_pb2.Summary.Value(
                tag=metadata.SESSION_START_INFO_TAG,
                metadata=metadata.create_summary_metadata(data),
            )
        ]
    )


def hparams_end(status: str) -> Any:
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    # HParams has no "stopped early" status: a stopped trial did finish, with a value.
    code = api_pb2.STATUS_SUCCESS if status in (OK, STOPPED) else api_pb2.STATUS_FAILURE
    end = plugin_data_pb2.SessionEndInfo(status=code, end_time_secs=time.time())
    data = plugin_data_pb2.HParamsPluginData(session_end_info=end)
    return summary_pb2.Summary(
        value=[
            summary_pb2.Summary.Value(
                tag=metadata.SESSION_END_INFO_TAG,
                metadata=metadata.create_summary_metadata(data),
            )
        ]
    )


def run_name(study: str | None = None) -> str:
    """``mlp`` for ``study=runs/mlp.json``, else a timestamp such as ``tune-20261129-143015``."""
    if study:
        return Path(study).stem
    return time.strftime("tune-%Y%m%d-%H%M%S")


class TensorBoardReporter:
    """Writes the events of a run under ``logdir``; ``run`` names its directory.

    Engines that define their own events add handlers with
    ``@TensorBoardReporter.handle.register``, on a function whose ``self`` parameter has no
    annotation (``singledispatchmethod`` dispatches on the first annotated parameter).
    """

    def __init__(self, logdir: str | os.PathLike[str] = DEFAULT_LOGDIR, run: str = "") -> None:
        self.logdir = Path(logdir)
        self.run = run
        self.metric = "value"
        self._root: EventFile | None = None
        self._trial_files: dict[int, EventFile] = {}  # trials running now (several on Ray)

    @property
    def run_dir(self) -> Path:
        return self.logdir / (self.run or "run")

    def __call__(self, event: Event) -> None:
        self.handle(event)
        if isinstance(event, RunFinished):
            self.close()

    def close(self) -> None:
        for writer in [*self._trial_files.values(), self._root]:
            if writer is not None:
                writer.close()
        self._trial_files.clear()
        self._root = None

    @functools.singledispatchmethod
    def handle(self, event: Event) -> None:
        """Log ``event``; events that have nothing to log are ignored."""

    @handle.register
    def _(self, event: RunStarted) -> None:
        self.run = self.run or event.name or run_name()
        if not event.resumed:
            # A new search never writes into an older run of the same name (a restarted
            # study, two searches in the same second); a resumed one continues its own.
            base, suffix = self.run, 1
            while self.run_dir.exists():
                self.run, suffix = f"{base}-{suffix}", suffix + 1
        self.metric = event.metric
        self._root = EventFile(self.run_dir)

    @handle.register
    def _(self, event: TrialStarted) -> None:
        self._trial_files[event.number] = self._trial_run(event.number)

    @handle.register
    def _(self, event: StepReported) -> None:
        writer = self._trial_files.get(event.trial) if event.trial is not None else None
        if writer is None:
            return
        if event.value is not None:
            writer.scalar(self.metric, event.value, event.step)
        for name, value in event.metrics.items():
            writer.scalar(name, value, event.step)

    @handle.register
    def _(self, event: TrialFinished) -> None:
        trial = event.trial
        writer = self._trial_files.pop(trial.number, None) or self._trial_run(trial.number)
        self._log_trial(writer, trial)
        writer.close()
        if self._root is not None and trial.usable:
            self._root.scalar(self.metric, trial.value, trial.number)
            if event.best is not None:
                self._root.scalar(f"best_{self.metric}", event.best.value, trial.number)
            self._root.flush()

    def _trial_run(self, number: int) -> EventFile:
        return EventFile(self.run_dir / f"trial-{number:04d}")

    def _log_trial(self, writer: EventFile, trial: Trial) -> None:
        group = f"{self.run}/{trial.number}"
        writer.summary(hparams_start(param_items(trial.params), group=group))
        if trial.value is not None:
            last_step = max((step for step, _ in trial.intermediate), default=-1)
            writer.scalar(self.metric, trial.value, last_step + 1)
        writer.summary(hparams_end(trial.status))
