"""The range test (Smith, 2017): train a throwaway copy at exponentially growing learning
rates, one batch per rate, and record the loss, until it diverges.

Each sweep starts from a fresh copy of the model and optimizer, so sweeps differ only in the
order of the data (and the draws of dropout): repeating a sweep shows how much of the curve is
noise. Divergence is judged as fastai and Lightning judge it: the debiased moving average of
the loss (beta 0.98) above 4 times its lowest value, or a loss that is not finite.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from nbopt.errors import ConfigError
from nbopt.events import EventBus, RunFinished, RunStarted
from nbopt.learning_rate._data import (
    LossFn,
    OptimizerSpec,
    TrainingData,
    batch_loss,
    copy_for_training,
    optimizer_name,
    set_learning_rate,
)
from nbopt.learning_rate._result import LRFindResult, LRSweep
from nbopt.learning_rate._rules import EMA_BETA, RULES, median_curve, suggest
from nbopt.learning_rate.events import LRStepMeasured, LRSweepFinished, LRSweepStarted

# No divergence is declared before this many steps: the average of a few losses is noisy.
_MIN_STEPS_BEFORE_DIVERGING = 5


class RangeTest:
    """The sweeps of one :func:`nbopt.learning_rate.find_lr` call."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: OptimizerSpec,
        data: TrainingData,
        loss: LossFn | None,
        *,
        start: float,
        end: float,
        steps: int,
        diverge: float,
        rule: str,
        name: str,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.data = data
        self.loss = loss
        self.start, self.end, self.steps = start, end, steps
        self.diverge = diverge
        self.rule = rule
        self.bus = EventBus()
        self.name = name
        self.rates = [start * (end / start) ** (i / max(steps - 1, 1)) for i in range(steps)]
        self.sweeps: list[LRSweep] = []
        self.optimizer_label = optimizer_name(optimizer)
        self._clock = time.perf_counter()

    # -- before any work ---------------------------------------------------------------------

    def check(self, seed: int) -> None:
        """One forward, loss and backward pass on a copy, with the first batch: ConfigError,
        before anything is shown, for data that does not fit the model, a loss that is not a
        finite scalar, or a model whose loss has no gradient."""
        net, optimizer = copy_for_training(self.model, self.optimizer)
        self.optimizer_label = type(optimizer).__name__
        inputs, target = next(self.data.batches(seed))
        try:
            value = batch_loss(net, self.loss, inputs, target)
        except Exception as exc:
            raise ConfigError(
                f"data does not fit the model: its first batch ({self.data.describe(inputs)}) "
                f"fails in the model or loss with {type(exc).__name__}: {_first_line(exc)}"
            ) from None
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            what = (
                f"a tensor of shape {tuple(value.shape)}"
                if isinstance(value, torch.Tensor)
                else f"a {type(value).__name__}"
            )
            hint = "loss=" if self.loss is not None else "the model's output (give loss=)"
            raise ConfigError(f"{hint} must be a loss, a one-element tensor; got {what}")
        if not math.isfinite(value.item()):
            raise ConfigError(
                f"the loss is {value.item()} on the first batch, before any training step: "
                "check the data (NaN or infinite inputs?) and loss="
            )
        if not value.requires_grad:
            raise ConfigError(
                "the model does not train: the loss has no gradient with respect to its "
                "parameters (are they frozen, or is the output detached?)"
            )
        value.backward()
        trained = [p for group in optimizer.param_groups for p in group["params"]]
        if not any(p.grad is not None and bool(p.grad.any()) for p in trained):
            raise ConfigError(
                "the model does not train: the gradient of the loss is zero for every "
                "parameter the optimizer updates"
            )

    # -- the sweeps --------------------------------------------------------------------------

    def run(
        self, bus: EventBus, repeats: int | None, seed: int, cheap_seconds: float
    ) -> LRFindResult:
        """Sweep ``repeats`` times (None: 3 times if the repeats take at most
        ``cheap_seconds``, else once), then suggest, reporting to ``bus``; the final event
        carries a partial result on an interrupt or a failure."""
        self.bus = bus
        self.bus.emit(
            RunStarted(
                kind="lr_find",
                title=(
                    f"learning rate · {self.optimizer_label} · batch "
                    f"{self.data.batch_size} · {self.start:.3g} to {self.end:.3g}"
                ),
                total=repeats,
                unit="sweeps",
                metric="loss",
                mode="min",
                name=self.name,
                columns=("sweep", "steps", "suggestion", "stopped"),
                config={"start": self.start, "end": self.end, "steps": self.steps},
            )
        )
        self._clock = time.perf_counter()
        planned = repeats or 1
        try:
            while len(self.sweeps) < planned:
                sweep = self._sweep(len(self.sweeps), planned, seed + len(self.sweeps))
                self.sweeps.append(sweep)
                if repeats is None and len(self.sweeps) == 1:
                    planned = 3 if 2 * sweep.duration <= cheap_seconds else 1
                self.bus.emit(LRSweepFinished(sweep, planned))
        except KeyboardInterrupt:
            self._finish("interrupted")
            raise
        except BaseException:
            self._finish("failed")
            raise
        return self._finish("done")

    def _sweep(self, index: int, planned: int, seed: int) -> LRSweep:
        self.bus.emit(LRSweepStarted(index, planned, self.steps))
        began = time.perf_counter()
        net, optimizer = copy_for_training(self.model, self.optimizer)
        batches = self.data.batches(seed)
        losses: list[float] = []
        average, best = 0.0, math.inf
        reason = f"all {self.steps} steps"
        for step, rate in enumerate(self.rates):
            inputs, target = next(batches)
            set_learning_rate(optimizer, rate)
            optimizer.zero_grad(set_to_none=True)
            value = batch_loss(net, self.loss, inputs, target)
            loss = float(value.item())
            if not math.isfinite(loss):
                reason = f"the loss became {loss} at {rate:.3g}"
                break
            value.backward()
            optimizer.step()
            losses.append(loss)
            average = EMA_BETA * average + (1 - EMA_BETA) * loss
            smoothed = average / (1 - EMA_BETA ** (step + 1))
            self.bus.emit(LRStepMeasured(index, step, rate, loss, smoothed))
            if step >= _MIN_STEPS_BEFORE_DIVERGING and smoothed > self.diverge * best:
                reason = f"diverged at {rate:.3g} (loss over {self.diverge:g}x its lowest)"
                break
            best = min(best, smoothed)
        rates = tuple(self.rates[: len(losses)])
        return LRSweep(
            index=index,
            learning_rates=rates,
            losses=tuple(losses),
            stop_reason=reason,
            duration=time.perf_counter() - began,
            suggestion=suggest(self.rule, rates, losses),
        )

    def _finish(self, status: str) -> LRFindResult:
        result = summarise(
            self.sweeps,
            rule=self.rule,
            optimizer=self.optimizer_label,
            batch_size=self.data.batch_size,
            start=self.start,
            end=self.end,
            steps=self.steps,
            status=status,
            duration=time.perf_counter() - self._clock,
        )
        message = f"{len(self.sweeps)} sweep(s) in {result.duration:.1f} s; {result.summary()}"
        self.bus.emit(RunFinished("lr_find", status, message, result=result))
        return result


def summarise(sweeps: list[LRSweep], *, rule: str, **details: Any) -> LRFindResult:
    """The result of ``sweeps``: every rule on their median curve, ``rule``'s suggestion and
    the band of its suggestions on the sweeps one by one."""
    suggestions: dict[str, float | None] = {name: None for name in RULES}
    if sweeps:
        losses = median_curve([sweep.losses for sweep in sweeps])
        longest = max(sweeps, key=lambda sweep: len(sweep.losses))
        rates = longest.learning_rates[: len(losses)]
        suggestions = {name: suggest(name, rates, losses) for name in RULES}
    own = [sweep.suggestion for sweep in sweeps if sweep.suggestion is not None]
    band = (min(own), max(own)) if len(sweeps) > 1 and own else None
    notes = []
    if len(own) < len(sweeps) and sweeps:
        notes.append(f"{len(sweeps) - len(own)} of {len(sweeps)} sweeps suggested nothing")
    return LRFindResult(
        suggestion=suggestions[rule],
        rule=rule,
        suggestions=suggestions,
        band=band,
        sweeps=list(sweeps),
        notes=notes,
        **details,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else "(no message)"
