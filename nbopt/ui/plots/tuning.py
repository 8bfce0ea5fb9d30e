"""The matplotlib rendering of a :class:`~nbopt.TuneResult`: its history and what mattered."""

from __future__ import annotations

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
