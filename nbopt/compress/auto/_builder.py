"""How a compression plan becomes a model.

:class:`PlanBuilder` makes the plan's model from a copy of the original, with the same backends
as :func:`nbopt.compress.optimize` and in the same order (prune -> low-rank -> fine-tune ->
quantize). Pruning and fine-tuning cost the most, so the pruned (and fine-tuned) float model of
the last few plans is kept and shared by every quantization tried on it.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from torch import nn

from nbopt._context import ReportSink
from nbopt.compress._finetune import Trainer
from nbopt.compress._inputs import set_eval
from nbopt.compress._plan import Plan, Step
from nbopt.compress._registry import StepContext
from nbopt.errors import ConfigError

# Float models (pruned, factorised, fine-tuned) kept for the quantization variants to come.
# The search tries cheap plans in order and TPE returns to good structures, so a short memory
# catches most reuse while bounding the copies held.
CACHE_SIZE = 4


class PlanBuilder:
    """Builds the model of a plan from a copy of ``original``.

    Args:
        original: The model, never changed.
        context: The example input and device, for the step backends.
        prune_ignore: Layers never pruned, whatever the plan.
        calib: Calibration data for ``int8-static``.
        trainer: How a pruned or factorised model is fine-tuned (None: it is not).
        quant_backend: The int8 backend of every plan (``auto``: measured per model).
        on_report: Receives what the fine-tune reports.
        on_soft: Receives each zeroing of soft pruning.
    """

    def __init__(
        self,
        original: nn.Module,
        context: StepContext,
        *,
        prune_ignore: tuple[str, ...] = (),
        calib: Any = None,
        trainer: Trainer | None = None,
        quant_backend: str = "auto",
        on_report: ReportSink | None = None,
        on_soft: Callable[[Any], None] | None = None,
    ) -> None:
        self.original = original
        self.context = context
        self.prune_ignore = prune_ignore
        self.calib = calib
        self.trainer = trainer
        self.quant_backend = quant_backend
        self.on_report = on_report or (lambda step, value, metrics: None)
        self.on_soft = on_soft or (lambda zeroing: None)
        self.reused = 0
        self._cache: OrderedDict[Plan, nn.Module] = OrderedDict()

    @property
    def reports(self) -> int:
        return 0 if self.trainer is None else self.trainer.reports

    def effective(self, plan: Plan) -> Plan:
        """``plan`` with this run's settings: its int8 backend, and distillation when the
        trainer has a teacher and the plan fine-tunes."""
        teacher = self.trainer is not None and self.trainer.teacher is not None
        return dataclasses.replace(
            plan,
            quant_backend=self.quant_backend if plan.quant == "int8" else "auto",
            distill=teacher and plan.changes_structure,
        )

    def build(self, plan: Plan) -> tuple[nn.Module, bool]:
        """The plan's model in eval mode, and whether its float part came from the cache.

        Errors of the compression steps propagate as they are; those of the fine-tune (the
        user's function, loss or model) as :class:`FinetuneFailed`.
        """
        plan = self.effective(plan)
        trainer = self.trainer if plan.changes_structure else None
        steps = plan.steps(finetune=trainer, calib=self.calib, ignore=self.prune_ignore)
        structure, reused = self._structure(plan, [s for s in steps if s.kind != "quant"])
        quantization = [s for s in steps if s.kind == "quant"]
        if not quantization:
            return structure, reused
        step = quantization[0]
        # Quantization works in place: the cached float model must stay as it is.
        model = step.backend.load()(copy.deepcopy(structure), step.config, self.context).model
        set_eval(model)
        return model, reused

    def _structure(self, plan: Plan, steps: list[Step]) -> tuple[nn.Module, bool]:
        if not plan.changes_structure:
            # Never changed in place: quantization works on a copy.
            return self.original, False
        key = plan.structure
        if key in self._cache:
            self._cache.move_to_end(key)
            self.reused += 1
            return self._cache[key], True
        model = copy.deepcopy(self.original)
        set_eval(model)
        if self.trainer is not None:
            self.trainer.start_model()
        for step in steps:
            if step.backend is None:
                model = self._finetune(model, step)
            else:
                model = step.backend.load()(model, step.config, self.context).model
        set_eval(model)
        self._cache[key] = model
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return model, False

    def _finetune(self, model: nn.Module, step: Step) -> nn.Module:
        """Fine-tune as the step says; what the user's code raises comes out as
        :class:`FinetuneFailed`."""
        if self.trainer is None:
            raise ConfigError("a fine-tune step needs finetune= or data=")
        try:
            return self.trainer.run(
                model, step.config, self.context, on_report=self.on_report, on_soft=self.on_soft
            ).model
        except ConfigError:
            raise
        except Exception as exc:
            raise FinetuneFailed(exc) from exc


class FinetuneFailed(Exception):
    """The fine-tune raised ``error`` in the user's code (function, loss or model): a bug,
    not a property of the plan, so the search stops and re-raises ``error`` itself."""

    def __init__(self, error: Exception) -> None:
        super().__init__(f"finetune raised {type(error).__name__}: {error}")
        self.error = error
