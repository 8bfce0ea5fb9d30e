"""Search-space functions: ``uniform``, ``loguniform``, ``choice`` ... and their Hyperopt form.

A space is a dict mapping parameter names to dimensions, constants, or nested dicts/lists of
them; ``choice`` options may themselves be dicts with dimensions inside, as in Hyperopt.
Bounds are given in the parameter's own units (``loguniform(1e-4, 1e-1)``, unlike
``hp.loguniform``, which takes logarithms). ``choice`` yields the chosen value, never its index.
Integer bounds give integers: ``randint(1, 4)`` is 1, 2 or 3 and ``quniform(16, 128, 16)`` is an
``int``.

Example:
    >>> from nbopt import choice, loguniform
    >>> space = {"lr": loguniform(1e-4, 1e-1), "act": choice("relu", "tanh")}
"""

from __future__ import annotations

import hashlib
import itertools
import math
import numbers
import re
from collections.abc import Iterator, Mapping
from typing import Any

from nbopt.errors import ConfigError

SPACE_FUNCTIONS = (
    "uniform",
    "loguniform",
    "quniform",
    "qloguniform",
    "randint",
    "choice",
    "normal",
)
_DISCRETE = frozenset({"choice", "randint", "quniform", "qloguniform"})


class Dimension:
    """One searchable parameter. Build it with the space functions of this module."""

    __slots__ = ("args", "kind")

    def __init__(self, kind: str, args: tuple[Any, ...]) -> None:
        self.kind = kind
        self.args = args

    def __repr__(self) -> str:
        return f"{self.kind}({', '.join(repr(a) for a in self.args)})"

    @property
    def is_discrete(self) -> bool:
        return self.kind in _DISCRETE

    def grid_values(self) -> list[Any]:
        """Every value of a discrete dimension, as Hyperopt encodes it (an index for choice)."""
        if self.kind == "choice":
            return list(range(len(self.args)))
        if self.kind == "randint":
            low, high = self.args
            return list(range(low, high))
        if self.kind in ("quniform", "qloguniform"):
            low, high, q = self.args
            first, last = round(low / q), round(high / q)
            return [float(k * q) for k in range(first, last + 1)]
        raise ConfigError(f"{self!r} is continuous and has no finite set of values")

    def grid_count(self) -> int:
        """How many values a discrete dimension has (a choice's options count as one each)."""
        if self.kind == "choice":
            return len(self.args)
        if self.kind == "randint":
            return self.args[1] - self.args[0]
        if self.kind in ("quniform", "qloguniform"):
            low, high, q = self.args
            return round(high / q) - round(low / q) + 1
        raise ConfigError(f"{self!r} is continuous and has no finite set of values")


# Bounds beyond this magnitude are not a search range: their difference overflows, or their
# logarithm leaves the floats Hyperopt samples in.
LIMIT = 1e300


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or abs(value) > LIMIT:
        raise ConfigError(f"{name} must be a finite number within ±{LIMIT:g}, got {value!r}")
    return value


def _bounds(kind: str, low: Any, high: Any, *, positive: bool = False) -> None:
    _number(f"{kind}() low", low)
    _number(f"{kind}() high", high)
    if not low < high:
        raise ConfigError(f"{kind}(low, high) needs low < high, got ({low!r}, {high!r})")
    if positive and low < 1 / LIMIT:
        raise ConfigError(
            f"{kind}(low, high) needs 0 < low (at least {1 / LIMIT:g}), got low={low!r}"
        )


def _step(kind: str, low: float, high: float, q: Any) -> None:
    if _number(f"{kind}() q", q) <= 0:
        raise ConfigError(f"{kind}() q must be positive, got {q!r}")
    if not math.isfinite((high - low) / q):
        raise ConfigError(f"{kind}() q={q!r} is too small for the range [{low!r}, {high!r}]")


