"""How the live view shows an automatic optimisation, and how TensorBoard logs it.

The trials are the tuning engine's, so TensorBoard gets what ``%tune`` writes (one run per
trial, with the plan as HParams and its score); besides, the root run gets the sensitivity of
each layer, and at the end each trial's target ratio and metric (step = trial number) and the
Pareto front as a text table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nbopt.compress.auto.events import (
    AutoBaselineMeasured,
    AutoFinished,
    LayerMeasured,
    PlanTrialFinished,
    SearchStarted,
)
from nbopt.compress.report import ratio_text, show
from nbopt.tuning import TrialState
from nbopt.ui import format as fmt
from nbopt.ui.state import ProgressState, Row

if TYPE_CHECKING:
    from nbopt.ui.tensorboard import TensorBoardReporter


def present_auto_baseline_measured(event: AutoBaselineMeasured, state: ProgressState) -> None:
    state.note = f"keeping {event.tolerance.describe(event.metric_name)}"
    metric = show("metric", event.measurement.metric)
    text = f"original                   {event.metric_name} {metric}"
    state.rows.append(Row(("original", "no compression", "1.00x", metric, "yes", ""), text, True))


def present_layer_measured(event: LayerMeasured, state: ProgressState) -> None:
    item = event.sensitivity
    how = "quantized" if item.kind == "quant" else "pruned"
    state.live["sensitivity"] = (
        f"layer {event.index}/{event.total}: {item.layer} {how} alone -> "
        f"{event.metric_name} {show('metric', item.metric)}"
    )
    if item.breaks:
        metric = show("metric", item.metric)
        text = f"{item.layer} {how} alone: {event.metric_name} {metric}, outside the tolerance"
        cells = ("", f"{item.layer} {how} alone", "", metric, "outside", "")
        state.rows.append(Row(cells, text, important=True))


def present_search_started(event: SearchStarted, state: ProgressState) -> None:
    state.live.pop("sensitivity", None)
    state.total, state.done = event.total, event.resumed
    state.curve_label = "best ratio within the tolerance"
    if event.resumed:
        state.note += f"; resuming: {event.resumed} trials done"


def present_plan_trial_finished(event: PlanTrialFinished, state: ProgressState) -> None:
    trial, best = event.trial, event.best
    state.done, state.failed = event.n_complete, event.n_failed
    state.live.pop(f"trial {trial.number}", None)
    state.trial_curves.pop(trial.number, None)
    ratio = trial.metrics.get("ratio")
    within = trial.metrics.get("within") == 1.0
    if trial.status == TrialState.FAILED:
        verdict, shown_ratio, metric = f"FAILED {trial.error}", "", ""
    elif trial.status == TrialState.INTERRUPTED:
        verdict, shown_ratio, metric = "interrupted", "", ""
    else:
        verdict = "within" if within else "outside"
        shown_ratio = "n/a" if ratio is None else ratio_text(ratio)
        metric = show("metric", trial.metrics.get(event.metric_key))
        if within and ratio is not None:
            state.scatter.append((trial.number, ratio))
    new_best = best is not None and best.number == trial.number and within
    if best is not None and best.metrics.get("within") == 1.0:
        state.curve.append((trial.number, best.metrics["ratio"]))
        if new_best:
            state.headline = (
                f"best: trial {trial.number}, {event.target} {shown_ratio}, "
                f"{event.metric_key} {metric} · {event.plan}"
            )
    total = f"/{state.total}" if state.total else ""
    text = (
        f"trial {trial.number:>3} [{state.done}{total}]  {event.plan:<40} "
        f"{event.target} {shown_ratio}  {event.metric_key} {metric}  {verdict}"
        f"{'  *' if new_best else ''}  ({fmt.duration(trial.duration)})"
    )
    cells = (trial.number, event.plan, shown_ratio, metric, verdict, fmt.duration(trial.duration))
    state.rows.append(Row(cells, text, important=new_best or trial.status != TrialState.OK))


def present_auto_finished(event: AutoFinished, state: ProgressState) -> None:
    result = event.result
    state.headline = f"chosen: {result.chosen.name}, {result.summary()}"


def log_auto_baseline_measured(reporter: TensorBoardReporter, event: AutoBaselineMeasured) -> None:
    if reporter.root is None:
        return
    reporter.root.scalar("auto/baseline_metric", event.tolerance.baseline, 0)
    reporter.root.scalar("auto/allowed_metric", event.tolerance.allowed, 0)


def log_layer_measured(reporter: TensorBoardReporter, event: LayerMeasured) -> None:
    if reporter.root is None:
        return
    item = event.sensitivity
    reporter.root.scalar(f"sensitivity/{item.kind}/{item.layer}", item.metric, 0)
    reporter.root.flush()


def log_auto_finished(reporter: TensorBoardReporter, event: AutoFinished) -> None:
    from tensorboard.plugins.text import summary_v2

    if reporter.root is None:
        return
    result = event.result
    for point in result.trials:
        if point.number is None or point.ratio is None or point.metric is None:
            continue
        reporter.root.scalar(f"auto/{result.target}_ratio", point.ratio, point.number)
        reporter.root.scalar(f"auto/{result.metric_name}", point.metric, point.number)
    lines = [
        f"| point | plan | {result.target} | {result.metric_name} | within |",
        "|---|---|---|---|---|",
    ]
    for point in result.front:
        ratio = "n/a" if point.ratio is None else ratio_text(point.ratio)
        lines.append(
            f"| {point.name} | {point.plan.label()} | {ratio} | {show('metric', point.metric)} "
            f"| {'yes' if point.within else 'no'} |"
        )
    lines.append(f"\nchosen: {result.chosen.name}, {result.summary()}")
    reporter.root.summary(summary_v2.text_pb("auto/front", "\n".join(lines)))
    reporter.root.flush()


PRESENTERS = {
    AutoBaselineMeasured: present_auto_baseline_measured,
    LayerMeasured: present_layer_measured,
    SearchStarted: present_search_started,
    PlanTrialFinished: present_plan_trial_finished,
    AutoFinished: present_auto_finished,
}
LOGGERS = {
    AutoBaselineMeasured: log_auto_baseline_measured,
    LayerMeasured: log_layer_measured,
    AutoFinished: log_auto_finished,
}
