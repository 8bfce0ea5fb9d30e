"""Matplotlib rendering of an :class:`LRFindResult`; the numbers come from :func:`curves`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from nbopt.ui.plots import new_figure

if TYPE_CHECKING:
    from nbopt.learning_rate import LRCurve, LRFindResult


class Curves(NamedTuple):
    """What the plot shows."""

    curve: LRCurve  # the median curve, its smoothing and the band of the sweeps
    sweeps: int  # how many sweeps the band spans
    suggestion: float | None
    rule: str
    band: tuple[float, float] | None  # the lowest and highest suggestion of the sweeps
    others: dict[str, float]  # the other rules' suggestions


def curves(result: LRFindResult) -> Curves:
    """The plotted numbers of ``result``."""
    others = {
        name: rate
        for name, rate in result.suggestions.items()
        if name != result.rule and rate is not None
    }
    return Curves(
        result.curve(), len(result.sweeps), result.suggestion, result.rule, result.band, others
    )


def plot_lr_find_result(result: LRFindResult) -> Any:
    """The loss against the learning rate (log scale): the median of the sweeps, its smoothing,
    the band between the sweeps, the suggestion and the band of its values per sweep."""
    data = curves(result)
    figure = new_figure(figsize=(7.5, 4.2), layout="constrained")
    axes = figure.subplots()
    curve = data.curve
    axes.set_title(f"Learning-rate range test · {result.optimizer} · batch {result.batch_size}")
    if len(curve.learning_rates):
        rates = curve.learning_rates
        axes.plot(rates, curve.loss, color="C0", alpha=0.3, lw=1, label="loss (median)")
        axes.plot(rates, curve.smoothed, color="C0", lw=2, label="smoothed")
        if data.sweeps > 1:
            axes.fill_between(
                rates,
                curve.low,
                curve.high,
                color="C0",
                alpha=0.15,
                label=f"{data.sweeps} sweeps, lowest to highest",
            )
        top = min(float(curve.smoothed.max()), 2.5 * float(curve.smoothed[0]))
        bottom = float(min(curve.low.min(), curve.smoothed.min()))
        margin = 0.05 * (top - bottom) if top > bottom else 0.1 * abs(top) or 1.0
        axes.set_ylim(bottom - margin, top + margin)
    if data.suggestion is not None:
        axes.axvline(data.suggestion, color="C3", lw=2, label=f"{data.rule}: {data.suggestion:.3g}")
    if data.band is not None and data.band[1] > data.band[0]:
        axes.axvspan(*data.band, color="C3", alpha=0.12, label="suggestion per sweep")
    for index, (name, rate) in enumerate(data.others.items()):
        axes.axvline(rate, color=f"C{index + 4}", lw=1, ls=":", label=f"{name}: {rate:.3g}")
    axes.set_xscale("log")
    axes.set_xlabel("learning rate")
    axes.set_ylabel("training loss")
    axes.legend(loc="best", fontsize="small")
    return figure
