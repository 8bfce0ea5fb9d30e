"""``LRFindResult``: what :func:`nbopt.learning_rate.find_lr` returns and ``%lr_find`` stores in
``out=`` and ``_nbopt``."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from nbopt.learning_rate._rules import centered, median_curve
from nbopt.ui import format as fmt


@dataclass(frozen=True)
class LRSweep:
    """One range test on a fresh copy of the model and optimizer.

    Attributes:
        index: 0 for the first sweep.
        learning_rates: The rate of each step, growing geometrically.
        losses: The loss of each step's batch, computed before that step's update.
        stop_reason: Why the sweep ended: all steps done, the loss diverged or was not finite.
        duration: Seconds it took.
        suggestion: The rule's rate on this sweep alone (None if it has none).
    """

    index: int
    learning_rates: tuple[float, ...]
    losses: tuple[float, ...]
    stop_reason: str
    duration: float
    suggestion: float | None = None


class LRCurve(NamedTuple):
    """The curve of all sweeps together, by step: the rates, the median raw loss, its centered
    smoothing, and the lowest and highest smoothed loss of any sweep there (the band)."""

    learning_rates: np.ndarray
    loss: np.ndarray
    smoothed: np.ndarray
    low: np.ndarray
    high: np.ndarray


@dataclass
class LRFindResult:
    """The outcome of a learning-rate range test.

    Attributes:
        suggestion: The learning rate to use, by ``rule`` on the median curve of the sweeps;
            None when the loss never fell.
        rule: The rule that made ``suggestion`` (see ``nbopt.learning_rate.RULES``).
        suggestions: What every known rule reads off the same curve.
        band: The lowest and highest suggestion of ``rule`` on the sweeps one by one (None
            with a single sweep): how much the suggestion moves with the data's order.
        sweeps: Every sweep, in order.
        optimizer: The optimizer's class name.
        batch_size: The batch size of the data (None if the DataLoader has none).
        start, end, steps: The range swept and the steps planned per sweep.
        status: ``"done"``, or ``"interrupted"``/``"failed"`` for a partial result.
        duration: Seconds the whole test took.
    """

    suggestion: float | None
    rule: str
    suggestions: dict[str, float | None]
    band: tuple[float, float] | None
    sweeps: list[LRSweep]
    optimizer: str
    batch_size: int | None
    start: float
    end: float
    steps: int
    status: str = "done"
    duration: float = 0.0
    notes: list[str] = field(default_factory=list)

    def curve(self) -> LRCurve:
        """The median curve over the sweeps and the band of their smoothed curves."""
        losses = median_curve([sweep.losses for sweep in self.sweeps]) if self.sweeps else []
        count = len(losses)
        if count == 0:
            empty = np.empty(0)
            return LRCurve(empty, empty, empty, empty, empty)
        longest = max(self.sweeps, key=lambda sweep: len(sweep.losses))
        rates = np.asarray(longest.learning_rates[:count], dtype=float)
        smoothed = centered(rates, losses)
        per_sweep = np.full((len(self.sweeps), count), np.nan)
        for row, sweep in enumerate(self.sweeps):
            length = min(count, len(sweep.losses))
            if length:
                per_sweep[row, :length] = centered(rates[:length], sweep.losses[:length])
        with np.errstate(all="ignore"):
            low, high = np.nanmin(per_sweep, axis=0), np.nanmax(per_sweep, axis=0)
        return LRCurve(rates, np.asarray(losses), smoothed, low, high)

    def to_dataframe(self) -> Any:
        """One row per step of every sweep: sweep, step, learning_rate, loss."""
        import pandas as pd

        rows = [
            {"sweep": sweep.index, "step": step, "learning_rate": rate, "loss": loss}
            for sweep in self.sweeps
            for step, (rate, loss) in enumerate(
                zip(sweep.learning_rates, sweep.losses, strict=True)
            )
        ]
        return pd.DataFrame(rows, columns=["sweep", "step", "learning_rate", "loss"])

    def plot(self) -> Any:
        """A matplotlib figure: the loss against the learning rate (log scale), the band of
        the sweeps, the suggestion and the band of its values on each sweep."""
        from nbopt.ui.plots.learning_rate import plot_lr_find_result

        return plot_lr_find_result(self)

    def summary(self) -> str:
        """One line: the suggestion, its rule and its spread."""
        if self.suggestion is None:
            return (
                f"no suggestion ({self.status}): the loss did not fall between "
                f"{self.start:.3g} and {self.end:.3g}; widen the range (start=, end=) or check "
                "the model"
            )
        text = f"learning rate {self.suggestion:.3g} ({self.rule})"
        if self.band is not None:
            text += f", {self.band[0]:.3g} to {self.band[1]:.3g} over {len(self.sweeps)} sweeps"
        return text

    def __repr__(self) -> str:
        return (
            f"<LRFindResult {self.optimizer}, batch {self.batch_size}: {self.summary()}; "
            f"{len(self.sweeps)} sweep(s)>"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def _repr_html_(self) -> str:
        title = (
            f"<b>LRFindResult</b> · {html.escape(self.optimizer)} · batch {self.batch_size} · "
            f"{self.start:.3g} to {self.end:.3g}"
        )
        if self.status != "done":
            title += f" · {html.escape(self.status)}"
        rules = fmt.html_table(
            ["rule", "learning rate"],
            [
                (name + (" ← used" if name == self.rule else ""), _rate(rate))
                for name, rate in self.suggestions.items()
            ],
        )
        sweeps = fmt.html_table(
            ["sweep", "steps", "suggestion", "stopped", "time"],
            [
                (
                    sweep.index,
                    len(sweep.losses),
                    _rate(sweep.suggestion),
                    sweep.stop_reason,
                    fmt.duration(sweep.duration),
                )
                for sweep in self.sweeps
            ],
        )
        notes = "".join(f"<br>{html.escape(note)}" for note in self.notes)
        return (
            f"<div>{title}<br><b>{html.escape(self.summary())}</b>{notes}"
            f"<details><summary>every rule on the same curve</summary>{rules}</details>"
            f"<details><summary>{len(self.sweeps)} sweep(s)</summary>{sweeps}</details>"
            f"<span style='color:#555'>{fmt.duration(self.duration)}</span></div>"
        )


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.3g}"
