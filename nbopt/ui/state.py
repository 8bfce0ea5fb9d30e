"""What a live view shows, independent of how it is drawn: the state that events change."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Row:
    """One line of the live table; ``important`` rows are never skipped by throttling."""

    cells: tuple[Any, ...]
    text: str
    important: bool = False


@dataclass
class ProgressState:
    """Everything a live view shows, independent of how it is drawn."""

    kind: str = ""
    title: str = ""
    total: int | None = None
    done: int = 0
    failed: int = 0
    status: str = "running"  # running | done | interrupted | failed
    note: str = ""
    headline: str = ""
    columns: tuple[str, ...] = ()
    rows: list[Row] = field(default_factory=list)
    curve: list[tuple[float, float]] = field(default_factory=list)
    scatter: list[tuple[float, float]] = field(default_factory=list)
    curve_label: str = ""
    live: dict[str, str] = field(default_factory=dict)
    trial_curves: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    message: str = ""
    started: float = field(default_factory=time.perf_counter)

    @property
    def finished(self) -> bool:
        return self.status != "running"
