"""The launcher's side of a job: fork the ranks, relay their output and reports, end them all.

Everything happens in the caller's thread, in one loop waiting on every rank's pipes and
process sentinel, so reporters (the widget included) are only ever called from that thread.
The first failure of any rank stops the job: the other ranks, which may be blocked in a
collective waiting for the failed one, are ended with their whole process group.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from nbopt.events import EventBus, RunFinished, RunStarted
from nbopt.launching._errors import (
    Failure,
    LaunchError,
    crashed,
    early_exit,
    failure_error,
    raised,
    timeout_error,
    unloadable_result,
)
from nbopt.launching._memory import MemoryWatch
from nbopt.launching._plan import JobPlan, free_port
from nbopt.launching._processes import JobMarks
from nbopt.launching._relay import Relay
from nbopt.launching._result import LaunchResult, RankOutcome
from nbopt.launching._worker import RankSetup, run_rank, unpack_result
from nbopt.launching.events import DONE, FAILED, STOPPED, RankFinished, RankStepReported
from nbopt.ui import format as fmt
from nbopt.ui.reporting import run_name

# After a first failure, how long to keep listening so that the rank that failed first is the
# one named (a rank blocked in a collective fails too, a moment later).
FAILURE_GRACE = 0.5
# How long ranks get to exit on SIGTERM before SIGKILL, and to exit after reporting success.
STOP_GRACE = 3.0
EXIT_GRACE = 5.0
# How long to wait for the stack dumps of stuck ranks, and for the last output after the end.
DUMP_GRACE = 1.0
DRAIN_GRACE = 1.0


@dataclass
class _Rank:
    number: int
    process: Any
    conn: Connection
    relays: list[Relay]
    status: str = "running"
    exited: bool = False
    conn_open: bool = True
    reported: bool = False
    payload: bytes | None = None
    last_report: str = ""
    exited_early: str | None = None  # "sys.exit(0)": it ended so, while others may still run
    reported_at: float = 0.0

    @property
    def ended(self) -> bool:
        return self.exited and not self.conn_open


class Job:
    """One run of ``fn(*args)`` on every rank of ``plan``; :meth:`run` returns rank 0's value."""

    def __init__(
        self, fn: Callable[..., Any], args: tuple[Any, ...], plan: JobPlan, bus: EventBus
    ) -> None:
        self.fn = fn
        self.args = args
        self.plan = plan
        self.bus = bus
        self.ranks: list[_Rank] = []
        self.failures: list[Failure] = []
        self._started = time.monotonic()
        self._stopping = False
        self.outcomes: dict[int, RankOutcome] = {}
        self.marks: JobMarks | None = None
        self.memory = MemoryWatch()

    def run(self) -> Any:
        plan = self.plan
        self.bus.emit(
            RunStarted(
                kind="accelerate",
                title=plan.title,
                total=plan.num_processes,
                unit="ranks",
                name=run_name("accelerate"),
                columns=("rank", "status", "time", "detail"),
                config={
                    "num_processes": plan.num_processes,
                    "device": plan.device,
                    "mixed_precision": plan.mixed_precision,
                },
            )
        )
        try:
            _warm_imports()
            self._started = time.monotonic()
            self.marks = JobMarks()
            with _fork_warning_silenced():
                self.marks.start_watchdog()
            self._start_ranks()
            self.marks.close_in_launcher()
            timed_out = self._supervise()
            dumps = self._stack_dumps() if timed_out else {}
            self._stop()
            self._drain()
        except BaseException as exc:
            self._stop()
            interrupted = isinstance(exc, KeyboardInterrupt)
            message = "every rank was stopped" if interrupted else repr(exc)
            self._finish("interrupted" if interrupted else "failed", message)
            raise
        finally:
            self._close()
        status = "failed"
        if timed_out:
            status = "timed out"
            error: LaunchError = timeout_error(plan.timeout or 0, dumps)
        elif self.failures:
            stopped = [rank.number for rank in self.ranks if rank.status == STOPPED]
            error = failure_error(self.failures + self._early_exits(), stopped, plan.num_processes)
        else:
            try:
                value = unpack_result(self.ranks[0].payload)
            except Exception as exc:
                error = unloadable_result(exc)
            else:
                ranks = "1 rank" if plan.num_processes == 1 else f"{plan.num_processes} ranks"
                self._finish("done", f"{ranks} finished in {self._elapsed()}", value)
                return value
        self._finish(status, error.summary)
        raise error

    def _start_ranks(self) -> None:
        context = multiprocessing.get_context("fork")
        port = free_port()
        for number in range(self.plan.num_processes):
            shown = number == 0 or self.plan.all_ranks
            out_read, out_write = os.pipe()
            err_read, err_write = os.pipe()
            conn, child_conn = context.Pipe(duplex=False)
            assert self.marks is not None
            setup = RankSetup(
                rank=number,
                environment={**self.plan.environment(number, port), **self.marks.environment},
                parent_pid=os.getpid(),
                stdout_fd=out_write,
                stderr_fd=err_write,
                shown=shown,
                mark_fd=self.marks.fd,
            )
            process = context.Process(
                target=run_rank,
                args=(setup, self.fn, self.args, child_conn),
                name=f"nbopt-rank-{number}",
            )
            with _fork_warning_silenced():
                process.start()
            with contextlib.suppress(OSError):  # the rank did it already, or exited
                os.setpgid(process.pid, process.pid)
            # Closed here so that the next ranks do not inherit them: end of file on a pipe
            # then means its rank is gone.
            for fd in (out_write, err_write):
                os.close(fd)
            child_conn.close()
            relays = [
                Relay(out_read, number, "stdout", shown),
                Relay(err_read, number, "stderr", shown),
            ]
            self.ranks.append(_Rank(number, process, conn, relays))

    def _supervise(self) -> bool:
        """Relay until every rank ended or one failed; True if the timeout was reached."""
        deadline = None if self.plan.timeout is None else self._started + self.plan.timeout
        failed_at: float | None = None
        reported_at: float | None = None
        while not all(rank.ended for rank in self.ranks):
            now = time.monotonic()
            if self.failures and failed_at is None:
                failed_at = now
            if reported_at is None and all(rank.reported or rank.ended for rank in self.ranks):
                reported_at = now
            limits = [
                limit
                for limit in (
                    None if failed_at is None else failed_at + FAILURE_GRACE,
                    # A rank that reported success but does not exit (a stray non-daemon
                    # thread, say) is not waited for longer than this.
                    None if reported_at is None else reported_at + EXIT_GRACE,
                    deadline,
                )
                if limit is not None
            ]
            if limits and now >= min(limits):
                return not self.failures and deadline is not None and now >= deadline
            self._wait_once(min([now + 1.0, *limits]) - now)
        return False

    def _wait_once(self, seconds: float) -> None:
        self.memory.sample({r.number: r.process.pid for r in self.ranks if not r.exited})
        handlers: dict[Any, Callable[[], None]] = {}
        for rank in self.ranks:
            if rank.conn_open:
                handlers[rank.conn] = lambda rank=rank: self._receive(rank)
            if not rank.exited:
                handlers[rank.process.sentinel] = lambda rank=rank: self._exited(rank)
            for relay in rank.relays:
                if relay.open:
                    handlers[relay.fd] = relay.read
        for ready in wait(list(handlers), timeout=max(seconds, 0)):
            handlers[ready]()

    def _receive(self, rank: _Rank) -> None:
        try:
            message = pickle.loads(rank.conn.recv_bytes())
        except (EOFError, OSError):
            rank.conn_open = False
            self._check_end(rank)
            return
        kind = message[0]
        if kind == "step" and not self._stopping:
            _, step, value, metrics = message
            shown = {"value": value} if value is not None else {}
            shown.update(metrics)
            rank.last_report = f"step {step}: {fmt.params(shown, 60)}"
            self.bus.emit(RankStepReported(None, step, value, metrics, rank=rank.number))
        elif kind == "done":
            rank.reported, rank.payload = True, message[1]
            rank.exited_early, rank.reported_at = message[2], message[3]
        elif kind == "error":
            self._fail(rank, raised(rank.number, message[1]))

    def _exited(self, rank: _Rank) -> None:
        # Still a zombie here, so its process group id cannot have been reused: end whatever
        # the rank left behind (data loader workers, subprocesses) before reaping it.
        _signal_group(rank.process.pid, signal.SIGKILL)
        rank.process.join()
        rank.exited = True
        self._check_end(rank)

    def _check_end(self, rank: _Rank) -> None:
        if not rank.ended or rank.status != "running":
            return
        if rank.reported or self._stopping:
            rank.status = DONE if rank.reported else STOPPED
            self._rank_finished(rank.number, rank.status, rank.last_report)
            return
        why = self.memory.explain_sigkill(rank.number)
        self._fail(rank, crashed(rank.number, rank.process.exitcode, rank.relays[1].tail, why))

    def _fail(self, rank: _Rank, failure: Failure) -> None:
        if rank.status != "running":
            return
        rank.status = FAILED
        self.failures.append(failure)
        self._rank_finished(rank.number, FAILED, failure.summary)

    def _stack_dumps(self) -> dict[int, str]:
        """Where each unfinished rank is: its Python stacks, dumped by faulthandler."""
        self._stopping = True  # a rank that dies now was stopped, not failed
        running = [rank for rank in self.ranks if not rank.exited]
        for rank in running:
            rank.relays[1].start_capture()
            _signal_process(rank.process.pid, signal.SIGUSR1)
        end = time.monotonic() + DUMP_GRACE
        while time.monotonic() < end and running:
            self._wait_once(end - time.monotonic())
        return {rank.number: rank.relays[1].captured() for rank in running}

    def _stop(self) -> None:
        """End every rank still running: SIGTERM to its process group, then SIGKILL."""
        self._stopping = True
        running = [rank for rank in self.ranks if not rank.exited]
        for rank in running:
            _signal_group(rank.process.pid, signal.SIGTERM)
        end = time.monotonic() + STOP_GRACE
        while time.monotonic() < end and any(not rank.exited for rank in running):
            self._wait_once(end - time.monotonic())
        for rank in self.ranks:
            if not rank.exited:
                _signal_group(rank.process.pid, signal.SIGKILL)
                rank.process.join()
                rank.exited = True
            if rank.status == "running":
                rank.status = DONE if rank.reported else STOPPED
                self._rank_finished(rank.number, rank.status, rank.last_report)

    def _drain(self) -> None:
        """Relay the last output still in the pipes."""
        end = time.monotonic() + DRAIN_GRACE
        while time.monotonic() < end and any(
            relay.open for rank in self.ranks for relay in rank.relays
        ):
            self._wait_once(end - time.monotonic())

    def _close(self) -> None:
        for rank in self.ranks:
            if not rank.exited:
                _signal_group(rank.process.pid, signal.SIGKILL)
                rank.process.join()
                rank.exited = True
            rank.conn.close()
            for relay in rank.relays:
                relay.close()
        if self.marks is not None:
            # What the ranks started in sessions of their own, or left behind when they ended.
            self.marks.end_all()
            self.marks.release()

    def _early_exits(self) -> list[Failure]:
        """Ranks that ended with sys.exit(0) before the first failure: the likely cause of it,
        as a peer that left a collective the others then waited for."""
        first = min(failure.time for failure in self.failures)
        return [
            early_exit(rank.number, rank.reported_at, rank.exited_early)
            for rank in self.ranks
            if rank.exited_early and rank.reported_at < first
        ]

    def _finish(self, status: str, message: str, value: Any = None) -> None:
        self.result = LaunchResult(
            status=status,
            num_processes=self.plan.num_processes,
            device=self.plan.device,
            mixed_precision=self.plan.mixed_precision,
            seconds=self._seconds(),
            ranks=[self.outcomes[number] for number in sorted(self.outcomes)],
            value=value,
            error=None if status == "done" else message,
        )
        self.bus.emit(RunFinished("accelerate", status, message, self.result))

    def _rank_finished(self, rank: int, status: str, detail: str) -> None:
        outcome = RankOutcome(rank, status, self._seconds(), detail)
        self.outcomes[rank] = outcome
        self.bus.emit(RankFinished(rank, status, outcome.seconds, detail))

    def _seconds(self) -> float:
        return time.monotonic() - self._started

    def _elapsed(self) -> str:
        return fmt.duration(self._seconds())


@contextlib.contextmanager
def _fork_warning_silenced() -> Iterator[None]:
    """Python 3.12+ warns that forking a multi-threaded process may deadlock the child; the
    rank avoids the known cases (see _worker), the watchdog runs a few system calls, and this
    is the documented cost of seeing the notebook's variables."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def _warm_imports() -> None:
    """Import in this process, once, what each rank of an Accelerate job would import alone.

    The ranks inherit loaded modules through the fork. ``accelerator.prepare()`` touches
    ``torch._dynamo``, whose import alone takes seconds, in every rank of every job otherwise.
    """
    import accelerate.accelerator  # noqa: F401
    import torch._dynamo  # noqa: F401


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        _signal_process(pid, signum)


def _signal_process(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
