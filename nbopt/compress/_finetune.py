"""The fine-tune step, as ``optimize`` and ``optimize_auto`` both run it.

A :class:`Trainer` is how a run fine-tunes: the user's function (``finetune=FN``) or the
built-in loop (``data=``), its budget, and the teacher distillation learns from. Each fine-tune
step gives it a :class:`~nbopt.compress._registry.Finetune` config: its share of the budget,
and whether soft pruning's zeroing, fake quantization (QAT) and distillation join in.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from nbopt._context import reporting_to
from nbopt.compress._inputs import call, eval_mode, map_tensors
from nbopt.compress._plan import function_name
from nbopt.compress._registry import Finetune, StepContext, StepOutcome
from nbopt.compress._train import (
    DEFAULT_ALPHA,
    DEFAULT_TEMPERATURE,
    Budget,
    Teacher,
    batches,
    primary,
    split_batch,
    train,
)
from nbopt.compress._undisturbed import undisturbed
from nbopt.errors import ConfigError, TrialStopped

ReportSink = Callable[[int, "float | None", dict[str, float]], None]


@dataclass
class Trainer:
    """How a run fine-tunes its model.

    Attributes:
        function: The user's ``finetune(model)`` (or ``finetune(model, teacher)``), or None
            for the built-in loop over ``data``.
        data: The built-in loop's batches.
        loss: The built-in loop's task loss, ``loss(output, target)``; None: cross-entropy.
        epochs: The built-in loop's passes over ``data`` (default 1).
        steps: The budget in steps: the built-in loop's optimizer steps, or the reported step
            at which the user's function is stopped.
        lr: The built-in loop's Adam learning rate.
        teacher: The model distillation learns from (``"self"``: the original, copied).
        temperature: Distillation's softmax temperature.
        alpha: Weight of the distillation term against the task loss.
    """

    function: Callable[..., Any] | None = None
    data: Any = None
    loss: Callable[[Any, Any], Any] | None = None
    epochs: int | None = None
    steps: int | None = None
    lr: float | None = None
    teacher: Any = None
    temperature: float = DEFAULT_TEMPERATURE
    alpha: float = DEFAULT_ALPHA

    def __post_init__(self) -> None:
        self.reports = 0
        self._offset = 0

    @property
    def label(self) -> str:
        if self.function is not None:
            return f"finetune {function_name(self.function, 'finetune')}"
        if self.steps is not None:
            return f"finetune {self.steps} steps"
        epochs = self.epochs or 1
        return f"finetune {epochs} epoch{'s' if epochs > 1 else ''}"

    def start_model(self) -> None:
        """A new model's fine-tuning begins: its reported steps count from 0 again (the
        fine-tune steps of one model, as with ``prune_steps=``, continue each other's count)."""
        self._offset = 0

    def with_teacher(self, original: nn.Module) -> Trainer:
        """This trainer, its teacher ``"self"`` made a frozen copy of ``original`` (so that
        neither training nor the user's function can change the original)."""
        if not isinstance(self.teacher, str):
            return self
        frozen = copy.deepcopy(original)
        frozen.eval().requires_grad_(False)
        return replace(self, teacher=frozen)

    def sample(self, example: Any) -> Any:
        """An input to check models with: ``example``, or the first batch's inputs."""
        if example is not None or self.data is None:
            return example
        for batch in batches(self.data):
            return split_batch(batch, example)[0]
        raise ConfigError("data= holds no batch")

    def check(self, model: nn.Module, sample: Any, distill: bool) -> None:
        """Before any work: the options fit together, a batch runs through ``model``, and the
        teacher's outputs match the model's."""
        if self.function is not None:
            _check_teacher_argument(self.function, distill)
        else:
            self._check_data(model, sample, distill)
        if distill and sample is not None:
            check_outputs_match(self.teacher, model, sample, "distill=")

    def _check_data(self, model: nn.Module, sample: Any, distill: bool) -> None:
        data = batches(self.data)
        first = next(iter(data), None)
        if first is None:
            raise ConfigError("data= holds no batch")
        inputs, target = split_batch(first, sample)
        if target is None and not distill:
            raise ConfigError(
                "data= batches hold no targets: give (inputs, targets) batches, or distill= to "
                "learn from a teacher's outputs alone"
            )
        if self.loss is not None and not callable(self.loss):
            raise ConfigError(f"loss= must be a function, got {type(self.loss).__name__}")
        try:
            output = _quiet_call(model, inputs)
        except Exception as exc:
            raise ConfigError(
                f"data=: a batch does not run through the model: {type(exc).__name__}: {exc}"
            ) from None
        primary(output)

    def run(
        self,
        model: nn.Module,
        config: Finetune,
        context: StepContext,
        *,
        on_report: ReportSink,
        on_soft: Callable[[Any], None] = lambda zeroing: None,
        skip: tuple[str, ...] = (),
        backend: str = "torchao",
    ) -> StepOutcome:
        """Fine-tune ``model`` in training mode as ``config`` says; the trained model (a new
        object only if the user's function returned one). ``skip`` and ``backend`` are the
        quantization's, which QAT simulates.

        Raises:
            What the user's function, loss or model raised, as it is.
        """
        from nbopt.compress._soft import SoftPruner, SoftSchedule

        notes: list[str] = []
        fake = 0
        if config.qat:
            from nbopt.compress._qat import prepare_qat

            fake, qat_notes = prepare_qat(model, skip, backend)
            notes += qat_notes
        zeroings = 0

        def zeroed(zeroing: Any) -> None:
            nonlocal zeroings
            zeroings += 1
            on_soft(zeroing)

        soft = None
        if config.soft is not None:
            soft = SoftSchedule(SoftPruner(model, config.soft, context), zeroed)
            soft.choose()
        teacher = self.teacher if config.distill else None
        with _teaching(teacher):
            if self.function is not None:
                model, steps = self._call_function(
                    self.function, model, config, teacher, on_report, soft
                )
            else:
                steps = self._loop(model, config, context, teacher, on_report, soft)
        if soft is not None:
            soft.finish(hold=self.function is None)
        if config.qat:
            from nbopt.compress._qat import convert_qat

            convert_qat(model)
        return StepOutcome(
            model,
            self._detail(steps, config, zeroings, fake),
            notes=notes,
            info={"steps": steps, "zeroings": zeroings, "fake_quantized": fake},
        )

    def _loop(
        self,
        model: nn.Module,
        config: Finetune,
        context: StepContext,
        teacher: nn.Module | None,
        on_report: ReportSink,
        soft: Any,
    ) -> int:
        data = batches(self.data)
        budget = Budget.of(data, self.epochs, self.steps, config.share)
        offset = self._offset
        if soft is not None:
            soft.plan(budget.steps, budget.epochs if budget.steps is None else self.epochs)

        def report(step: int, value: float, metrics: dict[str, float]) -> None:
            self.reports += 1
            on_report(offset + step, value, metrics)

        steps = train(
            model,
            data,
            budget=budget,
            example=context.example,
            loss=self.loss,
            lr=self.lr if self.lr is not None else 1e-3,
            teacher=None if teacher is None else Teacher(teacher, self.temperature, self.alpha),
            on_report=report,
            on_epoch=soft.after_epoch if soft is not None else lambda epoch: None,
            on_step=soft.after_step if soft is not None else lambda step: None,
        )
        self._offset += steps
        return steps

    def _call_function(
        self,
        function: Callable[..., Any],
        model: nn.Module,
        config: Finetune,
        teacher: nn.Module | None,
        on_report: ReportSink,
        soft: Any,
    ) -> tuple[nn.Module, int]:
        """Call the user's function until it returns or reports its share of ``steps``;
        each report zeroes soft pruning's channels."""
        limit = None if self.steps is None else max(1, math.ceil(self.steps * config.share))
        offset, last = self._offset, 0

        def sink(step: int, value: float | None, metrics: dict[str, float]) -> None:
            nonlocal last
            self.reports += 1
            last = step
            on_report(offset + step, value, metrics)
            if soft is not None:
                soft.choose()
            if limit is not None and step >= limit:
                raise TrialStopped(step, value)

        model.train()
        kwargs = {"teacher": teacher} if _takes_teacher(function) else {}
        returned = None
        # TrialStopped is how nbopt.report ends a training loop: the user's code needs no
        # handling for it, and the model keeps what it learned so far.
        with reporting_to(sink), contextlib.suppress(TrialStopped):
            returned = function(model, **kwargs)
        self._offset += last + 1
        if isinstance(returned, nn.Module) and returned is not model:
            if config.soft is not None or config.qat:
                raise ConfigError(
                    "finetune= returned a new model: with prune_mode=soft or qat=True it must "
                    "train the model it is given, in place"
                )
            return returned, last
        return model, last

    def _detail(self, steps: int, config: Finetune, zeroings: int, fake: int) -> str:
        if self.function is not None:
            detail = f"{function_name(self.function, 'finetune')} trained the model"
            if self.reports:
                detail += f" ({self.reports} reports)"
        else:
            detail = f"{steps} steps of Adam"
        if config.distill:
            detail += f", distilled from the teacher (T={self.temperature:g}, alpha={self.alpha:g})"
        if zeroings:
            detail += f"; soft pruning zeroed its channels {zeroings} times"
        if config.qat:
            detail += f"; {fake} Linear layers trained with int8 fake quantization"
        return detail


