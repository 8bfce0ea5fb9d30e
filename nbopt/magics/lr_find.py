"""``%lr_find``: a learning rate for a model of the notebook, from a range test."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from nbopt.magics.option_types import (
    _IDENTIFIER,
    Enum,
    Expression,
    Float,
    Identifier,
    Int,
    Name,
    unquote,
)
from nbopt.magics.options import Option, Schema
from nbopt.magics.runner import MagicCall, callable_check, common_options

# The rule names, without importing the engine (and torch) to build the option table.
RULES = ("minimum_centered", "valley", "minimum", "steep", "steepest")

INTRO = """Suggest a learning rate for a model of the notebook with a range test (Smith, 2017):
a throwaway copy of the model and optimizer trains on data= while the learning rate grows
geometrically from start= to end=, until the loss diverges.

    %lr_find model data=loader loss=loss_fn optimizer=opt set=lr

data= is a DataLoader or a tuple of tensors (x, y). The sweep is repeated on fresh copies with
the data in another order (three sweeps when that is cheap) and the suggestion is read off
their median curve; the plot shows the spread between the sweeps as a band. The model, its
buffers and the optimizer's state are never changed. The result (an LRFindResult) is
returned, kept in _nbopt, and in out=NAME if given; set=NAME assigns the suggested rate.
"""


class Data(Expression):
    """A variable of the notebook (``data=loader``, with "did you mean" for a misspelt one)
    or an expression (``data=(x, y)``)."""

    description = "DataLoader or tuple of tensors (a name or an expression)"

    def parse(self, raw: str, namespace: Mapping[str, Any]) -> Any:
        if _IDENTIFIER.match(unquote(raw)):
            return Name().parse(raw, namespace)
        return super().parse(raw, namespace)


SCHEMA = Schema(
    "lr_find",
    [
        Option("data", Data(), None, "the training data: data=loader or data=(x, y)"),
        Option(
            "loss",
            Name("function", callable_check),
            None,
            "loss(output, target) (default: the model returns its loss)",
        ),
        Option(
            "optimizer",
            Name("optimizer or function"),
            None,
            "an optimizer of the model, or optimizer(parameters) (default: Adam)",
        ),
        Option("start", Float(0, exclusive=True), 1e-7, "first learning rate"),
        Option("end", Float(0, exclusive=True), 10.0, "last learning rate"),
        Option("steps", Int(10), 100, "steps (batches) per sweep"),
        Option("repeats", Int(1), None, "sweeps to run (default: 3 when cheap, else 1)"),
        Option("rule", Enum(*RULES), RULES[0], "how the suggestion is read off the curve"),
        Option("batch_size", Int(1), None, "batch size for data given as tensors (default 64)"),
        Option("diverge", Float(1, exclusive=True), 4.0, "stop above this times the lowest loss"),
        Option("seed", Int(), 0, "order of the data and dropout of the sweeps"),
        Option(
            "set",
            Identifier(),
            None,
            "assign the suggested learning rate to this variable",
            parameter=None,
        ),
        *common_options("LRFindResult"),
    ],
    positional=("model",),
)

HELP = INTRO + "\n" + SCHEMA.help()


def run(magics: Any, line: str) -> Any:
    """Parse ``%lr_find``, run the range test, store and return the result."""
    call = MagicCall(magics, SCHEMA, line)
    model = call.model_argument("%lr_find model data=loader loss=loss_fn")
    if not call.given("data"):
        raise call.fail("give the training data: data=NAME (a DataLoader or a tuple (x, y))")
    from nbopt.learning_rate import find_lr

    result = call.run(find_lr, model, **call.arguments())
    if call["set"]:
        if result.suggestion is None:
            warnings.warn(
                f"%lr_find: {result.summary()}; {call['set']} was not assigned",
                UserWarning,
                stacklevel=2,
            )
        else:
            call.namespace[call["set"]] = result.suggestion
    return result
