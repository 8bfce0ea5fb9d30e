"""Studies: every trial of a named search, in a journal that many processes can share.

The file (see ``_journal.py``) holds JSON lines: a header first (what the study was made with),
then one record per event: ``start`` when a process claims a trial number for a configuration
(other processes then count it as running), ``finish`` when the trial ended, with everything
known about it. Trial numbers are given out under the lock, so they are unique however many
kernels or machines run the study. A trial whose process died before it finished (a SIGKILL,
a crash) is marked ``interrupted`` by the next process on the same machine that reads the
study; one on another machine counts as running until then.

It is JSON, never pickle, so loading a study runs no code; every record is checked (shape,
finite numbers, unique numbers, nesting depth) before anything is used, and a file that fails
is refused with one line and left untouched. A study of nbopt's first format (one JSON
document) is read as well, and converted at its first write, the original kept beside it.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbopt.errors import ConfigError
from nbopt.tuning._errors import StudyWriteError
from nbopt.tuning._journal import JournalFile
from nbopt.tuning._records import (
    FORMAT,
    LEGACY_VERSION,
    VERSION,
    Running,
    StudyHeader,
    Worker,
    count,
    finish_line,
    journal_header,
    line,
    loads,
    start_time,
    vals_of,
)
from nbopt.tuning._trial import Trial, TrialState, jsonable


@dataclass
class StudyUpdate:
    """What reading the study brought: trials that finished, and trials started since."""

    finished: list[Trial] = field(default_factory=list)
    started: list[Running] = field(default_factory=list)


class Study:
    """The study at ``path`` as one search sees it; ``header`` is what the search is made with.

    Reads and writes happen inside :meth:`locked`. The search reads the study with
    :meth:`open` before its first trial, then with :meth:`sync` before each claim.
    """

    def __init__(self, path: str | os.PathLike[str], header: StudyHeader, search: str) -> None:
        self.file = JournalFile(path)
        self.header = header
        self.worker = Worker.this_process(search)
        self.running: dict[int, Running] = {}
        self.own: set[int] = set()  # numbers this search claimed and has not finished
        self._finished: set[int] = set()
        self._last_number = -1
        self._lines = 0
        self._first_write: str | None = "create"  # or "convert", "restart"; None once done
        self._legacy: list[Trial] = []
        self._torn_warned = -1

    @property
    def path(self) -> Path:
        return self.file.path

    def locked(self, **options: Any) -> Any:
        return self.file.locked(**options)

    @property
    def written(self) -> bool:
        """True once the file is a journal this search can read and append to."""
        return self._first_write is None

    # -- before the first trial ---------------------------------------------------------------

    def open(self, restart: bool) -> StudyUpdate:
        """Check the path can be written and read what the study holds (nothing is written).

        Raises:
            ConfigError: the path cannot be written, the file is not a valid study, or it was
                made with another metric, mode or space (unless ``restart``).
        """
        self.file.prepare()
        with self.locked():
            if not self.file.exists():
                return StudyUpdate()
            lines, tail = self.file.read_all()
        try:
            update = self._read_document(lines, tail)
        except ValueError as exc:
            raise ConfigError(self._unusable(str(exc))) from None
        if restart:
            self._forget()
            self._first_write = "restart"
            return StudyUpdate()
        self._check_compatible(self._saved)
        self.header.created, self.header.id = self._saved.created, self._saved.id
        return update

    def _read_document(self, lines: bytes, tail: bytes) -> StudyUpdate:
        """Parse a whole file: a journal (``tail``: a last line cut short), or a study of the
        first format."""
        data = lines + tail
        if self._is_journal(data):
            self._first_write = None
            update = self._read_lines(lines)
            self._warn_if_torn(tail)
            return update
        return self._read_legacy(data)

    def _is_journal(self, data: bytes) -> bool:
        """True if ``data`` starts with a journal's header line (of any version)."""
        try:
            first = loads(data[: data.find(b"\n") + 1 or len(data)])
        except ValueError:
            return False
        if not isinstance(first, dict) or first.get("format") != FORMAT or "trials" in first:
            return False
        if first.get("version") != VERSION:
            raise ValueError(f"has unsupported version {first.get('version')!r}")
        return True

    def _warn_if_torn(self, tail: bytes) -> None:
        if tail and self._torn_warned != self.file.offset:
            self._torn_warned = self.file.offset
            warnings.warn(
                f"nbopt: the last line of study {self.path} was cut short (a crash while it was "
                "written); it is ignored, and every line before it is kept",
                RuntimeWarning,
                stacklevel=5,
            )

    def _read_legacy(self, data: bytes) -> StudyUpdate:
        try:
            document = loads(data)
        except ValueError as exc:
            raise ValueError(f"cannot be read as JSON ({exc})") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ValueError("is not an nbopt study file")
        if document.get("version") != LEGACY_VERSION:
            raise ValueError(f"has unsupported version {document.get('version')!r}")
        try:
            self._saved = StudyHeader.from_json(document, LEGACY_VERSION)
            records = document["trials"]
            if not isinstance(records, list):
                raise ValueError(f"'trials' must be a list, got {type(records).__name__}")
            trials = [Trial.from_json(record) for record in records]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"is corrupt ({type(exc).__name__}: {exc})") from None
        seen: set[int] = set()
        for trial in trials:
            if trial.number in seen:
                raise ValueError(f"is corrupt (trial {trial.number} is recorded twice)")
            seen.add(trial.number)
            self._finished.add(trial.number)
        self._last_number = max(seen, default=-1)
        self._first_write = "convert"
        self._legacy = trials
        return StudyUpdate(finished=list(trials))

    def _read_lines(self, data: bytes) -> StudyUpdate:
        """Apply complete journal lines (the header first, when reading from the start)."""
        update = StudyUpdate()
        for text in data.splitlines():
            self._lines += 1
            try:
                record = loads(text)
                if self._lines == 1:
                    self._saved = journal_header(record)
                else:
                    self._apply(record, update)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise ValueError(f"is corrupt at line {self._lines} ({exc})") from None
        return update

    def _apply(self, record: Any, update: StudyUpdate) -> None:
        event = record.get("event") if type(record) is dict else None
        if event == "finish":
            trial = Trial.from_json(record)
            if trial.number in self._finished:
                raise ValueError(f"trial {trial.number} is finished twice")
            self._finished.add(trial.number)
            self.running.pop(trial.number, None)
            self._last_number = max(self._last_number, trial.number)
            update.finished.append(trial)
        elif event == "start":
            running = Running(
                number=count(record.get("number"), "trial number"),
                vals=vals_of(record.get("vals")),
                started=start_time(record.get("started")),
                worker=Worker.from_json(record.get("worker")),
            )
            if running.number in self.running or running.number in self._finished:
                raise ValueError(f"trial {running.number} is started twice")
            self.running[running.number] = running
            self._last_number = max(self._last_number, running.number)
            update.started.append(running)
        elif type(record) is not dict:
            raise ValueError(f"a record must be an object, got {type(record).__name__}")
        else:
            raise ValueError(f"unknown record {event!r}")

    def _check_compatible(self, saved: StudyHeader) -> None:
        if saved.metrics or self.header.metrics:
            self._check_objectives(saved)
        for attribute, what in (("metric", "metric"), ("mode", "mode"), ("space", "search space")):
            before, now = getattr(saved, attribute), getattr(self.header, attribute)
            if now and before != now:  # an empty space: not known yet (check_study)
                detail = "" if attribute == "space" else f" ({before!r}, now {now!r})"
                raise ConfigError(
                    f"study {self.path} was made with a different {what}{detail}; "
                    "pass restart=True to start it over, or use another study path"
                )

    def _check_objectives(self, saved: StudyHeader) -> None:
        """Several objectives: the same metrics, in the same order, with the same modes."""

        def described(header: StudyHeader) -> str:
            if not header.metrics:
                return f"one metric, {header.metric} ({header.mode})"
            pairs = zip(header.metrics, header.modes, strict=True)
            return ", ".join(f"{name} ({mode})" for name, mode in pairs)

        before, now = described(saved), described(self.header)
        if before != now:
            raise ConfigError(
                f"study {self.path} was made with the metrics {before}, not {now}; "
                "pass restart=True to start it over, or use another study path"
            )

    def _forget(self) -> None:
        self.running.clear()
        self._finished.clear()
        self._legacy = []
        self._last_number, self._lines = -1, 0

    def _unusable(self, why: str) -> str:
        return f"study file {self.path} {why}; it was left untouched (use another path)"

    # -- during the search (inside ``locked``) ------------------------------------------------

    def sync(self) -> StudyUpdate:
        """Write the study if this is its first write, then read what others appended.

        Trials of processes that died on this machine before finishing are marked interrupted
        (and reported as finished). Raises :class:`StudyWriteError` if the file cannot be
        written, or was replaced by another search meanwhile (``restart=True`` elsewhere).
        """
        update = StudyUpdate()
        if self._first_write is not None:
            try:
                update = self._write_first()
            except ValueError as exc:
                raise StudyWriteError(f"study {self.path} {exc}") from None
        data, tail, replaced = self.file.read_new()
        if replaced:
            self._check_same_study(data)
            self._forget()
        try:
            more = self._read_lines(data)
        except ValueError as exc:
            raise StudyWriteError(f"study {self.path} {exc}") from None
        self._warn_if_torn(tail)
        update.finished.extend(more.finished)
        update.started.extend(more.started)
        update.finished.extend(self._mark_abandoned())
        return update

    def _check_same_study(self, data: bytes) -> None:
        """After the file was replaced: go on only if it is still this study."""
        try:
            saved = journal_header(loads(data[: data.find(b"\n") + 1]))
        except ValueError:
            saved = None
        if saved is None or saved.id != self.header.id:
            raise StudyWriteError(
                f"study {self.path} was started over or replaced by another search while this "
                "one ran (restart=True elsewhere); this search stopped"
            )

    def _write_first(self) -> StudyUpdate:
        """Create, convert or restart the file: the first write of this search."""
        update = StudyUpdate()
        if self._first_write == "create" and self.file.exists():
            # Another search created it since this one opened: read it as a journal.
            update = self._read_document(*self.file.read_all())
            self._check_compatible(self._saved)
            self.header.created, self.header.id = self._saved.created, self._saved.id
            self._first_write = None
            return update
        backup = None
        if self._first_write == "convert":
            lines, tail = self.file.read_all()
            if self._is_journal(lines + tail):  # converted by another search meanwhile
                self._forget()
                self._first_write = None
                return self._read_lines(lines)
            backup = self.path.with_name(f"{self.path.name}.v{LEGACY_VERSION}.bak")
        lines = [line(self.header.to_json())]
        lines += [finish_line(trial) for trial in self._legacy]
        self.file.replace(lines, backup=backup)
        self._lines = len(lines)
        self._saved = self.header
        self._legacy, self._first_write = [], None
        return update

    def _mark_abandoned(self) -> list[Trial]:
        ended = [
            running
            for number, running in self.running.items()
            if number not in self.own and not running.worker.alive()
        ]
        trials = []
        for running in ended:
            trial = Trial(
                running.number,
                {},
                status=TrialState.INTERRUPTED,
                error="its process ended before the trial finished",
                started=running.started,
                vals=running.vals,
            )
            self.append_finish(trial)
            trials.append(trial)
        return trials

    def next_number(self) -> int:
        """A new trial number, unique in the study (call :meth:`sync` first)."""
        return self._last_number + 1

    def append_start(self, number: int, vals: dict[str, Any], started: float) -> None:
        record = {
            "event": "start",
            "number": number,
            "vals": jsonable(vals),
            "started": started,
            "worker": self.worker.to_json(),
        }
        # Not flushed to disk: a claim lost with the machine is a trial that did not finish.
        self.file.append([line(record)], durable=False)
        self.running[number] = Running(number, vals, started, self.worker)
        self.own.add(number)
        self._last_number = max(self._last_number, number)
        self._lines += 1

    def append_finish(self, trial: Trial) -> None:
        self.file.append([finish_line(trial)])
        self.running.pop(trial.number, None)
        self.own.discard(trial.number)
        self._finished.add(trial.number)
        self._last_number = max(self._last_number, trial.number)
        self._lines += 1

    def running_elsewhere(self) -> list[Running]:
        """Trials other searches (other kernels, machines) are running now."""
        return [running for number, running in self.running.items() if number not in self.own]


def read_study(path: str | os.PathLike[str]) -> tuple[StudyHeader, list[Trial], list[Running]]:
    """What the study at ``path`` holds: its header, its ended trials in the order they were
    recorded (parameters as saved, in JSON form), and the trials running now.

    Raises:
        ConfigError: the file cannot be read, or is not a valid study.
    """
    study = Study(path, StudyHeader(metric="", mode="min", space=""), search="")
    with study.locked():
        lines, tail = study.file.read_all()
    try:
        update = study._read_document(lines, tail)
    except ValueError as exc:
        raise ConfigError(study._unusable(str(exc))) from None
    return study._saved, update.finished, list(study.running.values())


def check_study(path: str | os.PathLike[str], *, metric: str, mode: str, restart: bool) -> int:
    """Check, before any work, that a search with ``metric`` and ``mode`` can use the study at
    ``path`` (for an engine whose search space is known only later); returns the number of
    trials it holds. Nothing is written.

    Raises:
        ConfigError: as :meth:`Study.open`, but for the space, which is checked later.
    """
    study = Study(path, StudyHeader(metric=metric, mode=mode, space=""), search="")
    update = study.open(restart)
    return sum(1 for trial in update.finished if trial.finished)
