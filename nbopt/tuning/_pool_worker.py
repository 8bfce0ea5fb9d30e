"""What runs in a worker process of ``parallel=N`` on the local backend: trials, one at a time.

A worker is a fork of the notebook's process made when the search starts, so the objective,
the functions it calls and the data it reads are there as they are in the notebook, nothing
pickled. It talks to the search through one pipe of pickled tuples:

* from the search: ``("run", number, vals, judged)`` runs a trial (``vals``: the configuration
  in Hyperopt's encoding, decoded here by the worker's copy of the proposer, so that options
  that cannot be pickled work too; ``judged``: the search answers each report with
  ``("verdict", stop)``), ``("assigned", number)`` asks for what trial ``number`` of a
  ``%%tune`` cell assigned, and ``("exit",)``.
* to the search: ``("step", number, step, value, metrics)`` for each ``nbopt.report``,
  ``("out", stream, text)`` for what the trial prints, ``("done", number, outcome)`` when the
  trial ended, and ``("assigned", number, variables, skipped)``.
"""

from __future__ import annotations

import io
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from nbopt._context import reporting_to
from nbopt.errors import TrialStopped, user_traceback
from nbopt.tuning._cell import CellObjective
from nbopt.tuning._errors import StopSearch
from nbopt.tuning._objective import settle
from nbopt.tuning._trial import Trial, TrialState

_PR_SET_PDEATHSIG = 1


class _Channel:
    """The worker's end of the pipe; safe to use from the threads a trial may start."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()

    def send(self, message: tuple[Any, ...]) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            try:
                self.conn.send_bytes(data)
            except OSError:
                os._exit(1)  # the search is gone (interrupted, or its kernel restarted)

    def receive(self) -> tuple[Any, ...]:
        try:
            return pickle.loads(self.conn.recv_bytes())
        except (EOFError, OSError):
            os._exit(0)


class _Output(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` of a worker: what a trial prints goes to the notebook."""

    def __init__(self, channel: _Channel, name: str) -> None:
        self._channel = channel
        self._name = name

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if text:
            self._channel.send(("out", self._name, text))
        return len(text)


def serve(
    conn: Connection,
    call: Callable[[Any], Any],
    decode: Callable[[dict[str, Any]], Any],
    metric: str | None,
    sign: float,
    parent_pid: int,
) -> None:
    """The body of a worker: set it up, then run what the search sends until told to exit."""
    channel = _Channel(conn)
    _detach(parent_pid)
    sys.stdout, sys.stderr = _Output(channel, "stdout"), _Output(channel, "stderr")
    limits = _one_thread_each()
    best: tuple[float, int, dict[str, Any]] | None = None  # this worker's best trial
    try:
        while True:
            message = channel.receive()
            if message[0] == "run":
                _, number, vals, judged = message
                outcome, assigned = _run(channel, call, decode(vals), number, metric, judged)
                channel.send(("done", number, outcome))
                value = outcome["value"]
                better = best is None or (value is not None and sign * value < sign * best[0])
                if assigned is not None and outcome["usable"] and better:
                    best = (value, number, assigned)
            elif message[0] == "assigned":
                number = message[1]
                found = best[2] if best is not None and best[1] == number else None
                channel.send(("assigned", number, *_picklable(found)))
            else:
                break
    finally:
        del limits
    os._exit(0)


def _run(
    channel: _Channel,
    call: Callable[[Any], Any],
    params: Any,
    number: int,
    metric: str | None,
    judged: bool,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Run one trial; its outcome for the search, and what a ``%%tune`` cell assigned."""
    trial = Trial(number, params, started=time.time())

    def sink(step: int, value: float | None, metrics: dict[str, float]) -> None:
        if value is not None:
            trial.intermediate.append((step, value))
        channel.send(("step", number, step, value, metrics))
        if judged:
            _, stop, judged_value = channel.receive()
            if stop:
                raise TrialStopped(step, judged_value)

    clock = time.perf_counter()
    ended_search = False
    try:
        with reporting_to(sink):
            returned = call(params)
    except TrialStopped as stop:
        trial.status, trial.value = TrialState.STOPPED, stop.value
    except StopSearch as exc:
        trial.status, trial.error, ended_search = TrialState.FAILED, str(exc), True
    except Exception as exc:
        trial.status, trial.error = TrialState.FAILED, f"{type(exc).__name__}: {exc}"
        trial.traceback = user_traceback(exc)
    else:
        settle(trial, returned, metric)
    outcome = {
        "status": TrialState(trial.status).value,
        "value": trial.value,
        "usable": trial.usable,
        "metrics": trial.metrics,
        "error": trial.error,
        "traceback": trial.traceback,
        "duration": time.perf_counter() - clock,
        "started": trial.started,
        "ended_search": ended_search,
    }
    assigned = call.last_assigned if isinstance(call, CellObjective) else None
    return outcome, assigned


def _picklable(variables: dict[str, Any] | None) -> tuple[bytes | None, list[str]]:
    """``variables`` pickled for the notebook, leaving out (and naming) those that cannot be."""
    if variables is None:
        return None, []
    kept, skipped = {}, []
    for name, value in variables.items():
        try:
            pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            skipped.append(name)
        else:
            kept[name] = value
    return pickle.dumps(kept, protocol=pickle.HIGHEST_PROTOCOL), skipped


def _detach(parent_pid: int) -> None:
    """Own process group (the search ends a worker with whatever it started, and Ctrl-C in a
    terminal reaches only the search), and on Linux death with the notebook's process."""
    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)


def _one_thread_each() -> Any:
    """One thread per worker for PyTorch, OpenMP and BLAS.

    N workers on N cores each using every core would only fight; and the GNU OpenMP runtime
    of PyTorch's CPU wheels hangs in a forked process at its first parallel region once the
    notebook has run one, unless the worker stays on one thread.
    """
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)
