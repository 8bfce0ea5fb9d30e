"""How ``algo=auto`` sees a Hyperopt space: one column of a numeric table per label.

Every label of the space is a column. A numeric label holds its *unit coordinate*: the
quantile of its prior (``uniform`` and ``quniform`` linearly, ``loguniform`` and
``qloguniform`` in log space, ``randint`` as the centre of its integer's cell, ``normal`` and
``lognormal`` through the normal CDF), so the unit cube is the prior and a uniform draw in it is
a draw from the prior. A choice (``hp.choice``'s index, ``hp.pchoice``) holds its option's
index, and is categorical unless its options are three or more numbers in increasing or
decreasing order (``choice(16, 32, 64, 128)``): those are ordinal, with the unit coordinate of
the index as for ``randint``. A label that a choice made inactive holds NaN. Rows are
*snapped*: decoded to the values Hyperopt would produce (rounded to ``q``, integral
``randint``) and encoded again, so that equal configurations have equal rows.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from hyperopt import pyll
from scipy.special import ndtr, ndtri

from nbopt.errors import ConfigError

# Unit coordinates of unbounded priors (normal, lognormal) stay this far inside (0, 1).
_TAIL = 1e-4
# Floats on each side of exp(log(b)) searched for the bound b itself.
_ULPS = 32
_BOUNDED = ("uniform", "quniform", "loguniform", "qloguniform")
_NORMAL = ("normal", "qnormal", "lognormal", "qlognormal")
_LOG = ("loguniform", "qloguniform", "lognormal", "qlognormal")
_KNOWN = (*_BOUNDED, *_NORMAL, "randint", "categorical")


@dataclass(frozen=True)
class Column:
    """One label: its distribution, arguments and when it is active.

    ``conditions`` is a tuple of conjunctions of ``(choice label, index)``; the label is active
    when all the pairs of one conjunction hold. ``((),)`` means always. Each conjunction holds
    the whole path from the root, so it can be checked without knowing which choices are active.
    """

    label: str
    dist: str
    args: dict[str, Any]
    categorical: bool
    conditions: tuple[tuple[tuple[str, int], ...], ...]

    def probabilities(self) -> np.ndarray:
        """Prior probability of each option of a categorical column."""
        if self.dist == "categorical":
            p = np.asarray(self.args["p"], dtype=float).ravel()
            return p / p.sum()
        return np.full(self.args["n"], 1.0 / self.args["n"])

    def finite_values(self) -> np.ndarray | None:
        """Every value the label can take, or None if it takes infinitely many."""
        a, dist = self.args, self.dist
        if self.categorical:
            return np.arange(len(self.probabilities()), dtype=float)
        if dist == "randint":
            return np.arange(a["low"], a["high"], dtype=float)
        if dist == "quniform":
            first, last = round(a["low"] / a["q"]), round(a["high"] / a["q"])
            return np.arange(first, last + 1) * float(a["q"])
        if dist == "qloguniform":
            first, last = round(math.exp(a["low"]) / a["q"]), round(math.exp(a["high"]) / a["q"])
            return np.arange(first, last + 1) * float(a["q"])
        return None

    @functools.cached_property
    def exp_bounds(self) -> tuple[float, float]:
        """The bounds of a ``loguniform``, of which Hyperopt keeps only the logarithms:
        exp(log(0.1)) is 0.10000000000000002, and the GP does propose the bounds."""
        low, high = self.args["low"], self.args["high"]
        return _exp_of_bound(low, lower=True), _exp_of_bound(high, lower=False)

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        """The values (Hyperopt's encoding) at unit coordinates ``u``."""
        a, dist = self.args, self.dist
        if self.categorical:
            return u
        if dist == "randint":
            width = a["high"] - a["low"]
            return a["low"] + np.clip(np.floor(u * width), 0, width - 1)
        if dist in _BOUNDED:
            x = (1.0 - u) * a["low"] + u * a["high"]  # exactly low and high at 0 and 1
        else:
            x = a["mu"] + a["sigma"] * ndtri(np.clip(u, _TAIL, 1 - _TAIL))
        if dist in _LOG:
            x = np.exp(x)
        if dist == "loguniform":
            x = np.clip(x, *self.exp_bounds)
        if dist.startswith("q"):
            x = np.round(x / a["q"]) * a["q"]
        return x

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        """The unit coordinates of values ``x`` (the inverse of :meth:`from_unit`)."""
        a, dist = self.args, self.dist
        if self.categorical:
            return x
        if dist == "randint":
            return (x - a["low"] + 0.5) / (a["high"] - a["low"])
        if dist in _LOG:
            with np.errstate(divide="ignore"):
                x = np.log(np.maximum(x, 0.0))
        if dist in _BOUNDED:
            return np.clip((x - a["low"]) / (a["high"] - a["low"]), 0.0, 1.0)
        return np.clip(ndtr((x - a["mu"]) / a["sigma"]), _TAIL, 1 - _TAIL)


class SpaceTable:
    """The columns of a Hyperopt ``Domain`` and conversions between rows and configurations."""

    def __init__(self, columns: list[Column]) -> None:
        # Parents before children: a child's shortest path is longer than its parent's.
        self.columns = sorted(columns, key=lambda c: (min(map(len, c.conditions)), c.label))
        self.index = {column.label: i for i, column in enumerate(self.columns)}
        self.categorical = np.array([c.categorical for c in self.columns], dtype=bool)

    @classmethod
    def from_domain(cls, domain: Any) -> SpaceTable:
        """The table of a Hyperopt ``Domain``'s labels; ConfigError for a node it cannot search."""
        conditions: dict[str, set[tuple[tuple[str, int], ...]]] = {}
        choices: dict[str, bool] = {}
        _walk(domain.expr, (), conditions, choices)
        columns = []
        for label, node in domain.params.items():
            args = {
                name: pyll.rec_eval(arg)
                for name, arg in node.arg.items()
                if arg is not pyll.base.MissingArgument and name not in ("rng", "size")
            }
            if node.name == "randint" and "high" not in args:
                args = {"low": 0, "high": args["low"]}
            if node.name not in _KNOWN:
                raise ConfigError(
                    f"algo=auto cannot search {label!r}, a Hyperopt {node.name} node; "
                    "use algo=tpe or algo=rand for it"
                )
            # A choice of numbers in order (batch sizes) is ordinal: its index is a number.
            categorical = node.name == "categorical" or not choices.get(label, True)
            if categorical and node.name == "randint":
                args = {"n": args["high"] - args["low"]}
            found = conditions.get(label, {()})
            columns.append(Column(label, node.name, args, categorical, tuple(sorted(found))))
        return cls(columns)

    @property
    def width(self) -> int:
        return len(self.columns)

    def encode(self, configurations: list[dict[str, Any]]) -> np.ndarray:
        """Rows of unit coordinates for configurations in Hyperopt's label -> value encoding."""
        values = np.full((len(configurations), self.width), np.nan)
        for row, vals in enumerate(configurations):
            for label, value in vals.items():
                if label in self.index:
                    values[row, self.index[label]] = float(value)
        return self._values_to_unit(values)

    def snap(self, units: np.ndarray) -> np.ndarray:
        """Rows as Hyperopt would produce them: rounded, and NaN where a choice deactivates."""
        return self._values_to_unit(self.values(units))

    def values(self, units: np.ndarray) -> np.ndarray:
        """Hyperopt's values of the rows, NaN where inactive."""
        values = np.empty_like(units)
        for j, column in enumerate(self.columns):
            values[:, j] = column.from_unit(units[:, j])
        return np.where(self.active(values), values, np.nan)

    def active(self, values: np.ndarray) -> np.ndarray:
        """Which labels each row activates, from its choices' indices."""
        active = np.ones(values.shape, dtype=bool)
        for j, column in enumerate(self.columns):
            if column.conditions == ((),):
                continue
            mask = np.zeros(len(values), dtype=bool)
            for conjunction in column.conditions:
                held = np.ones(len(values), dtype=bool)
                for label, index in conjunction:
                    held &= values[:, self.index[label]] == index
                mask |= held
            active[:, j] = mask
        return active

    def holds(self, values: np.ndarray, j: int) -> bool:
        """Whether the choices in one row of values activate column ``j``."""
        return any(
            all(values[self.index[label]] == index for label, index in conjunction)
            for conjunction in self.columns[j].conditions
        )

    def configuration(self, units: np.ndarray) -> dict[str, Any]:
        """The label -> value encoding of one row (its active labels only)."""
        (values,) = self.values(units[None, :])
        vals: dict[str, Any] = {}
        for column, value in zip(self.columns, values, strict=True):
            if not math.isnan(value):
                integral = column.categorical or column.dist == "randint"
                vals[column.label] = int(value) if integral else float(value)
        return vals

    def draw(self, rng: np.random.Generator, n: int, *, sobol: bool = False) -> np.ndarray:
        """``n`` rows from the prior, every label filled (scrambled Sobol points if ``sobol``)."""
        if sobol:
            from scipy.stats import qmc

            m = max(1, math.ceil(math.log2(max(n, 2))))
            cube = qmc.Sobol(self.width, scramble=True, seed=rng).random_base2(m)[:n]
            return self.from_cube(cube)
        return self.from_cube(rng.random((n, self.width)))

    def from_cube(self, cube: np.ndarray) -> np.ndarray:
        """Rows from points of the unit cube, every label filled: a categorical label takes
        the option whose share of the prior's probability holds the point's coordinate."""
        rows = cube.copy()
        for j, column in enumerate(self.columns):
            if column.categorical:
                edges = np.cumsum(column.probabilities())
                index = np.searchsorted(edges, rows[:, j], side="right")
                rows[:, j] = np.minimum(index, len(edges) - 1)
        return rows

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` random configurations from the prior, as snapped rows."""
        return self.snap(self.draw(rng, n))

    def enumerate(self, limit: int) -> np.ndarray | None:
        """Every configuration as a row, if the space is finite with at most ``limit``."""
        options = [column.finite_values() for column in self.columns]
        if any(values is None for values in options):
            return None
        rows: list[np.ndarray] = []
        for values in _product(self, options, limit):
            rows.append(values)
            if len(rows) > limit:
                return None
        return self._values_to_unit(np.array(rows, dtype=float).reshape(-1, self.width))

    def _values_to_unit(self, values: np.ndarray) -> np.ndarray:
        units = np.empty_like(values)
        for j, column in enumerate(self.columns):
            units[:, j] = column.to_unit(values[:, j])
        return np.where(self.active(values), units, np.nan)


def _exp_of_bound(log_bound: float, *, lower: bool) -> float:
    """The bound whose logarithm is ``log_bound``: of the floats near exp(log_bound) with exactly
    that logarithm (a user's bound b given as log(b) is one of them), the shortest to write,
    else the innermost; exp(log_bound) itself if none has it."""
    guess = math.exp(log_bound)
    if not 0.0 < guess < math.inf:
        return guess
    near = [guess]
    for direction in (0.0, math.inf):
        value = guess
        for _ in range(_ULPS):
            value = math.nextafter(value, direction)
            near.append(value)
    exact = [value for value in near if math.log(value) == log_bound]
    return min(exact, key=lambda v: (len(repr(v)), -v if lower else v), default=guess)


def row_keys(units: np.ndarray) -> list[bytes]:
    """Hashable identities of rows (10 significant digits: unit rounding noise is not new)."""
    return [row.tobytes() for row in np.nan_to_num(np.round(units, 10), nan=-1.0)]


def unseen_rows(rows: np.ndarray, seen: set[bytes]) -> np.ndarray:
    """The rows not in ``seen``, each once."""
    keep, unique = [], set(seen)
    for i, key in enumerate(row_keys(rows)):
        if key not in unique:
            unique.add(key)
            keep.append(i)
    return rows[keep]


def _product(table: SpaceTable, options: list[Any], limit: int) -> Iterator[np.ndarray]:
    """Value rows of every configuration, choosing each active column's value in turn."""
    row = np.full(table.width, np.nan)

    def fill(j: int) -> Iterator[np.ndarray]:
        if j == table.width:
            yield row.copy()
            return
        if table.holds(row, j):
            for value in options[j]:
                row[j] = value
                yield from fill(j + 1)
            row[j] = np.nan
        else:
            yield from fill(j + 1)

    yield from itertools.islice(fill(0), limit + 1)


def _ordered_numbers(options: list[Any]) -> bool:
    """True for options that are at least 3 plain numbers in increasing or decreasing order."""
    if len(options) < 3 or not all(o.name == "literal" for o in options):
        return False
    values = [o.obj for o in options]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return False
    steps = np.diff(np.asarray(values, dtype=float))
    return bool(np.all(steps > 0) or np.all(steps < 0))


def _walk(node: Any, path: tuple, conditions: dict[str, set], choices: dict[str, bool]) -> None:
    """Record, for each label, the paths of choices that lead to it, and for each choice
    whether its options are ordered numbers."""
    if node.name == "switch":
        selector, *options = node.inputs()
        if selector.name == "hyperopt_param":
            label = selector.arg["label"].obj
            choices[label] = _ordered_numbers(options)
            _walk(selector, path, conditions, choices)
            for index, option in enumerate(options):
                _walk(option, (*path, (label, index)), conditions, choices)
            return
    if node.name == "hyperopt_param":
        conditions.setdefault(node.arg["label"].obj, set()).add(path)
    for child in node.inputs():
        _walk(child, path, conditions, choices)
