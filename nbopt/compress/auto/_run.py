"""The automatic optimisation run: check, measure the baseline and each layer's sensitivity,
then search compression plans on nbopt's tuning engine and assemble the Pareto front.

Nothing the user passed is changed: every plan is built from a copy of the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import nn

from nbopt.compress._finetune import Trainer
from nbopt.compress._inputs import device_of, working_copy
from nbopt.compress._int8 import check_backend as check_int8_backend
from nbopt.compress._measure import measure, measure_latency, read_metric
from nbopt.compress._plan import Plan
from nbopt.compress._prune import ignored_modules
from nbopt.compress._registry import QUANTIZATION, StepContext
from nbopt.compress.auto._builder import FinetuneFailed, PlanBuilder
from nbopt.compress.auto._pareto import pareto_front
from nbopt.compress.auto._result import TARGETS, AutoOptimizeResult, LayerSensitivity, PlanTrial
from nbopt.compress.auto._search import PLAN_SEARCH, PlanSpace, score
from nbopt.compress.auto._space import plan_space
from nbopt.compress.auto._tolerance import Tolerance
from nbopt.compress.auto.events import (
    AutoBaselineMeasured,
    AutoFinished,
    LayerMeasured,
    PlanTrialFinished,
    SearchStarted,
)
from nbopt.errors import ConfigError, TuneError
from nbopt.events import EventBus, RunFinished, RunStarted, StepReported, reporting_failure
from nbopt.tuning.events import TrialFinished, TrialStarted

_RESERVED_KEYS = {"score", "ratio", "within", "reused", "size_ratio", "macs_ratio", "latency_ratio"}


class AutoOptimization:
    """One run of :func:`nbopt.compress.optimize_auto`; the arguments are its own."""

    def __init__(
        self,
        model: Any,
        *,
        evaluate: Callable[[Any], Any] | None,
        tolerable_loss: float,
        loss_mode: str,
        mode: str,
        target: str,
        example: Any,
        max_trials: int,
        stop_at: float | None,
        trainer: Trainer | None,
        quant_backend: str,
        calib: Any,
        prune_ignore: tuple[str, ...],
        study: Any,
        restart: bool,
        seed: int | None,
        bus: EventBus,
        name: str,
    ) -> None:
        _check_arguments(model, evaluate, target, example, max_trials, stop_at)
        # Checks the tolerance's own arguments now; the baseline comes later.
        Tolerance(0.0, tolerable_loss, loss_mode, mode)
        if study is not None:
            # Read and checked before the baseline and sensitivity passes, which take minutes;
            # its search space is checked when the search starts.
            from nbopt.tuning import check_study

            check_study(study, metric="score", mode="min", restart=restart)
        self.original = model
        self.evaluate = cast(Callable[[Any], Any], evaluate)
        self.settings = (tolerable_loss, loss_mode, mode)
        self.target, self.example, self.calib = target, example, calib
        self.max_trials, self.stop_at, self.seed = max_trials, stop_at, seed
        self.trainer, self.quant_backend = trainer, quant_backend
        self.prune_ignore = prune_ignore
        self.study, self.restart = study, restart
        self.bus, self.name = bus, name
        self.metric_name = getattr(evaluate, "__name__", "metric")
        if self.metric_name == "<lambda>" or self.metric_name in _RESERVED_KEYS:
            self.metric_name = "metric"
        self.notes: list[str] = []
        self.points: dict[Plan, tuple[float, float]] = {}
        self.models: dict[Plan, nn.Module] = {}
        self.user_error: Exception | None = None
        self.trial: int | None = None
        self.sensitivity: list[LayerSensitivity] = []
        self.searched: Any = None  # the search's TuneResult, complete or partial

    def run(self) -> AutoOptimizeResult:
        """Check and measure, search, and assemble the result; re-raises what the user's
        fine-tune function raised, and KeyboardInterrupt after saving the study."""
        self.tolerance = self._prepare()
        self.bus.emit(
            RunStarted(
                kind="optimize-auto",
                title=f"optimize auto · lowest {self.target} within tolerance",
                total=self.max_trials,
                metric="score",
                mode="min",
                name=self.name,
                columns=("trial", "plan", self.target, self.metric_name, "tolerance", "time"),
                config={"target": self.target, "max_trials": self.max_trials},
            )
        )
        with reporting_failure(
            self.bus, "optimize-auto", "the model is unchanged", partial=self._partial
        ):
            self.baseline = measure(self.work, self.example, metric=self.tolerance.baseline)
            self.bus.emit(AutoBaselineMeasured(self.baseline, self.metric_name, self.tolerance))
            space, self.sensitivity = self._space()
            search = self._search(space)
            result = self._result(search, self.sensitivity)
        self.bus.emit(AutoFinished(result))
        self.bus.emit(RunFinished("optimize-auto", "done", result.summary(), result=result))
        return result

    # -- before any work ------------------------------------------------------------------------

    def _prepare(self) -> Tolerance:
        """Copy the model, run the example, evaluate twice; the tolerance around the baseline."""
        self.work: nn.Module = working_copy(
            self.original, self.example, "auto builds every plan from a copy"
        )
        sample = None if self.trainer is None else self.trainer.sample(self.example)
        self.context = StepContext(self.example, device_of(self.work), sample)
        ignored_modules(self.work, self.prune_ignore)
        check_int8_backend(self.quant_backend, self.context.device)
        if self.trainer is not None:
            self.trainer = self.trainer.with_teacher(self.original)
            self.trainer.check(self.work, sample, self.trainer.teacher is not None)
        if self.calib is not None:
            backend = QUANTIZATION.get("int8-static")
            backend.load_check()(self.work, backend.make_config(calib=self.calib), self.context)
        first = read_metric(self.evaluate(self.work))
        second = read_metric(self.evaluate(self.work))
        if first != second and not (math.isnan(first) and math.isnan(second)):
            raise ConfigError(
                f"evaluate= is not deterministic: it gave {first!r}, then {second!r} for the same "
                "model; auto compares plans by it, so it must give the same value each time "
                "(a fixed validation set, no dropout or shuffling, the model in eval mode)"
            )
        return Tolerance(first, *self.settings)

    # -- the search space -----------------------------------------------------------------------

    def _space(self) -> tuple[PlanSpace, list[LayerSensitivity]]:
        def on_layer(item: LayerSensitivity, index: int, total: int) -> None:
            self.bus.emit(LayerMeasured(item, index, total, self.metric_name))

        return plan_space(
            self.work,
            evaluate=self.evaluate,
            tolerance=self.tolerance,
            context=self.context,
            target=self.target,
            calib=self.calib,
            prune_ignore=self.prune_ignore,
            stop_at=self.stop_at,
            soft=self.trainer is not None,
            quant_backend=self.quant_backend,
            halted=lambda: self.user_error is not None,
            on_layer=on_layer,
            notes=self.notes,
        )

    # -- the search -----------------------------------------------------------------------------

    def _search(self, space: PlanSpace) -> Any:
        from nbopt.tuning import tune

        self.builder = PlanBuilder(
            self.work,
            self.context,
            prune_ignore=self.prune_ignore,
            calib=self.calib,
            trainer=self.trainer,
            quant_backend=self.quant_backend,
            on_report=self._finetune_reported,
        )
        self.points[Plan()] = (1.0, self.tolerance.baseline)
        self.models[Plan()] = self.work
        self._dimensions = tuple(space)
        try:
            search = tune(
                self._objective,
                space,
                max_evals=self.max_trials,
                algo=PLAN_SEARCH,
                seed=self.seed,
                metric="score",
                mode="min",
                study=self.study,
                restart=self.restart,
                progress="none",
                logdir=None,
                callbacks=[self._relay],
            )
        except TuneError:
            if self.user_error is not None:
                raise self.user_error from None
            if self.searched is None:
                raise
            # Every plan failed on this model: the result keeps the original and says why.
            search = self.searched
        if self.user_error is not None:
            raise self.user_error
        return search

    def _objective(self, params: dict[str, Any]) -> dict[str, float]:
        plan = Plan.from_params(params)
        try:
            model, reused = self.builder.build(plan)
        except FinetuneFailed as failed:
            self.user_error = failed.error
            raise
        metric = read_metric(self.evaluate(model))
        ratios = self._ratios(model)
        ratio = ratios[self.target]
        within = self.tolerance.within(metric)
        self._remember(plan, model, ratio, metric)
        return {
            "score": score(ratio, within, self.tolerance.shortfall(metric)),
            "ratio": ratio,
            self.metric_name: metric,
            "within": float(within),
            "reused": float(reused),
            **{f"{name}_ratio": value for name, value in ratios.items()},
        }

    def _ratios(self, model: nn.Module) -> dict[str, float]:
        """Size, MACs and (for target=latency) latency of ``model`` over the original's; the
        latencies are measured side by side."""
        after = measure(model, self.example, latency=False)
        before = self.baseline
        ratios = {"size": after.size_bytes / before.size_bytes}
        if after.macs is not None and before.macs:
            ratios["macs"] = after.macs / before.macs
        if self.target == "latency":
            reference, latency = measure_latency([self.work, model], self.example)
            ratios["latency"] = latency / reference
        return ratios

    def _remember(self, plan: Plan, model: nn.Module, ratio: float, metric: float) -> None:
        """Keep the model only while it is on the front: memory stays bounded by the front."""
        self.points[plan] = (ratio, metric)
        plans = list(self.points)
        front = {
            plans[i] for i in pareto_front([self.points[p] for p in plans], self.tolerance.mode)
        }
        if plan in front:
            self.models[plan] = model
        for kept in [p for p in self.models if p not in front and p != Plan()]:
            del self.models[kept]

    def _relay(self, event: Any) -> None:
        """Pass the engine's events on, as parts of this run: its start and end are ours."""
        if isinstance(event, RunStarted):
            self.bus.emit(SearchStarted(event.total, event.resumed, self._dimensions))
            return
        if isinstance(event, RunFinished):
            self.searched = event.result
            return
        if isinstance(event, TrialStarted):
            self.trial = event.number
        if isinstance(event, TrialFinished):
            event = PlanTrialFinished(
                event.trial,
                event.best,
                event.n_complete,
                event.n_failed,
                plan=Plan.from_params(event.trial.params).label(),
                target=self.target,
                metric_key=self.metric_name,
            )
        self.bus.emit(event)

    def _finetune_reported(self, step: int, value: float | None, metrics: dict[str, float]) -> None:
        shown = dict(metrics) if value is None else {"finetune": value, **metrics}
        self.bus.emit(StepReported(self.trial, step, None, shown))

    # -- the result -----------------------------------------------------------------------------

    def _partial(self) -> AutoOptimizeResult | None:
        """What finished before an interrupt or an error: the plans evaluated so far, their
        front and the best of them (their latencies as first measured)."""
        if self.searched is None:
            return None
        self.notes.append("the search was cut short; the front holds the plans evaluated so far")
        return self._result(self.searched, self.sensitivity, final=False)

    def _result(
        self, search: Any, sensitivity: list[LayerSensitivity], final: bool = True
    ) -> AutoOptimizeResult:
        measured_kinds = ["size", *(["macs"] if self.baseline.macs else [])]
        if self.target == "latency":
            measured_kinds.append("latency")
        original = PlanTrial(
            None,
            Plan(),
            ratio=1.0,
            metric=self.tolerance.baseline,
            within=True,
            ratios=dict.fromkeys(measured_kinds, 1.0),
        )
        trials = [PlanTrial.from_trial(trial, self.metric_name) for trial in search.trials]
        measured = [original, *[t for t in trials if t.status == "ok" and t.ratio is not None]]
        front = self._front(measured)
        if self.target == "latency" and final:
            self._measure_again(_contenders(front, measured))
            front = self._front(measured)
        tie = _LATENCY_TIE if self.target == "latency" else 0.0
        chosen = _simplest_of_the_best([p for p in measured if p.within], tie) or original
        failed = [t for t in trials if t.status == "failed"]
        if failed:
            reasons = dict.fromkeys(f"{t.plan.label()} ({t.error})" for t in failed)
            shown = "; ".join(list(reasons)[:3]) + ("; ..." if len(reasons) > 3 else "")
            self.notes.append(
                f"{len(failed)} plans could not be built on this model and count as infeasible "
                f"(the search went on): {shown}"
            )
        trainer = self.trainer
        if trainer is not None and trainer.function is not None:
            if trainer.steps is not None and self.builder.reports == 0:
                self.notes.append(
                    "finetune_steps= had no effect: the fine-tune function never called "
                    "nbopt.report(step, ...), where its budget is enforced"
                )
        elif trainer is not None:
            how = (
                f"distilling from the teacher (T={trainer.temperature:g}, alpha={trainer.alpha:g})"
                if trainer.teacher is not None and trainer.alpha > 0
                else "on the task loss alone"
            )
            self.notes.append(
                f"pruned and factorised plans were fine-tuned by the built-in loop "
                f"({trainer.label.removeprefix('finetune ')} each), {how}"
            )
        if self.builder.reused:
            many = self.builder.reused > 1
            self.notes.append(
                f"{self.builder.reused} {'trials' if many else 'trial'} reused a pruned model "
                "built by an earlier trial"
            )
        result = AutoOptimizeResult(
            model=None,
            chosen=chosen,
            baseline=self.baseline,
            original=original,
            trials=trials,
            front=front,
            tolerance=self.tolerance,
            target=self.target,
            metric_name=self.metric_name,
            sensitivity=sensitivity,
            search=search,
            notes=self.notes,
            threads=torch.get_num_threads(),
            # The original's copy is kept anyway: the plans are rebuilt from it.
            models={
                Plan(): self.work,
                **{p.plan: self.models[p.plan] for p in [*front, chosen] if p.plan in self.models},
            },
            rebuild=lambda plan: self.builder.build(plan)[0],
        )
        if final:
            result.select(chosen)
        else:
            # No rebuilding after an interrupt: the chosen plan's model if it was kept.
            result.model = result.models.get(chosen.plan)
        return result

    def _front(self, points: list[PlanTrial]) -> list[PlanTrial]:
        indices = pareto_front([(p.ratio, p.metric) for p in points], self.tolerance.mode)
        return [points[i] for i in indices]

    def _measure_again(self, contenders: list[PlanTrial]) -> None:
        """Measure the latencies of the contenders again, each side by side with the original.

        The search measures each plan once, under whatever load the machine had then; the
        lowest of many noisy measurements is likely to be lucky, and a plan it beat by a few
        percent may be as fast. The contenders' models are kept, so each is timed again, for
        longer, in a pair with the original as in the search (a round robin over many models
        evicts each one's weights from the cache between its calls, which slowed a bfloat16
        CNN by 12% and float32 ones not at all), and the front is drawn again with these times
        (a point of a resumed study, whose model is not at hand, keeps its first measurement).
        """
        again = [p for p in contenders if p.number is not None and p.plan in self.models]
        for point in again:
            reference, seconds = measure_latency(
                [self.work, self.models[point.plan]], self.example, min_seconds=_REMEASURE_SECONDS
            )
            point.ratio = point.ratios["latency"] = seconds / reference
        if again:
            self.notes.append(
                "the latencies of the front's models, and of the plans within tolerance measured "
                "close to the best, were measured again side by side with the original after "
                "the search; the front and the choice are made with these"
            )


