"""Batch-size search: :func:`find_batch_size` finds the batch that runs fastest or the largest
that fits.

Importing this package is light; torch is imported when a search starts.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from nbopt._imports import renamed
from nbopt.batching._memory import is_oom_error
from nbopt.batching._result import BatchMeasurement, BatchSizeResult
from nbopt.errors import ConfigError
from nbopt.events import Event
from nbopt.ui import DEFAULT_LOGDIR

if TYPE_CHECKING:
    import torch

__all__ = ["BatchMeasurement", "BatchSizeResult", "find_batch_size", "is_oom_error"]

MODES = ("throughput", "max")


def find_batch_size(
    model: torch.nn.Module,
    example: Any = None,
    *,
    make_batch: Callable[[int], Any] | None = None,
    target: Any = None,
    mode: str = "throughput",
    train: bool = False,
    loss: Callable[[Any, Any], Any] | None = None,
    optimizer: Callable[[list[Any]], Any] | None = None,
    start: int | None = None,
    max_batch_size: int = 4096,
    memory: int | str | None = None,
    tolerance: float = 0.05,
    progress: str = "auto",
    logdir: str | os.PathLike[str] | None = DEFAULT_LOGDIR,
    callbacks: Iterable[Callable[[Event], None]] = (),
) -> BatchSizeResult:
    """Find the batch size that runs fastest, or the largest that fits, measured on this machine.

    ``mode="throughput"`` measures samples per second at growing batch sizes until the speed
    stops improving, then refines around the fastest; ``mode="max"`` finds the largest batch
    that fits. Out-of-memory errors are caught (:func:`is_oom_error`) and the memory released.
    On CPU no step predicted to need more than ``memory`` is run (running out of RAM kills a
    Linux process rather than raising). The model is never changed: inference runs it in eval
    mode under ``torch.inference_mode``, training runs on a deep copy with a throwaway
    optimizer, and torch's random state is restored. README's ``%batchsize`` section says how
    speed and peak memory are measured.

    Args:
        model: The ``torch.nn.Module``; batches are moved to the device of its parameters.
        example: A batch: a tensor, or a tuple (positional inputs) or dict (keyword inputs)
            of tensors whose first dimension is the batch. Its rows are repeated to make
            batches of any size.
        make_batch: Instead of ``example``, ``make_batch(B)`` returns a batch of size ``B``.
        target: With ``train=True``, the second argument of ``loss`` (for example the
            labels of ``example``), tiled like it. Default: the input batch itself.
        mode: ``"throughput"`` (the fastest batch) or ``"max"`` (the largest that fits).
        train: Measure a training step instead of inference.
        loss: ``loss(output, target)`` returning a scalar tensor, for ``train=True``. Default:
            the sum of the outputs, whose backward pass costs the same as any other loss's.
        optimizer: ``optimizer(parameters)`` returning a torch optimizer for the throwaway
            copy (default: Adam, which holds two buffers per weight).
        start: The first batch size tried (default 1, or 2 with ``train=True``: batch norm
            cannot train on a single sample).
        max_batch_size: The largest batch size tried.
        memory: Cap on the peak memory of a step: bytes, or text such as ``"4GB"``; by
            default half of the memory available when the search starts.
        tolerance: ``result.batch_size`` is the smallest batch whose speed is within this
            share of the fastest (``mode="throughput"``).
        progress: ``"auto"`` (a widget in a notebook, text elsewhere), ``"widget"``,
            ``"text"`` or ``"none"``.
        logdir: TensorBoard log directory (samples/s and peak memory against the batch
            size); None for no logs.
        callbacks: Callables that receive every event of the search.

    Returns:
        A :class:`BatchSizeResult`; ``result.batch_size`` is the size to use.

    Raises:
        ConfigError: Bad arguments, a batch without a batch dimension, or not even ``start``
            fits in memory. Errors raised by the model itself propagate unchanged.

    Example:
        >>> import torch
        >>> from nbopt.batching import find_batch_size
        >>> model = torch.nn.Linear(16, 4)
        >>> result = find_batch_size(model, torch.randn(8, 16), max_batch_size=64,
        ...                          progress="none", logdir=None)
        >>> 1 <= result.batch_size <= 64
        True
    """
    import torch

    from nbopt.batching._memory import (
        DEFAULT_MEMORY_FRACTION,
        available_memory,
        memory_meter,
    )
    from nbopt.batching._search import BatchSizeSearch
    from nbopt.batching._workload import Batches, Workload
    from nbopt.ui.reporting import reporting_bus, run_name

    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_arguments(example, make_batch, target, mode, train, loss, optimizer)
    if start is None:
        start = 2 if train and isinstance(max_batch_size, int) and max_batch_size >= 2 else 1
    _check_sizes(start, max_batch_size, tolerance)
    device = _model_device(model)
    batches = Batches(example, make_batch, target, device)
    workload = Workload(model, train=train, loss=loss, optimizer=optimizer)
    meter = memory_meter(device)
    limit = _memory_bytes(memory)
    if limit is not None and meter is None:
        raise ConfigError(
            f"memory= cannot be enforced on {device} here: peak memory is measured on "
            "CUDA devices and on Linux only"
        )
    if limit is None and meter is not None and device.type == "cpu":
        available = available_memory()
        limit = int(DEFAULT_MEMORY_FRACTION * available) if available is not None else None

    name = run_name("batchsize")
    bus = reporting_bus(progress, logdir, callbacks, run=name)
    search = BatchSizeSearch(
        workload,
        batches,
        bus=bus,
        device=device,
        mode=mode,
        start=start,
        stop=max_batch_size,
        tolerance=tolerance,
        meter=meter,
        memory_limit=limit,
        name=name,
    )
    cuda = []
    if device.type == "cuda":
        cuda = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=cuda):
        return search.run()


def _check_arguments(
    example: Any,
    make_batch: Any,
    target: Any,
    mode: str,
    train: bool,
    loss: Any,
    optimizer: Any,
) -> None:
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if (example is None) == (make_batch is None):
        raise ConfigError("give either example= (a batch to tile) or make_batch= (a function)")
    for name, value in (("make_batch", make_batch), ("loss", loss), ("optimizer", optimizer)):
        if value is not None and not callable(value):
            raise ConfigError(f"{name}= must be callable, got {type(value).__name__}")
    if not train:
        for name, value in (("loss", loss), ("target", target), ("optimizer", optimizer)):
            if value is not None:
                raise ConfigError(f"{name}= is for training steps: add train=True")


def _check_sizes(start: int, max_batch_size: int, tolerance: float) -> None:
    for name, value in (("start", start), ("max_batch_size", max_batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if max_batch_size < start:
        raise ConfigError(f"max_batch_size={max_batch_size} is below start={start}")
    if not 0 <= tolerance < 1:
        raise ConfigError(f"tolerance must be in [0, 1), got {tolerance!r}")


def _memory_bytes(memory: int | str | None) -> int | None:
    if memory is None:
        return None
    if isinstance(memory, str):
        from nbopt.units import parse_size

        try:
            return parse_size(memory)
        except ValueError as exc:
            raise ConfigError(f"memory: {exc}") from None
    if isinstance(memory, bool) or not isinstance(memory, (int, float)) or not memory > 0:
        raise ConfigError(
            f"memory must be a positive number of bytes or a size such as '4GB', got {memory!r}"
        )
    return int(memory)


def _model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); the CPU for a model with neither."""
    import torch

    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")


def __getattr__(name: str) -> Any:
    if name == "Measurement":
        return renamed("nbopt.batching", name, "BatchMeasurement", BatchMeasurement)
    raise AttributeError(f"module 'nbopt.batching' has no attribute {name!r}")
