"""Batch-size search: :func:`find_batch_size` finds the batch that reaches a given loss soonest,
the batch that runs fastest, or the largest that fits.

Importing this package is light; torch is imported when a search starts.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from nbopt._imports import renamed
from nbopt.batching._memory import is_oom_error
from nbopt.batching._result import BatchMeasurement, BatchSizeResult, NoiseScale
from nbopt.errors import ConfigError
from nbopt.events import Event
from nbopt.ui import DEFAULT_LOGDIR

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_TOLERANCE",
    "MODES",
    "BatchMeasurement",
    "BatchSizeResult",
    "NoiseScale",
    "find_batch_size",
    "is_oom_error",
]

MODES = ("efficient", "throughput", "max")
DEFAULT_TOLERANCE = 0.05


def find_batch_size(
    model: torch.nn.Module,
    example: Any = None,
    *,
    make_batch: Callable[[int], Any] | None = None,
    target: Any = None,
    mode: str | None = None,
    train: bool = False,
    loss: Callable[[Any, Any], Any] | None = None,
    optimizer: Callable[[list[Any]], Any] | None = None,
    start: int | None = None,
    max_batch_size: int = 4096,
    memory: int | str | None = None,
    tolerance: float | None = None,
    lr: Any = None,
    lr_batch: int | None = None,
    noise_steps: int | None = None,
    seed: int | None = None,
    progress: str = "auto",
    logdir: str | os.PathLike[str] | None = DEFAULT_LOGDIR,
    callbacks: Iterable[Callable[[Event], None]] = (),
) -> BatchSizeResult:
    """Find the batch size that reaches a given loss soonest, runs fastest, or is the largest
    that fits, measured on this machine.

    ``mode="efficient"`` (the default when training with a loss, on enough rows of
    ``example``) predicts, for each batch size, the time to reach a given loss: the steps that
    the gradient noise scale predicts (McCandlish et al., 2018), measured on the rows of
    ``example``, times the measured time of a step; ``mode="throughput"`` measures samples per
    second at growing batch sizes until the speed stops improving beyond the noise of the
    measurements, then refines around the fastest; ``mode="max"`` finds the largest batch that
    fits. Out-of-memory errors are caught (:func:`is_oom_error`) and the memory released. On
    CPU no step predicted to need more than ``memory`` is run (running out of RAM kills a
    Linux process rather than raising). The model is never changed: inference runs it in eval
    mode under ``torch.inference_mode``, training runs on deep copies with throwaway
    optimizers, and torch's random state is restored. ``docs/magics/batchsize.md`` says how
    speed, peak memory and the noise scale are measured.

    Args:
        model: The ``torch.nn.Module``; batches are moved to the device of its parameters.
        example: A batch: a tensor, or a tuple (positional inputs) or dict (keyword inputs)
            of tensors whose first dimension is the batch. Its rows are repeated to make
            batches of any size; with ``mode="efficient"`` they are also the data whose
            gradient noise is measured (at least 256 rows: pass the training set, or a
            random sample of it).
        make_batch: Instead of ``example``, ``make_batch(B)`` returns a batch of size ``B``
            (not with ``mode="efficient"``).
        target: With ``train=True``, the second argument of ``loss`` (for example the
            labels of ``example``), tiled like it. Default: the input batch itself.
        mode: ``"efficient"`` (the shortest predicted time to a given loss), ``"throughput"``
            (the most samples per second) or ``"max"`` (the largest that fits). Default:
            ``"efficient"`` with ``train=True``, ``loss=`` and at least 256 rows of
            ``example``, else ``"throughput"``; ``result.mode_reason`` says which and why.
        train: Measure a training step instead of inference.
        loss: ``loss(output, target)`` returning a scalar tensor, for ``train=True``. Default:
            the sum of the outputs, whose backward pass costs the same as any other loss's.
        optimizer: ``optimizer(parameters)`` returning a torch optimizer for the throwaway
            copies (default: Adam, which holds two buffers per weight; with
            ``mode="efficient"``, Adam at ``lr``, else 0.001, trains the copy that measures
            the noise).
        start: The first batch size tried (default 1, or 2 with ``train=True``: batch norm
            cannot train on a single sample).
        max_batch_size: The largest batch size tried.
        memory: Cap on the peak memory of a step: bytes, or text such as ``"4GB"``; by
            default half of the memory available when the search starts.
        tolerance: ``result.batch_size`` is the smallest batch whose speed (``"throughput"``)
            or predicted time (``"efficient"``) is within this share of the best (default
            0.05; not for ``mode="max"``).
        lr: ``mode="efficient"``: a learning rate that works at ``lr_batch``, to be scaled to
            the chosen batch (``result.learning_rate``), or an ``LRFindResult``, whose
            suggestion and batch size are taken.
        lr_batch: The batch size ``lr`` was found at.
        noise_steps: ``mode="efficient"``: training steps of a throwaway copy before the
            noise scale is measured again (the noise scale grows as training proceeds).
            Default: one pass over the rows of ``example``, at most 200; 0 for none.
        seed: ``mode="efficient"``: the order of the rows the noise is measured on (default
            0).
        progress: ``"auto"`` (a widget in a notebook, text elsewhere), ``"widget"``,
            ``"text"`` or ``"none"``.
        logdir: TensorBoard log directory (samples/s and peak memory against the batch
            size, and the noise scale); None for no logs.
        callbacks: Callables that receive every event of the search.

    Returns:
        A :class:`BatchSizeResult`; ``result.batch_size`` is the size to use.

    Raises:
        ConfigError: Bad arguments (an option that the mode does not use among them), a
            batch without a batch dimension, too few rows for ``mode="efficient"``, or not
            even ``start`` fits in memory. With ``train=True``, found on a copy before any
            measurement: data that does not fit the model, a loss that is not a finite
            one-element tensor on the first batch, or a model that does not train. Other
            errors raised by the model itself propagate unchanged.

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

    from nbopt.batching._efficient import NoisePlan, default_noise_steps
    from nbopt.batching._memory import (
        DEFAULT_MEMORY_FRACTION,
        available_memory,
        memory_meter,
    )
    from nbopt.batching._search import BatchSizeSearch
    from nbopt.batching._workload import Batches, Workload, check_training
    from nbopt.ui.reporting import reporting_bus, run_name

    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_arguments(example, make_batch, target, mode, train, loss, optimizer)
    if start is None:
        start = 2 if train and isinstance(max_batch_size, int) and max_batch_size >= 2 else 1
    _check_sizes(start, max_batch_size, tolerance)
    device = _model_device(model)
    batches = Batches(example, make_batch, target, device)
    mode, reason = _resolve_mode(mode, train, loss, batches)
    _check_mode_options(
        mode, tolerance=tolerance, lr=lr, lr_batch=lr_batch, noise=noise_steps, seed=seed
    )
    plan = None
    if mode == "efficient":
        rate, rate_batch = _learning_rate(lr, lr_batch)
        rows = batches.example_size or 0
        if noise_steps is None:
            noise_steps = default_noise_steps(rows, rate_batch)
        _check_count("noise_steps", noise_steps, 0)
        _check_count("seed", seed or 0, None)
        plan = NoisePlan(loss, rows, optimizer, rate, rate_batch, noise_steps, seed or 0)
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

    cuda = []
    if device.type == "cuda":
        cuda = [device.index if device.index is not None else torch.cuda.current_device()]
    if train:
        with torch.random.fork_rng(devices=cuda):
            check_training(model, batches, loss, start)

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
        tolerance=DEFAULT_TOLERANCE if tolerance is None else tolerance,
        meter=meter,
        memory_limit=limit,
        name=name,
        noise_plan=plan,
        mode_reason=reason,
    )
    with torch.random.fork_rng(devices=cuda):
        return search.run()


