"""Configurations in Hyperopt's encoding (``vals``: label -> number): checking saved ones
against the space, and turning them into the values the objective receives.

A study holds each trial's ``vals``. Before a resumed search uses them, every number is checked
against its dimension (within the bounds, on the ``q`` grid, an index of an existing option)
and every label against the space, so that a hand-edited or foreign record is refused with a
clear error instead of steering the search. Decoding a space made of nbopt's dimensions is done
directly (Hyperopt's general evaluator costs about 0.2 ms a configuration, seconds for a long
study); a raw Hyperopt space goes through Hyperopt's evaluator.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

from nbopt.space import Dimension, contains_raw_hyperopt

# Bounds are compared with this relative tolerance (a value written as JSON and read back,
# exp(log(x)) ...).
_TOLERANCE = 1e-9
# Hyperopt's distributions and the names of their arguments, in order.
_ARGUMENTS = {
    "uniform": ("low", "high"),
    "loguniform": ("low", "high"),
    "quniform": ("low", "high", "q"),
    "qloguniform": ("low", "high", "q"),
    "normal": ("mu", "sigma"),
    "lognormal": ("mu", "sigma"),
    "qnormal": ("mu", "sigma", "q"),
    "qlognormal": ("mu", "sigma", "q"),
    "categorical": ("p", "upper"),
}

Decoder = Callable[[Mapping[str, Any], list[str]], Any]


class Codec:
    """Checks and decodes configurations of one space (``domain``: its Hyperopt Domain)."""

    def __init__(self, space: Any, domain: Any) -> None:
        self._checks = {label: _check_of(node) for label, node in domain.params.items()}
        self._decode = None if contains_raw_hyperopt(space) else _decoder(space, "")

    def check(self, vals: Mapping[str, Any]) -> None:
        """Raise ValueError naming the label if ``vals`` cannot come from the space."""
        for label, value in vals.items():
            check = self._checks.get(label)
            if check is None:
                raise ValueError(f"{label!r} is not a parameter of the search space")
            plain = type(value) is float or type(value) is int  # as read from JSON: fast
            if not plain and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
                raise ValueError(f"{label}={value!r} is not a number")
            problem = check(float(value))
            if problem:
                raise ValueError(f"{label}={value!r} {problem}")

    @property
    def direct(self) -> bool:
        """True when :meth:`decode` works without Hyperopt's evaluator."""
        return self._decode is not None

    def decode(self, vals: Mapping[str, Any]) -> Any:
        """The configuration ``vals`` encodes, as the objective receives it; raises ValueError
        for a label the configuration needs but lacks, or one it has but does not use."""
        assert self._decode is not None
        used: list[str] = []
        try:
            value = self._decode(vals, used)
        except KeyError as exc:
            raise ValueError(f"the value of {exc.args[0]!r} is missing") from None
        if len(used) != len(vals):
            unused = sorted(set(vals) - set(used))
            raise ValueError(f"{', '.join(unused)} belong to options that were not chosen")
        return value


def _check_of(node: Any) -> Callable[[float], str | None]:
    """A check of one dimension's values, from its Hyperopt node (literal arguments only)."""
    arguments = _literal_arguments(node)
    kind = node.name
    if arguments is None:
        return _finite
    if kind in ("randint", "categorical"):
        return lambda value: _finite(value) or _check_index(kind, value, arguments)
    low, high, q = arguments.get("low"), arguments.get("high"), arguments.get("q")
    if kind in ("loguniform", "qloguniform"):
        low, high = math.exp(low), math.exp(high)
    if q is not None and low is not None:
        low, high = round(low / q) * q, round(high / q) * q
    floor = 0.0 if kind in ("lognormal", "qlognormal") else None
    if low is not None:
        slack = _TOLERANCE * max(1.0, abs(low), abs(high))
        floor, ceiling = low - slack, high + slack
    else:
        ceiling = None

    def check(value: float) -> str | None:
        if not -math.inf < value < math.inf:
            return "is not finite"
        if q is not None and not _on_grid(value, q):
            return f"is not a multiple of q={q:g}"
        if floor is not None and value < floor:
            return f"is below {low if low is not None else 0:g}, the dimension's lowest value"
        if ceiling is not None and value > ceiling:
            return f"is above {high:g}, the dimension's highest value"
        return None

    return check


def _finite(value: float) -> str | None:
    return None if -math.inf < value < math.inf else "is not finite"


def _check_index(kind: str, value: float, arguments: dict[str, Any]) -> str | None:
    if not value.is_integer():
        return "is not an integer"
    if kind == "categorical":
        p = arguments.get("p")
        upper = len(p) if isinstance(p, (list, tuple)) else arguments.get("upper")
        low = 0
    elif "high" in arguments:
        low, upper = arguments["low"], arguments["high"]
    else:
        low, upper = 0, arguments.get("upper", arguments.get("low"))
    if upper is not None and not low <= value < upper:
        return f"is outside {low} .. {upper - 1}"
    return None


def _literal_arguments(node: Any) -> dict[str, Any] | None:
    """The arguments of a distribution node by name, or None if any is an expression."""
    names = _ARGUMENTS.get(node.name)
    if node.name == "randint":
        names = ("upper",) if len(node.pos_args) == 1 else ("low", "high")
    if names is None:
        return None
    pairs = list(zip(names, node.pos_args, strict=False)) + list(node.named_args)
    arguments = {}
    for name, argument in pairs:
        if argument.name == "literal":
            arguments[name] = argument.obj
        elif argument.name == "pos_args" and all(a.name == "literal" for a in argument.pos_args):
            arguments[name] = [a.obj for a in argument.pos_args]
        else:
            return None
    return arguments


def _on_grid(value: float, q: float) -> bool:
    steps = value / q
    return abs(steps - round(steps)) <= _TOLERANCE * max(1.0, abs(steps))


def _decoder(node: Any, label: str) -> Decoder:
    """How to build the value of ``node`` (a part of the space) from ``vals``, as Hyperopt's
    evaluator of ``to_hyperopt(space)`` would: dicts with sorted keys, sequences as tuples."""
    if isinstance(node, Dimension):
        return _dimension_decoder(node, label)
    if isinstance(node, Mapping):
        parts = sorted(
            (key, _decoder(value, f"{label}.{key}" if label else str(key)))
            for key, value in node.items()
        )
        return lambda vals, used: {key: part(vals, used) for key, part in parts}
    if isinstance(node, (list, tuple)):
        items = [_decoder(value, f"{label}[{i}]") for i, value in enumerate(node)]
        return lambda vals, used: tuple(item(vals, used) for item in items)
    return lambda vals, used: node


def _dimension_decoder(dim: Dimension, label: str) -> Decoder:
    if dim.kind == "choice":
        options = [_decoder(option, f"{label}[{i}]") for i, option in enumerate(dim.args)]

        def choose(vals: Mapping[str, Any], used: list[str]) -> Any:
            used.append(label)
            return options[int(vals[label])](vals, used)

        return choose
    integral = dim.kind == "randint" or (
        dim.kind in ("quniform", "qloguniform")
        and all(isinstance(a, numbers.Integral) for a in dim.args)
    )
    convert = int if integral else float

    def number(vals: Mapping[str, Any], used: list[str]) -> Any:
        used.append(label)
        return convert(vals[label])

    return number
