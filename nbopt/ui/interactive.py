"""Interactive displays of result objects in a notebook (ipywidgets): the front picker of an
automatic optimisation and the what-if explorer of a search. Outside a widget front end they
give way to the results' HTML and text.
"""

from __future__ import annotations

import html
import io
import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nbopt.ui import format as fmt

if TYPE_CHECKING:
    from nbopt.compress import AutoOptimizeResult
    from nbopt.tuning import TuneResult

# Positions along a slider of a continuous parameter.
_SLIDER_STEPS = 200
# Points of each partial-dependence curve the text form shows.
_TEXT_POINTS = 5


def in_widget_frontend() -> bool:
    """True inside a Jupyter kernel (where widgets can render) with ipywidgets installed."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    if shell is None or "IPKernelApp" not in getattr(shell, "config", {}):
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def widget_bundle(make_widget: Callable[[], Any]) -> dict[str, Any]:
    """The widget's display bundle inside a widget front end, else ``{}`` (so that IPython
    shows the object's HTML and text forms)."""
    if not in_widget_frontend():
        return {}
    bundle = make_widget()._repr_mimebundle_()
    # IPython fills the other forms from _repr_html_ and _repr_pretty_.
    bundle.pop("text/plain", None)
    return bundle


def front_picker(result: AutoOptimizeResult) -> Any:
    """A dropdown of the front's points over the result's summary; picking a point makes its
    model ``result.model``."""
    import ipywidgets as widgets

    front = result.front
    dropdown = widgets.Dropdown(
        options=[(result.point_text(point), index) for index, point in enumerate(front)],
        value=next((i for i, point in enumerate(front) if point is result.chosen), None),
        description="model:",
        layout=widgets.Layout(width="max-content"),
    )
    summary = widgets.HTML(result._repr_html_())

    def picked(change: dict[str, Any]) -> None:
        if change["new"] is not None:
            result.select(front[change["new"]])
            summary.value = result._repr_html_()

    dropdown.observe(picked, names="value")
    return widgets.VBox([dropdown, summary])


class WhatIfExplorer:
    """What ``TuneResult.whatif()`` returns: the explorer widget in a notebook with widgets,
    the model's numbers as text elsewhere. Building it fits the model (one per metric, with
    several objectives), so a search the model cannot explain (fewer than 3 usable trials, no
    space) is refused at once."""

    def __init__(self, result: TuneResult) -> None:
        self.result = result
        self.models = whatif_models(result)

    def widget(self) -> WhatIfWidget:
        """A new explorer widget over the result."""
        return WhatIfWidget(self.result)

    def text(self) -> str:
        """The prediction at the starting trial and each parameter's partial dependence of
        every metric."""
        result, models = self.result, self.models
        several = result.multi_objective
        counts = {name: len(model.trials) for name, model in models.items()}
        if several:
            each = (
                f"{next(iter(counts.values()))} trials each"
                if len(set(counts.values())) == 1
                else ", ".join(f"{count} trials ({name})" for name, count in counts.items())
            )
            lines = [
                f"what-if models of {', '.join(map(_title(result), models))}: a Gaussian "
                f"process per metric, on {each}; ± is one standard deviation of a new trial's "
                "value"
            ]
        else:
            lines = [
                f"what-if model of {result.metric}: a Gaussian process on "
                f"{counts[result.metric]} trials; ± is one standard deviation of a new trial's "
                "value"
            ]
        start = start_trial(result)
        if start is not None:
            where = f"front trial {start.number}" if several else f"best trial {start.number}"
            cells = []
            for name, model in models.items():
                mean, sd = model.predict_vals(start.vals)
                measured = measured_value(result, start, name)
                cells.append(
                    (f"{name} " if several else "")
                    + f"measured {fmt.number(measured)}, predicted {fmt.number(mean)} ± "
                    f"{fmt.number(sd, 2)}"
                )
            lines.append(f"{where}: " + "; ".join(cells))
        for name, model in models.items():
            of = f" of {_title(result)(name)}" if several else ""
            lines.append(f"partial dependence{of} (averaged over the tried configurations):")
            lines.extend(_curve_lines(model))
        lines.append(
            "result.predict(params) predicts any setting; result.evaluate(params) runs one as "
            "a new trial" + ("" if result.can_evaluate else " (not here: no objective)")
        )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.text())

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return widget_bundle(lambda: self.widget().box)


