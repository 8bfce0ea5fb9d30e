"""Compression by transfer: a smaller architecture (``student=``) takes the model's place and
the fine-tune trains it from the original, its teacher (knowledge distillation)."""

from __future__ import annotations

import copy

from torch import nn

from nbopt.compress._finetune import check_outputs_match
from nbopt.compress._measure import count_weights
from nbopt.compress._registry import StepContext, StepOutcome, Transfer


def check_transfer(model: nn.Module, config: Transfer, context: StepContext) -> None:
    """Before any work: the student's outputs have the shape of the model's."""
    if context.probe is not None:
        check_outputs_match(model, config.student, context.probe, "student=")


def transfer(model: nn.Module, config: Transfer, context: StepContext) -> StepOutcome:
    """A copy of the student, on the model's device, in place of the model (the student the
    user passed is not changed)."""
    student = copy.deepcopy(config.student).to(context.device)
    student.eval()
    own, _ = count_weights(student)
    original, _ = count_weights(model)
    ratio = own / original if original else float("nan")
    return StepOutcome(
        student,
        f"{type(student).__name__} in place of {type(model).__name__}: {own:,} weights "
        f"({ratio:.2f}x), trained by the fine-tune from the original",
        info={"student_params": own},
    )
