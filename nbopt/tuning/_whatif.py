"""What-if: the metric a Gaussian process of a finished search predicts anywhere in its space.

:class:`WhatIfModel` fits the model of ``algo=auto`` (:mod:`nbopt.tuning.gp`: a Matérn 5/2
kernel with a length scale per parameter, hyperparameters at their most probable values) on
the finished trials of any search, whatever algorithm proposed them. Unlike the search, which
warps its losses to find the best region, the explorer models the metric itself, standardised
linearly, so that a prediction is in the metric's units: its mean, and the standard deviation
of the value a new trial would report (the model's uncertainty and the trials' noise).

Settings are written in Hyperopt's encoding (``vals``: label -> value, the option's index for
a choice), which every trial records; :func:`params_to_vals` reads the user's form.

A search of several objectives has one model per metric, each fitted on the trials that
report that metric (:func:`metric_reader` reads a metric off a trial).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from nbopt.errors import ConfigError
from nbopt.space import Dimension, contains_dimension, is_hyperopt_expression, to_hyperopt
from nbopt.tuning._trial import Trial
from nbopt.tuning.gp._model import Embedding, GaussianProcess, fit
from nbopt.tuning.gp._space import SpaceTable

# Trials the hyperparameters are fitted on (a random subset beyond this) and the model is
# conditioned on: they bound the cost of building the explorer after a long search.
FIT_LIMIT = 200
CONDITION_LIMIT = 1000
MIN_TRIALS = 3
# Points of a partial-dependence curve of a numeric parameter.
CURVE_POINTS = 41
# The range shown of a normal or lognormal parameter: its prior's central 99.8%.
_UNBOUNDED_ENDS = np.array([0.001, 0.999])


class Prediction(NamedTuple):
    """The predicted metric: its mean and the standard deviation of a new trial's value."""

    mean: float
    sd: float


@dataclass(frozen=True)
class Parameter:
    """One parameter of the space as the explorer shows it.

    Attributes:
        label: Its path in the space (``"lr"``, ``"optim[0].momentum"``).
        kind: ``"float"``, ``"int"`` or ``"choice"``.
        low: Smallest value (numeric parameters).
        high: Largest value (numeric parameters).
        log: Whether the parameter is searched on a log scale.
        step: Rounding step (``q``, 1 for integers), or None for a continuous parameter.
        options: How each option of a choice reads; its value in ``vals`` is its index.
    """

    label: str
    kind: str
    low: float = 0.0
    high: float = 1.0
    log: bool = False
    step: float | None = None
    options: tuple[str, ...] = ()


class Curve(NamedTuple):
    """The partial dependence of a metric on one parameter, and the trials that set it.

    ``means[i]``/``sds[i]`` average the predictions over the tried configurations in which the
    parameter is active, with the parameter set to ``xs[i]``; ``tried`` holds ``(value,
    metric)`` of those trials; ``metric`` names the metric.
    """

    label: str
    xs: list[float]
    means: list[float]
    sds: list[float]
    tried: list[tuple[float, float]]
    metric: str = ""


def metric_reader(metric: str, primary: bool) -> Callable[[Trial], float | None]:
    """How a trial's value of ``metric`` is read: the trial's ``value`` for the metric a
    search optimises (or the first of several), its ``metrics`` entry for another one."""
    if primary:
        return lambda trial: trial.value
    return lambda trial: trial.metrics.get(metric)


def usable_count(trials: Sequence[Trial], read: Callable[[Trial], float | None]) -> int:
    """How many of ``trials`` a model reading ``read`` learns from."""
    return sum(1 for t in trials if _finite(t, read) is not None)


def _finite(trial: Trial, read: Callable[[Trial], float | None]) -> float | None:
    if not (trial.usable and trial.vals):
        return None
    value = read(trial)
    if value is None or not math.isfinite(value):
        return None
    return float(value)


