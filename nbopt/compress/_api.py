"""``optimize`` and ``optimize_auto``: the compression engine's two public functions.

Importing this module is light; torch, Torch-Pruning and torchao are imported when a run
starts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from nbopt.compress._plan import Plan
from nbopt.compress._result import OptimizeResult
from nbopt.compress.auto import AutoOptimizeResult
from nbopt.errors import ConfigError
from nbopt.events import Event
from nbopt.ui import DEFAULT_LOGDIR


def optimize(
    model: Any,
    *,
    prune: float | None = None,
    prune_mode: str = "structured",
    prune_ignore: Sequence[str] | str = (),
    prune_steps: int = 1,
    lowrank: float | None = None,
    student: Any = None,
    finetune: Callable[..., Any] | None = None,
    data: Any = None,
    loss: Callable[[Any, Any], Any] | None = None,
    epochs: int | None = None,
    finetune_steps: int | None = None,
    lr: float | None = None,
    distill: Any = None,
    temperature: float | None = None,
    alpha: float | None = None,
    quant: str | None = None,
    quant_backend: str = "auto",
    qat: bool = False,
    calib: Any = None,
    export: str | os.PathLike[str] | None = None,
    example: Any = None,
    evaluate: Callable[[Any], Any] | None = None,
    inplace: bool = False,
    batch: str | None = None,
    progress: str = "auto",
    logdir: str | os.PathLike[str] | None = DEFAULT_LOGDIR,
    callbacks: Iterable[Callable[[Event], None]] = (),
) -> OptimizeResult:
    """Make a copy of ``model`` smaller and faster, and measure by how much.

    Steps run in this order, each only when asked for: transfer to ``student`` -> prune ->
    low-rank -> fine-tune -> (soft pruning's removal) -> quantize -> export. Every input is
    checked first; a bad one raises :class:`nbopt.ConfigError` with nothing run or changed.
    The original model is never changed unless ``inplace=True``, and then only after every
    step has succeeded. A step that a library cannot carry out on this model (Torch-Pruning,
    torchao, torch) raises :class:`nbopt.ConfigError` in one line: which step, what the
    library said, what to do; an exception of your own code (``finetune``, ``evaluate``,
    ``loss``) propagates as it is. Either way the original is untouched: nbopt's own calls of
    it run with its forward hooks suspended and its buffers restored.

    Args:
        model: A ``torch.nn.Module``.
        prune: Fraction in (0, 1) of channels (``structured``, ``soft``) or weights
            (``unstructured``) to remove.
        prune_mode: ``"structured"`` (Torch-Pruning removes whole channels and neurons: the
            model gets smaller and faster; the output layer keeps its width; needs
            ``example``), ``"soft"`` (soft filter pruning: the chosen channels are zeroed but
            keep training during the fine-tune, chosen again at each report, and removed at
            its end; needs a fine-tune) or ``"unstructured"`` (global magnitude pruning of
            single weights, made permanent: sparser, but dense kernels are no faster).
        prune_ignore: Names of modules (as in ``model.named_modules()``) left unpruned, with
            everything inside them; a string may list them separated by commas.
        prune_steps: Reach ``prune`` in this many equal increments, with a fine-tune after
            each (iterative pruning); the fine-tune budget is split between them.
        lowrank: Fraction in (0, 1) of spectral energy to keep: each plain ``nn.Linear`` with
            both sides of at least 32 becomes two thinner layers of the smallest rank keeping
            it, where that saves weights.
        student: A smaller ``nn.Module`` (same inputs, same output shape) that replaces the
            model and is trained from it as teacher (compression by transfer); needs a
            fine-tune.
        finetune: Your fine-tune, ``finetune(model)`` (or ``finetune(model, teacher)`` to get
            the teacher of ``distill``), called with the pruned/factorised model in training
            mode, before quantization; it trains the model in place or returns a new one. Its
            ``nbopt.report(step, value, **metrics)`` calls show live and in TensorBoard (and
            are when soft pruning zeroes its channels).
        data: The built-in fine-tune loop's data, instead of ``finetune``: a DataLoader (or a
            list of batches) of ``(inputs, targets)``, or a tuple of tensors ``(inputs,
            targets)`` cut into shuffled batches of 64; inputs alone with ``distill``.
        loss: The built-in loop's task loss, ``loss(output, target)``; by default
            cross-entropy (integer targets) or mean squared error (float targets).
        epochs: The built-in loop's passes over ``data`` (default 1).
        finetune_steps: The fine-tune budget in steps: the built-in loop's optimizer steps
            (instead of ``epochs``), or the reported step at which your function is stopped.
        lr: The built-in loop's learning rate (Adam; default 1e-3).
        distill: ``"self"`` (the original model) or a teacher ``nn.Module``: the fine-tune
            learns from its outputs too, with Hinton's loss (logits; or last hidden states).
        temperature: Distillation's softmax temperature (default 2).
        alpha: Weight of the distillation term, in [0, 1] (default 0.5); 0 is the task loss
            alone.
        quant: ``"int8"`` (dynamic: Linear, LSTM, GRU, embeddings, by ``quant_backend``),
            ``"int8-static"`` (torchao PT2E with the x86 quantizer, calibrated on ``calib``,
            for convolutional models on CPU), ``"fp16"`` or ``"bf16"`` (a cast; the model
            still takes and returns float32).
        quant_backend: For ``int8``: ``"auto"`` (the fastest backend on ``example`` whose
            outputs stay within 0.99 cosine similarity of the float model's, measured once
            per model structure), ``"torchao"`` (``quantize_``; CPU and CUDA) or
            ``"torch.ao"`` (eager dynamic quantization; CPU; deprecated in torch). The report
            says which ran and how close its outputs stay.
        qat: Quantization-aware training for ``int8``: the fine-tune trains with int8 fake
            quantization (torchao's ``QATConfig``), then the model is quantized.
        calib: For ``int8-static``: a batch tensor, a list of batches or a DataLoader
            (``(inputs, labels)`` batches give their inputs); at most 100 batches are used.
        export: A file to write the optimised model to, last: ``.pt2`` (``torch.export``) or
            ``.onnx`` (needs ``nbopt[onnx]``); it is loaded back and its outputs compared
            with the model's on ``example``; the report gives its size.
        example: An input for tracing and for measuring MACs and latency: a tensor, a tuple
            of positional inputs or a dict of keyword inputs.
        evaluate: Your metric, ``evaluate(model) -> number``, measured before and after each
            step (higher or lower is better as you read it).
        inplace: Give the optimised state to ``model`` itself.
        batch: ``"auto"``: after the other steps, find the optimised model's fastest batch
            size for inference on ``example`` with :func:`nbopt.find_batch_size` (the smallest
            within 5% of the fastest) and add it to the report (``result.batch``).
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
    from nbopt.compress._finetune import make_trainer
    from nbopt.compress._pipeline import Optimization
    from nbopt.ui.reporting import reporting_bus, run_name

    trainer = make_trainer(
        finetune=finetune,
        data=data,
        loss=loss,
        epochs=epochs,
        finetune_steps=finetune_steps,
        lr=lr,
        distill=distill,
        temperature=temperature,
        alpha=alpha,
        student=student,
    )
    plan = Plan(
        prune=prune,
        prune_mode=prune_mode,
        prune_keep=_names(prune_ignore),
        prune_steps=prune_steps,
        lowrank=lowrank,
        quant=quant,
        quant_backend=quant_backend,
        qat=bool(qat),
        distill=trainer is not None and trainer.teacher is not None,
    )
    steps = plan.steps(
        finetune=trainer,
        calib=calib,
        student=student,
        export=None if export is None else os.fspath(export),
    )
    if calib is not None and quant != "int8-static":
        raise ConfigError("calib= is only used by quant=int8-static")
    check_batch(batch, example)
    name = run_name("optimize")
    bus = reporting_bus(progress, logdir, callbacks, run=name)
    run = Optimization(
        model,
        steps,
        trainer=trainer,
        example=example,
        evaluate=evaluate,
        inplace=inplace,
        bus=bus,
        name=name,
    )
    return with_batch(run.run(), batch, example, progress, logdir)


def optimize_auto(
    model: Any,
    *,
    evaluate: Callable[[Any], Any],
    tolerable_loss: float = 0.01,
    loss_mode: str = "relative",
    mode: str = "max",
    target: str = "latency",
    example: Any = None,
    max_trials: int = 30,
    stop_at: float | None = None,
    finetune: Callable[..., Any] | None = None,
    finetune_steps: int | None = None,
    data: Any = None,
    loss: Callable[[Any, Any], Any] | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    distill: Any = None,
    temperature: float | None = None,
    alpha: float | None = None,
    quant_backend: str = "auto",
    calib: Any = None,
    prune_ignore: Sequence[str] | str = (),
    study: str | os.PathLike[str] | None = None,
    restart: bool = False,
    seed: int | None = None,
    batch: str | None = None,
    progress: str = "auto",
    logdir: str | os.PathLike[str] | None = DEFAULT_LOGDIR,
    callbacks: Iterable[Callable[[Event], None]] = (),
) -> AutoOptimizeResult:
    """Find the smallest or fastest compressed copy of ``model`` whose metric stays within
    ``tolerable_loss`` of the original's.

    It checks every input and that ``evaluate`` gives the same number twice, measures how much
    the metric moves when each layer alone is compressed, then searches plans (structured and,
    with a fine-tune, soft pruning, low-rank factorisation, int8 on the backend measured
    fastest for each model, int8-static with ``calib``, casts where they are fast) on nbopt's
    tuning engine, cheap plans first: the same study file, live view and TensorBoard logs as
    :func:`nbopt.tune`. A plan outside the tolerance ranks behind every plan within it.
    README's ``%%optimize auto`` section says how the search proceeds.

    Args:
        model: A ``torch.nn.Module``; never changed (every plan is built from a copy).
        evaluate: Your metric, ``evaluate(model) -> number``; it must give the same number for
            the same model.
        tolerable_loss: How much worse the metric may get: a fraction of the original's
            (``loss_mode="relative"``, the default: 0.01 is 1%) or an amount
            (``"absolute"``: 0.01 is one point of a 0-1 accuracy).
        loss_mode: ``"relative"`` or ``"absolute"``.
        mode: ``"max"`` if a higher metric is better (accuracy), ``"min"`` if lower is (a loss).
        target: What to make smallest: ``"latency"`` (median time of a call on ``example``,
            measured side by side with the original), ``"size"`` (bytes of the state dict) or
            ``"macs"`` (multiply-accumulates of a call on ``example``).
        example: An input (a tensor, a tuple of inputs or a dict of keyword inputs); needed
            for ``latency`` and ``macs`` and for pruning.
        max_trials: Plans to evaluate in all, counting a resumed study's.
        stop_at: Stop as soon as a plan within the tolerance has a target ratio at most this.
        finetune: Called as ``finetune(model)`` (or ``finetune(model, teacher)`` with
            ``distill``) with each pruned or factorised model in training mode, before
            quantization; it trains the model in place or returns one.
        finetune_steps: The fine-tune budget: ``finetune`` is stopped when it calls
            ``nbopt.report(step, ...)`` with ``step >= finetune_steps``; the built-in loop
            takes that many optimizer steps.
        data: The built-in fine-tune loop's data (as :func:`optimize` takes it), instead of
            ``finetune``; it then distills from the original model (``distill="self"``)
            unless ``distill`` names another teacher or ``alpha=0``.
        loss: The built-in loop's task loss (default: cross-entropy or mean squared error).
        epochs: The built-in loop's passes over ``data`` per plan (default 1).
        lr: The built-in loop's learning rate (default 1e-3).
        distill: ``"self"`` or a teacher ``nn.Module``, for the fine-tune to learn from.
        temperature: Distillation's temperature (default 2).
        alpha: Weight of the distillation term (default 0.5).
        quant_backend: The int8 backend: ``"auto"`` (measured for each model), ``"torchao"``
            or ``"torch.ao"``.
        calib: Calibration batches; given, ``int8-static`` is searched too.
        prune_ignore: Modules never pruned (names of ``model.named_modules()``).
        study: JSON file keeping every trial; an existing study is continued (the models of
            its earlier trials are rebuilt from their plans when needed).
        restart: Start the study over.
        seed: Seed of the search, for a reproducible sequence of plans.
        batch: ``"auto"``: find the chosen model's fastest batch size for inference on
            ``example`` with :func:`nbopt.find_batch_size`, in ``result.batch``.
        progress: ``"auto"``, ``"widget"``, ``"text"`` or ``"none"``.
        logdir: TensorBoard log directory (one run per trial, as ``%tune``); None for none.
        callbacks: Callables receiving every event of the run.

    Returns:
        An :class:`AutoOptimizeResult`: ``.model`` and ``.plan`` (the plan within the
        tolerance with the lowest target ratio, or the original, copied, if none was),
        ``.front`` (the Pareto front of the metric against the target ratio over every trial
        and the original), ``.trials``, ``.sensitivity``, ``.select()`` to take another point
        of the front, ``.to_dataframe()`` and ``.plot()``. The models of the front are kept;
        another trial's is rebuilt from its plan when selected.

    Example:
        >>> import torch
        >>> from nbopt.compress import optimize_auto
        >>> net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(),
        ...                           torch.nn.Linear(256, 10)).eval()
        >>> x = torch.randn(256, 64)
        >>> labels = net(x).argmax(1)
        >>> def agreement(model):
        ...     return (model(x).argmax(1) == labels).float().mean().item()
        >>> result = optimize_auto(net, evaluate=agreement, tolerable_loss=0.05,
        ...                        target="size", example=x[:8], max_trials=4, seed=0,
        ...                        progress="none", logdir=None)
        >>> result.chosen.ratio < 0.5 and agreement(result.model) >= 0.95
        True
    """
    from nbopt.compress._finetune import make_trainer
    from nbopt.compress.auto import AutoOptimization
    from nbopt.ui.reporting import reporting_bus, run_name

    if data is not None and distill is None:
        distill = "self"
    trainer = make_trainer(
        finetune=finetune,
        data=data,
        loss=loss,
        epochs=epochs,
        finetune_steps=finetune_steps,
        lr=lr,
        distill=distill,
        temperature=temperature,
        alpha=alpha,
    )
    Plan(quant="int8", quant_backend=quant_backend).steps()
    check_batch(batch, example)
    name = run_name("auto", os.fspath(study) if study is not None else None)
    bus = reporting_bus(progress, logdir, callbacks, run=name)
    run = AutoOptimization(
        model,
        evaluate=evaluate,
        tolerable_loss=tolerable_loss,
        loss_mode=loss_mode,
        mode=mode,
        target=target,
        example=example,
        max_trials=max_trials,
        stop_at=stop_at,
        trainer=trainer,
        quant_backend=quant_backend,
        calib=calib,
        prune_ignore=_names(prune_ignore),
        study=study,
        restart=restart,
        seed=seed,
        bus=bus,
        name=name,
    )
    return with_batch(run.run(), batch, example, progress, logdir)


def _names(names: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(names, str):
        return tuple(name.strip() for name in names.split(",") if name.strip())
    return tuple(names)


def check_batch(batch: str | None, example: Any) -> None:
    if batch not in (None, "auto"):
        raise ConfigError(f"batch= must be None or 'auto', got {batch!r}")
    if batch == "auto" and example is None:
        raise ConfigError("batch='auto' needs example=: the batch to tile to each size")


def with_batch(result: Any, batch: str | None, example: Any, progress: str, logdir: Any) -> Any:
    """``result`` with, for ``batch="auto"``, its model's fastest batch size in ``.batch``."""
    if batch == "auto":
        from nbopt.batching import find_batch_size

        result.batch = find_batch_size(
            result.model, example, mode="throughput", progress=progress, logdir=logdir
        )
    return result
