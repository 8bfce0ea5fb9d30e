"""``OptimizeResult``: the optimised model and its measured before/after report."""

from __future__ import annotations

import html
from dataclasses import dataclass, field, fields
from typing import Any

from nbopt.compress.report import (
    QUANTITIES,
    Change,
    change_summary,
    show,
    show_change,
    stage_cells,
    text_table,
)
from nbopt.ui import format as fmt


@dataclass(frozen=True)
class ModelMeasurement:
    """One measured state of a model.

    Attributes:
        params: Weights stored (quantized weights count as weights).
        nonzero: Weights that are not zero.
        size_bytes: Bytes of ``torch.save(model.state_dict())``.
        macs: Multiply-accumulates of one forward pass on ``example=`` (None without it).
        latency_s: Median seconds of a forward pass on ``example=`` (None without it).
        metric: What ``eval=`` returned (None without it).
    """

    params: int
    nonzero: int
    size_bytes: int
    macs: int | None = None
    latency_s: float | None = None
    metric: float | None = None


@dataclass(frozen=True)
class StepRecord:
    """One step that ran: its kind (``"prune"``), label, time, and the model measured after it."""

    kind: str
    label: str
    detail: str
    seconds: float
    after: ModelMeasurement
    notes: tuple[str, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimizeResult:
    """What :func:`nbopt.compress.optimize` returns.

    Attributes:
        model: The optimised model (the original object itself with ``inplace=True``).
        before: The original model, measured.
        after: The optimised model, measured. Its latency and ``before``'s were measured side
            by side, alternating calls, at the end of the run.
        steps: Each step that ran, with the model measured after it.
        notes: Plain statements about what did not or cannot improve on this hardware.
        metric_name: The name of ``eval=`` (``"accuracy"``), or ``"metric"``.
        threads: ``torch.get_num_threads()`` during the latency measurements.
        device: The model's device.
        batch: With ``batch="auto"``, the optimised model's batch-size search (a
            :class:`nbopt.BatchSizeResult`: ``.batch_size``, ``.best_batch_size``, the table).
    """

    model: Any
    before: ModelMeasurement
    after: ModelMeasurement
    steps: list[StepRecord]
    notes: list[str] = field(default_factory=list)
    metric_name: str = "metric"
    threads: int = 1
    device: str = "cpu"
    batch: Any = None

    @property
    def quant_backend(self) -> str | None:
        """The int8 backend that quantized the model (``"torch.ao"`` or ``"torchao"``)."""
        return self._info("backend")

    @property
    def fidelity(self) -> float | None:
        """How close the int8 model's outputs stay to the float model's on ``example=``: the
        worst cosine similarity over its rows (1.0: identical)."""
        return self._info("fidelity")

    @property
    def exported(self) -> dict[str, Any] | None:
        """The file ``export=`` wrote: ``{"path", "file_bytes", "difference"}`` (the largest
        difference of its outputs from the model's, relative to their scale)."""
        for step in self.steps:
            if step.kind == "export":
                return {key: step.info[key] for key in ("path", "file_bytes", "difference")}
        return None

    def _info(self, key: str) -> Any:
        return next((step.info[key] for step in self.steps if key in step.info), None)

    @property
    def report(self) -> dict[str, Change]:
        """Each quantity before and after: ``result.report["size_bytes"].ratio``."""
        return {
            name: Change(getattr(self.before, name), getattr(self.after, name))
            for name in QUANTITIES
        }

    def to_dataframe(self) -> Any:
        """One row per stage (``original``, then each step): the measurements and step time."""
        import pandas as pd

        rows = [{"step": "original", **_measurement_row(self.before), "seconds": 0.0}]
        for step in self.steps:
            rows.append(
                {"step": step.label, **_measurement_row(step.after), "seconds": step.seconds}
            )
        frame = pd.DataFrame(rows)
        return frame.rename(columns={"metric": self.metric_name})

    def plot(self) -> Any:
        """A matplotlib figure: each stage's size, MACs and latency as a fraction of the
        original's, and the metric."""
        from nbopt.ui.plots.compress import plot_optimize_result

        return plot_optimize_result(self)

    def summary(self) -> str:
        """``size 0.26x, MACs 0.25x, latency 0.41x, accuracy 0.981 -> 0.975``."""
        text = change_summary(self.before, self.after, self.metric_name)
        exported = self.exported
        if exported is not None:
            text += f", exported {show('size_bytes', exported['file_bytes'])}"
        return text if self.batch is None else f"{text}, {self._batch_text()}"

    def _batch_text(self) -> str:
        chosen = self.batch.batch_size
        return f"batch size {chosen} ({self.batch.throughput(chosen):,.0f} samples/s)"

    def __repr__(self) -> str:
        steps = " -> ".join(step.label for step in self.steps) or "measured only"
        return f"<OptimizeResult {steps}: {self.summary()}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        lines = [repr(self), ""]
        lines.extend(text_table(("", "before", "after", "change"), self._table_rows()))
        if self.steps:
            lines += ["", "each step, with its own change (against the stage before it):"]
            lines.extend(text_table(self._stage_headers(), self._stage_rows()))
        lines.extend(f"note: {note}" for note in self.notes)
        if self.batch is not None:
            lines.append(f"{self._batch_text()}; {self.batch.summary()}")
        printer.text("\n".join(lines))

    def _repr_html_(self) -> str:
        steps = " → ".join(html.escape(step.label) for step in self.steps) or "measured only"
        notes = "".join(f"<li>{html.escape(note)}</li>" for note in self.notes)
        stages = ""
        if self.steps:
            stages = (
                "<div>each step, with its own change (against the stage before it):</div>"
                + fmt.html_table(self._stage_headers(), self._stage_rows())
            )
        return (
            f"<div><b>OptimizeResult</b> · {steps} · latency on {self.threads} threads "
            f"({html.escape(self.device)})"
            f"{fmt.html_table(['', 'before', 'after', 'change'], self._table_rows())}{stages}"
            + (f"<ul>{notes}</ul>" if notes else "")
            + (
                f"<div>{html.escape(self._batch_text())}: {html.escape(self.batch.summary())}</div>"
                if self.batch is not None
                else ""
            )
            + "</div>"
        )

    def _stage_headers(self) -> tuple[str, ...]:
        return ("step", "params", "size", "MACs", "latency", self.metric_name, "time", "detail")

    def _stage_rows(self) -> list[tuple[str, ...]]:
        rows = []
        previous = self.before
        for step in self.steps:
            cells = stage_cells(step.after, previous)
            rows.append((step.label, *cells, fmt.duration(step.seconds), step.detail))
            previous = step.after
        return rows

    def _table_rows(self) -> list[tuple[str, str, str, str]]:
        rows = []
        for name, change in self.report.items():
            if change.before is None and change.after is None:
                continue
            label = self.metric_name if name == "metric" else QUANTITIES[name]
            rows.append(
                (
                    label,
                    show(name, change.before),
                    show(name, change.after),
                    show_change(name, change),
                )
            )
        return rows


def _measurement_row(measurement: ModelMeasurement) -> dict[str, Any]:
    row = {f.name: getattr(measurement, f.name) for f in fields(measurement)}
    latency = row.pop("latency_s")
    row["latency_ms"] = None if latency is None else latency * 1000
    return row