@contextlib.contextmanager
def _teaching(teacher: nn.Module | None) -> Iterator[None]:
    """The teacher in eval mode, its hooks suspended and its buffers restored afterwards."""
    if teacher is None:
        yield
        return
    with eval_mode(teacher), undisturbed(teacher):
        yield


def _takes_teacher(function: Callable[..., Any]) -> bool:
    try:
        return "teacher" in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def _check_teacher_argument(function: Callable[..., Any], distill: bool) -> None:
    if not callable(function):
        raise ConfigError(
            f"finetune= must be a function of the model, got {type(function).__name__}"
        )
    takes = _takes_teacher(function)
    if distill and not takes:
        raise ConfigError(
            "distill= with finetune=: the function must take a teacher argument "
            "(def finetune(model, teacher): ...) to learn from it; or use data= and the "
            "built-in loop"
        )
    if takes and not distill:
        parameter = inspect.signature(function).parameters["teacher"]
        if parameter.default is inspect.Parameter.empty:
            raise ConfigError(
                "finetune= takes a teacher argument: give distill=self (the original model) "
                "or distill=TEACHER"
            )


def check_outputs_match(teacher: Any, student: nn.Module, sample: Any, option: str) -> None:
    """ConfigError unless ``teacher`` and ``student`` give outputs of one shape on ``sample``
    (their logits, or last hidden states)."""
    if not isinstance(teacher, nn.Module):
        raise ConfigError(
            f"{option} must name a torch.nn.Module (or be self), got {type(teacher).__name__}"
        )
    shapes = []
    for name, model in (("teacher", teacher), ("model", student)):
        try:
            output, kind = primary(_quiet_call(model, sample))
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"{option}: the {name} does not run on the example: {type(exc).__name__}: {exc}"
            ) from None
        shapes.append((kind, tuple(output.shape)))
    if shapes[0] != shapes[1]:
        (kind_t, shape_t), (kind_s, shape_s) = shapes
        raise ConfigError(
            f"{option}: the teacher's outputs ({kind_t} of shape {list(shape_t)}) do not match "
            f"the model's ({kind_s} of shape {list(shape_s)}); the teacher must predict the same "
            "classes (or hidden size) as the model it teaches"
        )


