"""Exceptions of a launched job, and how the launcher builds them from what the ranks said."""

from __future__ import annotations

import pickle
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nbopt.launching._worker import WORKER_FRAME
from nbopt.ui import format as fmt

# An exception's message in one-line summaries (its traceback keeps it whole).
_MESSAGE_CHARS = 160


class LaunchError(RuntimeError):
    """A rank of the job failed; every other rank was stopped.

    ``str(error)`` is a one-line summary followed by the failing rank's own traceback. In
    IPython only that rank's traceback and the summary are shown, not the launcher's frames.

    Attributes:
        rank: The rank that failed first (None when no single rank is to blame).
        remote_traceback: That rank's traceback, or the last lines it wrote to stderr when it
            died without a Python exception (a crash, a kill).
        exception: The rank's exception object when it could be brought back, else None.
        exitcode: The rank's exit status (negative: killed by that signal), if it exited.
    """

    def __init__(
        self,
        summary: str,
        *,
        rank: int | None = None,
        remote_traceback: str = "",
        exception: BaseException | None = None,
        exitcode: int | None = None,
    ) -> None:
        self.summary = summary
        self.rank = rank
        self.remote_traceback = remote_traceback.rstrip("\n")
        self.exception = exception
        self.exitcode = exitcode
        super().__init__(self._text())

    def _text(self) -> str:
        if not self.remote_traceback:
            return self.summary
        return f"{self.summary}\n{self.remote_traceback}"

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of the launcher's own frames: the rank's traceback."""
        lines = self.remote_traceback.splitlines() if self.remote_traceback else []
        if lines:
            lines.append("")
        lines.append(f"{type(self).__name__}: {self.summary}")
        return lines


class LaunchTimeout(LaunchError, TimeoutError):
    """The job ran past its ``timeout`` and every rank was stopped.

    ``remote_traceback`` holds where each unfinished rank was when it was stopped.
    """


@dataclass
class Failure:
    """How one rank failed, as the launcher learnt it."""

    rank: int
    time: float
    summary: str  # "raised ValueError: boom", "was killed by SIGSEGV"
    traceback: str = ""
    exception: BaseException | None = None
    exitcode: int | None = None
    # Died without a Python exception: a signal, os._exit, the OOM killer.
    crashed: bool = False
    # Ended with sys.exit(0) while the others ran: it has no traceback of its own.
    early: bool = False


def raised(rank: int, report: Mapping[str, Any]) -> Failure:
    """The failure of a rank that sent an error report (see ``_worker.failure_report``)."""
    exception = None
    if report["exception"] is not None:
        try:
            exception = pickle.loads(report["exception"])
        except Exception:
            exception = None  # a class only the rank knew: its traceback says it all
    first_line = (report["message"].strip().splitlines() or [""])[0]
    if len(first_line) > _MESSAGE_CHARS:
        first_line = first_line[: _MESSAGE_CHARS - 1] + "…"
    summary = f"raised {report['type']}" + (f": {first_line}" if first_line else "")
    traceback = report["traceback"].replace(
        "Traceback (most recent call last)", f"Traceback of rank {rank} (most recent call last)", 1
    )
    return Failure(rank, report["time"], summary, traceback, exception)


def crashed(rank: int, exitcode: int | None, stderr: str, why_killed: str = "") -> Failure:
    """The failure of a rank that ended without a report; ``stderr`` is its last output, and
    ``why_killed`` what is known of a SIGKILL that nbopt did not send (memory, say)."""
    if exitcode is not None and exitcode < 0:
        how = f"was killed by {signal.Signals(-exitcode).name}"
        if why_killed and exitcode == -signal.SIGKILL:
            how += f", {why_killed}"
    else:
        how = f"exited with status {exitcode} without a Python exception"
    output = own_frames(stderr)
    fatal = output.rfind("Fatal Python error")
    # faulthandler's report of the crash if there is one, else what the rank wrote last.
    output = output[fatal:] if fatal >= 0 else _last_lines(output, 20)
    traceback = f"Last output of rank {rank} on stderr:\n{output}" if output else ""
    return Failure(rank, time.time(), how, traceback, None, exitcode, crashed=True)


def early_exit(rank: int, when: float, how: str) -> Failure:
    """A rank that ended (``how``: ``sys.exit(0)``) while the others still ran: the likely cause
    of what they raised next, as a peer in a collective that never came."""
    summary = f"ended with {how} while the other ranks still ran"
    return Failure(rank, when, summary, crashed=True, early=True)


def failure_error(failures: Sequence[Failure], stopped: Sequence[int], size: int) -> LaunchError:
    """The error to raise: the first failure, with what followed it in brief."""
    # A crash, or an early exit, is the cause of whatever the other ranks raised at the same
    # time (gloo's "Connection closed by peer"), whichever the launcher heard of first.
    first = min(failures, key=lambda failure: (not failure.crashed, failure.time))
    after = [f"rank {f.rank} {f.summary.split(':')[0]}" for f in failures if f is not first]
    if stopped:
        after.append(f"{_ranks(stopped)} {'was' if len(stopped) == 1 else 'were'} stopped")
    summary = f"rank {first.rank} of {size} {first.summary}"
    if after:
        summary += "; then " + ", ".join(after)
    # An early exit has no traceback of its own: show what its absence made the others raise.
    traceback = first.traceback
    if first.early:
        traceback = next((f.traceback for f in failures if f.traceback), "")
    return LaunchError(
        summary,
        rank=first.rank,
        remote_traceback=traceback,
        exception=first.exception,
        exitcode=first.exitcode,
    )


def timeout_error(timeout: float, dumps: Mapping[int, str]) -> LaunchTimeout:
    """The error for a job stopped at ``timeout``; ``dumps`` are the unfinished ranks' stacks."""
    where = "\n".join(
        f"Rank {number} was here (most recent call first):\n{own_frames(text)}"
        for number, text in sorted(dumps.items())
        if text.strip()
    )
    summary = (
        f"the job ran past timeout={fmt.duration(timeout)} and was stopped; "
        f"unfinished: {_ranks(sorted(dumps))}"
    )
    sole = next(iter(dumps)) if len(dumps) == 1 else None
    return LaunchTimeout(summary, rank=sole, remote_traceback=where)


def unloadable_result(exc: Exception) -> LaunchError:
    """The error for a rank 0 result that this process cannot unpickle."""
    hint = ""
    if isinstance(exc, AttributeError):
        hint = (
            ": a class or function defined inside the job is unknown to the notebook; "
            "define it in a cell before the launch"
        )
    return LaunchError(
        f"rank 0's result could not be loaded in the notebook ({type(exc).__name__}: {exc}){hint}",
        rank=0,
    )


def own_frames(dump: str) -> str:
    """A rank's stderr, with faulthandler's dumps cut at the rank's entry point.

    Below ``run_rank`` are the launcher's frames, copied by the fork into every rank; the
    thread headers and the list of extension modules are noise too.
    """
    kept: list[str] = []
    inherited = False
    for line in dump.strip().splitlines():
        if line.startswith(("Thread 0x", "Current thread 0x", "Stack (most recent")):
            inherited = False
        elif line.startswith("Extension modules:"):
            continue
        elif line.strip().startswith(WORKER_FRAME) and line.endswith(" in run_rank"):
            inherited = True
        elif not inherited:
            kept.append(line)
    return "\n".join(kept)


def _last_lines(text: str, count: int) -> str:
    return "\n".join(text.strip().splitlines()[-count:])


def _ranks(numbers: Sequence[int]) -> str:
    return ("rank " if len(numbers) == 1 else "ranks ") + ", ".join(map(str, numbers))