def whatif_models(result: TuneResult) -> dict[str, Any]:
    """Metric -> its what-if model: one entry for a search of one objective."""
    models = result.model()
    return models if isinstance(models, dict) else {result.metric: models}


def start_trial(result: TuneResult) -> Any:
    """Where the explorer starts: the best trial, or with several objectives the trial of
    the front that is best on the first metric; None without a usable trial."""
    if not result.multi_objective:
        return result.best_trial
    sign = 1.0 if result.mode == "min" else -1.0
    return min(result.front, key=lambda t: (sign * t.value, t.number), default=None)


def measured_value(result: TuneResult, trial: Any, metric: str) -> float | None:
    """A trial's value of ``metric``: its ``value`` for the first metric, else its entry in
    ``metrics``."""
    return trial.value if metric == result.metric else trial.metrics.get(metric)


def _title(result: TuneResult) -> Callable[[str], str]:
    """How a metric is named: with its direction when there are several."""
    if not result.multi_objective:
        return lambda name: name
    return lambda name: f"{name} ({result.objectives[name]})"


def _curve_lines(model: Any) -> list[str]:
    lines = []
    for parameter in model.parameters:
        curve = model.curve(parameter.label)
        count = len(curve.xs)
        picks = sorted({round(i * (count - 1) / (_TEXT_POINTS - 1)) for i in range(_TEXT_POINTS)})
        cells = [
            f"{_value_text(parameter, curve.xs[i])}: {fmt.number(curve.means[i])} ± "
            f"{fmt.number(curve.sds[i], 2)}"
            for i in (picks if count > _TEXT_POINTS else range(count))
        ]
        lines.append(f"  {parameter.label}: " + " | ".join(cells))
    return lines


