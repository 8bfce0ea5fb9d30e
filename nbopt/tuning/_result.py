"""``TuneResult``: what a search returns and what ``%tune`` stores in ``out=`` and ``_nbopt``."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nbopt.errors import ConfigError, did_you_mean
from nbopt.tuning._constraints import Constraint, Constraints
from nbopt.tuning._objectives import Objectives, front, hypervolume
from nbopt.tuning._trial import Trial, TrialState
from nbopt.ui import format as fmt
from nbopt.ui.format import param_items

if TYPE_CHECKING:
    from nbopt.tuning._whatif import Prediction, WhatIfModel


def best_trial(trials: Sequence[Trial], mode: str) -> Trial | None:
    """The usable trial with the lowest value (``mode="min"``) or the highest (``"max"``)."""
    usable = [t for t in trials if t.usable]
    if not usable:
        return None
    sign = 1.0 if mode == "min" else -1.0
    return min(usable, key=lambda t: (sign * t.value, t.number))


@dataclass
class TuneResult:
    """The outcome of a search.

    Attributes:
        trials: Every trial, in order, including failed and interrupted ones.
        metric: Name of the optimised metric.
        mode: ``"min"`` or ``"max"``.
        status: ``"done"`` or ``"interrupted"``.
        study: Path of the study file, if the search was named.
        algo: The search algorithm.
        space: The search space, which the what-if model needs (:func:`nbopt.tune` sets it).
        objectives: With several objectives, each metric and its mode (``"min"``/``"max"``),
            in order; empty for one. ``metric`` and ``mode`` are then the first.
        constraints: The search's constraints (``"latency <= 5"``); a trial that breaks one
            is never the best, on the front, or picked.
    """

    trials: list[Trial]
    metric: str
    mode: str
    status: str
    study: str | None = None
    algo: str = ""
    space: Any = field(default=None, repr=False, compare=False)
    objectives: dict[str, str] = field(default_factory=dict)
    constraints: tuple[str, ...] = ()
    # Runs a setting (Hyperopt's encoding) as one more trial of the search; set by nbopt.tune
    # while the objective is at hand.
    _runner: Callable[[dict[str, Any]], Trial] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    # metric -> (trials it was fitted on, the what-if model of that metric)
    _models: dict[str, tuple[int, WhatIfModel]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def best_trial(self) -> Trial | None:
        """The best trial (None if no trial succeeded).

        Raises:
            ConfigError: with several objectives, where no trial is best (see :attr:`front`
                and :meth:`pick`).
        """
        self._one_objective("best_trial")
        return best_trial(self.feasible_trials, self.mode)

    @property
    def best_params(self) -> Any:
        """The parameters of the best trial (None if no trial succeeded); raises ConfigError
        with several objectives."""
        self._one_objective("best_params")
        best = self.best_trial
        return None if best is None else best.params

    @property
    def best_value(self) -> float | None:
        """The value of the best trial (None if no trial succeeded); raises ConfigError with
        several objectives."""
        self._one_objective("best_value")
        best = self.best_trial
        return None if best is None else best.value

    @property
    def feasible_trials(self) -> list[Trial]:
        """The usable trials that meet every constraint (all usable ones without constraints)."""
        rules = Constraints.parse(self.constraints or None, self.metric)
        return [t for t in self.trials if t.usable and (rules is None or rules.feasible(t))]

    def feasible(self, trial: Trial) -> bool:
        """Whether ``trial`` has a value and meets every constraint of the search."""
        rules = Constraints.parse(self.constraints or None, self.metric)
        return trial.usable and (rules is None or rules.feasible(trial))

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def _one_objective(self, what: str) -> None:
        if self.multi_objective:
            raise ConfigError(
                f"{what} is not defined for several objectives ({', '.join(self.objectives)}): "
                "result.front holds the non-dominated trials, and result.pick(weights=...) or "
                "result.pick(constraint='...') chooses one"
            )

    def _objectives(self) -> Objectives:
        if not self.multi_objective:
            raise ConfigError(
                f"front and pick() are for several objectives; this search optimised one "
                f"({self.metric}): use best_trial"
            )
        return Objectives(tuple(self.objectives), tuple(self.objectives.values()))

    @property
    def front(self) -> list[Trial]:
        """The usable trials that no other trial dominates (at least as good in every
        metric and better in one), in trial order. Several objectives only.

        Example:
            >>> import nbopt
            >>> result = nbopt.tune(lambda x: {"a": x, "b": (x - 1) ** 2},
            ...                     {"x": nbopt.uniform(0, 1)}, metric=["a", "b"], max_evals=8,
            ...                     seed=0, progress="none", logdir=None)
            >>> all(0 <= t.params["x"] <= 1 for t in result.front)
            True
        """
        return front(self.feasible_trials, self._objectives())

    def hypervolume(self, reference: dict[str, float]) -> float:
        """The volume of metric space that the front dominates, up to ``reference``: one
        number to compare multi-objective searches by (larger is better). Several objectives
        only.

        Args:
            reference: A value of every metric, worse than any you care about
                (``{"val_acc": 0.5, "params": 1e6}``); trials not better than it in every
                metric add nothing.

        Raises:
            ConfigError: a metric missing from ``reference``, or one it does not know.
        """
        objectives = self._objectives()
        names = list(objectives.names)
        self._check_metrics(reference, names)
        missing = [name for name in names if name not in reference]
        if missing:
            raise ConfigError(f"reference= needs a value of every metric; it lacks {missing[0]}")
        signs = [1.0 if mode == "min" else -1.0 for mode in objectives.modes]
        bound = [sign * float(reference[name]) for sign, name in zip(signs, names, strict=True)]
        losses = [objectives.losses(trial) for trial in self.front]
        return hypervolume([loss for loss in losses if loss is not None], bound)

    def pick(
        self, *, weights: dict[str, float] | None = None, constraint: str | None = None
    ) -> Trial:
        """One trial of a multi-objective search, chosen by ``weights`` or by ``constraint``.

        Args:
            weights: Metric -> weight: the trial with the highest weighted sum of its metrics
                (a metric to minimise takes a negative weight, e.g.
                ``{"val_acc": 1, "latency": -0.1}``); metrics left out weigh 0.
            constraint: ``"latency <= 5"`` (``<=``, ``>=``, ``<``, ``>``, ``==``): among the
                trials meeting it, the best on the first metric (ties: on the next ones).

        Raises:
            ConfigError: neither or both given, an unknown metric, a constraint no trial
                meets, or no usable trial.
        """
        objectives = self._objectives()
        if (weights is None) == (constraint is None):
            raise ConfigError("pick() needs weights={metric: weight} or constraint='metric <= x'")
        usable = [(t, values) for t in self.feasible_trials if (values := objectives.values(t))]
        if not usable:
            raise ConfigError(self._nothing_usable("a value of every metric"))
        names = list(objectives.names)
        if weights is not None:
            self._check_metrics(weights, names)
            factor = [float(weights.get(name, 0.0)) for name in names]
            return max(usable, key=lambda tv: (_dot(factor, tv[1]), -tv[0].number))[0]
        rule = Constraint.parse(constraint)  # type: ignore[arg-type]
        self._check_metrics([rule.metric], names)
        index = names.index(rule.metric)
        meeting = [(t, values) for t, values in usable if rule.holds(values[index])]
        if not meeting:
            seen = [values[index] for _, values in usable]
            raise ConfigError(
                f"no trial meets {constraint!r}: {rule.metric} ranged from "
                f"{fmt.number(min(seen))} to {fmt.number(max(seen))}"
            )
        # Ties on the first metric go to the better on the next ones: never a dominated trial.
        return min(meeting, key=lambda tv: (objectives.losses(tv[0]), tv[0].number))[0]

    def _check_metrics(self, given: Any, names: list[str]) -> None:
        for name in given:
            if name not in names:
                hint = did_you_mean(str(name), names)
                raise ConfigError(
                    f"unknown metric {name!r}{hint}; the metrics are {', '.join(names)}"
                )

    def _nothing_usable(self, what: str) -> str:
        """Why no trial can be chosen: none has ``what``, or none meets the constraints."""
        if not self.constraints or not any(t.usable for t in self.trials):
            return f"no trial of this search has {what}"
        return f"no trial of this search met {' and '.join(self.constraints)}: " + ", ".join(
            f"{name} ranged from {fmt.number(low)} to {fmt.number(high)}"
            for name, (low, high) in self._ranges().items()
        )

    def _ranges(self) -> dict[str, tuple[float, float]]:
        """Each constrained metric's lowest and highest value over the usable trials."""
        rules = Constraints.parse(list(self.constraints), self.metric)
        assert rules is not None
        ranges = {}
        for name in rules.metrics:
            seen = [v for t in self.trials if t.usable and (v := rules.value(t, name)) is not None]
            if seen:
                ranges[name] = (min(seen), max(seen))
        return ranges

    @property
    def n_failed(self) -> int:
        return sum(1 for t in self.trials if t.status == TrialState.FAILED)

    def model(self, metric: str | None = None) -> WhatIfModel | dict[str, WhatIfModel]:
        """The Gaussian process of the metric fitted on the usable trials (refitted when
        trials were added), whatever algorithm proposed them.

        With several objectives, a dict metric -> model, one Gaussian process per metric,
        each fitted on the trials that report it; ``model(metric)`` gives one of them.

        Raises:
            ConfigError: if the result does not hold its space, ``metric`` is not one of the
                search's, or a metric has fewer than 3 trials with a value.
        """
        if metric is not None:
            if self.multi_objective:
                self._check_metrics([metric], list(self.objectives))
            elif metric != self.metric:
                raise ConfigError(f"unknown metric {metric!r}; this search optimised {self.metric}")
            return self._metric_model(metric)
        if self.multi_objective:
            return {name: self._metric_model(name) for name in self.objectives}
        return self._metric_model(self.metric)

    def _metric_model(self, metric: str) -> WhatIfModel:
        from nbopt.tuning._whatif import WhatIfModel, metric_reader, usable_count

        if self.space is None:
            raise ConfigError(
                "this result does not hold its search space: set result.space to the space "
                "it searched, then ask again"
            )
        read = metric_reader(metric, primary=metric == self.metric)
        count = usable_count(self.trials, read)
        cached = self._models.get(metric)
        if cached is None or cached[0] != count:
            cached = (count, WhatIfModel(self.space, self.trials, metric, read=read))
            self._models[metric] = cached
        return cached[1]

    def predict(self, params: Any) -> Prediction | dict[str, Prediction]:
        """The metric the model predicts at ``params`` (in the objective's form, every active
        parameter given): ``Prediction(mean, sd)``, ``sd`` being the standard deviation of the
        value a new trial there would report. With several objectives, a dict metric ->
        ``Prediction``.

        Example:
            >>> import nbopt
            >>> result = nbopt.tune(lambda x: (x - 1) ** 2, {"x": nbopt.uniform(-3, 3)},
            ...                     max_evals=12, seed=0, progress="none", logdir=None)
            >>> mean, sd = result.predict({"x": 1.0})

        Raises:
            ConfigError: as :meth:`model`, or if ``params`` does not fit the space.
        """
        if not self.multi_objective:
            return self._metric_model(self.metric).predict(params)
        return {name: self._metric_model(name).predict(params) for name in self.objectives}

    @property
    def can_evaluate(self) -> bool:
        """True while the objective of the search can run another trial in this kernel."""
        return self._runner is not None

    def evaluate(self, params: Any) -> Trial:
        """Run ``params`` (in the objective's form) as one more trial of this search, saved in
        its study; the trial is added to ``trials`` and returned.

        Raises:
            ConfigError: if the objective is not available (a result read back from a study,
                or a search on Ray), or ``params`` does not fit the space.
        """
        from nbopt.tuning._whatif import params_to_vals

        self._check_runner()
        return self.evaluate_vals(params_to_vals(self.space, params))

    def evaluate_vals(self, vals: dict[str, Any]) -> Trial:
        """:meth:`evaluate` for a setting in Hyperopt's encoding (a choice's index); labels
        its choices leave inactive are dropped, values rounded to the space's steps."""
        from nbopt.tuning._whatif import snap_vals

        self._check_runner()
        assert self._runner is not None
        trial = self._runner(snap_vals(self.space, vals))
        self.trials.append(trial)
        return trial

    def _check_runner(self) -> None:
        if self._runner is None:
            raise ConfigError(
                "the objective of this search is not available here (only a local nbopt.tune "
                "or %tune run in this kernel can run another trial)"
            )

    def whatif(self) -> Any:
        """The what-if explorer: in a notebook with widgets, a slider or dropdown per parameter,
        the predicted metric (every metric, with several objectives) with a band of one
        standard deviation, partial-dependence curves with the tried trials, and a button that
        runs the setting as one more trial; elsewhere the same numbers as text.

        Raises:
            ConfigError: as :meth:`model`.
        """
        from nbopt.ui.interactive import WhatIfExplorer

        return WhatIfExplorer(self)

    def to_dataframe(self) -> Any:
        """One row per trial: number, status, value, duration, ``params_<name>``,
        ``metrics_<name>``, error; with several objectives ``value`` is the first metric, the
        others are ``metrics_<name>``, and ``front`` says whether the trial is on the front."""
        import pandas as pd

        on_front = {t.number for t in self.front} if self.multi_objective else None
        rows = []
        for trial in self.trials:
            row: dict[str, Any] = {
                "number": trial.number,
                "status": trial.status,
                "value": trial.value,
                "duration": trial.duration,
            }
            row.update({f"params_{k}": v for k, v in param_items(trial.params).items()})
            row.update({f"metrics_{k}": v for k, v in trial.metrics.items()})
            if on_front is not None:
                row["front"] = trial.number in on_front
            if self.constraints:
                row["feasible"] = self.feasible(trial)
            row["error"] = trial.error
            rows.append(row)
        return pd.DataFrame(rows)

    def plot(self) -> Any:
        """A matplotlib figure: optimisation history and parameter importance; with several
        objectives, the trials in the plane of the first two metrics and the front."""
        from nbopt.ui.plots.tuning import plot_front, plot_tune_result

        return plot_front(self) if self.multi_objective else plot_tune_result(self)

    def summary(self) -> str:
        """``40 trials (2 failed, 5 stopped)``, saying so when the run did not complete."""
        finished = [t for t in self.trials if t.finished]
        stopped = sum(1 for t in finished if t.status == TrialState.STOPPED)
        extra = [
            f"{n} {what}" for n, what in ((self.n_failed, "failed"), (stopped, "stopped")) if n
        ]
        text = f"{len(finished)} trials" + (f" ({', '.join(extra)})" if extra else "")
        if self.status == "interrupted":
            return f"interrupted after {text}"
        if self.status == "failed":
            return f"ended by an error after {text}"
        return text

    def _front_text(self) -> str:
        front = self.front
        names = ", ".join(f"{name} ({mode})" for name, mode in self.objectives.items())
        return f"{len(front)} trials on the front of {names}"

    def __repr__(self) -> str:
        if self.multi_objective:
            return f"<TuneResult {self.summary()}; {self._front_text()}>"
        best = self.best_trial
        if best is None:
            unmet = self.constraints and any(t.usable for t in self.trials)
            why = self._nothing_usable("a value") if unmet else "no successful trial"
            return f"<TuneResult {self.summary()}, {why}>"
        return (
            f"<TuneResult {self.summary()}; best {self.metric}={fmt.number(best.value, 6)} "
            f"at trial {best.number}: {fmt.params(param_items(best.params))}>"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def _repr_html_(self) -> str:
        title = f"<b>TuneResult</b> · {html.escape(self.summary())}"
        if self.algo:
            title += f" · algo={html.escape(self.algo)}"
        if self.multi_objective:
            objectives = self._objectives()
            rows = [
                (t.number, *(objectives.values(t) or ()), fmt.params(param_items(t.params), 60))
                for t in self.front
            ]
            header = ["trial", *self.objectives, "params"]
            return (
                f"<div>{title}<br>{html.escape(self._front_text())}"
                f"{fmt.html_table(header, rows)}</div>"
            )
        best = self.best_trial
        if best is None:
            unmet = self.constraints and any(t.usable for t in self.trials)
            why = self._nothing_usable("a value") if unmet else "no successful trial"
            return f"<div>{title}<br>{html.escape(why)}</div>"
        params = fmt.html_table(["parameter", "best value"], param_items(best.params).items())
        recent = [
            (t.number, t.status, t.value, fmt.params(param_items(t.params), 60))
            for t in self.trials[-5:]
        ]
        return (
            f"<div>{title}<br>best {html.escape(self.metric)} = "
            f"<b>{html.escape(fmt.number(best.value, 6))}</b> at trial {best.number}"
            f"{params}<details><summary>last trials</summary>"
            f"{fmt.html_table(['trial', 'status', 'value', 'params'], recent)}</details></div>"
        )


def _dot(weights: list[float], values: tuple[float, ...]) -> float:
    return sum(w * v for w, v in zip(weights, values, strict=True))
