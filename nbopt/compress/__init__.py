"""Model compression: :func:`optimize` prunes, factorises and quantizes a copy of a model and
reports, measured, what it gained.

Importing this package is light; torch, Torch-Pruning and torchao are imported when a run starts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from nbopt.compress._registry import (
    LOWRANK,
    PRUNING,
    QUANTIZATION,
    Backend,
    StepContext,
    StepOutcome,
)
from nbopt.compress._result import Change, Measurement, OptimizeResult, StepRecord
from nbopt.ui import DEFAULT_LOGDIR
from nbopt.ui.events import Event, EventBus

__all__ = [
    "LOWRANK",
    "PRUNING",
    "QUANTIZATION",
    "Backend",
    "Change",
    "Measurement",
    "OptimizeResult",
    "StepContext",
    "StepOutcome",
    "StepRecord",
    "optimize",
]


def optimize(
    model: Any,
    *,
    prune: float | None = None,
    prune_mode: str = "structured",
    prune_ignore: Sequence[str] | str = (),
    lowrank: float | None = None,
    finetune: Callable[[Any], Any] | None = None,
    quant: str | None = None,
    calib: Any = None,
    example: Any = None,
    evaluate: Callable[[Any], Any] | None = None,
    inplace: bool = False,
    progress: str = "auto",
    logdir: str | os.PathLike[str] | None = DEFAULT_LOGDIR,
    callbacks: Iterable[Callable[[Event], None]] = (),
) -> OptimizeResult:
    """Make a copy of ``model`` smaller and faster, and measure by how much.

    Steps run in this order, each only when asked for: prune -> low-rank -> fine-tune ->
    quantize. Every input is checked first; a bad one raises :class:`nbopt.ConfigError` with
    nothing run or changed. The original model is never changed unless ``inplace=True``, and
    then only after every step has succeeded; an exception in a step (or in ``finetune``)
    propagates as it is, with the original untouched.

    Args:
        model: A ``torch.nn.Module``.
        prune: Fraction in (0, 1) of channels (``structured``) or weights (``unstructured``)
            to remove.
        prune_mode: ``"structured"`` (Torch-Pruning removes whole channels and neurons: the
            model gets smaller and faster; the output layer keeps its width; needs
            ``example``) or ``"unstructured"`` (global magnitude pruning of single weights,
            made permanent: sparser, but dense kernels are no faster).
        prune_ignore: Names of modules (as in ``model.named_modules()``) left unpruned, with
            everything inside them; a string may list them separated by commas.
        lowrank: Fraction in (0, 1) of spectral energy to keep: each plain ``nn.Linear`` with
            both sides of at least 32 becomes two thinner layers of the smallest rank keeping
            it, where that saves weights.
        finetune: Called as ``finetune(model)`` with the pruned/factorised model in training
            mode, before quantization; it trains the model in place or returns a new one.
            Its ``nbopt.report(step, value, **metrics)`` calls show live and in TensorBoard.
        quant: ``"int8"`` (dynamic: Linear, LSTM, GRU, embeddings; torch.ao on CPU, torchao
            on CUDA), ``"int8-static"`` (torchao PT2E with the x86 quantizer, calibrated on
            ``calib``, for convolutional models on CPU), ``"fp16"`` or ``"bf16"`` (a cast; the
            model still takes and returns float32).
        calib: For ``int8-static``: a batch tensor, a list of batches or a DataLoader
            (``(inputs, labels)`` batches give their inputs); at most 100 batches are used.
        example: An input for tracing and for measuring MACs and latency: a tensor, a tuple
            of positional inputs or a dict of keyword inputs.
        evaluate: Your metric, ``evaluate(model) -> number``, measured before and after each
            step (higher or lower is better as you read it).
        inplace: Give the optimised state to ``model`` itself.
        progress: ``"auto"`` (a widget in a notebook, text elsewhere), ``"widget"``,
            ``"text"`` or ``"none"``.
        logdir: TensorBoard log directory; None for no logs.
        callbacks: Callables receiving every event of the run.

    Returns:
        An :class:`OptimizeResult`: ``.model``, ``.report`` (each quantity before and after),
        ``.steps``, ``.to_dataframe()``, ``.plot()``. Latency is the median of repeated calls
        on ``example`` after a warm-up, with ``torch.get_num_threads()`` threads, original and
        optimised measured side by side.

    Example:
        >>> import torch
        >>> from nbopt.compress import optimize
        >>> net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(),
        ...                           torch.nn.Linear(256, 10))
        >>> result = optimize(net, prune=0.5, quant="int8", example=torch.randn(8, 64),
        ...                   progress="none", logdir=None)
        >>> result.report["params"].ratio < 0.6
        True
    """
    from nbopt.compress._pipeline import Optimization, plan_steps
    from nbopt.ui.progress import progress_reporter
    from nbopt.ui.tensorboard import TensorBoardReporter

    if isinstance(prune_ignore, str):
        prune_ignore = [name.strip() for name in prune_ignore.split(",") if name.strip()]
    steps = plan_steps(
        prune=prune,
        prune_mode=prune_mode,
        prune_ignore=prune_ignore,
        lowrank=lowrank,
        finetune=finetune,
        quant=quant,
        calib=calib,
    )
    view = progress_reporter(progress)
    name = time.strftime("optimize-%Y%m%d-%H%M%S")
    reporters: list[Callable[[Event], None]] = [] if view is None else [view]
    if logdir is not None:
        reporters.append(TensorBoardReporter(logdir, name))
    reporters.extend(callbacks)
    run = Optimization(
        model,
        steps,
        example=example,
        evaluate=evaluate,
        inplace=inplace,
        bus=EventBus(reporters),
        name=name,
    )
    return run.run()