# Seconds each contender is timed again with the original: long enough to ride out a burst of load.
_REMEASURE_SECONDS = 1.0
# Latencies measured once, under load, were off by up to this much on a small CPU model: plans
# within tolerance that close to the best one are timed again with the front before choosing.
_LATENCY_NOISE = 0.15
# Latency ratios this close are a tie, which the plan with the fewest steps wins: an extra step
# (a cast, a quantization) costs accuracy risk and complexity, and the same model measured 0.44
# in one side-by-side timing and 0.50 in another on a small CNN. Sizes and MACs are exact.
_LATENCY_TIE = 0.10


def _contenders(front: list[PlanTrial], measured: list[PlanTrial]) -> list[PlanTrial]:
    """The front, and every plan within tolerance measured close to the best such plan."""
    within = [p for p in measured if p.within and p.number is not None]
    if not within:
        return front
    best = min(p.ratio for p in within)
    close = [p for p in within if p.ratio <= best * (1 + _LATENCY_NOISE)]
    return list({id(p): p for p in [*front, *close]}.values())


def _simplest_of_the_best(points: list[PlanTrial], tie: float) -> PlanTrial | None:
    """The lowest ratio among ``points`` (plans within tolerance), preferring the plan with the
    fewest steps among those tied with it; that plan may sit just off the front."""
    if not points:
        return None
    best = min(p.ratio for p in points)
    tied = [p for p in points if p.ratio <= best * (1 + tie)]
    return min(tied, key=lambda p: (_steps(p.plan), p.ratio))


def _steps(plan: Plan) -> int:
    return sum(part is not None for part in (plan.prune, plan.lowrank, plan.quant))


def _check_arguments(
    model: Any, evaluate: Any, target: str, example: Any, max_trials: Any, stop_at: Any
) -> None:
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if evaluate is None:
        raise ConfigError(
            "auto needs evaluate=: your metric, a function of the model returning a number, "
            "which every plan must keep within tolerable_loss"
        )
    if not callable(evaluate):
        raise ConfigError(
            f"evaluate= must be a function of the model, got {type(evaluate).__name__}"
        )
    if target not in TARGETS:
        raise ConfigError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    if example is None and target != "size":
        raise ConfigError(f"target={target} needs example=: the input it is measured on")
    _check_count("max_trials", max_trials)
    if stop_at is not None and (
        isinstance(stop_at, bool) or not isinstance(stop_at, (int, float)) or not stop_at > 0
    ):
        raise ConfigError(f"stop_at must be a ratio > 0, got {stop_at!r}")


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
