"""TensorBoard logging of runs: each run a directory, with sub-runs for its trials or ranks.

Layout for a search named ``NAME`` under ``logdir``::

    logdir/NAME/            value and best-so-far of every trial (step = trial number)
    logdir/NAME/trial-0007/ the trial's learning curve (nbopt.report), its final value and
                            its hyperparameters for TensorBoard's HParams tab
"""

from __future__ import annotations

import os
from pathlib import Path

from nbopt.events import Event, RunFinished, RunStarted
from nbopt.ui import DEFAULT_LOGDIR, views
from nbopt.ui.reporting import run_name
from nbopt.ui.tensorboard_files import EventFile, text_summary


class TensorBoardReporter:
    """Writes the events of a run under ``logdir``; ``run`` names its directory.

    It opens the run's own event file (``root``) when the run starts and closes every file
    when it finishes. What each engine's events write is said by :mod:`nbopt.ui.views`: to
    ``root`` or to sub-runs from :meth:`run_file` (one per trial, one per rank ...).
    """

    def __init__(self, logdir: str | os.PathLike[str] = DEFAULT_LOGDIR, run: str = "") -> None:
        self.logdir = Path(logdir)
        self.run = run
        self.metric = "value"
        self.root: EventFile | None = None
        self._run_files: dict[str, EventFile] = {}

    @property
    def run_dir(self) -> Path:
        return self.logdir / (self.run or "run")

    def run_file(self, name: str) -> EventFile:
        """The event file of the sub-run ``name`` (a directory under the run), opened once."""
        if name not in self._run_files:
            self._run_files[name] = EventFile(self.run_dir / name)
        return self._run_files[name]

    def close_run_file(self, name: str) -> None:
        writer = self._run_files.pop(name, None)
        if writer is not None:
            writer.close()

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._start(event)
        views.log(self, event)
        if isinstance(event, RunFinished):
            self.close()

    def close(self) -> None:
        for writer in [*self._run_files.values(), self.root]:
            if writer is not None:
                writer.close()
        self._run_files.clear()
        self.root = None

    def _start(self, event: RunStarted) -> None:
        self.run = self.run or event.name or run_name(event.kind)
        if not event.resumed:
            # A new run never writes into an older run of the same name (a restarted study,
            # two searches in the same second); a resumed one continues its own.
            base, suffix = self.run, 1
            while self.run_dir.exists():
                self.run, suffix = f"{base}-{suffix}", suffix + 1
        self.metric = event.metric
        self.root = EventFile(self.run_dir)
        if event.config:
            settings = "\n".join(f"- {key}: {value}" for key, value in event.config.items())
            self.root.summary(text_summary("settings", f"{event.title}\n\n{settings}"))
