"""``AutoOptimizeResult``: the chosen model and plan, every trial, and the Pareto front."""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nbopt.compress._plan import Plan
from nbopt.compress._result import ModelMeasurement
from nbopt.compress.auto._tolerance import Tolerance
from nbopt.compress.report import ratio_text, show, text_table
from nbopt.ui import format as fmt

TARGETS = {"latency": "latency_s", "size": "size_bytes", "macs": "macs"}


@dataclass(frozen=True)
class LayerSensitivity:
    """What compressing one layer alone did to the metric.

    Attributes:
        kind: ``"quant"`` (quantized to int8 alone) or ``"prune"`` (its group pruned alone).
        layer: The layer's name; a pruning group is named by its largest layer.
        members: For a pruning group, every layer in it.
        metric: The metric with only this layer compressed.
        loss: How much worse than the baseline that is (negative: better).
        breaks: Whether this layer alone takes the metric outside the tolerance.
    """

    kind: str
    layer: str
    members: tuple[str, ...]
    metric: float
    loss: float
    breaks: bool


@dataclass
class PlanTrial:
    """One evaluated plan (``number`` None: the original model, measured first).

    Attributes:
        number: The trial's number in the search (and its study).
        plan: What was done to the model.
        status: The trial's status (``"ok"``, ``"failed"`` ...).
        ratio: The target (latency, size or MACs) of the plan's model over the original's.
        metric: The plan's model's metric.
        within: Whether the metric is within the tolerance.
        ratios: Each measured quantity's ratio (``{"size": 0.27, "macs": 0.3, ...}``).
        seconds: Time the trial took.
        reused: Whether its pruned float model came from an earlier trial.
        error: What a failed trial raised.
    """

    number: int | None
    plan: Plan
    status: str = "ok"
    ratio: float | None = None
    metric: float | None = None
    within: bool = False
    ratios: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    reused: bool = False
    error: str | None = None

    @classmethod
    def from_trial(cls, trial: Any, metric_name: str) -> PlanTrial:
        """The point of a tuning engine's trial (``trial.metrics`` as the search returns)."""
        metrics = trial.metrics
        return cls(
            trial.number,
            Plan.from_params(trial.params),
            status=trial.status,
            ratio=metrics.get("ratio"),
            metric=metrics.get(metric_name),
            within=metrics.get("within") == 1.0,
            ratios={k: metrics[f"{k}_ratio"] for k in TARGETS if f"{k}_ratio" in metrics},
            seconds=trial.duration,
            reused=metrics.get("reused") == 1.0,
            error=trial.error,
        )

    @property
    def name(self) -> str:
        return "original" if self.number is None else f"trial {self.number}"


