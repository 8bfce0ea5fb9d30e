"""``%%optimize``: options, and the glue between the notebook and :func:`nbopt.optimize`."""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError

from nbopt._magic_support import (
    check_names_exist,
    common_options,
    compile_cell,
    is_module,
    store_result,
    usage_errors,
    view_settings,
)
from nbopt.compress._auto_result import TARGETS
from nbopt.compress._registry import PRUNING, QUANTIZATION
from nbopt.compress._tolerance import LOSS_MODES, METRIC_MODES
from nbopt.options import Bool, Enum, Float, Identifier, Int, Option, Schema, Text, TextList

INTRO = """Run the cell, then prune, factorise and quantize a copy of its model, and report
before/after measurements (parameters, non-zeros, size, MACs, latency, your metric).

    %%optimize prune=0.5 prune_mode=structured quant=int8 example=x eval=accuracy out=small
    model = train_cnn()

The model is model=NAME, or the one nn.Module the cell assigned (when it assigned several,
the one with parameters). Steps run in this order: prune -> low-rank -> finetune -> quantize.
The original model is never changed unless inplace=True. The result (an OptimizeResult, with
.model and .report) is returned, kept in _nbopt, and in out=NAME if given.

With auto, the search picks the steps: the plan with the lowest target (latency, size or
MACs) whose eval= metric stays within tolerable_loss, cheap plans first, on %tune's engine:

    %%optimize auto eval=val_accuracy tolerable_loss=0.01 target=latency example=x out=best
    model = train_cnn()

The result (an AutoOptimizeResult) holds the chosen .model and .plan, the Pareto front of the
metric against the target, and every trial; in a notebook a dropdown picks another point of
the front into .model.
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
        Option(
            "batch",
            Enum("auto"),
            None,
            "auto: after the other steps, find the optimised model's fastest batch size on "
            "example= (as %batchsize does) and add it to the report",
        ),
        Option(
            "auto", Bool(), False, "search the plan: the options below (needs eval=)", flag=True
        ),
        Option(
            "tolerable_loss",
            Float(0),
            None,
            "auto: how much worse eval= may get (default 0.01: 1% with loss_mode=relative)",
        ),
        Option(
            "loss_mode",
            Enum(*LOSS_MODES),
            None,
            "auto: tolerable_loss as a fraction of the original's metric, or an amount "
            "(default relative)",
        ),
        Option(
            "mode",
            Enum(*METRIC_MODES),
            None,
            "auto: max if a higher eval= is better (default), min if lower is",
        ),
        Option(
            "target",
            Enum(*TARGETS),
            None,
            "auto: what to make smallest (default latency; latency and macs need example=)",
        ),
        Option("max_trials", Int(1), None, "auto: plans to evaluate (default 30)"),
        Option(
            "stop_at",
            Float(0, exclusive=True),
            None,
            "auto: stop once a plan within the tolerance reaches this target ratio",
        ),
        Option(
            "finetune_steps",
            Int(1),
            None,
            "auto: stop finetune when it reports this step with nbopt.report",
        ),
        Option(
            "study", Text("path"), None, "auto: JSON file keeping every trial; re-running continues"
        ),
        Option("restart", Bool(), False, "auto: start the study over", flag=True),
        Option("seed", Int(0), None, "auto: seed, for a reproducible sequence of plans"),
        *common_options("OptimizeResult (AutoOptimizeResult with auto)"),
    ],
)

# Options that only auto reads, and those whose choice auto makes itself.
_AUTO_ONLY = (
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
_CHOSEN_BY_AUTO = ("prune", "prune_mode", "lowrank", "quant")


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
    _check_auto_options(parsed)
    source = shell.transform_cell(cell)
    check_names_exist("optimize", {k: parsed[k] for k in _NAME_OPTIONS}, namespace, source)
    if not parsed["auto"]:
        _check_plan(parsed, namespace)
    progress, logdir = view_settings(magics, parsed)

    before = dict(namespace)
    exec(compile_cell(source, "%%optimize"), namespace)
    missing = [
        f"{k}={parsed[k]}" for k in _NAME_OPTIONS if parsed[k] and parsed[k] not in namespace
    ]
    if missing:
        raise UsageError(f"%%optimize {missing[0]}: the cell did not assign it after all")

    model = _the_model(parsed["model"], namespace, before)
    values = {
        k: namespace[parsed[k]] for k in ("finetune", "calib", "example", "eval") if parsed[k]
    }
    for option in ("finetune", "eval"):
        if option in values and not callable(values[option]):
            raise UsageError(f"%%optimize {option}=: {parsed[option]!r} is not callable")
    run = _run_auto if parsed["auto"] else _run_steps
    result = run(model, parsed, values, progress, logdir)
    store_result(namespace, result, parsed["out"])
    return result


def _run_steps(
    model: Any, parsed: Any, values: dict[str, Any], progress: str, logdir: str | None
) -> Any:
    from nbopt.compress import optimize

    with usage_errors("%optimize"):
        return optimize(
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
            batch=parsed["batch"],
            progress=progress,
            logdir=logdir,
        )


def _check_plan(parsed: Any, namespace: dict[str, Any]) -> None:
    """The steps' own checks (amounts, methods, combinations), before the cell runs.

    Names the cell has yet to assign stand in as placeholders; what needs the model itself
    (``prune_ignore`` names, ``example`` running through it) is checked once it exists.
    """
    from nbopt.compress._pipeline import plan_steps

    def value(option: str, placeholder: Any) -> Any:
        name = parsed[option]
        return None if name is None else namespace.get(name, placeholder)

    with usage_errors("%optimize"):
        plan_steps(
            prune=parsed["prune"],
            prune_mode=parsed["prune_mode"],
            prune_ignore=parsed["prune_ignore"] or (),
            lowrank=parsed["lowrank"],
            finetune=value("finetune", _pending_function),
            quant=parsed["quant"],
            calib=value("calib", "calibration data"),
        )
    if parsed["inplace"] and parsed["quant"] == "int8-static":
        raise UsageError(
            "%%optimize: inplace cannot be used with quant=int8-static: it makes a new kind of "
            "model (a GraphModule); use the result's .model"
        )
    if parsed["batch"] and not parsed["example"]:
        raise UsageError("%%optimize batch=auto needs example=: the batch to tile to each size")


def _pending_function(model: Any) -> None:
    """Stands for a function the cell has yet to define."""


def _check_auto_options(parsed: Any) -> None:
    """UsageError, before the cell runs, for options that do not go together."""
    if parsed["auto"]:
        if parsed["inplace"]:
            raise UsageError(
                "%%optimize auto cannot work inplace: the chosen model, or the one picked from "
                "the front later, is the result's .model"
            )
        chosen = [f"{key}=" for key in _CHOSEN_BY_AUTO if key in parsed.given]
        if chosen:
            raise UsageError(
                f"%%optimize auto chooses {', '.join(chosen)} itself; drop "
                f"{'it' if len(chosen) == 1 else 'them'}, or drop auto"
            )
        if not parsed["eval"]:
            raise UsageError(
                "%%optimize auto needs eval=: your metric, a function of the model returning a "
                "number, which the chosen plan keeps within tolerable_loss"
            )
        return
    extra = [f"{key}=" for key in _AUTO_ONLY if key in parsed.given]
    if extra:
        raise UsageError(f"%%optimize {', '.join(extra)} only apply with auto")


def _run_auto(
    model: Any, parsed: Any, values: dict[str, Any], progress: str, logdir: str | None
) -> Any:
    from nbopt.compress import optimize_auto

    # Options not given keep optimize_auto's own defaults.
    given = {key: parsed[key] for key in _AUTO_ONLY if key in parsed.given}
    with usage_errors("%optimize"):
        return optimize_auto(
            model,
            evaluate=values["eval"],
            finetune=values.get("finetune"),
            calib=values.get("calib"),
            example=values.get("example"),
            prune_ignore=parsed["prune_ignore"] or (),
            progress=progress,
            logdir=logdir,
            **given,
        )


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