class WhatIfWidget:
    """The explorer's widgets: ``controls`` (label -> slider or dropdown), ``prediction``,
    ``plot`` (the partial-dependence curves, a row of panels per metric), ``run`` (the
    button) and ``status``, in ``box``; the CSS classes ``nbopt-whatif``,
    ``nbopt-whatif-prediction`` and ``nbopt-whatif-status`` find them in the page.
    ``predicted`` is what ``result.predict`` gives at the current setting: a ``Prediction``,
    or with several objectives a dict metric -> ``Prediction``."""

    def __init__(self, result: TuneResult) -> None:
        import ipywidgets as widgets

        self.result = result
        models = whatif_models(result)
        start = start_trial(result)
        begin = dict(start.vals) if start is not None else {}
        self.setting: dict[str, Any] = {}
        self.controls: dict[str, Any] = {}
        for parameter in next(iter(models.values())).parameters:
            value = begin.get(parameter.label, _middle(parameter))
            control = _control(widgets, parameter, value)
            self.setting[parameter.label] = control.value
            control.observe(self._changed(parameter.label), names="value")
            self.controls[parameter.label] = control
        self.prediction = widgets.HTML()
        self.prediction.add_class("nbopt-whatif-prediction")
        self.plot = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.run = widgets.Button(
            description="run this configuration",
            disabled=not result.can_evaluate,
            tooltip="evaluate the setting as one more trial of the search"
            if result.can_evaluate
            else "the objective is not available in this kernel",
            layout=widgets.Layout(width="max-content"),
        )
        self.run.on_click(lambda _: self.evaluate())
        self.status = widgets.HTML()
        self.status.add_class("nbopt-whatif-status")
        action = widgets.HBox([self.run, self.status])
        self.box = widgets.VBox([*self.controls.values(), self.prediction, action, self.plot])
        self.box.add_class("nbopt-whatif")
        self.refresh()

    def refresh(self) -> None:
        """Predict at the current setting, enable the parameters it activates, redraw."""
        from nbopt.ui.plots.tuning import plot_whatif

        models = whatif_models(self.result)
        first = next(iter(models.values()))
        active = first.active(self.setting)
        for label, control in self.controls.items():
            control.disabled = label not in active
        predictions = {name: model.predict_vals(self.setting) for name, model in models.items()}
        self.prediction.value = self._prediction_html(models, predictions)
        self.predicted: Any = (
            predictions if self.result.multi_objective else predictions[self.result.metric]
        )
        parameters = [p for p in first.parameters if p.label in active]
        curves = {
            _title(self.result)(name): [model.curve(p.label) for p in parameters]
            for name, model in models.items()
        }
        figure = plot_whatif(curves, parameters, self.setting)
        png = io.BytesIO()
        figure.savefig(png, format="png", dpi=80)
        self.plot.value = png.getvalue()

    def _prediction_html(self, models: dict[str, Any], predictions: dict[str, Any]) -> str:
        note = "one standard deviation of a new trial's value"
        if not self.result.multi_objective:
            ((name, (mean, sd)),) = predictions.items()
            return (
                f"predicted {html.escape(name)}: <b>{fmt.number(mean)}</b> ± "
                f"{fmt.number(sd, 2)} <small>({note}; model of {len(models[name].trials)} "
                "trials)</small>"
            )
        lines = [
            f"predicted {html.escape(_title(self.result)(name))}: <b>{fmt.number(mean)}</b> ± "
            f"{fmt.number(sd, 2)} <small>(model of {len(models[name].trials)} trials)</small>"
            for name, (mean, sd) in predictions.items()
        ]
        return "<br>".join([*lines, f"<small>± is {note}</small>"])

    def evaluate(self) -> Any:
        """Run the current setting as one more trial; show and return it."""
        predicted = self.predicted
        if not self.result.multi_objective:
            predicted = {self.result.metric: predicted}
        self.status.value = "running…"
        trial = self.result.evaluate_vals(self.setting)
        if trial.usable:
            several = self.result.multi_objective
            cells = [
                (f"{html.escape(name)} " if several else "")
                + f"{fmt.number(measured_value(self.result, trial, name))} "
                f"(predicted {fmt.number(mean)} ± {fmt.number(sd, 2)})"
                for name, (mean, sd) in predicted.items()
            ]
            self.status.value = f"trial {trial.number}: " + " · ".join(cells)
        else:
            self.status.value = f"trial {trial.number}: {html.escape(str(trial.status))}" + (
                f" ({html.escape(trial.error)})" if trial.error else ""
            )
        self.refresh()
        return trial

    def _changed(self, label: str) -> Callable[[dict[str, Any]], None]:
        def changed(change: dict[str, Any]) -> None:
            self.setting[label] = change["new"]
            self.refresh()

        return changed


def _middle(parameter: Any) -> Any:
    if parameter.kind == "choice":
        return 0
    if parameter.log:
        return (parameter.low * parameter.high) ** 0.5
    return (parameter.low + parameter.high) / 2


def _control(widgets: Any, parameter: Any, value: Any) -> Any:
    """A dropdown for a choice, an integer slider, or a (log-scaled) float slider."""
    common = {
        "description": parameter.label,
        "continuous_update": False,
        "style": {"description_width": "initial"},
    }
    if parameter.kind == "choice":
        del common["continuous_update"]
        options = [(text, index) for index, text in enumerate(parameter.options)]
        return widgets.Dropdown(options=options, value=int(value), **common)
    value = min(max(value, parameter.low), parameter.high)
    if parameter.kind == "int":
        step = int(parameter.step or 1)
        low = int(parameter.low)
        value = low + step * round((value - low) / step)
        return widgets.IntSlider(value=value, min=low, max=int(parameter.high), step=step, **common)
    if parameter.log:
        low, high = math.log10(parameter.low), math.log10(parameter.high)
        return widgets.FloatLogSlider(
            value=value,
            min=low,
            max=high,
            step=(high - low) / _SLIDER_STEPS,
            readout_format=".3g",
            **common,
        )
    step = parameter.step or (parameter.high - parameter.low) / _SLIDER_STEPS
    return widgets.FloatSlider(
        value=value,
        min=parameter.low,
        max=parameter.high,
        step=step,
        readout_format=".4g",
        **common,
    )


def _value_text(parameter: Any, x: float) -> str:
    if parameter.kind == "choice":
        return parameter.options[int(x)]
    return fmt.number(x, 3)
