"""What runs in each rank: a forked copy of the notebook's process that calls the user's function.

A rank talks to the launcher through three pipes: its standard output and error (file
descriptors 1 and 2, so that output from C++ code such as gloo's is relayed too) and a
message pipe carrying pickled tuples:

* ``("step", step, value, metrics)`` for each ``nbopt.report`` call,
* ``("done", payload, exited, time)`` at the end (``payload``: rank 0's return value saved
  with ``torch.save``, None for the other ranks; ``exited``: ``"sys.exit(0)"`` when the
  function ended by ``sys.exit`` with success, None when it returned),
* ``("error", report)`` when the function raised (a dict, see :func:`failure_report`).
"""

from __future__ import annotations

import faulthandler
import io
import os
import pickle
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NoReturn

from nbopt._context import reporting_to
from nbopt.errors import user_traceback

RANK_VARIABLE = "NBOPT_LAUNCH_RANK"
# How faulthandler's dumps begin a frame of this module.
WORKER_FRAME = f'File "{Path(__file__).resolve()}"'
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class RankSetup:
    """What a rank needs besides the function: its number and its environment."""

    rank: int
    environment: Mapping[str, str]
    parent_pid: int
    stdout_fd: int
    stderr_fd: int
    shown: bool = True  # whether the rank's output reaches the notebook
    mark_fd: int | None = None  # held by every process of the job (see _processes)


def run_rank(
    setup: RankSetup, fn: Callable[..., Any], args: tuple[Any, ...], conn: Connection
) -> None:
    """The body of a rank's process: set it up, call ``fn(*args)``, send back how it went."""
    _detach(setup.parent_pid)
    if setup.mark_fd is not None:
        os.set_inheritable(setup.mark_fd, True)  # programs it executes carry the mark too
    _redirect_output(setup.stdout_fd, setup.stderr_fd)
    _kernel_displays(setup.shown)
    os.environ.update(setup.environment)
    _forget_parent_accelerator()
    _single_threaded()

    def sink(step: int, value: float | None, metrics: dict[str, float]) -> None:
        _send(conn, ("step", step, value, metrics))

    exited = None
    try:
        with reporting_to(sink):
            value = fn(*args)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            _fail(conn, exc)
        value, exited = None, f"sys.exit({'' if exc.code is None else exc.code})"
    except BaseException as exc:
        _fail(conn, exc)
    payload = None
    if setup.rank == 0:
        try:
            payload = pack_result(value)
        except Exception as exc:
            _send(conn, ("error", _unsendable_report(exc)))
            sys.exit(1)
    _send(conn, ("done", payload, exited, time.time()))


def _fail(conn: Connection, exc: BaseException) -> NoReturn:
    _send(conn, ("error", failure_report(exc)))
    sys.exit(1)


def _detach(parent_pid: int) -> None:
    """Own process group (the launcher ends a rank with everything it started) and, on
    Linux, death with the notebook's process, so that a restarted kernel leaves no rank."""
    os.setpgid(0, 0)
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)


def _redirect_output(stdout_fd: int, stderr_fd: int) -> None:
    # The inherited sys.stdout may be an ipykernel stream whose IO thread did not survive the
    # fork; fresh line-buffered files on the relay pipes avoid it entirely.
    os.dup2(stdout_fd, 1)
    os.dup2(stderr_fd, 2)
    os.close(stdout_fd)
    os.close(stderr_fd)
    options = {"buffering": 1, "encoding": "utf-8", "errors": "backslashreplace"}
    sys.stdout = open(1, "w", closefd=False, **options)  # noqa: SIM115 - lives as long as the rank
    sys.stderr = open(2, "w", closefd=False, **options)  # noqa: SIM115
    faulthandler.enable(sys.stderr, all_threads=True)
    # On timeout the launcher sends SIGUSR1 to learn where each unfinished rank is stuck.
    faulthandler.register(signal.SIGUSR1, sys.stderr, all_threads=True)