def _resolve_mode(mode: str | None, train: bool, loss: Any, batches: Any) -> tuple[str, str]:
    """The mode to search in and why; ConfigError where ``mode="efficient"`` cannot work."""
    from nbopt.batching._noise import MIN_ROWS

    rows = batches.example_size
    if mode == "efficient":
        if not train or loss is None:
            raise ConfigError(
                "mode='efficient' predicts training time from the gradient noise of your "
                "loss: give train=True and loss="
            )
        if rows is None:
            raise ConfigError(
                "mode='efficient' measures the gradient noise on the rows of example=; give "
                "example= (the training data, or a random sample of it), not make_batch="
            )
        if rows < MIN_ROWS:
            raise ConfigError(
                f"mode='efficient' needs at least {MIN_ROWS} rows of example= to measure the "
                f"gradient noise, got {rows}; give more of the training data, or "
                "mode='throughput'"
            )
        return mode, "mode=efficient, as asked"
    if mode is not None:
        return mode, f"mode={mode}, as asked"
    if not train:
        return "throughput", "mode=throughput, the default for inference"
    if loss is None:
        return "throughput", "mode=throughput, the default for training without loss="
    if rows is None or rows < MIN_ROWS:
        have = "make_batch=" if rows is None else f"{rows} rows of example="
        return "throughput", (
            f"mode=throughput: {have} cannot measure the gradient noise (efficient needs "
            f"{MIN_ROWS} rows of example=)"
        )
    return "efficient", "mode=efficient, the default for training with a loss"


