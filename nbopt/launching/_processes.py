"""Every process of a job, found and ended however it was started, even after the kernel died.

Ending a rank's process group misses what a rank started in a session of its own
(``setsid``, ``start_new_session=True``) or what outlived its parent; the ranks' parent-death
signal misses everything but the ranks. So each job marks its processes twice, with marks
that children inherit without asking and that ``/proc`` shows:

* an open file descriptor: the read end of a pipe made for the job, which every rank holds
  and every process it forks inherits (and keeps across ``exec`` unless it closes it, as
  ``subprocess`` does by default);
* an environment variable, ``NBOPT_JOB``, which every program a rank or its children
  execute inherits (unless started with an environment of its own).

At the end of the job the launcher ends every process carrying either mark. And a small
watchdog, forked from the notebook's process before the ranks and in a session of its own,
waits for the notebook's process: if that dies (a kernel restarted, a SIGKILL) before the job
ended, it ends the marked processes itself. Only Linux shows these marks in ``/proc``;
elsewhere only the process groups are ended.

A process that both closes every inherited descriptor and replaces its whole environment (a
daemon started with ``env -i``) carries no mark and is not found.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
import uuid
from pathlib import Path

JOB_VARIABLE = "NBOPT_JOB"
# How often the watchdog checks that the notebook's process is alive.
WATCH_INTERVAL = 0.2
# Rounds of search-and-kill: a marked process may fork while the others are being ended.
KILL_ROUNDS = 10
_PROC = Path("/proc")


class JobMarks:
    """The marks of one job's processes: an inherited pipe descriptor and an environment tag.

    Create it before forking the ranks; each rank keeps :attr:`fd` open and inheritable and
    sets ``NBOPT_JOB`` to :attr:`token`.
    """

    def __init__(self) -> None:
        self.token = uuid.uuid4().hex
        self.fd, writer = os.pipe()
        os.close(writer)
        self._pipe = f"pipe:[{os.fstat(self.fd).st_ino}]"
        self._tag = f"{JOB_VARIABLE}={self.token}".encode()
        self._watchdog: tuple[int, int] | None = None  # its pid, and our end of its pipe

    @property
    def environment(self) -> dict[str, str]:
        return {JOB_VARIABLE: self.token}

    def start_watchdog(self) -> None:
        """Fork the watchdog that ends the job's processes if this process dies first."""
        if not _PROC.is_dir():
            return
        reader, writer = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the watchdog: nothing of this process runs in it but the loop below
            try:
                os.setsid()
                os.close(writer)
                os.close(self.fd)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                self._watch(parent, reader)
            finally:
                os._exit(0)
        os.close(reader)
        self._watchdog = (pid, writer)

    def _watch(self, parent: int, reader: int) -> None:
        while os.getppid() == parent:
            ready, _, _ = select.select([reader], [], [], WATCH_INTERVAL)
            if ready:
                return  # the job ended: the launcher ends its processes itself
        self.end_all(exclude={os.getpid()})

    def release(self) -> None:
        """The job ended and its processes were ended: stop the watchdog, close the mark."""
        if self._watchdog is not None:
            pid, writer = self._watchdog
            with contextlib.suppress(OSError):
                os.write(writer, b"x")
            os.close(writer)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            self._watchdog = None
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def close_in_launcher(self) -> None:
        """Forget the mark in this process once the ranks have it (its children must not)."""
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def marked(self, exclude: set[int]) -> list[int]:
        """The pids of running processes that carry a mark of this job."""
        found = []
        for entry in _PROC.iterdir():
            if not entry.name.isdigit() or int(entry.name) in exclude:
                continue
            if self._has_tag(entry) or self._holds_pipe(entry):
                found.append(int(entry.name))
        return found

    def end_all(self, exclude: set[int] | None = None) -> list[int]:
        """SIGKILL every marked process, again until none is left; returns the pids ended."""
        if not _PROC.is_dir():
            return []
        skip = {os.getpid(), *(exclude or set())}
        ended: list[int] = []
        for _ in range(KILL_ROUNDS):
            pids = [pid for pid in self.marked(skip) if not _zombie(pid)]
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            ended.extend(pids)
            time.sleep(0.01)
        return ended

    def _has_tag(self, entry: Path) -> bool:
        try:
            return self._tag in (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            return False

    def _holds_pipe(self, entry: Path) -> bool:
        try:
            descriptors = list((entry / "fd").iterdir())
        except OSError:
            return False
        for descriptor in descriptors:
            with contextlib.suppress(OSError):
                if os.readlink(descriptor) == self._pipe:
                    return True
        return False


def _zombie(pid: int) -> bool:
    """A process that ended and waits to be reaped by its parent: it runs nothing."""
    try:
        stat = (_PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return True
    return stat.rpartition(b")")[2].split()[:1] == [b"Z"]
