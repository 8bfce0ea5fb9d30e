"""``%%optimize``: run the cell, then prune, factorise and quantize a copy of its model."""

from __future__ import annotations

from typing import Any

from nbopt.compress import Plan, methods
from nbopt.magics.option_types import Bool, Enum, Float, Identifier, TextList
from nbopt.magics.options import Option, Schema
from nbopt.magics.runner import (
    MagicCall,
    check_names_exist,
    common_options,
    compile_cell,
    is_module,
)

INTRO = """Run the cell, then prune, factorise and quantize a copy of its model, and report
before/after measurements (parameters, non-zeros, size, MACs, latency, your metric).

    %%optimize prune=0.5 prune_mode=structured quant=int8 example=x eval=accuracy out=small
    model = train_cnn()

The model is model=NAME, or the one nn.Module the cell assigned (when it assigned several,
the one with parameters). Steps run in this order: prune -> low-rank -> finetune -> quantize.
The original model is never changed unless inplace=True. The result (an OptimizeResult, with
.model and .report) is returned, kept in _nbopt, and in out=NAME if given.

With auto as the first word, %%optimize searches the plan itself; its options are listed
below those of the plain form.
"""


def model_option() -> Option:
    return Option(
        "model",
        Identifier(),
        None,
        "the model (default: the nn.Module the cell assigned)",
        parameter=None,
    )


def name_option(name: str, help: str, parameter: str | None = None) -> Option:
    """An option naming a notebook variable that the cell may create; its value is read
    after the cell ran."""
    return Option(name, Identifier(), None, help, parameter=parameter or name)


PRUNE_MODES = tuple(methods()["prune_mode"])
# Options of %%optimize auto that the plain form does not take.
AUTO_ONLY = (
    "tolerable_loss",
    "loss_mode",
    "mode",
    "target",
    "max_trials",
    "stop_at",
    "finetune_steps",
    "study",
    "restart",
    "seed",
)
QUANT_MODES = tuple(methods()["quant"])

SCHEMA = Schema(
    "optimize",
    [
        model_option(),
        Option(
            "prune", Float(0, 1, exclusive=True), None, "fraction of channels or weights to remove"
        ),
        Option(
            "prune_mode",
            Enum(*PRUNE_MODES),
            "structured",
            "remove whole channels (faster, smaller) or single weights (sparser)",
        ),
        Option("prune_ignore", TextList("module[,module...]"), None, "modules left unpruned"),
        Option(
            "lowrank",
            Float(0, 1, exclusive=True),
            None,
            "spectral energy kept when factorising large Linear layers (e.g. 0.9)",
        ),
        name_option(
            "finetune",
            "function called with the pruned model, in training mode, before quantization",
        ),
        Option(
            "quant",
            Enum(*QUANT_MODES),
            None,
            "int8: Linear/LSTM/GRU/embeddings; int8-static: also convolutions (needs calib=); "
            "fp16/bf16: a cast",
        ),
        name_option("calib", "calibration data for quant=int8-static"),
        name_option(
            "example",
            "input for tracing, MACs and latency: tensor, tuple of inputs or dict of kwargs",
        ),
        name_option("eval", "your metric: a function of the model returning a number", "evaluate"),
        Option("inplace", Bool(), False, "change the model itself", flag=True),
        Option(
            "batch",
            Enum("auto"),
            None,
            "auto: after the other steps, find the optimised model's fastest batch size on "
            "example= (as %batchsize does) and add it to the report",
        ),
        *common_options("OptimizeResult"),
    ],
    rejected={
        option: f"{option}= only applies with auto (%%optimize auto ...)" for option in AUTO_ONLY
    },
)

NAME_OPTIONS = ("model", "finetune", "calib", "example", "eval")


def _methods() -> str:
    lines = ["Methods:"]
    for option, named in methods().items():
        for name, summary in named.items():
            lines.append(f"  {option + '=' + name:<25}{summary}")
    return "\n".join(lines)