def _check_mode_options(mode: str, **given: Any) -> None:
    """ConfigError for an option the mode does not use (it would be silently ignored)."""
    used = {
        "efficient": {"tolerance", "lr", "lr_batch", "noise", "seed"},
        "throughput": {"tolerance"},
    }
    names = {"noise": "noise_steps"}
    for option, value in given.items():
        if value is not None and option not in used.get(mode, set()):
            users = [m for m, options in used.items() if option in options]
            modes = " or ".join(f"mode={m!r}" for m in users)
            raise ConfigError(f"{names.get(option, option)}= only applies with {modes}")


def _learning_rate(lr: Any, lr_batch: int | None) -> tuple[float | None, int | None]:
    """``(lr, lr_batch)`` from a number and a batch size, or from an ``LRFindResult``."""
    if lr is None:
        if lr_batch is not None:
            raise ConfigError("lr_batch= is the batch size of lr=: give lr= too")
        return None, None
    if hasattr(lr, "suggestion") and hasattr(lr, "batch_size"):
        if lr.suggestion is None:
            raise ConfigError("lr=: the range test suggested no learning rate")
        lr_batch = lr.batch_size if lr_batch is None else lr_batch
        lr = lr.suggestion
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ConfigError(f"lr must be a positive number or an LRFindResult, got {lr!r}")
    if lr_batch is None:
        raise ConfigError("give lr_batch=, the batch size lr= was found at")
    _check_count("lr_batch", lr_batch, 1)
    return float(lr), lr_batch


def _check_count(name: str, value: Any, least: int | None) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or (least is not None and value < least)
    ):
        bound = "an integer" if least is None else f"an integer >= {least}"
        raise ConfigError(f"{name} must be {bound}, got {value!r}")


def _check_arguments(
    example: Any,
    make_batch: Any,
    target: Any,
    mode: str | None,
    train: bool,
    loss: Any,
    optimizer: Any,
) -> None:
    if mode is not None and mode not in MODES:
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


def _check_sizes(start: int, max_batch_size: int, tolerance: float | None) -> None:
    for name, value in (("start", start), ("max_batch_size", max_batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if max_batch_size < start:
        raise ConfigError(f"max_batch_size={max_batch_size} is below start={start}")
    if tolerance is not None and not 0 <= tolerance < 1:
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
