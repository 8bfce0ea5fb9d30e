"""``%%optimize``: run the cell, then prune, factorise and quantize a copy of its model."""

from __future__ import annotations

from typing import Any

from nbopt.compress import Plan, methods
from nbopt.magics.option_types import Bool, Enum, Float, Identifier, Int, Text, TextList
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

    %%optimize prune=0.5 prune_mode=soft data=train_set epochs=5 distill=self quant=int8
    model = train_cnn()

The model is model=NAME, or the one nn.Module the cell assigned (when it assigned several,
the one with parameters). Steps run in this order: student -> prune -> low-rank -> finetune
-> quantize -> export. A fine-tune is finetune=FN (your function) or data=DATA (the built-in
loop); soft and iterative pruning, distillation, student= and qat need one. The original model
is never changed unless inplace=True. The result (an OptimizeResult, with .model and .report)
is returned, kept in _nbopt, and in out=NAME if given.

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
    "study",
    "restart",
    "seed",
)
QUANT_MODES = tuple(methods()["quant"])
QUANT_BACKENDS = tuple(methods()["quant_backend"])


def finetune_options(auto: bool = False) -> list[Option]:
    """The fine-tune's options, shared by both forms: your function or the built-in loop,
    and distillation."""
    data_help = "the built-in fine-tune loop's data: a DataLoader or a tuple (inputs, targets)"
    if auto:
        data_help += "; it distills from the original unless alpha=0"
    return [
        name_option(
            "finetune",
            "your fine-tune: a function of the model (and of teacher, with distill=), called "
            "in training mode before quantization"
            if not auto
            else "function called with each pruned model, in training mode, to recover",
        ),
        name_option("data", data_help),
        name_option("loss", "the built-in loop's loss(output, target) (default: cross-entropy)"),
        Option("epochs", Int(1), None, "the built-in loop's passes over data= (default 1)"),
        Option(
            "finetune_steps",
            Int(1),
            None,
            "fine-tune budget: the built-in loop's optimizer steps, or the nbopt.report step "
            "at which finetune= is stopped",
        ),
        Option("lr", Float(0, exclusive=True), None, "the built-in loop's learning rate (1e-3)"),
        Option(
            "distill",
            Identifier(),
            None,
            "self (the original model) or a teacher model: the fine-tune learns from its "
            "outputs too (Hinton's loss)",
        ),
        Option(
            "temperature",
            Float(0, exclusive=True),
            None,
            "distillation's softmax temperature (default 2)",
        ),
        Option("alpha", Float(0, 1), None, "weight of the distillation term (default 0.5)"),
    ]


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
            "prune_steps",
            Int(1),
            1,
            "reach prune= in this many increments, fine-tuning after each (iterative)",
        ),
        Option(
            "lowrank",
            Float(0, 1, exclusive=True),
            None,
            "spectral energy kept when factorising large Linear layers (e.g. 0.9)",
        ),
        name_option(
            "student",
            "a smaller model to train from the original as teacher (compression by transfer)",
        ),
        *finetune_options(),
        Option(
            "quant",
            Enum(*QUANT_MODES),
            None,
            "int8: Linear/LSTM/GRU/embeddings; int8-static: also convolutions (needs calib=); "
            "fp16/bf16: a cast",
        ),
        Option(
            "quant_backend",
            Enum(*QUANT_BACKENDS),
            "auto",
            "int8 kernels: auto (the fastest whose outputs stay close to float, measured), "
            "torchao or torch.ao",
        ),
        Option(
            "qat",
            Bool(),
            False,
            "quantization-aware training: fine-tune with int8 fake quantization",
            flag=True,
        ),
        name_option("calib", "calibration data for quant=int8-static"),
        Option(
            "export",
            Text("path.pt2|path.onnx"),
            None,
            "write the optimised model to a file (torch.export or ONNX), checked on example=",
        ),
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