@dataclass
class AutoOptimizeResult:
    """What :func:`nbopt.compress.optimize_auto` returns.

    Attributes:
        model: The chosen model: the plan within the tolerance with the lowest target ratio
            (the original, copied, when no plan was within it), or the front point picked with
            :meth:`select` (or the dropdown).
        chosen: The chosen point (its plan, ratio and metric).
        baseline: The original model, measured.
        original: The original model as a point: ratio 1, the baseline metric.
        trials: Every trial, in order.
        front: The Pareto front of metric against target ratio over every trial and the
            original, by increasing ratio.
        tolerance: The baseline metric and how far it may move.
        target: ``"latency"``, ``"size"`` or ``"macs"``.
        metric_name: The name of ``eval=``.
        sensitivity: Each layer's sensitivity, most harmful first within each kind.
        search: The tuning engine's :class:`nbopt.TuneResult` (trials with their scores).
        notes: Plain statements about what was and was not searched.
        threads: ``torch.get_num_threads()`` during the latency measurements.
        batch: With ``batch="auto"``, the chosen model's batch-size search (a
            :class:`nbopt.BatchSizeResult`).
    """

    model: Any
    chosen: PlanTrial
    baseline: ModelMeasurement
    original: PlanTrial
    trials: list[PlanTrial]
    front: list[PlanTrial]
    tolerance: Tolerance
    target: str
    metric_name: str
    sensitivity: list[LayerSensitivity] = field(default_factory=list)
    search: Any = None
    notes: list[str] = field(default_factory=list)
    threads: int = 1
    batch: Any = None
    models: dict[Plan, Any] = field(default_factory=dict, repr=False)
    rebuild: Callable[[Plan], Any] | None = field(default=None, repr=False)

    @property
    def plan(self) -> Plan:
        """The chosen plan."""
        return self.chosen.plan

    def select(self, point: int | str | PlanTrial) -> Any:
        """Make another point the chosen one: a trial number, ``"original"`` or a
        :class:`PlanTrial`. Returns its model, also in ``.model``.

        The models of the front are kept; another trial's model is rebuilt from its plan
        (a fine-tuned one is fine-tuned again, so its metric may differ a little) and kept
        from then on.
        """
        if isinstance(point, PlanTrial):
            found = point
        else:
            number = None if point == "original" else point
            matches = [p for p in (self.original, *self.trials) if p.number == number]
            if not matches or matches[0].status != "ok":
                known = ", ".join(str(p.number) for p in self.trials if p.status == "ok")
                raise ValueError(f"no successful trial {point!r}; trials: original, {known}")
            found = matches[0]
        model = self.models.get(found.plan)
        if model is None:
            if self.rebuild is None:
                raise ValueError(f"the model of {found.name} was not kept and cannot be rebuilt")
            model = self.models[found.plan] = self.rebuild(found.plan)
        self.model, self.chosen = model, found
        return model

    def to_dataframe(self) -> Any:
        """One row per point (the original, then each trial): the plan, the ratios, the
        metric, whether it is within the tolerance, on the front, chosen."""
        import pandas as pd

        on_front = {id(point) for point in self.front}
        rows = []
        for point in [self.original, *self.trials]:
            plan = point.plan
            rows.append(
                {
                    "trial": point.number,
                    "status": point.status,
                    "plan": plan.label(),
                    "prune": plan.prune,
                    "prune_keep": ",".join(plan.prune_keep),
                    "lowrank": plan.lowrank,
                    "quant": plan.quant,
                    "quant_keep": ",".join(plan.quant_keep),
                    f"{self.target}_ratio": point.ratio,
                    **{f"{name}_ratio": value for name, value in point.ratios.items()},
                    self.metric_name: point.metric,
                    "within": point.within,
                    "on_front": id(point) in on_front,
                    "chosen": point is self.chosen,
                    "reused": point.reused,
                    "seconds": point.seconds,
                    "error": point.error,
                }
            )
        frame = pd.DataFrame(rows)
        frame["trial"] = frame["trial"].astype("Int64")  # the original has none
        return frame

    def plot(self) -> Any:
        """A matplotlib figure: every trial's metric against its target ratio, the front, the
        tolerance and the chosen point."""
        from nbopt.ui.plots.compress import plot_auto_result

        return plot_auto_result(self)

    def picker(self) -> Any:
        """An ipywidgets box: a dropdown of the front's points over this summary; picking a
        point makes its model ``.model``."""
        from nbopt.ui.interactive import front_picker

        return front_picker(self)

    def point_text(self, point: PlanTrial) -> str:
        """``trial 7: latency 0.42x, accuracy 0.9749 · prune 0.5 + int8``."""
        metric = "n/a" if point.metric is None else show("metric", point.metric)
        ratio = "n/a" if point.ratio is None else ratio_text(point.ratio)
        mark = "" if point.within else " (outside tolerance)"
        return (
            f"{point.name}: {self.target} {ratio}, {self.metric_name} {metric}{mark} · "
            f"{point.plan.label()}"
        )

    def summary(self) -> str:
        """``latency 0.42x, accuracy 0.9749 -> 0.9724 (within accuracy >= 0.9652 ...)``."""
        chosen = self.chosen
        ratio = "n/a" if chosen.ratio is None else ratio_text(chosen.ratio)
        metric = "n/a" if chosen.metric is None else fmt.number(chosen.metric)
        return (
            f"{self.target} {ratio}, {self.metric_name} {fmt.number(self.tolerance.baseline)} -> "
            f"{metric} ({self.tolerance.describe(self.metric_name)}) with {chosen.plan.label()}"
        )

    def _counts(self) -> str:
        failed = sum(1 for t in self.trials if t.status == "failed")
        within = sum(1 for t in self.trials if t.within)
        text = f"{len(self.trials)} trials, {within} within the tolerance"
        return text + (f", {failed} failed" if failed else "")

    def __repr__(self) -> str:
        return f"<AutoOptimizeResult {self.chosen.name}: {self.summary()}; {self._counts()}>"

    def _front_rows(self) -> list[tuple[str, ...]]:
        rows = []
        for point in self.front:
            ratios = ", ".join(f"{k} {ratio_text(v)}" for k, v in point.ratios.items())
            rows.append(
                (
                    ("▶ " if point is self.chosen else "") + point.name,
                    point.plan.label(),
                    "n/a" if point.ratio is None else ratio_text(point.ratio),
                    show("metric", point.metric),
                    "yes" if point.within else "no",
                    ratios,
                )
            )
        return rows

    def _front_headers(self) -> tuple[str, ...]:
        return ("point", "plan", self.target, self.metric_name, "within", "all ratios")

    def _sensitivity_rows(self) -> list[tuple[str, ...]]:
        return [
            (
                item.kind,
                item.layer + (f" (+{len(item.members) - 1})" if len(item.members) > 1 else ""),
                show("metric", item.metric),
                f"{0.0 - item.loss:+.4g}" if math.isfinite(item.loss) else "destroyed",
                "yes" if item.breaks else "",
            )
            for item in self.sensitivity
        ]

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        lines = [repr(self), "", "Pareto front (metric against target ratio):"]
        lines.extend(text_table(self._front_headers(), self._front_rows()))
        if self.sensitivity:
            lines += ["", "each layer compressed alone:"]
            headers = ("kind", "layer", self.metric_name, "change", "breaks tolerance")
            lines.extend(text_table(headers, self._sensitivity_rows()))
        lines.extend(f"note: {note}" for note in self.notes)
        printer.text("\n".join(lines))

    def _repr_html_(self) -> str:
        notes = "".join(f"<li>{html.escape(note)}</li>" for note in self.notes)
        sensitivity = ""
        if self.sensitivity:
            headers = ["kind", "layer", self.metric_name, "change", "breaks tolerance"]
            sensitivity = (
                "<details><summary>each layer compressed alone</summary>"
                f"{fmt.html_table(headers, self._sensitivity_rows())}</details>"
            )
        return (
            f"<div><b>AutoOptimizeResult</b> · {html.escape(self.chosen.name)}: "
            f"{html.escape(self.summary())} · {html.escape(self._counts())} · latency on "
            f"{self.threads} threads"
            "<div>Pareto front of the metric against the target ratio:</div>"
            f"{fmt.html_table(self._front_headers(), self._front_rows())}{sensitivity}"
            + (f"<ul>{notes}</ul>" if notes else "")
            + "</div>"
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """In a notebook with widgets, the dropdown picker; elsewhere nothing, so that the
        HTML and text forms are shown."""
        from nbopt.ui.interactive import widget_bundle

        return widget_bundle(self.picker)
