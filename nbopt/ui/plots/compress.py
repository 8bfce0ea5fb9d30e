"""The matplotlib renderings of :class:`~nbopt.OptimizeResult` (the numbers come from
:func:`nbopt.compress.report.stage_ratios`) and of :class:`~nbopt.AutoOptimizeResult` (its
trials and its Pareto front)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from nbopt.compress.report import PLOTTED, ratio_text, show, stage_ratios
from nbopt.ui.plots import new_figure

if TYPE_CHECKING:
    from nbopt.compress import AutoOptimizeResult, OptimizeResult


def plot_optimize_result(result: OptimizeResult) -> Any:
    """Grouped bars: for each quantity, each step's value as a fraction of the original's."""
    stages = stage_ratios(result)
    figure = new_figure(figsize=(9, 3.8), layout="constrained")
    axes = figure.subplots()
    names = list(PLOTTED)
    width = 0.8 / max(len(stages), 1)
    for index, (label, ratios) in enumerate(stages):
        positions = [q + (index - (len(stages) - 1) / 2) * width for q in range(len(names))]
        heights = [ratios[name] if ratios[name] is not None else 0.0 for name in names]
        bars = axes.bar(positions, heights, width, label=label, color=f"C{index}")
        axes.bar_label(
            bars,
            labels=[
                f"{h:.2f}" if ratios[n] is not None else "n/a"
                for h, n in zip(heights, names, strict=True)
            ],
            fontsize=8,
        )
    axes.axhline(1.0, color="0.4", lw=0.8, ls="--")
    axes.set_xticks(range(len(names)), [PLOTTED[name] for name in names])
    axes.set_ylabel("fraction of the original")
    title = "After each step, relative to the original"
    if result.before.metric is not None and result.after.metric is not None:
        title += (
            f" · {result.metric_name} {show('metric', result.before.metric)} → "
            f"{show('metric', result.after.metric)}"
        )
    axes.set_title(title)
    if stages:
        axes.legend(loc="best", fontsize=8)
    else:
        axes.text(0.5, 0.5, "no step ran", ha="center", va="center", transform=axes.transAxes)
    return figure


def plot_auto_result(result: AutoOptimizeResult) -> Any:
    """Each plan's metric against its target ratio: within the tolerance, outside it, the
    Pareto front as a line, the tolerance's bound, the original and the chosen point."""
    figure = new_figure(figsize=(8, 4.5), layout="constrained")
    axes = figure.subplots()
    measured = [t for t in result.trials if t.ratio is not None and t.metric is not None]
    for within, style in (
        (True, {"color": "C0", "marker": "o"}),
        (False, {"color": "C1", "marker": "x"}),
    ):
        points = [t for t in measured if t.within == within and math.isfinite(t.metric)]
        if points:
            axes.scatter(
                [t.ratio for t in points],
                [t.metric for t in points],
                s=30,
                label="within tolerance" if within else "outside tolerance",
                **style,
            )
    front = [p for p in result.front if p.ratio is not None and p.metric is not None]
    axes.plot(
        [p.ratio for p in front], [p.metric for p in front], color="0.3", lw=1, label="Pareto front"
    )
    axes.scatter(
        [1.0], [result.tolerance.baseline], marker="*", s=160, color="C2", label="original"
    )
    axes.axhline(result.tolerance.allowed, color="C3", lw=0.8, ls="--", label="tolerance bound")
    chosen = result.chosen
    if chosen.ratio is not None and chosen.metric is not None:
        axes.scatter(
            [chosen.ratio], [chosen.metric], s=220, facecolors="none", edgecolors="C3", lw=2
        )
        axes.annotate(
            chosen.plan.label(),
            (chosen.ratio, chosen.metric),
            xytext=(8, -14),
            textcoords="offset points",
            fontsize=8,
        )
    axes.set_xlabel(f"{result.target} ratio (plan / original, lower is better)")
    better = "higher" if result.tolerance.mode == "max" else "lower"
    axes.set_ylabel(f"{result.metric_name} ({better} is better)")
    axes.set_title(
        f"{len(result.trials)} plans · chosen: {result.target} {ratio_text(chosen.ratio or 1.0)}"
    )
    axes.legend(loc="best", fontsize=8)
    return figure
