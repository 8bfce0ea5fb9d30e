"""The optimisation run: validate everything, then prune, factorise, fine-tune and quantize a
copy of the model, measuring it after each step.

Nothing the user passed is changed before every check has passed, and the original model is
never changed at all unless ``inplace=True``, in which case it takes the optimised model's
state only once every step has succeeded.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from nbopt.compress._finetune import Trainer
from nbopt.compress._inputs import device_of, eval_mode, set_eval, working_copy
from nbopt.compress._measure import measure, measure_latency, read_metric
from nbopt.compress._plan import Step, function_name
from nbopt.compress._registry import StaticInt8, StepContext
from nbopt.compress._result import ModelMeasurement, OptimizeResult, StepRecord
from nbopt.compress.events import (
    BaselineMeasured,
    FinetuneReported,
    OptimizeFinished,
    SoftPruningApplied,
    StepFinished,
    StepStarted,
)
from nbopt.errors import ConfigError
from nbopt.events import EventBus, RunFinished, RunStarted, reporting_failure


class Optimization:
    """One run of :func:`nbopt.compress.optimize`."""

    def __init__(
        self,
        model: Any,
        steps: list[Step],
        *,
        trainer: Trainer | None,
        example: Any,
        evaluate: Callable[[Any], Any] | None,
        inplace: bool,
        bus: EventBus,
        name: str,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if evaluate is not None and not callable(evaluate):
            raise ConfigError(
                f"evaluate= must be a function of the model, got {type(evaluate).__name__}"
            )
        if inplace and any(isinstance(s.config, StaticInt8) for s in steps):
            raise ConfigError(
                "inplace=True cannot be used with quant=int8-static: it makes a new kind of "
                "model (a GraphModule); use the result's .model"
            )
        if inplace and any(s.kind == "transfer" for s in steps):
            raise ConfigError(
                "inplace=True cannot be used with student=: the result is another "
                "architecture; use the result's .model"
            )
        self.original = model
        self.steps = steps
        self.trainer = trainer
        self.baseline: ModelMeasurement | None = None
        self.records: list[StepRecord] = []
        self._in_step = False
        self.example = example
        self.evaluate = evaluate
        self.inplace = inplace
        self.bus = bus
        self.name = name
        self.metric_name = function_name(evaluate, "metric")
        self.work: nn.Module = model
        self.context = StepContext(
            example, device_of(model), None if trainer is None else trainer.sample(example)
        )
        self._zeroings = 0

    def run(self) -> OptimizeResult:
        """Validate, then run every step; re-raises what a step raised, with the original
        model unchanged."""
        metric = self._prepare()
        labels = " -> ".join(step.label for step in self.steps) or "measure"
        self.bus.emit(
            RunStarted(
                kind="optimize",
                title=f"optimize · {labels}",
                total=len(self.steps),
                unit="steps",
                metric=self.metric_name,
                mode="max",
                name=self.name,
                columns=("step", "params", "size", "MACs", "latency", self.metric_name, "time"),
                config={"steps": [step.label for step in self.steps]},
            )
        )
        with reporting_failure(
            self.bus, "optimize", "the original model is unchanged", partial=self._partial
        ):
            self.baseline = baseline = measure(self.work, self.example, metric=metric)
            self.bus.emit(BaselineMeasured(baseline, self.metric_name))
            for index, step in enumerate(self.steps, 1):
                self.bus.emit(StepStarted(index, len(self.steps), step.label))
                previous = self.records[-1].after if self.records else baseline
                self.records.append(self._run_step(step))
                self.bus.emit(
                    StepFinished(index, self.records[-1], baseline, previous, self.metric_name)
                )
            result = self._finish(baseline, self.records)
        self.bus.emit(OptimizeFinished(result))
        self.bus.emit(RunFinished("optimize", "done", result.summary(), result=result))
        return result

    def _partial(self) -> OptimizeResult | None:
        """What finished before an interrupt or an error: the working copy after the steps
        that ran (the original is unchanged, even with ``inplace=True``)."""
        if self.baseline is None:
            return None
        done = len(self.records)
        last = self.records[-1].after if self.records else self.baseline
        note = f"stopped after {done} of {len(self.steps)} steps; the original is unchanged"
        if self._in_step:
            # Steps change the working copy in place: cut in the middle of one, it is neither
            # the last finished stage nor the next.
            note += "; the working copy was cut in the middle of a step, so .model is None"
        return OptimizeResult(
            model=None if self._in_step else self.work,
            before=self.baseline,
            after=last,
            steps=list(self.records),
            notes=[note],
            metric_name=self.metric_name,
            threads=torch.get_num_threads(),
            device=str(self.context.device),
        )

    def _prepare(self) -> float | None:
        """Copy the model and check every input on the copy (the steps after a transfer on
        the student); the baseline metric."""
        self.work = working_copy(
            self.original,
            self.example,
            "optimize works on a copy so that a failing step never leaves the model half-changed",
        )
        if self.trainer is not None:
            self.trainer = self.trainer.with_teacher(self.original)
        target = self.work
        for step in self.steps:
            check = step.backend.load_check() if step.backend is not None else None
            if check is not None:
                check(target, step.config, self.context)
            if step.kind == "transfer":
                target = step.config.student
            elif step.kind == "finetune" and self.trainer is not None:
                self.trainer.check(target, self.context.probe, step.config.distill)
        return None if self.evaluate is None else read_metric(self.evaluate(self.work))

    def _run_step(self, step: Step) -> StepRecord:
        clock = time.perf_counter()
        # A fine-tune cut short leaves a model that works (unless it fake-quantizes or
        # soft-prunes); a transformation cut short may not.
        self._in_step = step.backend is not None or step.config.qat or bool(step.config.soft)
        if step.backend is None:
            outcome = self._run_finetune(step)
        else:
            outcome = step.backend.load()(self.work, step.config, self.context)
        self._in_step = False
        seconds = time.perf_counter() - clock
        self.work = outcome.model
        set_eval(self.work)
        if step.kind == "export":
            # The model is as it was: only a file was written.
            after = self.records[-1].after if self.records else self.baseline
        else:
            metric = None if self.evaluate is None else read_metric(self.evaluate(self.work))
            after = measure(self.work, self.example, metric=metric)
        return StepRecord(
            step.kind,
            step.label,
            outcome.detail,
            seconds,
            after,
            tuple(outcome.notes),
            outcome.info,
        )

    def _run_finetune(self, step: Step) -> Any:
        """Fine-tune the model (in training mode) as the step says; what the training
        reports goes to the live view and TensorBoard."""

        def reported(number: int, value: float | None, metrics: dict[str, float]) -> None:
            self.bus.emit(FinetuneReported(number, value, metrics))

        def zeroed(zeroing: Any) -> None:
            self._zeroings += 1
            self.bus.emit(
                SoftPruningApplied(
                    self._zeroings, zeroing.zeroed, zeroing.channels, zeroing.revived
                )
            )

        if self.trainer is None:
            raise ConfigError("a fine-tune step needs finetune= or data=")
        quant = next((s.config for s in self.steps if s.kind == "quant"), None)
        return self.trainer.run(
            self.work,
            step.config,
            self.context,
            on_report=reported,
            on_soft=zeroed,
            skip=getattr(quant, "skip", ()),
            backend=getattr(quant, "backend", "torchao"),
        )

    def _finish(self, baseline: ModelMeasurement, records: list[StepRecord]) -> OptimizeResult:
        last = records[-1].after if records else baseline
        before, after = baseline, last
        if self.example is not None:
            # The summary compares the two models side by side, alternating calls, so that a
            # change in the machine's load during the run does not show as a speed-up. The
            # original runs with its hooks suspended and its buffers restored afterwards.
            with eval_mode(self.original):
                first, second = measure_latency([self.original, self.work], self.example)
            before = dataclasses.replace(baseline, latency_s=first)
            after = dataclasses.replace(last, latency_s=second)
        notes = list(dict.fromkeys(note for record in records for note in record.notes))
        slower = _slowdown(before, after, records)
        if slower:
            notes.insert(0, slower)
        model = self.work
        if self.inplace:
            _become(self.original, self.work)
            model = self.original
        return OptimizeResult(
            model=model,
            before=before,
            after=after,
            steps=records,
            notes=notes,
            metric_name=self.metric_name,
            threads=torch.get_num_threads(),
            device=str(self.context.device),
        )


# A latency ratio above this is reported as a slowdown (below it, timing noise can explain it).
SLOWDOWN = 1.05
# Why a step of each kind can make a model slower, when its own notes do not say.
_LIKELY_CAUSE = {
    "quant": (
        "dynamic int8 quantizes the activations at every call, which costs more than it saves "
        "on small layers (recurrent layers, narrow Linear layers); static int8 is fast only "
        "once compiled (torch.compile with Inductor); float16 and bfloat16 need hardware with "
        "fast kernels for them"
    ),
    "prune": "pruned layers whose widths no longer suit the hardware's kernels",
    "lowrank": "two thin layers can cost more calls than the one layer they replace",
}


def _slowdown(
    before: ModelMeasurement, after: ModelMeasurement, records: list[StepRecord]
) -> str | None:
    """A note when the optimised model is slower than the original: which steps made it
    slower (each step's own latency against the stage before it, the first against ``before``
    as the report's step table does), and the likely cause."""
    if not before.latency_s or after.latency_s is None:
        return None
    ratio = after.latency_s / before.latency_s
    if ratio <= SLOWDOWN:
        return None
    culprits = []
    previous = before
    for record in records:
        own = record.after.latency_s, previous.latency_s
        if own[0] and own[1] and own[0] / own[1] > SLOWDOWN:
            cause = "see its note" if record.notes else _LIKELY_CAUSE.get(record.kind, "")
            culprits.append(f"{record.label} ({own[0] / own[1]:.2f}x: {cause})")
        previous = record.after
    which = "; ".join(culprits) or "no single step (each was within timing noise)"
    return f"the optimised model is {ratio:.2f}x slower than the original here: {which}"


def _become(original: nn.Module, optimised: nn.Module) -> None:
    """Give ``original`` the optimised model's state, so that the user's variable is the
    optimised model."""
    if type(optimised) is not type(original):
        raise ConfigError(
            f"inplace=True: the optimised model is a {type(optimised).__name__}, not a "
            f"{type(original).__name__}; the original is unchanged, use the result's .model"
        )
    original.__dict__.clear()
    original.__dict__.update(optimised.__dict__)
