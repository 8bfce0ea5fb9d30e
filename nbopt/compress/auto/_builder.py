"""How a compression plan becomes a model.

:class:`PlanBuilder` makes the plan's model from a copy of the original, with the same backends
as :func:`nbopt.compress.optimize` and in the same order (prune -> low-rank -> fine-tune ->
quantize). Pruning and fine-tuning cost the most, so the pruned (and fine-tuned) float model of
the last few plans is kept and shared by every quantization tried on it.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from torch import nn

from nbopt._context import ReportSink, reporting_to
from nbopt.compress._inputs import set_eval
from nbopt.compress._plan import Plan, Step
from nbopt.compress._registry import StepContext
from nbopt.errors import TrialStopped

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
        finetune: Called with the pruned/factorised model in training mode.
        finetune_steps: Stop ``finetune`` when it reports (``nbopt.report``) this step.
        on_report: Receives what ``finetune`` reports.
    """

    def __init__(
        self,
        original: nn.Module,
        context: StepContext,
        *,
        prune_ignore: tuple[str, ...] = (),
        calib: Any = None,
        finetune: Callable[[nn.Module], Any] | None = None,
        finetune_steps: int | None = None,
        on_report: ReportSink | None = None,
    ) -> None:
        self.original = original
        self.context = context
        self.prune_ignore = prune_ignore
        self.calib = calib
        self.finetune = finetune
        self.finetune_steps = finetune_steps
        self.on_report = on_report
        self.reports = 0
        self.reused = 0
        self._cache: OrderedDict[Plan, nn.Module] = OrderedDict()

    def build(self, plan: Plan) -> tuple[nn.Module, bool]:
        """The plan's model in eval mode, and whether its float part came from the cache.

        Errors of the compression steps propagate as they are; those of ``finetune`` as
        :class:`FinetuneFailed`.
        """
        steps = plan.steps(finetune=self.finetune, calib=self.calib, ignore=self.prune_ignore)
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
        for step in steps:
            if step.backend is None:
                model = self._finetune(model, self.finetune)
            else:
                model = step.backend.load()(model, step.config, self.context).model
        set_eval(model)
        self._cache[key] = model
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return model, False

    def _finetune(self, model: nn.Module, finetune: Callable[[nn.Module], Any]) -> nn.Module:
        """Train with the user's function until it returns or reports ``finetune_steps``;
        what it raises comes out as :class:`FinetuneFailed`."""

        def sink(step: int, value: float | None, metrics: dict[str, float]) -> None:
            self.reports += 1
            if self.on_report is not None:
                self.on_report(step, value, metrics)
            if self.finetune_steps is not None and step >= self.finetune_steps:
                raise TrialStopped(step, value)

        model.train()
        returned = None
        # TrialStopped is how nbopt.report ends a training loop: the user's code needs no
        # handling for it, and the model keeps what it learned so far.
        try:
            with reporting_to(sink):
                returned = finetune(model)
        except TrialStopped:
            pass
        except Exception as exc:
            raise FinetuneFailed(exc) from exc
        return returned if isinstance(returned, nn.Module) else model


class FinetuneFailed(Exception):
    """The user's fine-tune function raised ``error``: a bug in user code, not a property of
    the plan, so the search stops and re-raises ``error`` itself."""

    def __init__(self, error: Exception) -> None:
        super().__init__(f"finetune raised {type(error).__name__}: {error}")
        self.error = error
