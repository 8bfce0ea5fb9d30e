"""``%%optimize``: options, and the glue between the notebook and :func:`nbopt.optimize`."""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError

from nbopt._magic_support import (
    check_names_exist,
    common_options,
    is_module,
    store_result,
    usage_errors,
    view_settings,
)
from nbopt.compress._registry import PRUNING, QUANTIZATION
from nbopt.options import Bool, Enum, Float, Identifier, Option, Schema, TextList

INTRO = """Run the cell, then prune, factorise and quantize a copy of its model, and report
before/after measurements (parameters, non-zeros, size, MACs, latency, your metric).

    %%optimize prune=0.5 prune_mode=structured quant=int8 example=x eval=accuracy out=small
    model = train_cnn()

The model is model=NAME, or the one nn.Module the cell assigned (when it assigned several,
the one with parameters). Steps run in this order: prune -> low-rank -> finetune -> quantize.
The original model is never changed unless inplace=True. The result (an OptimizeResult, with
.model and .report) is returned, kept in _nbopt, and in out=NAME if given.
"""

SCHEMA = Schema(
    "optimize",
    [
        Option("model", Identifier(), None, "the model (default: the nn.Module the cell assigned)"),
        Option(
            "prune", Float(0, 1, exclusive=True), None, "fraction of channels or weights to remove"
        ),
        Option(
            "prune_mode",
            Enum(*PRUNING.names()),
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
        Option(
            "finetune",
            Identifier(),
            None,
            "function called with the pruned model, in training mode, before quantization",
        ),
        Option(
            "quant",
            Enum(*QUANTIZATION.names()),
            None,
            "int8: Linear/LSTM/GRU/embeddings; int8-static: also convolutions (needs calib=); "
            "fp16/bf16: a cast",
        ),
        Option("calib", Identifier(), None, "calibration data for quant=int8-static"),
        Option(
            "example",
            Identifier(),
            None,
            "input for tracing, MACs and latency: tensor, tuple of inputs or dict of kwargs",
        ),
        Option(
            "eval", Identifier(), None, "your metric: a function of the model returning a number"
        ),
        Option("inplace", Bool(), False, "change the model itself", flag=True),
        *common_options("OptimizeResult"),
    ],
)


def _methods() -> str:
    lines = ["Methods:"]
    for option, registry in (("prune_mode", PRUNING), ("quant", QUANTIZATION)):
        for name in registry.names():
            lines.append(f"  {option + '=' + name:<25}{registry.get(name).summary}")
    return "\n".join(lines)


HELP = INTRO + "\n" + _methods() + "\n\n" + SCHEMA.help()

_NAME_OPTIONS = ("model", "finetune", "calib", "example", "eval")


def run_optimize_magic(magics: Any, line: str, cell: str) -> Any:
    """Parse ``%%optimize``, run the cell, optimise its model, store and return the result."""
    shell = magics.shell
    namespace = shell.user_ns
    parsed = SCHEMA.parse(line, namespace)
    source = shell.transform_cell(cell)
    check_names_exist("optimize", {k: parsed[k] for k in _NAME_OPTIONS}, namespace, source)
    progress, logdir = view_settings(magics, parsed)

    before = dict(namespace)
    exec(compile(source, "<%%optimize cell>", "exec"), namespace)

    model = _the_model(parsed["model"], namespace, before)
    values = {
        k: namespace[parsed[k]] for k in ("finetune", "calib", "example", "eval") if parsed[k]
    }
    for option in ("finetune", "eval"):
        if option in values and not callable(values[option]):
            raise UsageError(f"%%optimize {option}=: {parsed[option]!r} is not callable")
    from nbopt.compress import optimize

    with usage_errors("optimize"):
        result = optimize(
            model,
            prune=parsed["prune"],
            prune_mode=parsed["prune_mode"],
            prune_ignore=parsed["prune_ignore"] or (),
            lowrank=parsed["lowrank"],
            finetune=values.get("finetune"),
            quant=parsed["quant"],
            calib=values.get("calib"),
            example=values.get("example"),
            evaluate=values.get("eval"),
            inplace=parsed["inplace"],
            progress=progress,
            logdir=logdir,
        )
    store_result(namespace, result, parsed["out"])
    return result


def _the_model(name: str | None, namespace: dict[str, Any], before: dict[str, Any]) -> Any:
    if name is not None:
        model = namespace[name]
        if not is_module(model):
            raise UsageError(
                f"%%optimize model=: {name!r} is a {type(model).__name__}, not an nn.Module"
            )
        return model
    assigned = [
        key
        for key, value in namespace.items()
        if is_module(value) and (key not in before or before[key] is not value)
    ]
    # A loss or an activation the cell also built (criterion = nn.CrossEntropyLoss()) has no
    # parameters; the model is the one that has.
    with_parameters = [key for key in assigned if _has_parameters(namespace[key])]
    if len(with_parameters) == 1:
        return namespace[with_parameters[0]]
    if len(assigned) == 1:
        return namespace[assigned[0]]
    if not assigned:
        raise UsageError(
            "%%optimize: the cell assigned no nn.Module; name the model with model=NAME"
        )
    raise UsageError(
        f"%%optimize: the cell assigned several models ({', '.join(sorted(assigned))}); "
        "say which with model=NAME"
    )


def _has_parameters(module: Any) -> bool:
    return any(True for _ in module.parameters())
