"""Matplotlib renderings of result objects. The numbers come from pure analysis functions.

Each function returns a figure that pyplot no longer tracks: a notebook shows it once, when
the cell returns it, and a script can ``savefig`` it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbopt.tuning import TuneResult


def new_figure(**kwargs: Any) -> Any:
    """A pyplot figure, closed at once: pyplot's import sets up notebook display, and closing
    keeps the inline backend from showing it a second time at the end of the cell."""
    import matplotlib.pyplot as plt

    figure = plt.figure(**kwargs)
    plt.close(figure)
    return figure


def plot_tune_result(result: TuneResult) -> Any:
    """Optimisation history (each trial and the best so far) and parameter importance."""
    from nbopt.tuning._analysis import history, importance

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
    failed = [t.number for t in result.trials if t.status == "failed"]
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