def uniform(low: float, high: float) -> Dimension:
    """A float drawn uniformly from ``[low, high]``."""
    _bounds("uniform", low, high)
    return Dimension("uniform", (low, high))


def loguniform(low: float, high: float) -> Dimension:
    """A positive float whose log is uniform: ``loguniform(1e-4, 1e-1)`` for a learning rate."""
    _bounds("loguniform", low, high, positive=True)
    return Dimension("loguniform", (low, high))


def quniform(low: float, high: float, q: float) -> Dimension:
    """``round(uniform(low, high) / q) * q``; an int when ``low``, ``high`` and ``q`` are ints."""
    _bounds("quniform", low, high)
    _step("quniform", low, high, q)
    return Dimension("quniform", (low, high, q))


def qloguniform(low: float, high: float, q: float) -> Dimension:
    """``round(loguniform(low, high) / q) * q``; an int when all three are ints (batch sizes)."""
    _bounds("qloguniform", low, high, positive=True)
    _step("qloguniform", low, high, q)
    return Dimension("qloguniform", (low, high, q))


def randint(low: int, high: int | None = None) -> Dimension:
    """An int with ``low <= x < high`` (``randint(n)``: ``0 <= x < n``), as NumPy and Hyperopt."""
    if high is None:
        low, high = 0, low
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ConfigError(f"randint() {name} must be an int, got {value!r}")
    if not low < high:
        raise ConfigError(f"randint(low, high) needs low < high, got ({low!r}, {high!r})")
    return Dimension("randint", (int(low), int(high)))


def choice(*options: Any) -> Dimension:
    """One of ``options`` (the value itself, never its index); ``choice([a, b])`` also works.

    Options may be dicts holding further dimensions, which are searched only when chosen.
    """
    if len(options) == 1 and isinstance(options[0], (list, tuple)):
        options = tuple(options[0])
    if not options:
        raise ConfigError("choice() needs at least one option")
    return Dimension("choice", tuple(options))


def normal(mu: float, sigma: float) -> Dimension:
    """A float drawn from a normal distribution with mean ``mu`` and deviation ``sigma``."""
    _number("normal() mu", mu)
    if _number("normal() sigma", sigma) <= 0:
        raise ConfigError(f"normal() sigma must be positive, got {sigma!r}")
    return Dimension("normal", (mu, sigma))


def is_hyperopt_expression(space: Any) -> bool:
    """True for a Hyperopt ``pyll`` expression (what ``hp.*`` returns), without importing it."""
    return type(space).__module__.startswith("hyperopt.pyll")


def _child_label(parent: str, key: Any) -> str:
    return f"{parent}.{key}" if parent else str(key)


def to_hyperopt(space: Any) -> Any:
    """Turn a space (nbopt dimensions, constants, raw ``hp.*`` nodes) into Hyperopt's form.

    Labels are the parameter paths (``"lr"``, ``"optim.momentum"``, ``"model[1].width"``).
    """
    from hyperopt import hp
    from hyperopt.pyll import scope

    def convert(node: Any, label: str) -> Any:
        if isinstance(node, Dimension):
            return _dimension_to_hyperopt(node, label, convert, hp, scope)
        if isinstance(node, Mapping):
            return {key: convert(value, _child_label(label, key)) for key, value in node.items()}
        if isinstance(node, (list, tuple)):
            return type(node)(convert(value, f"{label}[{i}]") for i, value in enumerate(node))
        return node

    return convert(space, "")


