"""The matplotlib rendering of a :class:`~nbopt.TuneResult`: its history and what mattered."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nbopt.tuning import TrialState
from nbopt.tuning.analysis import history, importance
from nbopt.ui.plots import new_figure

if TYPE_CHECKING:
    from nbopt.tuning import TuneResult


def plot_tune_result(result: TuneResult) -> Any:
    """Optimisation history (each trial and the best so far) and parameter importance."""
    points = history(result.trials, result.mode)
    ranked = importance(result.trials)
    figure = new_figure(figsize=(11, 3.8), layout="constrained")
    left, right = figure.subplots(1, 2, width_ratios=(3, 2))

    left.set_title("Optimisation history")
    if points:
        left.scatter(
            [p.number for p in points], [p.value for p in points], s=14, alpha=0.6, label="trial"
        )
        left.step(
            [p.number for p in points],
            [p.best for p in points],
            where="post",
            color="C3",
            label="best so far",
        )
        left.legend(loc="best")
    failed = [t.number for t in result.trials if t.status == TrialState.FAILED]
    for number in failed:
        left.axvline(number, color="0.85", lw=0.8, zorder=0)
    left.set_xlabel("trial")
    left.set_ylabel(f"{result.metric} ({result.mode})")

    right.set_title("Parameter importance")
    if ranked:
        names = [item.param for item in reversed(ranked)]
        right.barh(names, [item.importance for item in reversed(ranked)], color="C0")
        right.set_xlim(0, 1)
        right.set_xlabel("share of explained variance (η²)")
    else:
        right.text(0.5, 0.5, "needs 3 successful trials", ha="center", va="center")
        right.set_axis_off()
    return figure


def plot_front(result: TuneResult) -> Any:
    """Several objectives: every trial in the plane of the first two metrics, and the front
    (the non-dominated trials), joined as a staircase when there are two metrics."""
    (first, first_mode), (second, second_mode) = list(result.objectives.items())[:2]
    tried = [
        (t.value, t.metrics[second])
        for t in result.trials
        if t.usable and t.value is not None and second in t.metrics
    ]
    front = sorted((t.value, t.metrics[second]) for t in result.front)
    figure = new_figure(figsize=(6, 4.2), layout="constrained")
    ax = figure.subplots()
    ax.set_title(f"Front of {len(front)} trials")
    if tried:
        ax.scatter(*zip(*tried, strict=True), s=14, alpha=0.5, color="C0", label="trial")
    if front:
        # The edge of what the front dominates: from a point, along the first metric to the
        # next point's value when smaller is better, else along the second one first.
        # With more metrics, the front seen in two of them is no staircase: dots only.
        if len(result.objectives) == 2:
            where = "post" if first_mode == "min" else "pre"
            ax.step(*zip(*front, strict=True), where=where, color="C3", lw=1.2)
        ax.scatter(*zip(*front, strict=True), s=26, color="C3", zorder=3, label="front")
        ax.legend(loc="best")
    ax.set_xlabel(f"{first} ({first_mode})")
    ax.set_ylabel(f"{second} ({second_mode})")
    return figure


def plot_whatif(
    curves: Mapping[str, list[Any]], parameters: list[Any], setting: dict[str, Any]
) -> Any:
    """For each metric, one panel per parameter: its partial-dependence curve with a band of
    one standard deviation, the tried trials as dots, and the explorer's current value as a
    line. The panels of a metric fill rows of up to three, each metric in its own colour.

    ``curves`` maps each metric (as its panels name it) to the model's :class:`Curve` objects,
    one per parameter of ``parameters`` (the model's :class:`Parameter` objects), in the same
    order; ``setting`` is in Hyperopt's encoding.
    """
    count = len(parameters)
    columns = min(3, count) or 1
    block = -(-count // columns) or 1  # rows of panels per metric
    figure = new_figure(figsize=(3.6 * columns, 2.6 * block * len(curves)), layout="constrained")
    grid = figure.subplots(block * len(curves), columns, squeeze=False)
    for row, (metric, metric_curves) in enumerate(curves.items()):
        axes = grid[row * block : (row + 1) * block].ravel()
        colour = _METRIC_COLOURS[row % len(_METRIC_COLOURS)]
        for ax, curve, parameter in zip(axes, metric_curves, parameters, strict=False):
            _whatif_panel(ax, curve, parameter, setting, metric, colour)
        for ax in axes[len(metric_curves) :]:
            ax.set_axis_off()
    return figure


# One colour per metric; C3 marks the current setting.
_METRIC_COLOURS = ("C0", "C2", "C1", "C4", "C5")


def _whatif_panel(
    ax: Any, curve: Any, parameter: Any, setting: dict[str, Any], metric: str, colour: str
) -> None:
    low = [m - s for m, s in zip(curve.means, curve.sds, strict=True)]
    high = [m + s for m, s in zip(curve.means, curve.sds, strict=True)]
    ax.fill_between(curve.xs, low, high, color=colour, alpha=0.2, lw=0)
    ax.plot(curve.xs, curve.means, color=colour)
    if curve.tried:
        xs, ys = zip(*curve.tried, strict=True)
        ax.scatter(xs, ys, s=10, color="k", alpha=0.5, zorder=3)
    if curve.label in setting:
        ax.axvline(float(setting[curve.label]), color="C3", lw=1.2)
    if parameter.kind == "choice":
        ax.set_xticks(range(len(parameter.options)), parameter.options)
    elif parameter.log:
        ax.set_xscale("log")
    ax.set_title(curve.label, fontsize=10)
    ax.set_ylabel(metric, fontsize=9)
