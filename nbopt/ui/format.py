"""Pure formatting helpers shared by the text view, the widget and the result objects."""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def number(value: Any, digits: int = 4) -> str:
    """A short form of a number: ``0.001234``, ``1.23e+05``, ``42``; other values as ``str``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}"


def params(values: Mapping[str, Any], limit: int = 80) -> str:
    """``lr=0.001 layers=2``, cut with an ellipsis past ``limit`` characters."""
    text = " ".join(f"{key}={number(value)}" for key, value in values.items())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def html_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], style: str = "") -> str:
    """An HTML table; cells are escaped and numbers shortened."""
    head = "".join(
        f"<th style='text-align:left;padding:0 8px'>{html.escape(h)}</th>" for h in headers
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td style='text-align:left;padding:0 8px'>{html.escape(number(cell))}</td>"
            for cell in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table style='{style}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_LABEL = "font-size='10' fill='#555'"


def svg_curve(
    points: Sequence[tuple[float, float]],
    width: int = 260,
    height: int = 90,
    scatter: Sequence[tuple[float, float]] = (),
) -> str:
    """A small SVG line chart (best so far) with optional dots (each trial), no axes library."""
    every = list(points) + list(scatter)
    if not every:
        return f"<svg width='{width}' height='{height}'></svg>"
    xs = [p[0] for p in every]
    ys = [p[1] for p in every if math.isfinite(p[1])]
    if not ys:
        return f"<svg width='{width}' height='{height}'></svg>"
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    pad = 6

    def at(x: float, y: float) -> tuple[float, float]:
        sx = pad + (width - 2 * pad) * ((x - x0) / (x1 - x0) if x1 > x0 else 0.5)
        sy = height - pad - (height - 2 * pad) * ((y - y0) / (y1 - y0) if y1 > y0 else 0.5)
        return sx, sy

    dots = "".join(
        "<circle cx='{:.1f}' cy='{:.1f}' r='2' fill='#9ab'/>".format(*at(x, y))
        for x, y in scatter
        if math.isfinite(y)
    )
    line = " ".join("{:.1f},{:.1f}".format(*at(x, y)) for x, y in points if math.isfinite(y))
    return (
        f"<svg width='{width}' height='{height}' style='border:1px solid #ddd'>{dots}"
        f"<polyline fill='none' stroke='#1f77b4' stroke-width='2' points='{line}'/>"
        f"<text x='{pad}' y='12' {_LABEL}>{html.escape(number(y1))}</text>"
        f"<text x='{pad}' y='{height - 2}' {_LABEL}>{html.escape(number(y0))}</text>"
        "</svg>"
    )


def flatten_params(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"opt": {"lr": 0.1}}`` -> ``{"opt.lr": 0.1}``, for tables and HParams."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_params(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def param_items(params: Any) -> dict[str, Any]:
    """Parameters as a flat name -> value mapping (a non-dict space is one ``params`` entry)."""
    return flatten_params(params) if isinstance(params, dict) else {"params": params}