class WhatIfModel:
    """A GP of one metric over the space, fitted on the usable trials of a search that
    report it.

    Args:
        space: The space the search searched.
        trials: The search's trials; those without a finite value of the metric are left out.
        metric: The metric's name.
        seed: Seed of the subsets drawn from a long search.
        read: How a trial's value of the metric is read (:func:`metric_reader`); by default
            the trial's ``value``.

    Raises:
        ConfigError: with fewer than three usable trials, or for a space ``algo=auto`` cannot
            model.
    """

    def __init__(
        self,
        space: Any,
        trials: Sequence[Trial],
        metric: str,
        seed: int = 0,
        read: Callable[[Trial], float | None] | None = None,
    ) -> None:
        self.space = space
        self.metric = metric
        read = read or metric_reader(metric, primary=True)
        pairs = [(t, value) for t in trials if (value := _finite(t, read)) is not None]
        if len(pairs) < MIN_TRIALS:
            raise ConfigError(
                f"the what-if model of {metric} needs at least {MIN_TRIALS} trials with a "
                f"value; this search has {len(pairs)}"
            )
        self.table = _table(space)
        self.trials = [t for t, _ in pairs]
        self.units = self.table.encode([t.vals for t in self.trials])
        values = np.array([value for _, value in pairs])
        self._values = values
        # Halved values: a linear scale of values near the largest float would overflow.
        self._centre = float(np.mean(values / 2.0)) * 2.0
        with np.errstate(over="ignore", invalid="ignore"):
            scale = float(np.std(values / 2.0)) * 2.0
        if not math.isfinite(scale):
            raise ConfigError("the trials' values span too wide a range for the what-if model")
        self._scale = scale if scale > 0 else 1.0
        y = (values - self._centre) / self._scale
        self.embedding = Embedding(
            [len(c.probabilities()) if c.categorical else 0 for c in self.table.columns]
        )
        rng = np.random.default_rng(seed)
        rows = _subset(len(y), FIT_LIMIT, rng)
        theta = fit(self.embedding, self.units[rows], y[rows], None)
        rows = _subset(len(y), CONDITION_LIMIT, rng)
        self.gp = GaussianProcess.condition(self.embedding, theta, self.units[rows], y[rows])
        self._noise = float(np.exp(theta[-1]))
        self._choices = _choice_options(space)

    @property
    def parameters(self) -> list[Parameter]:
        """Every parameter of the space, parents before the parameters their choice enables."""
        return [self._parameter(column) for column in self.table.columns]

    def predict_vals(self, vals: Mapping[str, Any]) -> Prediction:
        """The prediction at a setting in Hyperopt's encoding (inactive labels are ignored)."""
        (row,) = self._rows([vals])
        mean, sd = self._predict(row[None, :])
        return Prediction(float(mean[0]), float(sd[0]))

    def predict(self, params: Any) -> Prediction:
        """The prediction at ``params``, in the form the objective receives them."""
        return self.predict_vals(params_to_vals(self.space, params))

    def active(self, vals: Mapping[str, Any]) -> set[str]:
        """The labels that the choices of ``vals`` make part of the configuration."""
        return _active_labels(self.table, vals)

    def curve(self, label: str) -> Curve:
        """The partial dependence of the metric on ``label`` (see :class:`Curve`)."""
        if label not in self.table.index:
            raise ConfigError(f"unknown parameter {label!r}; known: {', '.join(self.table.index)}")
        j = self.table.index[label]
        column = self.table.columns[j]
        rows = self.units[~np.isnan(self.units[:, j])]
        if column.categorical:
            grid = np.arange(len(column.probabilities()), dtype=float)
        else:
            finite = column.finite_values()
            if finite is not None and len(finite) <= CURVE_POINTS:
                grid = column.to_unit(finite)
            else:
                # Through the values and back: rounded to q where the space rounds.
                grid = np.unique(column.to_unit(column.from_unit(np.linspace(0, 1, CURVE_POINTS))))
        means, sds = [], []
        for u in grid:
            probe = rows.copy()
            probe[:, j] = u
            mean, sd = self._predict(probe)
            means.append(float(mean.mean()))
            sds.append(float(sd.mean()))
        xs = column.from_unit(grid)
        tried = [
            (float(column.from_unit(np.array([u]))[0]), float(value))
            for u, value in zip(self.units[:, j], self._values, strict=True)
            if not math.isnan(u)
        ]
        return Curve(label, [float(x) for x in xs], means, sds, tried, self.metric)

    def _predict(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, sd = self.gp.predict(units)
        total = np.sqrt(sd**2 + self._noise)
        return self._centre + self._scale * mean, self._scale * total

    def _rows(self, settings: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return self.table.encode([_active_vals(self.table, vals) for vals in settings])

    def _parameter(self, column: Any) -> Parameter:
        if column.label in self._choices or column.categorical:
            options = self._choices.get(column.label) or tuple(
                f"option {i}" for i in range(len(column.probabilities()))
            )
            return Parameter(column.label, "choice", options=options)
        bounded = column.dist in ("uniform", "quniform", "loguniform", "qloguniform", "randint")
        ends = column.from_unit(np.array([0.0, 1.0]) if bounded else _UNBOUNDED_ENDS)
        low, high = float(min(ends)), float(max(ends))
        log = column.dist in ("loguniform", "qloguniform", "lognormal", "qlognormal")
        if column.dist == "randint":
            return Parameter(column.label, "int", low, high, log=False, step=1.0)
        step = column.args.get("q")
        integral = step is not None and all(float(v).is_integer() for v in (step, low, high))
        return Parameter(column.label, "int" if integral else "float", low, high, log, step)


def snap_vals(space: Any, vals: Mapping[str, Any]) -> dict[str, Any]:
    """A setting (Hyperopt's encoding) as the space produces it: its active labels only, each
    value rounded to the space's step (an integer where the space gives one).

    Raises:
        ConfigError: if an active label has no value.
    """
    table = _table(space)
    (row,) = table.encode([_active_vals(table, vals)])
    return table.configuration(table.snap(row[None, :])[0])


def _table(space: Any) -> SpaceTable:
    from hyperopt import base

    return SpaceTable.from_domain(base.Domain(_not_called, to_hyperopt(space)))


def _active_labels(table: SpaceTable, vals: Mapping[str, Any]) -> set[str]:
    values = np.array([[_as_float(vals.get(c.label, math.nan)) for c in table.columns]])
    (mask,) = table.active(values)
    return {c.label for c, on in zip(table.columns, mask, strict=True) if on}


def _active_vals(table: SpaceTable, vals: Mapping[str, Any]) -> dict[str, Any]:
    """The values of the labels ``vals`` makes active; ConfigError naming one it lacks."""
    active = _active_labels(table, vals)
    for column in table.columns:
        if column.label in active and column.label not in vals:
            raise ConfigError(f"the setting has no value for parameter {column.label!r}")
    return {label: value for label, value in vals.items() if label in active}


def params_to_vals(space: Any, params: Any) -> dict[str, Any]:
    """Hyperopt's encoding of ``params`` given in the objective's form (a choice's option
    itself, not its index). For a Hyperopt space, ``params`` must already be that encoding.

    Raises:
        ConfigError: naming the first parameter that is missing or not in the space.
    """
    if is_hyperopt_expression(space):
        if not isinstance(params, Mapping):
            raise ConfigError("with a Hyperopt space, give the setting as {label: value}")
        return dict(params)
    vals: dict[str, Any] = {}
    _collect(space, params, "", vals)
    return vals


def _collect(node: Any, value: Any, label: str, vals: dict[str, Any]) -> None:
    if isinstance(node, Dimension):
        if node.kind == "choice":
            index = _option_index(node, value, label)
            vals[label] = index
            _collect(node.args[index], value, f"{label}[{index}]", vals)
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise ConfigError(f"parameter {label!r} must be a number, got {value!r}")
            vals[label] = value
    elif isinstance(node, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"parameter {label or 'params'!r} must be a dict, got {value!r}")
        for key, child in node.items():
            if not contains_dimension(child):
                continue
            name = f"{label}.{key}" if label else str(key)
            if key not in value:
                raise ConfigError(f"the setting has no value for parameter {name!r}")
            _collect(child, value[key], name, vals)
    elif isinstance(node, (list, tuple)):
        if not isinstance(value, (list, tuple)) or len(value) != len(node):
            raise ConfigError(f"parameter {label!r} must be a list of {len(node)}, got {value!r}")
        for i, (child, item) in enumerate(zip(node, value, strict=True)):
            if contains_dimension(child):
                _collect(child, item, f"{label}[{i}]", vals)
    elif is_hyperopt_expression(node):
        raise ConfigError(
            f"parameter {label!r} is a raw Hyperopt node: give the whole setting in Hyperopt's "
            "encoding with a Hyperopt space"
        )


def _option_index(node: Dimension, value: Any, label: str) -> int:
    """The index of the option of a choice that ``value`` is (or, for an option holding
    dimensions, that ``value`` fits)."""
    for index, option in enumerate(node.args):
        if contains_dimension(option):
            try:
                _collect(option, value, f"{label}[{index}]", {})
            except ConfigError:
                continue
            if _constants_match(option, value):
                return index
        elif _same(option, value):
            return index
    shown = ", ".join(repr(o) for o in node.args)
    raise ConfigError(f"parameter {label!r}: {value!r} is not one of its options ({shown})")


def _constants_match(option: Any, value: Any) -> bool:
    if isinstance(option, Mapping):
        return all(
            contains_dimension(child) or (key in value and _same(child, value[key]))
            for key, child in option.items()
        )
    return True


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):  # True is not the option 1
        return a is b
    try:
        return bool(a == b)
    except Exception:  # an option whose == is not a plain truth value (an array)
        return a is b


def _choice_options(space: Any) -> dict[str, tuple[str, ...]]:
    """label -> how each option reads, for every choice of an nbopt space."""
    found: dict[str, tuple[str, ...]] = {}

    def walk(node: Any, label: str) -> None:
        if isinstance(node, Dimension) and node.kind == "choice":
            found[label] = tuple(_option_text(o) for o in node.args)
            for i, option in enumerate(node.args):
                walk(option, f"{label}[{i}]")
        elif isinstance(node, Mapping):
            for key, child in node.items():
                walk(child, f"{label}.{key}" if label else str(key))
        elif isinstance(node, (list, tuple)):
            for i, child in enumerate(node):
                walk(child, f"{label}[{i}]")

    if not is_hyperopt_expression(space):
        walk(space, "")
    return found


def _option_text(option: Any) -> str:
    if isinstance(option, Mapping):
        fixed = [f"{k}={v!r}" for k, v in option.items() if not contains_dimension(v)]
        return "{" + ", ".join(fixed or [str(k) for k in option]) + "}"
    return str(option)


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"a setting's value must be a number, got {value!r}") from None


def _subset(n: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.sort(rng.choice(n, size=limit, replace=False))


def _not_called(params: Any) -> Any:
    raise AssertionError("the what-if model reads the space; it never evaluates the objective")


def trial_runner(search: Any, call: Callable[[Any], Any]) -> Callable[[dict[str, Any]], Trial]:
    """A function that evaluates a setting (Hyperopt's encoding) as one more trial of
    ``search`` (saved in its study), calling the objective ``call``; it returns the trial.

    The run's live view and logs have closed with the run: the new trial is reported to no one.
    """
    from nbopt.events import EventBus

    def run(vals: dict[str, Any]) -> Trial:
        search.bus = EventBus()
        return search.evaluate(call, vals)

    return run