NAME_OPTIONS = (
    "model",
    "finetune",
    "calib",
    "example",
    "eval",
    "student",
    "data",
    "loss",
    "distill",
)


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
    names = looked_up(call, NAME_OPTIONS)
    check_names_exist(call, names, source)
    _check_plan(call)
    model, values = run_cell_for_model(call, source, names)
    from nbopt.compress import optimize

    named = {SCHEMA.options[name].parameter: values.get(name) for name in NAME_OPTIONS[1:]}
    arguments = call.arguments(
        prune_ignore=call["prune_ignore"] or (), **{**named, **distill_value(call)}
    )
    return call.run(optimize, model, **arguments)


def looked_up(call: MagicCall, options: tuple[str, ...]) -> tuple[str, ...]:
    """The name options whose value is a notebook variable (``distill=self`` is not)."""
    return tuple(name for name in options if not (name == "distill" and call[name] == "self"))


def distill_value(call: MagicCall) -> dict[str, Any]:
    """``distill="self"`` as the engine takes it, when the line says so."""
    return {"distill": "self"} if call["distill"] == "self" else {}


def check_finetune_options(call: MagicCall, distills_by_default: bool = False) -> None:
    """The fine-tune options' combinations, before the cell runs (with stand-ins for the
    variables the cell may still have to create). ``distills_by_default``: the built-in loop
    distills from the original unless told otherwise (as auto's does)."""
    from nbopt.compress import check_finetune_options as check

    def stand_in(*args: Any, **kwargs: Any) -> None:
        """Stands for a function the cell may define."""

    with call.usage_errors():
        check(
            finetune=stand_in if call["finetune"] else None,
            data=[] if call["data"] else None,
            loss=stand_in if call["loss"] else None,
            epochs=call["epochs"],
            finetune_steps=call["finetune_steps"],
            lr=call["lr"],
            distill="self" if call["distill"] or (distills_by_default and call["data"]) else None,
            temperature=call["temperature"],
            alpha=call["alpha"],
            student="student" if call.given("student") else None,
        )


def _check_plan(call: MagicCall) -> None:
    """The steps' own checks (amounts, methods, combinations), before the cell runs.

    What needs the model itself (``prune_ignore`` names, ``example`` running through it) is
    checked once the cell has made it.
    """
    check_finetune_options(call)
    trained = bool(call["finetune"] or call["data"])
    plan = Plan(
        prune=call["prune"],
        prune_mode=call["prune_mode"],
        prune_keep=call["prune_ignore"] or (),
        prune_steps=call["prune_steps"],
        lowrank=call["lowrank"],
        quant=call["quant"],
        quant_backend=call["quant_backend"],
        qat=call["qat"],
        distill=bool(call["distill"]),
    )
    with call.usage_errors():
        # Stand-ins for what the cell may still have to create.
        plan.steps(
            finetune=_FinetuneStandIn() if trained else None,
            calib="calibration data" if call["calib"] else None,
            export=call["export"],
        )
    if call["student"] and not trained:
        raise call.fail(
            "student= needs a fine-tune to train the student: give data= (the built-in loop) "
            "or finetune=FN with a teacher argument"
        )
    if call["calib"] and call["quant"] != "int8-static":
        raise call.fail("calib= is only used by quant=int8-static")
    if call["inplace"] and call["student"]:
        raise call.fail(
            "inplace cannot be used with student=: the result is another architecture; use "
            "the result's .model"
        )
    if call["inplace"] and call["quant"] == "int8-static":
        raise call.fail(
            "inplace cannot be used with quant=int8-static: it makes a new kind of model "
            "(a GraphModule); use the result's .model"
        )
    if call["batch"] and not call["example"]:
        raise call.fail("batch=auto needs example=: the batch to tile to each size")


class _FinetuneStandIn:
    """Stands for the fine-tune the cell's variables will make, in the checks before it."""

    label = "finetune"


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
    for option in ("finetune", "eval", "loss"):
        if option in values and not callable(values[option]):
            raise call.fail(f"{option}=: {call[option]!r} is not callable")
    for option in ("student", "distill"):
        if option in values and not is_module(values[option]):
            kind = type(values[option]).__name__
            raise call.fail(f"{option}=: {call[option]!r} is a {kind}, not an nn.Module")
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