def _dimension_to_hyperopt(dim: Dimension, label: str, convert, hp, scope) -> Any:
    if not label:
        raise ConfigError("a search space must be a dict of named parameters")
    kind, args = dim.kind, dim.args
    integral = all(isinstance(a, numbers.Integral) for a in args)
    if kind == "uniform":
        return hp.uniform(label, *args)
    if kind == "loguniform":
        return hp.loguniform(label, math.log(args[0]), math.log(args[1]))
    if kind == "quniform":
        node = hp.quniform(label, *args)
        return scope.int(node) if integral else node
    if kind == "qloguniform":
        node = hp.qloguniform(label, math.log(args[0]), math.log(args[1]), args[2])
        return scope.int(node) if integral else node
    if kind == "randint":
        return scope.int(hp.randint(label, *args))
    if kind == "choice":
        return hp.choice(label, [convert(opt, f"{label}[{i}]") for i, opt in enumerate(args)])
    if kind == "normal":
        return hp.normal(label, *args)
    raise ConfigError(f"unknown dimension kind {kind!r}")


def contains_raw_hyperopt(node: Any) -> bool:
    """True if ``node`` is or holds a Hyperopt expression (an ``hp.*`` node), not only nbopt's
    dimensions and constants."""
    if is_hyperopt_expression(node):
        return True
    if isinstance(node, Dimension):
        return node.kind == "choice" and any(contains_raw_hyperopt(o) for o in node.args)
    if isinstance(node, Mapping):
        return any(contains_raw_hyperopt(v) for v in node.values())
    if isinstance(node, (list, tuple)):
        return any(contains_raw_hyperopt(v) for v in node)
    return False


def contains_dimension(node: Any) -> bool:
    """True if ``node`` is or holds a searchable dimension (nbopt's or a raw Hyperopt one)."""
    if isinstance(node, Dimension) or is_hyperopt_expression(node):
        return True
    if isinstance(node, Mapping):
        return any(contains_dimension(v) for v in node.values())
    if isinstance(node, (list, tuple)):
        return any(contains_dimension(v) for v in node)
    return False


def grid_size(space: Any) -> int | None:
    """Number of distinct configurations, or None when some dimension is continuous."""
    if isinstance(space, Dimension):
        if space.kind == "choice":
            sizes = [grid_size(opt) for opt in space.args]
            return None if None in sizes else sum(sizes)
        return space.grid_count() if space.is_discrete else None
    if is_hyperopt_expression(space):
        return None
    children: Any = ()
    if isinstance(space, Mapping):
        children = space.values()
    elif isinstance(space, (list, tuple)):
        children = space
    total = 1
    for child in children:
        size = grid_size(child)
        if size is None:
            return None
        total *= size
    return total


def grid_points(space: Any) -> Iterator[dict[str, Any]]:
    """Yield every configuration of a discrete space, in Hyperopt's label -> value encoding."""
    yield from _grid(space, "")


def _grid(node: Any, label: str) -> Iterator[dict[str, Any]]:
    if isinstance(node, Dimension):
        if node.kind == "choice":
            for index, option in enumerate(node.args):
                for sub in _grid(option, f"{label}[{index}]"):
                    yield {label: index, **sub}
        elif node.is_discrete:
            for value in node.grid_values():
                yield {label: value}
        else:
            raise ConfigError(
                f"algo=grid needs discrete dimensions, but {label!r} is {node!r}, which is "
                "continuous; use choice(...), randint(...) or quniform(...) for it"
            )
        return
    if is_hyperopt_expression(node):
        raise ConfigError(
            "algo=grid needs a space built with nbopt's space functions "
            "(choice, randint, quniform); it cannot enumerate a raw Hyperopt expression"
        )
    if isinstance(node, Mapping):
        parts = [list(_grid(v, _child_label(label, k))) for k, v in node.items()]
    elif isinstance(node, (list, tuple)):
        parts = [list(_grid(v, f"{label}[{i}]")) for i, v in enumerate(node)]
    else:
        yield {}
        return
    for combo in itertools.product(*parts):
        merged: dict[str, Any] = {}
        for part in combo:
            merged.update(part)
        yield merged


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def fingerprint(hyperopt_space: Any) -> str:
    """A stable digest of a Hyperopt space, to tell whether a saved study used the same one."""
    from hyperopt import pyll

    text = _ADDRESS.sub("", str(pyll.as_apply(hyperopt_space)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
