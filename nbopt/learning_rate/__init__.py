"""Learning-rate range test: :func:`find_lr` suggests a learning rate for a model, its data,
loss and optimizer, without changing any of them.

Importing this package is light; torch is imported when a test starts.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from nbopt.errors import ConfigError
from nbopt.events import Event
from nbopt.learning_rate._result import LRCurve, LRFindResult, LRSweep
from nbopt.learning_rate._rules import DEFAULT_RULE, RULES, check_rule
from nbopt.ui import DEFAULT_LOGDIR

if TYPE_CHECKING:
    import torch

__all__ = ["DEFAULT_RULE", "RULES", "LRCurve", "LRFindResult", "LRSweep", "find_lr"]

# Repeat the sweep (three in all) when the two repeats would take at most this long.
CHEAP_SECONDS = 20.0


def find_lr(
    model: torch.nn.Module,
    data: Any,
    *,
    loss: Callable[[Any, Any], Any] | None = None,
    optimizer: Any = None,
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 100,
    repeats: int | None = None,
    rule: str = DEFAULT_RULE,
    batch_size: int | None = None,
    diverge: float = 4.0,
    seed: int = 0,
    progress: str = "auto",
    logdir: str | os.PathLike[str] | None = DEFAULT_LOGDIR,
    callbacks: Iterable[Callable[[Event], None]] = (),
) -> LRFindResult:
    """Suggest a learning rate with a range test (Smith, 2017), on a throwaway copy.

    A copy of the model and optimizer trains for up to ``steps`` batches while the learning
    rate grows geometrically from ``start`` to ``end``; the loss of each batch is recorded
    until it diverges. The sweep is repeated on fresh copies, with the data in another order
    (three sweeps when two more take at most 20 seconds, else one), and the suggestion is read
    off the median curve by ``rule``: by default a fifth of the rate where the loss, smoothed
    without lag, is lowest (``docs/magics/lr-find.md`` says why, from measurements). The
    model, its buffers, the optimizer and its state are never changed, and torch's random
    state is restored.

    Args:
        model: The ``torch.nn.Module``; batches are moved to the device of its parameters.
        data: A ``torch.utils.data.DataLoader``, or a tuple of tensors ``(x, y)`` (or
            ``(x1, x2, ..., y)``) whose first dimension is the sample. A batch that is a tuple
            is ``(inputs..., target)``; a lone tensor is its own target; a dict is passed as
            keyword inputs.
        loss: ``loss(output, target)`` returning a one-element tensor. Default: the model
            returns its loss (a one-element tensor, or an output with a ``loss``).
        optimizer: The optimizer to suggest a rate for: an optimizer of ``model`` (it is
            copied with its state), a function of the parameters returning one (such as
            ``lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)``), or None for Adam. Every
            parameter group gets the same rate.
        start: The first learning rate.
        end: The last learning rate, if the loss has not diverged before.
        steps: Steps (batches) per sweep, from ``start`` to ``end``.
        repeats: Sweeps to run (None: 3 when cheap, else 1).
        rule: How to read the curve: ``"minimum_centered"`` (the default), fastai's
            ``"valley"``, ``"minimum"`` and ``"steep"``, or Lightning's ``"steepest"``. Every
            rule's answer is in ``result.suggestions``.
        batch_size: Batch size for data given as tensors (default 64, or all samples if
            fewer). Not for a DataLoader, which has its own.
        diverge: A sweep stops once the moving average of the loss exceeds this many times
            its lowest value (fastai's and Lightning's 4).
        seed: Seeds the order of the data and dropout of each sweep (sweep ``i`` uses
            ``seed + i``).
        progress: ``"auto"``, ``"widget"``, ``"text"`` or ``"none"``.
        logdir: TensorBoard log directory (each sweep's loss and rate by step); None for none.
        callbacks: Callables that receive every event of the test.

    Returns:
        An :class:`LRFindResult`; ``result.suggestion`` is the rate to use.

    Raises:
        ConfigError: Bad arguments, or, found on a copy before the test starts, data that
            does not fit the model, a loss that is not a finite number on the first batch, or
            a model that does not train. Errors of the model after the first batch propagate.

    Example:
        >>> import torch
        >>> from nbopt.learning_rate import find_lr
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> x = torch.randn(256, 8)
        >>> y = x @ torch.randn(8, 1)
        >>> result = find_lr(torch.nn.Linear(8, 1), (x, y), loss=torch.nn.functional.mse_loss,
        ...                  optimizer=lambda p: torch.optim.SGD(p), progress="none", logdir=None)
        >>> 1e-7 < result.suggestion < 10
        True
    """
    import torch

    from nbopt.learning_rate._data import TrainingData, check_optimizer
    from nbopt.learning_rate._sweep import RangeTest
    from nbopt.ui.reporting import reporting_bus, run_name

    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError("the model does not train: it has no parameter that requires grad")
    if loss is not None and not callable(loss):
        raise ConfigError(f"loss= must be callable, got {type(loss).__name__}")
    check_optimizer(model, optimizer)
    _check_numbers(start, end, steps, repeats, diverge, seed)
    check_rule(rule)
    device = _model_device(model)
    training_data = TrainingData(data, batch_size, device)

    name = run_name("lr_find")
    cuda = []
    if device.type == "cuda":
        cuda = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=cuda):
        test = RangeTest(
            model,
            optimizer,
            training_data,
            loss,
            start=start,
            end=end,
            steps=steps,
            diverge=diverge,
            rule=rule,
            name=name,
        )
        torch.manual_seed(seed)
        test.check(seed)
        bus = reporting_bus(progress, logdir, callbacks, run=name)
        return test.run(bus, repeats, seed, CHEAP_SECONDS)


def _check_numbers(
    start: float, end: float, steps: int, repeats: int | None, diverge: float, seed: int
) -> None:
    for label, value in (("start", start), ("end", end), ("diverge", diverge)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{label} must be a number, got {value!r}")
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{label} must be a positive number, got {value!r}")
    if not end > start:
        raise ConfigError(f"end={end:g} must be above start={start:g}")
    if not diverge > 1:
        raise ConfigError(f"diverge must be above 1, got {diverge:g}")
    for label, value, least in (("steps", steps, 10), ("repeats", repeats, 1)):
        if label == "repeats" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"{label} must be an integer >= {least}, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an integer, got {seed!r}")


def _model_device(model: torch.nn.Module) -> torch.device:
    import torch

    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")
