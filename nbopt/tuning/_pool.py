"""``parallel=N`` on the local backend: trials in N worker processes forked from this one.

Why fork: the objective of a notebook is usually a function defined in it, over data and
models in its memory, which another interpreter (spawn, a process pool) would have to pickle
or could not see at all; a fork has them as they are, as ``%%accelerate`` does. Workers are
forked once, before the live view and TensorBoard start their threads, and each runs on one
thread (see ``_pool_worker``).

This process stays the search: it proposes every configuration (so the proposer knows every
running trial, and no two workers get the same one), records every trial in the study, applies
the stopping rules and emits every event, from its own thread, so the live view, TensorBoard
and the result are those of a search run here. A trial that crashes its worker (a segfault, an
``os._exit``, the OOM killer) is recorded as failed and a fresh worker replaces it. An
interrupt stops every worker, records their trials as interrupted and keeps what finished.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from nbopt.tuning._cell import CellObjective
from nbopt.tuning._errors import StopSearch, StudyWriteError
from nbopt.tuning._pool_worker import serve
from nbopt.tuning._proposer import Proposal
from nbopt.tuning._result import TuneResult
from nbopt.tuning._search import Search
from nbopt.tuning._trial import Trial, TrialState
from nbopt.tuning.events import TrialStarted

# How long workers get to exit when asked, then after SIGTERM, before SIGKILL.
EXIT_GRACE = 2.0
# How long the search waits for a worker to send back what the best %%tune trial assigned.
ASSIGNED_TIMEOUT = 60.0


@dataclass
class _Running:
    proposal: Proposal
    trial: Trial
    history: list[Trial]


@dataclass
class _Worker:
    process: Any
    conn: Connection
    running: _Running | None = None
    partial: dict[str, str] = field(default_factory=dict)  # output not ended by a newline yet


def run_in_workers(search: Search, call: Callable[[Any], Any], parallel: int) -> TuneResult:
    """Run ``search`` with ``parallel`` trials at a time in worker processes."""
    return _Pool(search, call, parallel).run()


class _Pool:
    def __init__(self, search: Search, call: Callable[[Any], Any], parallel: int) -> None:
        self.search = search
        self.call = call
        self.parallel = parallel
        self.workers: list[_Worker] = []
        self._context = multiprocessing.get_context("fork")
        self._sign = 1.0 if search.mode == "min" else -1.0
        self._no_more = False

    def run(self) -> TuneResult:
        search = self.search
        try:
            for _ in range(self.parallel):
                self.workers.append(self._fork())
            search.start()
            while True:
                self._dispatch()
                if not any(worker.running for worker in self.workers):
                    break
                self._wait_once()
            self._bring_back_assigned()
        except KeyboardInterrupt:
            self._stop(TrialState.INTERRUPTED)
            search.finish("interrupted")
            raise
        except BaseException:
            self._stop(TrialState.INTERRUPTED)
            search.finish("failed")
            raise
        self._stop(TrialState.INTERRUPTED)
        return search.finish("done")

    # -- workers --------------------------------------------------------------------------------

    def _fork(self) -> _Worker:
        parent_end, child_end = self._context.Pipe(duplex=True)
        decode = self.search.proposer.params
        process = self._context.Process(
            target=serve,
            args=(child_end, self.call, decode, self.search.metric, self._sign, os.getpid()),
            name="nbopt-trial-worker",
            daemon=False,  # a trial may start processes of its own (DataLoader workers)
        )
        with warnings.catch_warnings():
            # Python 3.12+ warns that forking a multi-threaded process may deadlock the child;
            # workers fork before the views start their threads, and run on one thread.
            warnings.simplefilter("ignore", DeprecationWarning)
            process.start()
        with contextlib.suppress(OSError):  # the worker did it already, or exited
            os.setpgid(process.pid, process.pid)
        child_end.close()
        return _Worker(process, parent_end)

    def _dispatch(self) -> None:
        """Give each idle worker a trial, while the budget, the timeout and the space allow."""
        search = self.search
        for worker in self.workers:
            if worker.running is not None or self._no_more:
                continue
            claimed = None if search.timed_out() else search.claim()
            if claimed is None:
                self._no_more = True
                return
            number, proposal = claimed
            trial = Trial(number, proposal.params, vals=proposal.vals, started=time.time())
            history = search.history() if search.stopper is not None else []
            worker.running = _Running(proposal, trial, history)
            search.bus.emit(TrialStarted(number, proposal.params))
            judged = search.stopper is not None
            _send(worker.conn, ("run", number, proposal.vals, judged))

    def _wait_once(self) -> None:
        handlers: dict[Any, Callable[[], None]] = {}
        for worker in self.workers:
            handlers[worker.conn] = lambda worker=worker: self._receive(worker)
            handlers[worker.process.sentinel] = lambda worker=worker: self._died(worker)
        for ready in wait(list(handlers), timeout=1.0):
            handlers[ready]()

    def _receive(self, worker: _Worker) -> bool:
        """Handle one message of ``worker``; False once its pipe is closed."""
        try:
            message = pickle.loads(worker.conn.recv_bytes())
        except (EOFError, OSError):
            return False  # the worker is gone: its sentinel says how
        kind = message[0]
        if kind == "out":
            self._relay(worker, message[1], message[2])
        elif kind == "step":
            self._step(worker, *message[1:])
        elif kind == "done":
            self._done(worker, message[2])
        return True

    def _step(
        self, worker: _Worker, number: int, step: int, value: float | None, metrics: dict
    ) -> None:
        running = worker.running
        if running is None or running.trial.number != number:
            return
        judged, stop = self.search.take_report(running.trial, step, value, metrics, running.history)
        if self.search.stopper is not None:  # the worker waits for a verdict on every report
            _send(worker.conn, ("verdict", bool(stop), judged))

    def _done(self, worker: _Worker, outcome: dict[str, Any]) -> None:
        running = worker.running
        if running is None:
            return
        self._flush(worker)
        worker.running = None
        trial = running.trial
        trial.status = TrialState(outcome["status"])
        trial.value = outcome["value"]
        trial.metrics.update(outcome["metrics"])
        trial.error, trial.traceback = outcome["error"], outcome["traceback"]
        trial.duration, trial.started = outcome["duration"], outcome["started"]
        self.search.end_trial(running.proposal, trial)
        if outcome["ended_search"] and self.search.best is None:
            # The objective cannot work as written (each worker judges by its own first trial,
            # so only while no trial has succeeded anywhere).
            raise StopSearch(outcome["error"])

    def _died(self, worker: _Worker) -> None:
        """A worker ended without being asked: its trial failed; a fresh worker replaces it."""
        worker.process.join()
        # What it said before dying (its output, its last reports), up to the end of the pipe.
        while worker.conn.poll() and self._receive(worker):
            pass
        self._flush(worker)
        running = worker.running
        worker.conn.close()
        self.workers.remove(worker)
        if not self._no_more:
            self.workers.append(self._fork())
        if running is None:
            return
        trial = running.trial
        trial.status = TrialState.FAILED
        trial.error = f"WorkerDied: the trial's process {_how_it_ended(worker.process.exitcode)}"
        trial.duration = time.time() - trial.started
        self.search.end_trial(running.proposal, trial)

    def _relay(self, worker: _Worker, stream: str, text: str) -> None:
        """A trial's output, shown whole lines at a time, each marked with its trial."""
        number = worker.running.trial.number if worker.running else None
        lines = (worker.partial.get(stream, "") + text).split("\n")
        worker.partial[stream] = lines.pop()
        if lines:
            target = sys.stdout if stream == "stdout" else sys.stderr
            prefix = "" if number is None else f"[trial {number}] "
            target.write("".join(f"{prefix}{line}\n" for line in lines))
            target.flush()

    def _flush(self, worker: _Worker) -> None:
        for stream, text in list(worker.partial.items()):
            if text:
                self._relay(worker, stream, "\n")

    # -- the end --------------------------------------------------------------------------------

    def _bring_back_assigned(self) -> None:
        """For a ``%%tune`` cell: what the best trial assigned, from the worker that ran it."""
        best = self.search.best
        if not isinstance(self.call, CellObjective) or best is None:
            return
        for worker in self.workers:
            _send(worker.conn, ("assigned", best.number))
        deadline = time.monotonic() + ASSIGNED_TIMEOUT
        answers = 0
        while answers < len(self.workers) and time.monotonic() < deadline:
            for worker in self.workers:
                if not worker.conn.poll(0.05):
                    continue
                message = pickle.loads(worker.conn.recv_bytes())
                if message[0] == "out":
                    self._relay(worker, message[1], message[2])
                elif message[0] == "assigned":
                    answers += 1
                    self._adopt(*message[1:])

    def _adopt(self, number: int, payload: bytes | None, skipped: list[str]) -> None:
        if payload is None:
            return
        assert isinstance(self.call, CellObjective)
        self.call.keep(number, pickle.loads(payload))
        if skipped:
            warnings.warn(
                f"nbopt: trial {number} ran in a worker process, and its variables "
                f"{', '.join(skipped)} could not be brought back (they cannot be pickled)",
                RuntimeWarning,
                stacklevel=2,
            )

    def _stop(self, status: TrialState) -> None:
        """End every worker; trials still running are recorded with ``status``."""
        stopped = [(worker, worker.running) for worker in self.workers if worker.running]
        for worker in self.workers:
            if worker.running is not None:  # busy with a trial: it would not read "exit"
                _signal_group(worker.process.pid, signal.SIGTERM)
            else:
                with contextlib.suppress(OSError):
                    _send(worker.conn, ("exit",))
        deadline = time.monotonic() + EXIT_GRACE
        for worker in self.workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.exitcode is None:
                _signal_group(worker.process.pid, signal.SIGKILL)
                worker.process.join()
            _signal_group(worker.process.pid, signal.SIGKILL)  # what it started, if anything
            worker.conn.close()
            worker.running = None
        for _, running in stopped:
            assert running is not None
            trial = running.trial
            trial.status = status
            trial.duration = time.time() - trial.started
            # An interrupt, or the failure that stops the search, is what to report.
            with contextlib.suppress(StudyWriteError):
                self.search.end_trial(running.proposal, trial)


def _send(conn: Connection, message: tuple[Any, ...]) -> None:
    conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def _how_it_ended(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = " (by the system's OOM killer if memory ran out)" if name == "SIGKILL" else ""
        return f"was killed by {name}{hint}"
    return f"exited with status {exitcode} before the trial ended"


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
