"""``%tune`` and ``%%tune``: search hyperparameters of a function or of the cell itself."""

from __future__ import annotations

from typing import Any

from nbopt.errors import ConfigError, did_you_mean
from nbopt.magics.option_types import (
    Bool,
    Duration,
    Enum,
    EnumList,
    Int,
    Name,
    Text,
    TextList,
    evaluate_expression,
)
from nbopt.magics.options import Option, Schema
from nbopt.magics.runner import MagicCall, callable_check, common_options
from nbopt.space import contains_dimension, is_hyperopt_expression
from nbopt.tuning import ALGORITHMS, BACKENDS, STOP_RULES

INTRO = """Search hyperparameters of a function or of the cell itself (Hyperopt).

Line form, over a function of the notebook; the other key=value pairs are the search space:

    %tune train lr=loguniform(1e-4, 1e-1) layers=choice(1, 2, 3) max_evals=40

    train is called as train(lr=..., layers=...) when its parameters name the space's keys,
    or as train(params) with a dict; it returns a number or a dict holding metric=.

Cell form: top-level assignments of space functions are the dimensions; the metric is
metric=NAME or the cell's last expression. The best trial's variables are put into the
notebook at the end:

    %%tune max_evals=30 metric=val_acc mode=max
    lr = loguniform(1e-4, 1e-1)
    hidden = choice(32, 64, 128)
    model = make_model(hidden); val_acc = fit(model, lr)

Space functions: uniform, loguniform, quniform, qloguniform, randint, choice, normal; they
are known inside the magic's line and cell, and elsewhere come from nbopt (for a space=NAME
dict: from nbopt import choice, loguniform).
Several objectives: metric=val_acc,latency mode=max,min records every metric; the result's
front holds the non-dominated trials and result.pick(weights=...) or
result.pick(constraint="latency <= 5") chooses one.
Constraints: constraint=latency<=5 (several separated by commas) keeps a trial that breaks
one off the front and from the best; the search learns to propose inside them.
The result (a TuneResult) is returned, kept in _nbopt, and in out=NAME if given;
%tune_whatif explores what its model learnt.
"""


_OFFERED = list(ALGORITHMS)

SCHEMA = Schema(
    "tune",
    [
        Option("max_evals", Int(1), None, "trials in all, counting a resumed study's (default 20)"),
        Option("timeout", Duration(), None, "start no new trial after this long"),
        Option("algo", Enum(*_OFFERED), "auto", "search algorithm"),
        Option("seed", Int(0), None, "seed, for a reproducible sequence of trials"),
        Option(
            "metric",
            TextList("name[,name...]"),
            None,
            "the value to optimise: a dict key or cell variable; several (val_acc,latency) "
            "for a front of trials",
        ),
        Option(
            "mode",
            EnumList("min", "max"),
            "min",
            "minimise or maximise the metric; one per metric (max,min), or one for all",
        ),
        Option(
            "constraint",
            TextList("metric<=number[,...]"),
            None,
            "bounds a trial must meet to be best or on the front (latency<=5); the search "
            "learns them",
        ),
        Option(
            "study",
            Text("path"),
            None,
            "file keeping every trial (JSON lines); re-running continues it, and several "
            "kernels can share it",
        ),
        Option("restart", Bool(), False, "start the study over", flag=True),
        Option(
            "deterministic",
            Bool(),
            True,
            "same configuration, same value: never run a configuration twice",
        ),
        Option(
            "space",
            Name("dict or Hyperopt space"),
            None,
            "a search space of the notebook",
            parameter=None,
        ),
        Option(
            "stop",
            Enum(*STOP_RULES),
            "none",
            "stop bad trials early from what they report with nbopt.report(step, value)",
        ),
        Option("stop_warmup", Int(0), 0, "stop=median: steps before a trial may be stopped"),
        Option("stop_min_trials", Int(0), 5, "stop=median: trials needed at a step to judge it"),
        Option("rung", Int(1), 1, "stop=asha: steps to the first rung (then x3, x9 ...)"),
        Option("backend", Enum(*BACKENDS), "local", "run trials here, or on Ray (nbopt[ray])"),
        Option(
            "parallel",
            Int(1),
            1,
            "trials running at once: in worker processes forked from the kernel, or on Ray",
        ),
        Option(
            "address", Text("address"), None, "backend=ray: a cluster to join (auto, host:port)"
        ),
        *common_options("TuneResult"),
    ],
    positional=("objective",),
    extra_keys=True,
)

