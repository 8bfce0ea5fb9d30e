"""``%batchsize``: the batch size that runs fastest, or the largest that fits."""

from __future__ import annotations

from typing import Any

from nbopt.magics.option_types import Bool, Enum, Float, Identifier, Int, Name, Size
from nbopt.magics.options import Option, Schema
from nbopt.magics.runner import MagicCall, callable_check, common_options, module_check

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


SCHEMA = Schema(
    "batchsize",
    [
        Option("example", Name("tensor, tuple or dict"), None, "an input batch, tiled to size B"),
        Option(
            "make_batch", Name("function", callable_check), None, "make_batch(B) builds a batch"
        ),
        Option(
            "mode", Enum("throughput", "max"), "throughput", "fastest batch or largest that fits"
        ),
        Option("train", Bool(), False, "measure a training step, not inference", flag=True),
        Option("target", Name("tensor"), None, "labels of example= for loss= (train=True)"),
        Option(
            "loss", Name("function", callable_check), None, "loss(output, target) for train=True"
        ),
        Option(
            "optimizer",
            Name("function", callable_check),
            None,
            "optimizer(parameters) for the throwaway copy (default: Adam)",
        ),
        Option("start", Int(1), None, "smallest batch size tried (default 1, 2 with train)"),
        Option("max", Int(1), 4096, "largest batch size tried", parameter="max_batch_size"),
        Option(
            "memory", Size(), None, "memory cap of a step (default on CPU: half the free memory)"
        ),
        Option("tolerance", Float(0, 1), 0.05, "smallest batch within this of the best speed"),
        Option(
            "set",
            Identifier(),
            None,
            "assign the chosen batch size to this variable",
            parameter=None,
        ),
        *common_options("BatchSizeResult"),
    ],
    positional=("model",),
)

HELP = INTRO + "\n" + SCHEMA.help()


def run(magics: Any, line: str) -> Any:
    """Parse ``%batchsize``, search, store and return the result."""
    call = MagicCall(magics, SCHEMA, line)
    if not call.parsed.positional:
        raise call.fail("name the model, e.g. %batchsize model example=x")
    try:
        model = Name("nn.Module", module_check).parse(call.parsed.positional[0], call.namespace)
    except ValueError as exc:
        raise call.fail(str(exc)) from None
    from nbopt.batching import find_batch_size

    result = call.run(find_batch_size, model, **call.arguments())
    if call["set"]:
        call.namespace[call["set"]] = result.batch_size
    return result
