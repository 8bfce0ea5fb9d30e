"""``%batchsize``: the batch size that trains soonest, runs fastest, or is the largest that fits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nbopt.magics.option_types import (
    _IDENTIFIER,
    Bool,
    Enum,
    Float,
    Identifier,
    Int,
    Name,
    OptionType,
    Size,
    unquote,
)
from nbopt.magics.options import Option, Schema
from nbopt.magics.runner import MagicCall, callable_check, common_options

INTRO = """Find the batch size that reaches a given loss soonest (mode=efficient), runs fastest
(mode=throughput) or is the largest that fits (mode=max) for a model of the notebook, measured
on this machine.

    %batchsize model example=x target=y loss=loss_fn train lr=0.1 lr_batch=32 set=batch_size

Batches of size B are built from example= (a tensor, or a tuple/dict of tensors whose first
dimension is the batch; its rows are repeated) or by make_batch=FN(B). train=True measures a
whole training step (forward, loss, backward, optimizer step) on a throwaway copy of the
model; the model itself is never changed. Without loss=, the loss is the sum of the outputs
(the backward pass costs the same). mode=efficient, the default when training with loss= on
at least 256 rows of example=, also measures the gradient noise scale on those rows and
predicts the time to a given loss of each batch size; with lr= (a rate that works at
lr_batch=, or the result of %lr_find) it scales the learning rate to the chosen batch. On
CPU, no batch predicted to need more than memory= (default: half the free memory) is run.
The result (a BatchSizeResult) is returned, kept in _nbopt, and in out=NAME if given;
set=NAME assigns the chosen batch size to NAME.
"""


def _rate_check(value: Any) -> str | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return None
    if hasattr(value, "suggestion") and hasattr(value, "batch_size"):
        return None
    return f"is a {type(value).__name__}, not a learning rate nor an LRFindResult"


class LearningRate(OptionType):
    """A positive number (``lr=0.1``), or a variable holding one or an ``LRFindResult``."""

    description = "number > 0, or the name of one or of an LRFindResult"

    def parse(self, raw: str, namespace: Mapping[str, Any]) -> Any:
        try:
            return Float(0, exclusive=True).parse(raw, namespace)
        except ValueError:
            if not _IDENTIFIER.match(unquote(raw)):
                raise
        return Name(check=_rate_check).parse(raw, namespace)


SCHEMA = Schema(
    "batchsize",
    [
        Option("example", Name("tensor, tuple or dict"), None, "an input batch, tiled to size B"),
        Option(
            "make_batch", Name("function", callable_check), None, "make_batch(B) builds a batch"
        ),
        Option(
            "mode",
            Enum("efficient", "throughput", "max"),
            None,
            "soonest to a given loss, fastest, or largest that fits (default: efficient when "
            "training with loss= on 256+ rows of example=, else throughput)",
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
        Option(
            "tolerance",
            Float(0, 1),
            None,
            "smallest batch within this of the best speed or time (default 0.05; not mode=max)",
        ),
        Option(
            "lr",
            LearningRate(),
            None,
            "mode=efficient: a learning rate at lr_batch=, or an LRFindResult, to scale",
        ),
        Option("lr_batch", Int(1), None, "mode=efficient: the batch size lr= was found at"),
        Option(
            "noise_steps",
            Int(0),
            None,
            "mode=efficient: training steps of a copy while measuring the noise scale",
        ),
        Option("seed", Int(), None, "mode=efficient: order of the rows the noise is measured on"),
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
    model = call.model_argument("%batchsize model example=x")
    from nbopt.batching import find_batch_size

    result = call.run(find_batch_size, model, **call.arguments())
    if call["set"]:
        call.namespace[call["set"]] = result.batch_size
    return result
