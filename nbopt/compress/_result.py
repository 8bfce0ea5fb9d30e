"""``OptimizeResult``: the optimised model and its measured before/after report."""

from __future__ import annotations

import html
from dataclasses import dataclass, field, fields
from typing import Any

from nbopt.ui import _format as fmt

# Quantities of a Measurement, in report order, with how to show them.
QUANTITIES = {
    "params": "parameters",
    "nonzero": "non-zero parameters",
    "size_bytes": "serialized size",
    "macs": "MACs",
    "latency_s": "latency",
    "metric": "metric",
}


@dataclass(frozen=True)
class Measurement:
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
class Change:
    """A quantity before and after: ``ratio`` is after/before, ``delta`` after - before."""

    before: float | None
    after: float | None

    @property
    def ratio(self) -> float | None:
        if self.before is None or self.after is None or self.before == 0:
            return None
        return self.after / self.before

    @property
    def delta(self) -> float | None:
        if self.before is None or self.after is None:
            return None
        return self.after - self.before


@dataclass(frozen=True)
class StepRecord:
    """One step that ran: its kind (``"prune"``), label, time, and the model measured after it."""

    kind: str
    label: str
    detail: str
    seconds: float
    after: Measurement
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
    before: Measurement
    after: Measurement
    steps: list[StepRecord]
    notes: list[str] = field(default_factory=list)
    metric_name: str = "metric"
    threads: int = 1
    device: str = "cpu"
    batch: Any = None

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
        from nbopt.compress._plot import plot_optimize_result

        return plot_optimize_result(self)

    def summary(self) -> str:
        """``size 0.26x, MACs 0.25x, latency 0.41x, accuracy 0.981 -> 0.975``."""
        text = change_summary(self.before, self.after, self.metric_name)
        return text if self.batch is None else f"{text}, {self._batch_text()}"

    def _batch_text(self) -> str:
        chosen = self.batch.batch_size
        return f"batch size {chosen} ({self.batch.throughput(chosen):,.0f} samples/s)"

    def __repr__(self) -> str:
        steps = " -> ".join(step.label for step in self.steps) or "measured only"
        return f"<OptimizeResult {steps}: {self.summary()}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        lines = [repr(self), ""]
        lines.extend(_text_table(("", "before", "after", "change"), self._table_rows()))
        if self.steps:
            lines += ["", "each step, with its own change (against the stage before it):"]
            lines.extend(_text_table(self._stage_headers(), self._stage_rows()))
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


def _measurement_row(measurement: Measurement) -> dict[str, Any]:
    row = {f.name: getattr(measurement, f.name) for f in fields(measurement)}
    latency = row.pop("latency_s")
    row["latency_ms"] = None if latency is None else latency * 1000
    return row


PLOTTED = {
    "params": "parameters",
    "nonzero": "non-zeros",
    "size_bytes": "size",
    "macs": "MACs",
    "latency_s": "latency",
}


def stage_ratios(result: OptimizeResult) -> list[tuple[str, dict[str, float | None]]]:
    """Each step's measurements as fractions of the original's, for plotting."""
    return [
        (
            step.label,
            {
                name: Change(getattr(result.before, name), getattr(step.after, name)).ratio
                for name in PLOTTED
            },
        )
        for step in result.steps
    ]


def stage_cells(measurement: Measurement, previous: Measurement) -> tuple[str, ...]:
    """Params, size, MACs, latency and the metric after a step, each with its change from
    ``previous`` (the stage before the step): the step's own contribution."""
    cells = []
    for name in ("params", "size_bytes", "macs", "latency_s", "metric"):
        value = getattr(measurement, name)
        text = show(name, value)
        if measurement is not previous and value is not None:
            change = show_change(name, Change(getattr(previous, name), value))
            text += f" ({change})" if change else ""
        cells.append(text)
    return tuple(cells)


def show(name: str, value: float | None) -> str:
    """A quantity in the unit it is read in: ``1.2 MB``, ``3.4 ms``, ``1.23M``."""
    if value is None:
        return "n/a"
    if name == "size_bytes":
        return _scaled(value, ("B", "kB", "MB", "GB"), 1000)
    if name == "latency_s":
        return fmt.duration(value) if value >= 1 else f"{value * 1000:.3g} ms"
    if name == "metric":
        return fmt.number(value, 4)
    return _scaled(value, ("", "k", "M", "G"), 1000, space="")


def show_change(name: str, change: Change) -> str:
    """``0.26x`` for a quantity (``0.0031x`` for a small ratio), ``+0.012`` for the metric."""
    if name == "metric":
        delta = change.delta
        return "" if delta is None else f"{delta:+.4g}"
    return "" if change.ratio is None else ratio_text(change.ratio)


def ratio_text(ratio: float) -> str:
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x"


def change_summary(before: Measurement, after: Measurement, metric_name: str) -> str:
    parts = []
    for name, label in (("size_bytes", "size"), ("macs", "MACs"), ("latency_s", "latency")):
        ratio = Change(getattr(before, name), getattr(after, name)).ratio
        if ratio is not None:
            parts.append(f"{label} {ratio_text(ratio)}")
    if before.metric is not None and after.metric is not None:
        parts.append(f"{metric_name} {fmt.number(before.metric)} -> {fmt.number(after.metric)}")
    return ", ".join(parts) if parts else "no measurement"


def _scaled(value: float, units: tuple[str, ...], base: int, space: str = " ") -> str:
    magnitude = 0
    while abs(value) >= base and magnitude < len(units) - 1:
        value /= base
        magnitude += 1
    if magnitude == 0 and float(value).is_integer():
        return f"{int(value)}{space}{units[0]}".rstrip()
    return f"{value:.3g}{space}{units[magnitude]}"


def _text_table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    return [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    ]
