"""``%%optimize auto``: run the cell, then search the compression plan that gains most within
the accuracy the user can afford."""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError

from nbopt.compress.auto import LOSS_MODES, METRIC_MODES, TARGETS
from nbopt.magics.optimize import (
    QUANT_BACKENDS,
    check_finetune_options,
    distill_value,
    finetune_options,
    looked_up,
    model_option,
    name_option,
    run_cell_for_model,
)
from nbopt.magics.option_types import Bool, Enum, Float, Int, Text, TextList
from nbopt.magics.options import Option, Schema
from nbopt.magics.runner import MagicCall, check_names_exist, common_options

INTRO = """%%optimize auto: the plan with the lowest target (latency, size or MACs) whose eval=
metric stays within tolerable_loss, cheap plans first, on %tune's engine:

    %%optimize auto eval=val_accuracy tolerable_loss=0.01 target=latency example=x out=best
    model = train_cnn()

The result (an AutoOptimizeResult) holds the chosen .model and .plan, the Pareto front of the
metric against the target, and every trial; in a notebook a dropdown picks another point of
the front into .model.
"""

SCHEMA = Schema(
    "optimize auto",
    [
        model_option(),
        name_option(
            "eval",
            "your metric: a function of the model returning a number (required)",
            "evaluate",
        ),
        Option(
            "tolerable_loss",
            Float(0),
            0.01,
            "how much worse eval= may get (1% with loss_mode=relative)",
        ),
        Option(
            "loss_mode",
            Enum(*LOSS_MODES),
            "relative",
            "tolerable_loss as a fraction of the original's metric, or an amount",
        ),
        Option("mode", Enum(*METRIC_MODES), "max", "max if a higher eval= is better, min if lower"),
        Option(
            "target",
            Enum(*TARGETS),
            "latency",
            "what to make smallest (latency and macs need example=)",
        ),
        name_option("example", "input for tracing, MACs and latency"),
        Option("max_trials", Int(1), 30, "plans to evaluate, counting a resumed study's"),
        Option(
            "stop_at",
            Float(0, exclusive=True),
            None,
            "stop once a plan within the tolerance reaches this target ratio",
        ),
        *finetune_options(auto=True),
        Option(
            "quant_backend",
            Enum(*QUANT_BACKENDS),
            "auto",
            "int8 kernels: auto (measured for each plan's model), torchao or torch.ao",
        ),
        name_option("calib", "calibration data: int8-static is searched too"),
        Option("prune_ignore", TextList("module[,module...]"), None, "modules never pruned"),
        Option("study", Text("path"), None, "file keeping every trial; re-running continues"),
        Option("restart", Bool(), False, "start the study over", flag=True),
        Option("seed", Int(0), None, "seed, for a reproducible sequence of plans"),
        Option(
            "batch",
            Enum("auto"),
            None,
            "auto: find the chosen model's fastest batch size on example= (as %batchsize)",
        ),
        *common_options("AutoOptimizeResult"),
    ],
    rejected={
        **{
            option: f"auto chooses {option}= itself; drop it, or drop auto"
            for option in ("prune", "prune_mode", "lowrank", "quant")
        },
        **{
            option: f"{option}= is not searched by auto; use %%optimize without auto"
            for option in ("prune_steps", "qat", "student")
        },
        "export": (
            "export= is not taken by auto: export the chosen model with %%optimize "
            "model=NAME export=PATH example=X (no other option: it only measures and exports)"
        ),
        "inplace": (
            "auto cannot work inplace: the chosen model, or the one picked from the front "
            "later, is the result's .model"
        ),
    },
)

NAME_OPTIONS = ("model", "eval", "example", "finetune", "calib", "data", "loss", "distill")

HELP = INTRO + "\n" + SCHEMA.help()


def run(magics: Any, line: str, cell: str) -> Any:
    """Parse ``%%optimize auto``, run the cell, search its model's plan, store the result."""
    call = MagicCall(magics, SCHEMA, line, prefix="%%optimize auto")
    if not call["eval"]:
        raise UsageError(
            "%%optimize auto needs eval=: your metric, a function of the model returning a "
            "number, which the chosen plan keeps within tolerable_loss"
        )
    check_finetune_options(call, distills_by_default=True)
    if call["batch"] and not call["example"]:
        raise call.fail("batch=auto needs example=: the batch to tile to each size")
    source = call.shell.transform_cell(cell)
    names = looked_up(call, NAME_OPTIONS)
    check_names_exist(call, names, source)
    model, values = run_cell_for_model(call, source, names)
    from nbopt.compress import optimize_auto

    named = {SCHEMA.options[name].parameter: values.get(name) for name in NAME_OPTIONS[1:]}
    arguments = call.arguments(
        prune_ignore=call["prune_ignore"] or (), **{**named, **distill_value(call)}
    )
    return call.run(optimize_auto, model, **arguments)
