"""Calling the user's objective with a configuration, and reading the metric it returns."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable
from typing import Any

from nbopt._numbers import as_number
from nbopt.errors import ConfigError, did_you_mean

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
    if keys and (takes_kwargs or set(keys) <= names):
        missing = [p.name for p in named if p.default is p.empty and p.name not in keys]
        if missing:
            raise ConfigError(
                f"{name}() needs {', '.join(missing)}, which the search space does not give; "
                "add them to the space or give them defaults"
            )
        return lambda params: fn(**params)
    positional = [p for p in parameters if p.kind != inspect.Parameter.VAR_KEYWORD]
    required = [p for p in positional if p.default is p.empty]
    if len(required) == 1 or (len(positional) == 1 and not required):
        return fn
    unknown = [key for key in keys if key not in names]
    hints = "".join(
        f"; {key!r} is not a parameter{hint}"
        for key in unknown
        if (hint := did_you_mean(key, names))
    )
    raise ConfigError(
        f"cannot call {name}{inspect.signature(fn)} with the space's parameters "
        f"{', '.join(keys)}{hints}: name the function's parameters after them, or take one dict"
    )


def read_metric(result: Any, metric: str | None) -> tuple[float, dict[str, float]]:
    """The objective's value and its other numeric outputs.

    A number (Python, NumPy or a one-element tensor) is the value. A dict holds it under
    ``metric``, or under ``"loss"``, or as its only number. Raises ValueError or TypeError,
    which fail the trial, for anything else or for NaN/inf.
    """
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
            raise TypeError(f"objective's {key!r} is not a number: {result[key]!r}")
        extras = {
            str(k): n for k, v in numeric.items() if k != key and (n := as_number(v)) is not None
        }
    else:
        value = as_number(result)
        if value is None:
            expected = f"a number or a dict holding {metric!r}" if metric else "a number or a dict"
            raise TypeError(f"objective returned {type(result).__name__}, expected {expected}")
    if not math.isfinite(value):
        raise ValueError(f"objective returned {value}")
    return value, extras
