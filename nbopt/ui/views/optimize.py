"""How the live view shows an optimisation's events, and how TensorBoard logs them.

TensorBoard gets one run per optimisation: each measured quantity as a scalar whose step is the
stage (0 for the original model, then 1, 2 ... after each step), the fine-tune's reports under
``finetune/`` (the loss, and with distillation its task and distillation terms), soft pruning's
zeroings under ``soft_pruning/``, the int8 backend's fidelity and an exported file's size under
``optimize/``, and the final report as a text table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nbopt.compress import ModelMeasurement
from nbopt.compress.events import (
    BaselineMeasured,
    FinetuneReported,
    OptimizeFinished,
    SoftPruningApplied,
    StepFinished,
    StepStarted,
)
from nbopt.compress.report import QUANTITIES, change_summary, show, show_change, stage_cells
from nbopt.ui import format as fmt
from nbopt.ui.state import ProgressState, Row

if TYPE_CHECKING:
    from nbopt.ui.tensorboard import TensorBoardReporter


def _row_text(label: str, cells: tuple[str, ...], metric_name: str, seconds: float | None) -> str:
    params, size, macs, latency, metric = cells
    text = f"{label:<26} params {params}  size {size}  MACs {macs}  latency {latency}"
    if metric != "n/a":
        text += f"  {metric_name} {metric}"
    if seconds is not None:
        text += f"  ({fmt.duration(seconds)})"
    return text


def present_baseline_measured(event: BaselineMeasured, state: ProgressState) -> None:
    cells = stage_cells(event.measurement, event.measurement)
    text = _row_text("original", cells, event.metric_name, None)
    state.rows.append(Row(("original", *cells, ""), text, important=True))


def present_step_started(event: StepStarted, state: ProgressState) -> None:
    state.live["running"] = f"step {event.index}/{event.total}: {event.label} …"


def present_step_finished(event: StepFinished, state: ProgressState) -> None:
    record = event.record
    state.done = event.index
    state.live.pop("running", None)
    state.live.pop("finetune", None)
    state.live.pop("soft pruning", None)
    cells = stage_cells(record.after, event.previous)
    text = _row_text(record.label, cells, event.metric_name, record.seconds)
    state.rows.append(
        Row((record.label, *cells, fmt.duration(record.seconds)), text, important=True)
    )
    state.headline = f"after {record.label}: " + change_summary(
        event.baseline, record.after, event.metric_name
    )


def present_finetune_reported(event: FinetuneReported, state: ProgressState) -> None:
    shown: dict[str, Any] = {} if event.value is None else {"value": event.value}
    shown.update(event.metrics)
    state.live["finetune"] = f"finetune step {event.step}: {fmt.params(shown)}"
    if event.value is not None:
        state.curve.append((event.step, event.value))
        state.curve_label = "fine-tune value"


def present_soft_pruning_applied(event: SoftPruningApplied, state: ProgressState) -> None:
    state.live["soft pruning"] = (
        f"soft pruning: {event.zeroed} of {event.channels} channels zero (zeroing "
        f"{event.count}); {event.revived} grew back since the last"
    )


def present_optimize_finished(event: OptimizeFinished, state: ProgressState) -> None:
    result = event.result
    state.headline = f"original -> optimised, side by side on {result.threads} threads: " + (
        result.summary()
    )


# Quantity -> (tag of its value, tag of its final ratio to the original).
_SCALARS = {
    "params": ("params", "params"),
    "nonzero": ("nonzero", "nonzero"),
    "size_bytes": ("size_bytes", "size"),
    "macs": ("macs", "macs"),
    "latency_s": ("latency_ms", "latency"),
}


def _log_measurement(
    reporter: TensorBoardReporter, measurement: ModelMeasurement, stage: int
) -> None:
    writer = reporter.root
    if writer is None:
        return
    for name, (tag, _) in _SCALARS.items():
        value = getattr(measurement, name)
        if value is not None:
            writer.scalar(f"optimize/{tag}", value * 1000 if name == "latency_s" else value, stage)
    if measurement.metric is not None:
        writer.scalar(f"optimize/{reporter.metric}", measurement.metric, stage)
    writer.flush()


def log_baseline_measured(reporter: TensorBoardReporter, event: BaselineMeasured) -> None:
    _log_measurement(reporter, event.measurement, 0)


def log_step_finished(reporter: TensorBoardReporter, event: StepFinished) -> None:
    _log_measurement(reporter, event.record.after, event.index)
    if reporter.root is None:
        return
    reporter.root.scalar("optimize/step_seconds", event.record.seconds, event.index)
    info = event.record.info
    if "fidelity" in info:
        reporter.root.scalar("optimize/int8_fidelity", info["fidelity"], event.index)
    if "file_bytes" in info:
        reporter.root.scalar("optimize/exported_bytes", info["file_bytes"], event.index)


def log_soft_pruning_applied(reporter: TensorBoardReporter, event: SoftPruningApplied) -> None:
    if reporter.root is None:
        return
    reporter.root.scalar("soft_pruning/zeroed", event.zeroed, event.count)
    reporter.root.scalar("soft_pruning/grew_back", event.revived, event.count)


def log_finetune_reported(reporter: TensorBoardReporter, event: FinetuneReported) -> None:
    if reporter.root is None:
        return
    if event.value is not None:
        reporter.root.scalar("finetune/value", event.value, event.step)
    for name, value in event.metrics.items():
        reporter.root.scalar(f"finetune/{name}", value, event.step)


def log_optimize_finished(reporter: TensorBoardReporter, event: OptimizeFinished) -> None:
    from tensorboard.plugins.text import summary_v2

    if reporter.root is None:
        return
    result = event.result
    for name, change in result.report.items():
        ratio = change.ratio
        if name != "metric" and ratio is not None:
            reporter.root.scalar(f"ratio/{_SCALARS[name][1]}", ratio, 0)
    lines = ["| | before | after | change |", "|---|---|---|---|"]
    for name, change in result.report.items():
        if change.before is not None or change.after is not None:
            label = result.metric_name if name == "metric" else QUANTITIES[name]
            lines.append(
                f"| {label} | {show(name, change.before)} | {show(name, change.after)} | "
                f"{show_change(name, change)} |"
            )
    lines.extend(f"\n{note}" for note in result.notes)
    reporter.root.summary(summary_v2.text_pb("optimize/report", "\n".join(lines)))
    reporter.root.flush()


PRESENTERS = {
    BaselineMeasured: present_baseline_measured,
    StepStarted: present_step_started,
    StepFinished: present_step_finished,
    FinetuneReported: present_finetune_reported,
    SoftPruningApplied: present_soft_pruning_applied,
    OptimizeFinished: present_optimize_finished,
}
LOGGERS = {
    BaselineMeasured: log_baseline_measured,
    StepFinished: log_step_finished,
    FinetuneReported: log_finetune_reported,
    SoftPruningApplied: log_soft_pruning_applied,
    OptimizeFinished: log_optimize_finished,
}
