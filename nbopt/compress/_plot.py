"""The matplotlib rendering of an :class:`OptimizeResult`; the numbers come from
:func:`nbopt.compress._result.stage_ratios`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nbopt.compress._result import PLOTTED, show, stage_ratios
from nbopt.ui.plots import new_figure

if TYPE_CHECKING:
    from nbopt.compress._result import OptimizeResult


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
