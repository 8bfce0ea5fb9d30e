"""How an optimisation's measurements are read: the quantities, their units, each one's change
from before to after, and each stage's own contribution. Used by the result objects, the live
views and the plots alike, so that all show the same numbers the same way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from nbopt.ui import format as fmt

if TYPE_CHECKING:
    from nbopt.compress._result import ModelMeasurement, OptimizeResult

# Quantities of a ModelMeasurement, in report order, with how to show them.
QUANTITIES = {
    "params": "parameters",
    "nonzero": "non-zero parameters",
    "size_bytes": "serialized size",
    "macs": "MACs",
    "latency_s": "latency",
    "metric": "metric",
}


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


def stage_cells(measurement: ModelMeasurement, previous: ModelMeasurement) -> tuple[str, ...]:
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


def change_summary(before: ModelMeasurement, after: ModelMeasurement, metric_name: str) -> str:
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


def text_table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    return [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    ]
