"""Constraints on a search's metrics: ``constraint="latency <= 5"``.

A trial that breaks a constraint is feasible for nothing: it is never the best trial, never on
the front and never what ``pick()`` returns. The search learns the constraint through the
losses its algorithm sees: before each proposal, a trial that broke one is given, in every
objective, a loss worse than any feasible trial's, and the worse the further it was from
meeting it (:func:`penalised`). The model of the losses then rises across the boundary, and
proposals move back inside it. This needs no model of its own per constraint and works alike
for every algorithm (``auto``, ``tpe``, ``rand`` ...), at the price of a steep loss surface at
the boundary, which the GP's logarithmic compression of bad losses keeps in hand.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nbopt.errors import ConfigError
from nbopt.tuning._trial import Trial

_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
    "==": operator.eq,
}
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(<=|>=|==|<|>)\s*(\S+)\s*$")
# A broken constraint's loss: the worst feasible loss plus this share of the losses' span, and
# up to one more span for the largest violation.
PENALTY_FLOOR = 0.1


@dataclass(frozen=True)
class Constraint:
    """``latency <= 5``: a metric, a comparison, a bound."""

    metric: str
    op: str
    bound: float

    @classmethod
    def parse(cls, text: str) -> Constraint:
        """Read ``"NAME OP NUMBER"`` (OP one of ``<= >= < > ==``).

        Raises:
            ConfigError: anything else.
        """
        match = _CONSTRAINT.match(text) if isinstance(text, str) else None
        bound = _float(match.group(3)) if match else None
        if match is None or bound is None:
            raise ConfigError(
                f"cannot read the constraint {text!r}: write it as 'metric <= number' "
                "(or >=, <, >, ==)"
            )
        return cls(match.group(1), match.group(2), bound)

    def holds(self, value: float) -> bool:
        return _COMPARISONS[self.op](value, self.bound)

    def excess(self, value: float) -> float:
        """How far ``value`` is from meeting the constraint, relative to the bound's size
        (0 when it holds)."""
        if self.holds(value):
            return 0.0
        scale = abs(self.bound) if self.bound else 1.0
        return max(abs(value - self.bound) / scale, 1e-12)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


@dataclass(frozen=True)
class Constraints:
    """The constraints of one search; ``primary`` names the metric kept in ``trial.value``."""

    items: tuple[Constraint, ...]
    primary: str

    @classmethod
    def parse(cls, given: str | Sequence[str] | None, primary: str) -> Constraints | None:
        """The constraints ``constraint=`` asks for (a string, which may hold several separated
        by commas, or a list of strings); None when there are none.

        Raises:
            ConfigError: one that cannot be read, or constraints no value could meet together
                (``x >= 10`` and ``x <= 5``), before any trial runs.
        """
        if given is None:
            return None
        texts = given.split(",") if isinstance(given, str) else list(given)
        items = tuple(
            Constraint.parse(text) for text in texts if not isinstance(text, str) or text.strip()
        )
        if not items:
            return None
        for metric in dict.fromkeys(item.metric for item in items):
            _check_satisfiable([item for item in items if item.metric == metric])
        return cls(items, primary)

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(item.metric for item in self.items))

    @property
    def texts(self) -> tuple[str, ...]:
        return tuple(str(item) for item in self.items)

    def value(self, trial: Trial, metric: str) -> float | None:
        if metric == self.primary:
            return trial.value
        value = trial.metrics.get(metric)
        return value if value is not None and math.isfinite(value) else None

    def missing(self, trial: Trial) -> list[str]:
        """The metrics the constraints read that ``trial`` did not report."""
        return [metric for metric in self.metrics if self.value(trial, metric) is None]

    def broken(self, trial: Trial) -> list[Constraint]:
        """The constraints ``trial`` breaks (one whose metric it lacks counts as broken)."""
        return [
            item
            for item in self.items
            if (value := self.value(trial, item.metric)) is None or not item.holds(value)
        ]

    def feasible(self, trial: Trial) -> bool:
        return trial.usable and not self.broken(trial)

    def violation(self, trial: Trial) -> float:
        """The sum of the relative excesses of the broken constraints (0: feasible)."""
        total = 0.0
        for item in self.items:
            value = self.value(trial, item.metric)
            total += 1.0 if value is None else item.excess(value)
        return total

    def missing_error(self, trial: Trial) -> str | None:
        """The one-line error of a trial that lacks a metric the constraints read, or None."""
        missing = self.missing(trial)
        if not missing or not trial.usable:
            return None
        reads = [str(item) for item in self.items if item.metric in missing]
        return (
            f"KeyError: objective returned no {missing[0]!r}, which the constraint "
            f"{reads[0]} reads; its other metrics are {sorted(trial.metrics)}"
        )


def penalised(losses: Any, violations: Any) -> Any:
    """``losses`` (rows of trials, a column per objective; lower is better) with every row of
    positive ``violation`` replaced, in each column, by the worst feasible loss (the worst of
    all if none is feasible) plus ``PENALTY_FLOOR`` to ``1 + PENALTY_FLOOR`` times the column's
    span, growing with the row's violation."""
    import numpy as np

    losses = np.asarray(losses, dtype=float)
    violations = np.asarray(violations, dtype=float)
    broken = violations > 0
    if not broken.any():
        return losses
    feasible = losses[~broken] if (~broken).any() else losses
    worst = feasible.max(axis=0)
    span = losses.max(axis=0) - losses.min(axis=0)
    span = np.where(span > 0, span, np.maximum(np.abs(worst), 1.0))
    share = PENALTY_FLOOR + violations[broken] / violations[broken].max()
    out = losses.copy()
    out[broken] = worst + share[:, None] * span
    return out


def _check_satisfiable(items: list[Constraint]) -> None:
    """Raise ConfigError if no value meets every constraint of ``items`` (one metric's)."""
    low, low_strict, high, high_strict = -math.inf, False, math.inf, False
    for item in items:
        bound = item.bound
        if item.op in (">=", ">", "==") and (bound > low or (bound == low and item.op == ">")):
            low, low_strict = bound, item.op == ">"
        if item.op in ("<=", "<", "==") and (bound < high or (bound == high and item.op == "<")):
            high, high_strict = bound, item.op == "<"
    if low > high or (low == high and (low_strict or high_strict)):
        listed = " and ".join(str(item) for item in items)
        raise ConfigError(
            f"the constraints {listed} cannot all hold: no trial could meet them; "
            "loosen one of them"
        )


def _float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
