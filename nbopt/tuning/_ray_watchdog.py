"""A watchdog that stops the local Ray nbopt started when the process that started it dies.

On Linux Ray ties the daemons a driver starts to the driver's life (``PR_SET_PDEATHSIG``),
but not what its raylet starts: when a kernel is killed, the raylet's agents try to report
to a GCS that is gone and stay a minute or more, and trial workers linger. The watchdog is
a small process in a session of its own (so that a signal to the kernel's process group
spares it) that learns the local Ray's processes as they appear: the kernel's children
started from Ray's package, and everything they start. It kills them all once the kernel is
gone, which it sees as end-of-file on its pipe from the kernel, or as a new parent.

Run as ``python -m nbopt.tuning._ray_watchdog KERNEL_PID RAY_PACKAGE_DIR``; the kernel
writes ``done`` once it has shut Ray down, and the watchdog then waits a little for the
processes it saw to end, kills any that did not, and exits.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import time
from typing import IO

import psutil

_POLL_S = 0.5
_GRACE_S = 5.0
_DONE = "done"


class Watchdog:
    """The watchdog of this process's local Ray; :meth:`close` once Ray is shut down."""

    def __init__(self, ray_dir: str) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__, str(os.getpid()), ray_dir],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            text=True,
        )

    @property
    def pid(self) -> int:
        return self._process.pid

    def close(self) -> None:
        """Tell the watchdog that Ray was shut down, and wait for its sweep to end."""
        try:
            self._process.communicate(_DONE + "\n", timeout=2 * _GRACE_S + 5)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            self._process.kill()
            self._process.wait()


def watch(kernel: int, ray_dir: str, commands: IO[str]) -> None:
    """Track the Ray processes ``kernel`` starts; kill them when it dies, or sweep on done."""
    tracked: dict[int, float] = {}
    while True:
        readable, _, _ = select.select([commands], [], [], _POLL_S)
        line = commands.readline() if readable else None
        if line is not None and line.strip() == _DONE:
            _kill(_wait_gone(_alive(tracked), _GRACE_S))
            return
        if line == "" or os.getppid() != kernel:
            _kill(_alive(tracked))
            return
        _track(kernel, ray_dir, tracked)


def _track(kernel: int, ray_dir: str, tracked: dict[int, float]) -> None:
    """Add the kernel's Ray processes, and all they started, to ``tracked`` (pid: start)."""
    try:
        children = psutil.Process(kernel).children()
    except psutil.Error:
        return
    for child in children:
        try:
            if child.pid not in tracked and not _started_from(child, ray_dir):
                continue
            for process in [child, *child.children(recursive=True)]:
                tracked.setdefault(process.pid, process.create_time())
        except psutil.Error:
            continue


def _started_from(process: psutil.Process, ray_dir: str) -> bool:
    """Whether the process runs a program of Ray's package (the GCS, the raylet, its
    Python daemons); not this watchdog, which only names the package's directory."""
    if process.pid == os.getpid():
        return False
    return any(part.startswith(ray_dir + os.sep) for part in process.cmdline())


def _alive(tracked: dict[int, float]) -> list[psutil.Process]:
    """The tracked processes still running (the same ones: their pids not reused)."""
    alive = []
    for pid, created in tracked.items():
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            if process.create_time() == created and running(process):
                alive.append(process)
    return alive


def running(process: psutil.Process) -> bool:
    """Whether the process still runs; a zombie has ended and waits only to be reaped."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to ``timeout`` seconds for the processes to end; those still running."""
    deadline = time.monotonic() + timeout
    while (alive := [p for p in processes if running(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def _kill(processes: list[psutil.Process]) -> None:
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()
    _wait_gone(processes, _GRACE_S)


if __name__ == "__main__":
    watch(int(sys.argv[1]), sys.argv[2], sys.stdin)