HELP = (
    INTRO
    + "\nAlgorithms (algo=):\n"
    + "\n".join(f"  {name:<8}{ALGORITHMS[name].summary}" for name in _OFFERED)
    + "\n\n"
    + SCHEMA.help()
)


# Options that only mean something with another option's value.
_DEPENDENT = {
    "stop_warmup": ("stop", "median"),
    "stop_min_trials": ("stop", "median"),
    "rung": ("stop", "asha"),
    "address": ("backend", "ray"),
}


def run(magics: Any, line: str, cell: str | None) -> Any:
    """Parse ``%tune``/``%%tune``, run the search, store and return its result."""
    call = MagicCall(magics, SCHEMA, line, prefix="%tune" if cell is None else "%%tune")
    objective_cell = None
    with call.usage_errors():
        metric = _one_or_many(call["metric"])
        if cell is None:
            objective, space = _line_objective(call)
        else:
            if call.parsed.positional:
                raise call.fail(
                    f"unexpected {call.parsed.positional[0]!r}; the cell is the objective"
                )
            _reject_extra(call)
            from nbopt.tuning import CellObjective

            source = call.shell.transform_cell(cell)
            objective_cell = CellObjective(source, call.namespace, metric)
            objective, space, metric = objective_cell, objective_cell.space, objective_cell.metric
    call.reject_unused(_DEPENDENT)
    from nbopt.tuning import tune

    callbacks = [] if objective_cell is None else [objective_cell.track_best]
    try:
        arguments = call.arguments(metric=metric, callbacks=callbacks)
        arguments["mode"] = _one_or_many(call["mode"])
        return call.run(tune, objective, space, **arguments)
    finally:
        # Several objectives have no best trial: the notebook gets no trial's variables.
        if (
            objective_cell is not None
            and call.result is not None
            and not call.result.multi_objective
        ):
            best = call.result.best_trial
            objective_cell.publish(best.number if best else None, best.params if best else None)


def _one_or_many(words: str | tuple[str, ...] | None) -> str | list[str] | None:
    """``metric=``/``mode=`` as the Python API takes them: one name, or a list of several."""
    if words is None or isinstance(words, str):
        return words
    return words[0] if len(words) == 1 else list(words)


def _line_objective(call: MagicCall) -> tuple[Any, Any]:
    parsed, namespace = call.parsed, call.namespace
    if not parsed.positional:
        raise call.fail("name the function to tune, e.g. %tune train lr=loguniform(1e-4, 1e-1)")
    try:
        objective = Name("function", callable_check).parse(parsed.positional[0], namespace)
    except ValueError as exc:
        raise call.fail(str(exc)) from None
    dimensions = {}
    for key, raw in parsed.extra.items():
        try:
            value = evaluate_expression(raw, namespace)
        except ValueError as exc:
            raise call.fail(f"{key}=: {exc}") from None
        if not contains_dimension(value):
            # A constant whose key is nearly an option's name is more likely a typo.
            hint = did_you_mean(key, SCHEMA.options, cutoff=0.75)
            if hint:
                raise call.fail(f"unknown option {key!r}{hint}")
        dimensions[key] = value
    space = parsed["space"]
    if space is None:
        if not dimensions:
            raise call.fail(
                "give the search space as key=dimension pairs, e.g. lr=loguniform(1e-4, 1e-1), "
                "or as space=NAME (a dict of dimensions: from nbopt import choice, loguniform)"
            )
        return objective, dimensions
    if dimensions:
        if not isinstance(space, dict):
            kind = "a Hyperopt expression" if is_hyperopt_expression(space) else "not a dict"
            raise ConfigError(
                f"space= is {kind}, so key=dimension pairs cannot be added to it; "
                "give every dimension in one place"
            )
        return objective, {**space, **dimensions}
    return objective, space


def _reject_extra(call: MagicCall) -> None:
    for key in call.parsed.extra:
        hint = did_you_mean(key, SCHEMA.options)
        raise call.fail(
            f"unknown option {key!r}{hint}; in the cell form, put the dimensions in the cell"
        )
