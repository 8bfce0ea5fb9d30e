"""``%batchsize``: options, and the glue between the notebook and :func:`find_batch_size`."""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError

from nbopt._magic_support import (
    common_options,
    is_module,
    store_result,
    usage_errors,
    view_settings,
)
from nbopt.options import Bool, Enum, Float, Identifier, Int, Name, Option, Schema, Size
from nbopt.ui.events import Event, RunFinished

INTRO = """Find the batch size that runs fastest (mode=throughput) or the largest that fits
(mode=max) for a model of the notebook, measured on this machine.

    %batchsize model example=x mode=throughput train=True max=4096 set=batch_size

Batches of size B are built from example= (a tensor, or a tuple/dict of tensors whose first
dimension is the batch; its rows are repeated) or by make_batch=FN(B). train=True measures a
whole training step (forward, loss, backward, optimizer step) on a throwaway copy of the
model; the model itself is never changed. Without loss=, the loss is the sum of the outputs
(the backward pass costs the same). On CPU, no batch predicted to need more than memory=
(default: half the free memory) is run. The result (a BatchSizeResult) is returned, kept in
_nbopt, and in out=NAME if given; set=NAME assigns the chosen batch size to NAME.
"""


def _callable(value: Any) -> str | None:
    return None if callable(value) else "is not callable"


def _module(value: Any) -> str | None:
    return None if is_module(value) else f"is a {type(value).__name__}, not an nn.Module"


SCHEMA = Schema(
    "batchsize",
    [
        Option("example", Name("tensor, tuple or dict"), None, "an input batch, tiled to size B"),
        Option("make_batch", Name("function", _callable), None, "make_batch(B) builds a batch"),
        Option(
            "mode", Enum("throughput", "max"), "throughput", "fastest batch or largest that fits"
        ),
        Option("train", Bool(), False, "measure a training step, not inference", flag=True),
        Option("target", Name("tensor"), None, "labels of example= for loss= (train=True)"),
        Option("loss", Name("function", _callable), None, "loss(output, target) for train=True"),
        Option(
            "optimizer",
            Name("function", _callable),
            None,
            "optimizer(parameters) for the throwaway copy (default: Adam)",
        ),
        Option("start", Int(1), None, "smallest batch size tried (default 1, 2 with train)"),
        Option("max", Int(1), 4096, "largest batch size tried"),
        Option(
            "memory", Size(), None, "memory cap of a step (default on CPU: half the free memory)"
        ),
        Option("tolerance", Float(0, 1), 0.05, "smallest batch within this of the best speed"),
        Option("set", Identifier(), None, "assign the chosen batch size to this variable"),
        *common_options("BatchSizeResult"),
    ],
    positional=("model",),
)

HELP = INTRO + "\n" + SCHEMA.help()


def run_batchsize_magic(magics: Any, line: str) -> Any:
    """Parse ``%batchsize``, search, store and return the result."""
    namespace = magics.shell.user_ns
    parsed = SCHEMA.parse(line, namespace)
    if not parsed.positional:
        raise UsageError("%batchsize: name the model, e.g. %batchsize model example=x")
    try:
        model = Name("nn.Module", _module).parse(parsed.positional[0], namespace)
    except ValueError as exc:
        raise UsageError(f"%batchsize: {exc}") from None
    progress, logdir = view_settings(magics, parsed)
    outcome: dict[str, Any] = {}

    def keep_result(event: Event) -> None:
        if isinstance(event, RunFinished):
            outcome["result"] = event.result

    from nbopt.batching import find_batch_size

    try:
        with usage_errors("batchsize"):
            result = find_batch_size(
                model,
                parsed["example"],
                make_batch=parsed["make_batch"],
                target=parsed["target"],
                mode=parsed["mode"],
                train=parsed["train"],
                loss=parsed["loss"],
                optimizer=parsed["optimizer"],
                start=parsed["start"],
                max_batch_size=parsed["max"],
                memory=parsed["memory"],
                tolerance=parsed["tolerance"],
                progress=progress,
                logdir=logdir,
                callbacks=[keep_result],
            )
    except KeyboardInterrupt:
        # What finished before the interrupt is kept, as %tune does; set= is not assigned.
        if outcome.get("result") is not None:
            store_result(namespace, outcome["result"], parsed["out"])
        raise
    store_result(namespace, result, parsed["out"])
    if parsed["set"]:
        namespace[parsed["set"]] = result.batch_size
    return result
