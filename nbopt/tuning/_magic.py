"""``%tune`` and ``%%tune``: options, and the glue between the notebook and :func:`nbopt.tune`."""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError

from nbopt._magic_support import common_options, store_result, usage_errors, view_settings
from nbopt.errors import ConfigError, did_you_mean
from nbopt.options import (
    Bool,
    Duration,
    Enum,
    Int,
    Name,
    Option,
    Schema,
    Text,
    evaluate_expression,
)
from nbopt.space import contains_dimension, is_hyperopt_expression
from nbopt.tuning import BACKENDS
from nbopt.tuning._algorithms import ALGORITHMS
from nbopt.tuning._stopping import STOP_RULES
from nbopt.ui.events import Event, RunFinished

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

Space functions: uniform, loguniform, quniform, qloguniform, randint, choice, normal.
The result (a TuneResult) is returned, kept in _nbopt, and in out=NAME if given.
"""


def _callable(value: Any) -> str | None:
    return None if callable(value) else "is not callable"


_OFFERED = list(ALGORITHMS)

SCHEMA = Schema(
    "tune",
    [
        Option("max_evals", Int(1), None, "trials in all, counting a resumed study's (default 20)"),
        Option("timeout", Duration(), None, "start no new trial after this long"),
        Option("algo", Enum(*_OFFERED), "auto", "search algorithm"),
        Option("seed", Int(0), None, "seed, for a reproducible sequence of trials"),
        Option("metric", Text("name"), None, "the value to optimise: a dict key or cell variable"),
        Option("mode", Enum("min", "max"), "min", "minimise or maximise the metric"),
        Option(
            "study", Text("path"), None, "JSON file keeping every trial; re-running continues it"
        ),
        Option("restart", Bool(), False, "start the study over", flag=True),
        Option(
            "deterministic",
            Bool(),
            True,
            "same configuration, same value: never run a configuration twice",
        ),
        Option("space", Name("dict or Hyperopt space"), None, "a search space of the notebook"),
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
        Option("parallel", Int(1), 1, "backend=ray: trials running at once"),
        Option("address", Text("address"), None, "backend=ray: a cluster to join"),
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


def run_tune_magic(magics: Any, line: str, cell: str | None) -> Any:
    """Parse ``%tune``/``%%tune``, run the search, store and return its result."""
    shell = magics.shell
    namespace = shell.user_ns
    parsed = SCHEMA.parse(line, namespace)
    objective_cell = None
    magic = "tune" if cell is None else "%tune"  # the prefix of error lines: %tune or %%tune
    with usage_errors(magic):
        if cell is None:
            objective, space = _line_objective(parsed, namespace)
            metric = parsed["metric"]
        else:
            if parsed.positional:
                raise UsageError(
                    f"%%tune: unexpected {parsed.positional[0]!r}; the cell is the objective"
                )
            _reject_extra(parsed.extra)
            from nbopt.tuning._cell import CellObjective

            objective_cell = CellObjective(shell.transform_cell(cell), namespace, parsed["metric"])
            objective, space, metric = objective_cell, objective_cell.space, objective_cell.metric
    _reject_unused(parsed)
    progress, logdir = view_settings(magics, parsed)

    outcome: dict[str, Any] = {}

    def keep_result(event: Event) -> None:
        if isinstance(event, RunFinished):
            outcome["result"] = event.result

    callbacks = (
        [keep_result] if objective_cell is None else [objective_cell.track_best, keep_result]
    )
    from nbopt.tuning import tune

    try:
        with usage_errors(magic):
            result = tune(
                objective,
                space,
                max_evals=parsed["max_evals"],
                timeout=parsed["timeout"],
                algo=parsed["algo"],
                seed=parsed["seed"],
                metric=metric,
                mode=parsed["mode"],
                study=parsed["study"],
                restart=parsed["restart"],
                deterministic=parsed["deterministic"],
                stop=parsed["stop"],
                stop_warmup=parsed["stop_warmup"],
                stop_min_trials=parsed["stop_min_trials"],
                rung=parsed["rung"],
                backend=parsed["backend"],
                parallel=parsed["parallel"],
                address=parsed["address"],
                progress=progress,
                logdir=logdir,
                callbacks=callbacks,
            )
    finally:
        partial = outcome.get("result")
        if partial is not None:
            store_result(namespace, partial, parsed["out"])
            if objective_cell is not None:
                best = partial.best_trial
                objective_cell.publish(best.number if best else None, best.params if best else None)
    return result


def _line_objective(parsed: Any, namespace: dict[str, Any]) -> tuple[Any, Any]:
    if not parsed.positional:
        raise UsageError(
            "%tune: name the function to tune, e.g. %tune train lr=loguniform(1e-4, 1e-1)"
        )
    try:
        objective = Name("function", _callable).parse(parsed.positional[0], namespace)
    except ValueError as exc:
        raise UsageError(f"%tune: {exc}") from None
    dimensions = {}
    for key, raw in parsed.extra.items():
        try:
            value = evaluate_expression(raw, namespace)
        except ValueError as exc:
            raise UsageError(f"%tune {key}=: {exc}") from None
        if not contains_dimension(value):
            # A constant whose key is nearly an option's name is more likely a typo.
            hint = did_you_mean(key, SCHEMA.options, cutoff=0.75)
            if hint:
                raise UsageError(f"%tune: unknown option {key!r}{hint}")
        dimensions[key] = value
    space = parsed["space"]
    if space is None:
        if not dimensions:
            raise UsageError(
                "%tune: give the search space as key=dimension pairs, e.g. "
                "lr=loguniform(1e-4, 1e-1), or as space=NAME"
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


# Options that only mean something with another option's value.
_DEPENDENT = {
    "stop_warmup": ("stop", "median"),
    "stop_min_trials": ("stop", "median"),
    "rung": ("stop", "asha"),
    "parallel": ("backend", "ray"),
    "address": ("backend", "ray"),
}


def _reject_unused(parsed: Any) -> None:
    """A UsageError for an option that would be silently ignored (``rung=`` without asha)."""
    for option, (needs, value) in _DEPENDENT.items():
        if option in parsed.given and parsed[needs] != value:
            raise UsageError(f"%tune: {option}= only applies with {needs}={value}")


def _reject_extra(extra: dict[str, str]) -> None:
    for key in extra:
        hint = did_you_mean(key, SCHEMA.options)
        raise UsageError(
            f"%%tune: unknown option {key!r}{hint}; "
            "in the cell form, put the dimensions in the cell"
        )
