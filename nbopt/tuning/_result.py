"""``TuneResult``: what a search returns and what ``%tune`` stores in ``out=`` and ``_nbopt``."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nbopt.tuning._trial import Trial, TrialState
from nbopt.ui import format as fmt
from nbopt.ui.format import param_items


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
    """

    trials: list[Trial]
    metric: str
    mode: str
    status: str
    study: str | None = None
    algo: str = ""

    @property
    def best_trial(self) -> Trial | None:
        return best_trial(self.trials, self.mode)

    @property
    def best_params(self) -> Any:
        """The parameters of the best trial (None if no trial succeeded)."""
        best = self.best_trial
        return None if best is None else best.params

    @property
    def best_value(self) -> float | None:
        best = self.best_trial
        return None if best is None else best.value

    @property
    def n_failed(self) -> int:
        return sum(1 for t in self.trials if t.status == TrialState.FAILED)

    def to_dataframe(self) -> Any:
        """One row per trial: number, status, value, duration, ``params_<name>``, error."""
        import pandas as pd

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
            row["error"] = trial.error
            rows.append(row)
        return pd.DataFrame(rows)

    def plot(self) -> Any:
        """A matplotlib figure: optimisation history and parameter importance."""
        from nbopt.ui.plots.tuning import plot_tune_result

        return plot_tune_result(self)

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

    def __repr__(self) -> str:
        best = self.best_trial
        if best is None:
            return f"<TuneResult {self.summary()}, no successful trial>"
        return (
            f"<TuneResult {self.summary()}; best {self.metric}={fmt.number(best.value, 6)} "
            f"at trial {best.number}: {fmt.params(param_items(best.params))}>"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def _repr_html_(self) -> str:
        best = self.best_trial
        title = f"<b>TuneResult</b> · {html.escape(self.summary())}"
        if self.algo:
            title += f" · algo={html.escape(self.algo)}"
        if best is None:
            return f"<div>{title}<br>no successful trial</div>"
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
