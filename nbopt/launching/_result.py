"""``LaunchResult``: how a job went, rank by rank, and what came back from rank 0."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from nbopt.ui import format as fmt


@dataclass(frozen=True)
class RankOutcome:
    """How one rank ended: ``status`` is ``"done"``, ``"failed"`` or ``"stopped"`` (by the
    launcher, because another rank failed, on a timeout or an interrupt)."""

    rank: int
    status: str
    seconds: float
    detail: str = ""


@dataclass
class LaunchResult:
    """The outcome of a job: what ``%%accelerate`` stores in ``out=`` and ``_nbopt``.

    Attributes:
        status: ``"done"``, ``"failed"``, ``"timed out"`` or ``"interrupted"``.
        num_processes: Ranks in the job.
        device: ``"cpu"`` or ``"cuda"``.
        mixed_precision: What ``Accelerator()`` used.
        seconds: Wall time of the job.
        ranks: How each rank ended, in rank order.
        value: What the function returned in rank 0 (None unless the job was done).
        variables: For a cell, the variables copied back from rank 0 (``copy_back=``).
        error: What went wrong, for a job that did not finish.
    """

    status: str
    num_processes: int
    device: str
    mixed_precision: str = "no"
    seconds: float = 0.0
    ranks: list[RankOutcome] = field(default_factory=list)
    value: Any = field(default=None, repr=False)
    variables: dict[str, Any] = field(default_factory=dict, repr=False)
    error: str | None = None

    def summary(self) -> str:
        """``2 ranks on cpu, done in 3.2 s`` (or how it ended)."""
        ranks = "1 rank" if self.num_processes == 1 else f"{self.num_processes} ranks"
        text = f"{ranks} on {self.device}, {self.status} in {fmt.duration(self.seconds)}"
        return text + (f": {self.error}" if self.error else "")

    def __repr__(self) -> str:
        copied = f"; copied back: {', '.join(self.variables)}" if self.variables else ""
        return f"<LaunchResult {self.summary()}{copied}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def _repr_html_(self) -> str:
        rows = [(r.rank, r.status, fmt.duration(r.seconds), r.detail) for r in self.ranks]
        table = fmt.html_table(["rank", "status", "time", "detail"], rows)
        copied = ", ".join(html.escape(name) for name in self.variables)
        return (
            f"<div><b>LaunchResult</b> · {html.escape(self.summary())}"
            + (f"<br>copied back from rank 0: {copied}" if copied else "")
            + f"{table}</div>"
        )
