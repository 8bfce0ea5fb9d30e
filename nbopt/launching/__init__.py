"""Data-parallel jobs: :func:`launch` runs a function on N processes or GPUs with Accelerate.

Importing this package is light; torch and Accelerate are imported when a job starts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from nbopt.errors import ConfigError
from nbopt.events import Event
from nbopt.launching._cell import ExportedScript, export_cell, launch_cell
from nbopt.launching._errors import LaunchError, LaunchTimeout
from nbopt.launching._result import LaunchResult, RankOutcome
from nbopt.ui import DEFAULT_LOGDIR

__all__ = [
    "ExportedScript",
    "LaunchError",
    "LaunchResult",
    "LaunchTimeout",
    "RankOutcome",
    "export_cell",
    "launch",
    "launch_cell",
    "run_job",
]


def launch(
    fn: Callable[..., Any],
    *args: Any,
    num_processes: int | None = None,
    mixed_precision: str = "no",
    cpu: bool = False,
    timeout: float | None = None,
    all_ranks: bool = False,
    progress: str = "auto",
    logdir: str | os.PathLike[str] | None = DEFAULT_LOGDIR,
    callbacks: Iterable[Callable[[Event], None]] = (),
) -> Any:
    """Run ``fn(*args)`` on ``num_processes`` ranks at once, as one data-parallel job.

    Each rank is a fork of this process, so ``fn`` sees every variable, model and dataset
    defined so far, without pickling them. The ranks form a real distributed world: a plain
    ``accelerate.Accelerator()`` in ``fn`` finds ``num_processes`` ranks (``MULTI_CPU`` with
    gloo on the loopback interface on a machine without GPUs, ``MULTI_GPU`` with one GPU per
    rank otherwise) and ``mixed_precision``; ``accelerator.prepare(model, ...)`` gives DDP.

    Each CPU rank runs PyTorch with one intra-op thread: the GNU OpenMP runtime of PyTorch's
    CPU wheels hangs in a forked process once the notebook has run a parallel operation, so
    use about one rank per core. Other threads the notebook holds (a TensorBoard writer, a
    widget's) do not exist in the ranks.

    Rank 0's output is shown as it comes (prints, output of C++ code, and in Jupyter its
    ``display()`` calls and tqdm.auto bars); the other ranks' only with ``all_ranks=True``,
    prefixed with ``[rank N]``. ``nbopt.report(step, loss=...)`` in ``fn`` shows each rank's
    progress live and logs it to TensorBoard, one run per rank.

    Args:
        fn: Called as ``fn(*args)`` in every rank.
        *args: Passed to ``fn``; they are inherited by the fork, never pickled.
        num_processes: Ranks to run. Defaults to the number of visible GPUs, or 2 on a
            machine without GPU (or with ``cpu=True``).
        mixed_precision: ``"no"``, ``"fp16"`` or ``"bf16"``: what ``Accelerator()`` uses
            when not told otherwise (bf16 autocast works on CPU too).
        cpu: Run CPU processes even where there are GPUs.
        timeout: Seconds after which the whole job is stopped; :class:`LaunchTimeout` then
            shows where each unfinished rank was.
        all_ranks: Show every rank's output, not only rank 0's.
        progress: ``"auto"`` (a widget in a notebook, text elsewhere), ``"widget"``,
            ``"text"`` or ``"none"``.
        logdir: TensorBoard log directory for the ranks' reports; None for no logs.
        callbacks: Callables that receive every event of the job (:mod:`nbopt.events`,
            :mod:`nbopt.launching.events`).

    Returns:
        What ``fn`` returned in rank 0, copied into this process: a model comes back with its
        trained weights, unwrapped from DDP, and every tensor on the CPU.

    Raises:
        nbopt.ConfigError: Invalid options, or a state of this process that forked ranks
            cannot work from (CUDA already initialised, a process group already made).
        LaunchError: A rank raised or died. The other ranks are stopped at once (a rank
            waiting for it in a collective would wait forever) and no process is left. The
            error names the rank and carries its own traceback.
        LaunchTimeout: The job ran past ``timeout``.

    Example:
        >>> from nbopt.launching import launch
        >>> def world_size():
        ...     from accelerate import Accelerator
        ...     return Accelerator().num_processes
        >>> launch(world_size, num_processes=2, progress="none", logdir=None)
        2
    """
    job = {"num_processes": num_processes, "mixed_precision": mixed_precision, "cpu": cpu}
    job.update(timeout=timeout, all_ranks=all_ranks)
    return run_job(fn, args, progress=progress, logdir=logdir, callbacks=callbacks, **job).value


def run_job(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    *,
    progress: str = "auto",
    logdir: str | os.PathLike[str] | None = DEFAULT_LOGDIR,
    callbacks: Iterable[Callable[[Event], None]] = (),
    **job: Any,
) -> LaunchResult:
    """:func:`launch`, returning the job's :class:`LaunchResult` (rank 0's value in ``.value``);
    ``job`` holds launch's other options (``num_processes``, ``mixed_precision`` ...)."""
    from nbopt.launching._job import Job
    from nbopt.launching._plan import plan_job
    from nbopt.ui.reporting import reporting_bus

    if not callable(fn):
        raise ConfigError(f"launch() needs a function to run, got {type(fn).__name__}")
    plan = plan_job(**job)
    bus = reporting_bus(progress, logdir, callbacks)
    try:
        runner = Job(fn, args, plan, bus)
        runner.run()
        return runner.result
    finally:
        bus.close()