HELP = (
    INTRO
    + "\n"
    + _methods()
    + "\n\nForms:\n  auto      the first word: search the plan (its options are listed below)\n\n"
    + SCHEMA.help()
)


def run(magics: Any, line: str, cell: str) -> Any:
    """Parse ``%%optimize``, run the cell, optimise its model, store and return the result."""
    call = MagicCall(magics, SCHEMA, line, prefix="%%optimize")
    source = call.shell.transform_cell(cell)
    check_names_exist(call, NAME_OPTIONS, source)
    _check_plan(call)
    model, values = run_cell_for_model(call, source, NAME_OPTIONS)
    from nbopt.compress import optimize

    arguments = call.arguments(
        prune_ignore=call["prune_ignore"] or (),
        **{SCHEMA.options[name].parameter: values.get(name) for name in NAME_OPTIONS[1:]},
    )
    return call.run(optimize, model, **arguments)


def _check_plan(call: MagicCall) -> None:
    """The steps' own checks (amounts, methods, combinations), before the cell runs.

    What needs the model itself (``prune_ignore`` names, ``example`` running through it) is
    checked once the cell has made it.
    """
    plan = Plan(
        prune=call["prune"],
        prune_mode=call["prune_mode"],
        prune_keep=call["prune_ignore"] or (),
        lowrank=call["lowrank"],
        quant=call["quant"],
    )
    with call.usage_errors():
        # A stand-in for calibration data the cell may still have to create.
        plan.steps(calib="calibration data" if call["calib"] else None)
    if call["calib"] and call["quant"] != "int8-static":
        raise call.fail("calib= is only used by quant=int8-static")
    if call["inplace"] and call["quant"] == "int8-static":
        raise call.fail(
            "inplace cannot be used with quant=int8-static: it makes a new kind of model "
            "(a GraphModule); use the result's .model"
        )
    if call["batch"] and not call["example"]:
        raise call.fail("batch=auto needs example=: the batch to tile to each size")


def run_cell_for_model(
    call: MagicCall, source: str, name_options: tuple[str, ...]
) -> tuple[Any, dict[str, Any]]:
    """Run the cell; the model it made (or named) and the values of the name options."""
    namespace = call.namespace
    before = dict(namespace)
    exec(compile_cell(source, call.prefix), namespace)
    missing = [f"{k}={call[k]}" for k in name_options if call[k] and call[k] not in namespace]
    if missing:
        raise call.fail(f"{missing[0]}: the cell did not assign it after all")
    model = _the_model(call, before)
    values = {k: namespace[call[k]] for k in name_options[1:] if call[k]}
    for option in ("finetune", "eval"):
        if option in values and not callable(values[option]):
            raise call.fail(f"{option}=: {call[option]!r} is not callable")
    return model, values


def _the_model(call: MagicCall, before: dict[str, Any]) -> Any:
    namespace, name = call.namespace, call["model"]
    if name is not None:
        model = namespace[name]
        if not is_module(model):
            raise call.fail(f"model=: {name!r} is a {type(model).__name__}, not an nn.Module")
        return model
    assigned = [
        key
        for key, value in namespace.items()
        if is_module(value) and (key not in before or before[key] is not value)
    ]
    # A loss or an activation the cell also built (criterion = nn.CrossEntropyLoss()) has no
    # parameters; the model is the one that has.
    with_parameters = [key for key in assigned if any(True for _ in namespace[key].parameters())]
    if len(with_parameters) == 1:
        return namespace[with_parameters[0]]
    if len(assigned) == 1:
        return namespace[assigned[0]]
    if not assigned:
        raise call.fail("the cell assigned no nn.Module; name the model with model=NAME")
    raise call.fail(
        f"the cell assigned several models ({', '.join(sorted(assigned))}); "
        "say which with model=NAME"
    )
