"""Calling the user's objective with a configuration, and reading the metric it returns."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable
from typing import Any

from nbopt._numbers import as_number
from nbopt.errors import ConfigError, did_you_mean
from nbopt.tuning._trial import Trial, TrialState

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def bind_objective(fn: Callable[..., Any], keys: Iterable[str] | None) -> Callable[[Any], Any]:
    """Return ``call(params)`` that calls ``fn`` the way its signature asks.

    ``fn(lr=..., layers=...)`` when its parameters name the space's keys (or it takes
    ``**kwargs``); ``fn(params)`` when it takes a single parameter of another name. ``keys``
    is None for a space that is not a dict of named parameters: then ``fn(params)``.
    """
    if not callable(fn):
        raise ConfigError(f"the objective must be callable, got {type(fn).__name__}")
    name = getattr(fn, "__name__", repr(fn))
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return fn  # a builtin or C callable: the dict convention is all we can offer
    if keys is None:
        return fn
    keys = list(keys)
    named = [p for p in parameters if p.kind in _NAMED]
    names = {p.name for p in named}
    takes_kwargs = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters)
    positional = [p for p in parameters if p.kind != inspect.Parameter.VAR_KEYWORD]
    required = [p for p in positional if p.default is p.empty]
    one_dict = len(required) == 1 or (len(positional) == 1 and not required)
    if keys and (takes_kwargs or set(keys) <= names):
        missing = [p.name for p in named if p.default is p.empty and p.name not in keys]
        if missing:
            raise ConfigError(
                f"{name}() needs {', '.join(missing)}, which the search space does not give; "
                "add them to the space or give them defaults"
            )
        return lambda params: fn(**params)
    unknown = [key for key in keys if key not in names]
    if one_dict and not names & set(keys):
        return fn  # fn(params): its one parameter is named after none of the space's keys
    hints = "".join(
        f"; {key!r} is not a parameter{hint}"
        for key in unknown
        if (hint := did_you_mean(key, names))
    )
    if names & set(keys):
        listed = ", ".join(repr(key) for key in unknown)
        plural = len(unknown) > 1
        hint = "".join(did_you_mean(key, names) for key in unknown[:1])
        raise ConfigError(
            f"{name}{inspect.signature(fn)} takes no parameter{'s' if plural else ''} {listed}"
            f"{hint}, which the search space gives: add {'them' if plural else 'it'} to the "
            f"function's parameters (or take **kwargs), or leave {'them' if plural else 'it'} "
            "out of the space"
        )
    raise ConfigError(
        f"cannot call {name}{inspect.signature(fn)} with the space's parameters "
        f"{', '.join(keys)}{hints}: name the function's parameters after them, or take one dict"
    )


def settle(trial: Trial, returned: Any, metric: str | tuple[str, ...] | None) -> None:
    """Set ``trial``'s value and status from what the objective returned: ``ok``, or
    ``failed`` with a one-line error (and no traceback: nbopt's frames would be all of it).
    ``metric`` is a tuple of names for several objectives: the first is the value, the others
    go into ``metrics``, and a result missing any of them fails the trial."""
    try:
        trial.value, extras = read_metric(returned, metric)
    except (TypeError, ValueError, KeyError, RuntimeError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        trial.status, trial.value = TrialState.FAILED, None
        trial.error = f"{type(exc).__name__}: {message}"
        return
    trial.metrics.update(extras)
    trial.status = TrialState.OK


def read_metric(
    result: Any, metric: str | tuple[str, ...] | None
) -> tuple[float, dict[str, float]]:
    """The objective's value and its other numeric outputs.

    A number (Python, NumPy or a one-element tensor) is the value. A dict holds it under
    ``metric``, or under ``"loss"``, or as its only number. With several metrics (a tuple),
    the result must be a dict holding every one: the first is the value. Raises ValueError,
    TypeError or KeyError, which fail the trial, for anything else or for NaN/inf; the message
    says in one line what the objective returned.
    """
    if isinstance(metric, tuple):
        return _read_metrics(result, metric)
    extras: dict[str, float] = {}
    if isinstance(result, dict):
        if result.get("status") == "fail":
            raise RuntimeError(f"objective reported status 'fail': {result.get('error', '')}")
        numeric = {k: v for k, v in result.items() if as_number(v) is not None}
        key = metric or ("loss" if "loss" in result else None)
        if key is None:
            if len(numeric) != 1:
                raise ValueError(
                    f"objective returned a dict with keys {sorted(map(str, result))}; "
                    "say which one to optimise with metric="
                )
            key = next(iter(numeric))
        if key not in result:
            raise KeyError(
                f"objective returned no {key!r}; its keys are {sorted(map(str, result))}"
            )
        value = as_number(result[key])
        if value is None:
            raise TypeError(f"objective's {key!r} is not a number: {_described(result[key])}")
        extras = {
            str(k): n for k, v in numeric.items() if k != key and (n := as_number(v)) is not None
        }
    else:
        value = as_number(result)
        if value is None:
            expected = f"a number or a dict holding {metric!r}" if metric else "a number or a dict"
            raise TypeError(f"objective returned {_described(result)}, expected {expected}")
    if not math.isfinite(value):
        raise ValueError(f"objective returned {value}")
    return value, extras


def _read_metrics(result: Any, names: tuple[str, ...]) -> tuple[float, dict[str, float]]:
    """Every metric of a multi-objective trial: the first, and the numbers of the dict."""
    listed = ", ".join(repr(name) for name in names)
    if not isinstance(result, dict):
        raise TypeError(
            f"objective returned {_described(result)}, expected a dict holding {listed}"
        )
    value, extras = read_metric(result, names[0])
    for name in names[1:]:
        if name not in result:
            raise KeyError(
                f"objective returned no {name!r} (the metrics are {listed}); "
                f"its keys are {sorted(map(str, result))}"
            )
        number = extras.get(name)
        if number is None:
            raise TypeError(f"objective's {name!r} is not a number: {_described(result[name])}")
        if not math.isfinite(number):
            raise ValueError(f"objective returned {name}={number}")
    return value, extras


def _described(value: Any) -> str:
    """``None``, ``str '0.5'``, ``Tensor of shape (2,)``: what a value is, in a few words."""
    if value is None:
        return "None"
    shape = getattr(value, "shape", None)
    if shape is not None and not isinstance(shape, type) and len(tuple(shape)) > 0:
        return f"{type(value).__name__} of shape {tuple(shape)} (a number has one element)"
    text = repr(value)
    text = text if len(text) <= 60 else text[:59] + "…"
    return f"{type(value).__name__} {text}"