def _kernel_displays(shown: bool) -> None:
    """Let ``display()`` and widgets (tqdm.auto's bars) of a shown rank reach the cell.

    In a Jupyter kernel they are messages sent with the kernel's session, which refuses to
    send from a forked process and logs a warning instead. ipykernel's IOPub thread carries
    messages from forks through a pipe of its own, and its output streams lift the session's
    check for them the same way; a rank whose output is hidden drops its messages silently.
    """
    ipython = sys.modules.get("IPython")
    kernel = getattr(ipython.get_ipython(), "kernel", None) if ipython else None
    session = getattr(kernel, "session", None)
    if session is None:
        return
    if shown:
        session.pid = os.getpid()
    else:
        session.send = lambda *args, **kwargs: None


def _forget_parent_accelerator() -> None:
    """Drop Accelerate's process-wide state copied from the notebook by the fork.

    A notebook that already made an ``Accelerator()`` holds a single-process state; kept,
    it would make every rank a world of one.
    """
    if "accelerate.state" not in sys.modules:
        return
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def _single_threaded() -> None:
    """One intra-op thread per rank.

    PyTorch's CPU wheels use GNU OpenMP, which hangs in a forked child at the first parallel
    region once the parent process has run one (any matmul in the notebook). ``OMP_NUM_THREADS``
    in the rank's environment keeps Accelerate from raising the count again.
    """
    import torch

    torch.set_num_threads(1)


def _send(conn: Connection, message: tuple[Any, ...]) -> None:
    try:
        conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
    except OSError:
        # The launcher is gone (the notebook was interrupted or restarted): nobody to tell.
        os._exit(1)


def failure_report(exc: BaseException) -> dict[str, Any]:
    """What the launcher needs to show a rank's exception: type, message, own traceback."""
    try:
        pickled = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        pickled = None
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": user_traceback(exc),
        "time": time.time(),
        "exception": pickled,
    }


def _unsendable_report(exc: Exception) -> dict[str, Any]:
    message = (
        f"rank 0's result could not be sent to the notebook ({type(exc).__name__}: {exc}); "
        "return plain values, tensors, models or state_dicts"
    )
    return {
        "type": type(exc).__name__,
        "message": message,
        "traceback": f"{type(exc).__name__}: {message}",
        "time": time.time(),
        "exception": None,
    }


def pack_result(value: Any) -> bytes:
    """``value`` as bytes for the notebook, with models unwrapped from DDP.

    ``torch.save`` rather than pickle: the notebook loads it with ``map_location="cpu"``, so a
    GPU tensor comes back on the CPU and never initialises CUDA in the notebook, which would
    make every later launch fail.
    """
    import torch

    buffer = io.BytesIO()
    torch.save(_unwrapped(value), buffer)
    return buffer.getvalue()


def _unwrapped(value: Any) -> Any:
    import torch

    if isinstance(value, torch.nn.Module):
        return plain_module(value)
    if type(value) is dict:
        return {key: _unwrapped(item) for key, item in value.items()}
    if type(value) in (list, tuple):
        return type(value)(_unwrapped(item) for item in value)
    return value


def plain_module(module: Any) -> Any:
    """The user's module inside DDP, DataParallel and ``torch.compile`` wrappers, without the
    mixed-precision ``forward`` that ``accelerator.prepare`` installs (a closure over autocast,
    which cannot be pickled).

    Accelerate's ``extract_model_from_parallel`` does the same but imports ``torch._dynamo``
    to check for compiled modules, which takes seconds; a module can only be compiled if that
    module is already imported.
    """
    import torch

    wrappers = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    while True:
        if isinstance(module, wrappers):
            module = module.module
        elif "torch._dynamo" in sys.modules and isinstance(
            module, sys.modules["torch._dynamo"].eval_frame.OptimizedModule
        ):
            module = module._orig_mod
        else:
            break
    original = module.__dict__.pop("_original_forward", None)
    if original is not None:
        module.__dict__.pop("forward", None)
        if getattr(original, "__func__", None) is not type(module).forward:
            module.forward = original
    return module


def unpack_result(payload: bytes) -> Any:
    """The inverse of :func:`pack_result`, in the notebook: tensors land on the CPU."""
    import torch

    return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=False)
