"""The records of a study's journal: its header, trial claims (``start``) and trial outcomes
(``finish``), each one JSON line, and how they are read back and checked.

Reading is written for speed (a long study holds tens of thousands of records) and for
distrust: every field is checked for its type and range, numbers must be finite, and nesting
is limited, so that a hand-edited or damaged file is refused with a message naming the fault.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from nbopt.tuning._trial import Trial

FORMAT = "nbopt-study"
VERSION = 2
LEGACY_VERSION = 1  # one JSON document, rewritten whole after every trial
# Nesting allowed in a record (parameters are nested choices at most a few levels deep).
MAX_DEPTH = 32
# Searches running in this process, by token: a start record of this process whose search is
# not among them was left by a search that ended abnormally.
ACTIVE_SEARCHES: set[str] = set()


@dataclass
class StudyHeader:
    """What a study was made with; a resumed search must match it.

    With several objectives, ``metrics`` and ``modes`` list them all (``metric`` and ``mode``
    are the first); a single-objective study leaves them empty and writes no such fields.
    """

    metric: str
    mode: str
    space: str  # fingerprint of the search space
    created: float = field(default_factory=time.time)
    backend: str = "local"
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    metrics: tuple[str, ...] = ()
    modes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        fields = {key: value for key, value in self.__dict__.items() if key not in _SEVERAL}
        several = {key: list(getattr(self, key)) for key in _SEVERAL if getattr(self, key)}
        return {"format": FORMAT, "version": VERSION, **fields, **several}

    @classmethod
    def from_json(cls, data: dict[str, Any], version: int) -> StudyHeader:
        """Read a header; raises ValueError for one that does not have the right shape."""
        created = data.get("created", 0.0)
        if isinstance(created, bool) or not isinstance(created, (int, float)):
            raise ValueError(f"'created' must be a number, got {created!r}")
        if not 0 <= created <= 1e11:  # NaN and inf fail too
            raise ValueError(f"'created' is out of range: {created!r}")
        if data.get("mode") not in ("min", "max"):
            raise ValueError(f"'mode' must be 'min' or 'max', got {data.get('mode')!r}")
        header = cls(
            metric=_text(data, "metric"),
            mode=data["mode"],
            space=_text(data, "space"),
            created=float(created),
            backend=_text(data, "backend", "local"),
        )
        header.id = _text(data, "id") if version == VERSION else ""
        header.metrics = _texts(data, "metrics")
        header.modes = _texts(data, "modes")
        if len(header.metrics) != len(header.modes) or not set(header.modes) <= {"min", "max"}:
            raise ValueError(
                f"'metrics' {list(header.metrics)} and 'modes' {list(header.modes)} do not match"
            )
        return header


_SEVERAL = ("metrics", "modes")


def _texts(data: dict[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if type(value) is not list or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{key!r} must be a list of strings, got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class Worker:
    """The process that claimed a trial: its machine, pid, start time and search."""

    host: str
    pid: int
    ticks: int | None  # process start, in clock ticks since boot (Linux), against pid reuse
    search: str

    @classmethod
    def this_process(cls, search: str) -> Worker:
        return cls(_this_host(), os.getpid(), _start_ticks(os.getpid()), search)

    def to_json(self) -> str:
        """``host pid ticks search``: one string, cheap to read back thousands of times."""
        return f"{self.host} {self.pid} {'-' if self.ticks is None else self.ticks} {self.search}"

    @classmethod
    def from_json(cls, text: Any) -> Worker:
        worker = _WORKERS.get(text) if isinstance(text, str) else None
        if worker is not None:
            return worker  # one search writes the same worker in every claim
        parts = text.split(" ") if isinstance(text, str) else []
        if len(parts) != 4 or not parts[1].isdigit() or not (parts[2] == "-" or parts[2].isdigit()):
            raise ValueError(f"'worker' must be 'host pid ticks search', got {text!r}")
        worker = cls(parts[0], int(parts[1]), None if parts[2] == "-" else int(parts[2]), parts[3])
        if len(_WORKERS) < 10_000:
            _WORKERS[text] = worker
        return worker

    def alive(self) -> bool:
        """False when the process surely ended (it ran on this machine); True otherwise."""
        if self.host != _this_host():
            return True
        if self.pid == os.getpid():
            return self.search in ACTIVE_SEARCHES
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        ticks = _start_ticks(self.pid)
        return ticks is None or self.ticks is None or ticks == self.ticks


_WORKERS: dict[str, Worker] = {}


@dataclass(slots=True)
class Running:
    """A trial claimed by a process and not finished yet."""

    number: int
    vals: dict[str, Any]
    started: float
    worker: Worker


def journal_header(record: Any) -> StudyHeader:
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError("the first line is not an nbopt study header")
    if record.get("version") != VERSION:
        raise ValueError(f"unsupported version {record.get('version')!r}")
    return StudyHeader.from_json(record, VERSION)


def loads(line: bytes) -> Any:
    """One JSON value, refusing NaN/Infinity and nesting deeper than MAX_DEPTH."""
    try:
        text = line.decode("utf-8")
        value, end = _DECODER.raw_decode(text)
        if text[end:].strip():
            raise ValueError(f"extra data after the JSON value at column {end + 1}")
    except RecursionError:
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text: {exc}") from None
    if line.count(b"[") + line.count(b"{") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if depth <= MAX_DEPTH:
                children = item.values() if isinstance(item, dict) else item
                stack.extend((child, depth + 1) for child in children)
    return deepest


def line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n").encode()


def finish_line(trial: Trial) -> bytes:
    """A finish record: the trial's fields, leaving out the empty ones."""
    fields = {key: value for key, value in trial.to_json().items() if value or value == 0}
    return line({"event": "finish", **fields})


def _text(data: dict[str, Any], key: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise ValueError(f"{key!r} must be a string, got {value!r}")
    return value


def count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
    return value


def start_time(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1e11:
        raise ValueError(f"a start time must be seconds since the epoch, got {value!r}")
    return float(value)


def vals_of(value: Any) -> dict[str, Any]:
    """Hyperopt's encoding of a configuration (its numbers are checked against the space by
    the search)."""
    if type(value) is not dict:
        raise ValueError(f"'vals' must be an object, got {value!r}")
    return value


def _this_host() -> str:
    """This machine, and this boot of it: a process of an earlier boot has surely ended."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            boot = handle.read().strip()[:8]
    except OSError:
        boot = ""
    return f"{socket.gethostname().replace(' ', '_')}/{boot}"


def _start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (Linux); None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rpartition(b")")[2].split()
    except OSError:
        return None
    if fields and fields[0] == b"Z":  # a zombie runs nothing
        return -1
    return int(fields[19]) if len(fields) > 19 else None