def _quiet_call(model: nn.Module, inputs: Any) -> Any:
    """The model's output on ``inputs`` in eval mode, leaving no trace on it."""
    from nbopt.compress._inputs import device_of

    device = device_of(model)
    with torch.no_grad(), eval_mode(model), undisturbed(model):
        return call(model, map_tensors(inputs, lambda t: t.to(device)))


def make_trainer(
    *,
    finetune: Callable[..., Any] | None,
    data: Any,
    loss: Callable[[Any, Any], Any] | None,
    epochs: int | None,
    finetune_steps: int | None,
    lr: float | None,
    distill: Any,
    temperature: float | None,
    alpha: float | None,
    student: Any = None,
) -> Trainer | None:
    """The run's trainer from the fine-tune options, checked; None when nothing fine-tunes.

    Raises:
        ConfigError: for options that do not go together or are out of range.
    """
    if finetune is not None and data is not None:
        raise ConfigError("give finetune= (your function) or data= (the built-in loop), not both")
    if finetune is not None and not callable(finetune):
        raise ConfigError(
            f"finetune= must be a function of the model, got {type(finetune).__name__}"
        )
    loop_only = {"loss": loss, "epochs": epochs, "lr": lr}
    for option, value in loop_only.items():
        if value is not None and data is None:
            raise ConfigError(
                f"{option}= is for the built-in fine-tune loop: it needs data="
                + (" (finetune= trains the model its own way)" if finetune is not None else "")
            )
    if finetune_steps is not None and finetune is None and data is None:
        raise ConfigError("finetune_steps= is given without finetune= or data=")
    if data is not None:
        batches(data)
    _check_number("epochs", epochs, integer=True)
    _check_number("finetune_steps", finetune_steps, integer=True)
    _check_number("lr", lr)
    _check_number("temperature", temperature)
    if alpha is not None and (
        isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1
    ):
        raise ConfigError(f"alpha must be a number in [0, 1], got {alpha!r}")
    if distill is None and student is not None:
        distill = "self"
    if distill is not None and not (
        isinstance(distill, nn.Module) or (isinstance(distill, str) and distill == "self")
    ):
        shown = repr(distill) if isinstance(distill, str) else type(distill).__name__
        raise ConfigError(
            f"distill= must be self (the original model as teacher) or a torch.nn.Module, got "
            f"{shown}"
        )
    if distill is None:
        for option, value in (("temperature", temperature), ("alpha", alpha)):
            if value is not None:
                raise ConfigError(f"{option}= only applies with distill= or student=")
    if finetune is None and data is None:
        what = "student=" if student is not None else "distill=" if distill is not None else ""
        if what:
            raise ConfigError(
                f"{what} needs a fine-tune to train with the teacher: give data= (the built-in "
                "loop) or finetune=FN with a teacher argument"
            )
        return None
    return Trainer(
        function=finetune,
        data=data,
        loss=loss,
        epochs=epochs,
        steps=finetune_steps,
        lr=lr,
        teacher=distill,
        temperature=DEFAULT_TEMPERATURE if temperature is None else float(temperature),
        alpha=DEFAULT_ALPHA if alpha is None else float(alpha),
    )


def _check_number(option: str, value: Any, integer: bool = False) -> None:
    if value is None:
        return
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
        expected = "an int >= 1" if integer else "a number > 0"
        raise ConfigError(f"{option} must be {expected}, got {value!r}")
