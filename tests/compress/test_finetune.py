"""The built-in fine-tune loop (``data=``), knowledge distillation (``distill=``) and
compression by transfer (``student=``)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nbopt
from nbopt.compress import distillation_loss, optimize
from nbopt.compress.events import FinetuneReported
from nbopt.errors import ConfigError
from nbopt.events import Event

QUIET = {"progress": "none", "logdir": None}


def _kl(teacher: nn.Module, student: nn.Module, x: torch.Tensor) -> float:
    """KL(teacher || student) of their softmaxes on ``x``."""
    with torch.no_grad():
        log_t = F.log_softmax(teacher(x), -1)
        log_s = F.log_softmax(student(x), -1)
    return float(F.kl_div(log_s, log_t, log_target=True, reduction="batchmean"))


def test_distillation_loss_is_hintons_formula() -> None:
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(6, 5, generator=generator)
    teacher = torch.randn(6, 5, generator=generator)
    target = torch.randint(0, 5, (6,), generator=generator)
    T, alpha = 3.0, 0.3
    p_t = torch.softmax(teacher / T, -1)
    kl = (p_t * (p_t.log() - torch.log_softmax(student / T, -1))).sum(-1).mean()
    expected = alpha * T * T * kl + (1 - alpha) * F.cross_entropy(student, target)
    got = distillation_loss(student, teacher, target, temperature=T, alpha=alpha)
    assert float(got) == pytest.approx(float(expected), rel=1e-5)
    # alpha=0 is the task loss alone; no target leaves the distillation term alone.
    assert float(distillation_loss(student, teacher, target, alpha=0.0)) == pytest.approx(
        float(F.cross_entropy(student, target))
    )
    alone = distillation_loss(student, teacher, temperature=T, alpha=alpha)
    assert float(alone) == pytest.approx(float(T * T * kl), rel=1e-5)


def test_hugging_face_outputs_compare_logits_or_last_hidden_states() -> None:
    from transformers.modeling_outputs import BaseModelOutput, SequenceClassifierOutput

    logits = torch.tensor([[1.0, 2.0], [0.5, -1.0]])
    same = distillation_loss(
        SequenceClassifierOutput(logits=logits), SequenceClassifierOutput(logits=logits)
    )
    assert float(same) == pytest.approx(0.0, abs=1e-7)
    hidden = torch.zeros(2, 3, 4)
    loss = distillation_loss(
        BaseModelOutput(last_hidden_state=hidden + 1.0), BaseModelOutput(last_hidden_state=hidden)
    )
    assert float(loss) == pytest.approx(1.0)  # mean squared error of the hidden states


def test_the_built_in_loop_trains_within_its_step_budget_and_reports(
    mlp: nn.Module, digits
) -> None:
    events: list[Event] = []
    x, y = digits[0], digits[1]
    result = optimize(
        mlp,
        prune=0.5,
        data=(x, y),
        finetune_steps=7,
        lr=1e-3,
        example=x[:16],
        callbacks=[events.append],
        **QUIET,
    )
    finetune = result.steps[1]
    assert finetune.kind == "finetune" and finetune.info["steps"] == 7
    reports = [e for e in events if isinstance(e, FinetuneReported)]
    assert reports and reports[-1].step == 7
    assert all(e.value is not None and e.value > 0 for e in reports)
    pruned = result.steps[0].after
    assert finetune.after.params == pruned.params  # trained, not reshaped


def test_a_tuple_of_tensors_is_cut_into_shuffled_batches_of_64(mlp: nn.Module, digits) -> None:
    x, y = digits[0][:200], digits[1][:200]
    result = optimize(mlp, prune=0.5, data=(x, y), epochs=2, example=x[:8], **QUIET)
    assert result.steps[1].info["steps"] == 2 * 4  # ceil(200 / 64) batches per epoch


def test_distilling_a_student_moves_its_outputs_toward_the_teacher(
    mlp: nn.Module, digits, models
) -> None:
    torch.manual_seed(1)
    student = models.MLP(hidden=16).eval()
    saved = copy.deepcopy(student.state_dict())
    held_out = digits[2][:200]
    before = _kl(mlp, student, held_out)
    # Inputs alone: the student learns from the teacher's outputs only.
    result = optimize(
        mlp,
        student=student,
        data=digits[0],
        epochs=3,
        lr=3e-3,
        example=held_out[:8],
        **QUIET,
    )
    assert [s.kind for s in result.steps] == ["transfer", "finetune"]
    assert isinstance(result.model, type(student)) and result.model is not student
    assert result.model.fc1.out_features == 16
    assert _kl(mlp, result.model, held_out) < 0.75 * before
    assert all(torch.equal(v, student.state_dict()[k]) for k, v in saved.items())
    assert result.report["params"].ratio < 0.2


def test_distill_self_with_a_function_gives_it_a_frozen_copy_of_the_original(
    mlp: nn.Module, digits, state_of, same_state
) -> None:
    saved = state_of(mlp)
    seen: dict[str, Any] = {}

    def finetune(model: nn.Module, teacher: nn.Module) -> None:
        seen["teacher"] = teacher
        seen["training"] = teacher.training
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        x = digits[0][:64]
        for step in range(3):
            loss = distillation_loss(model(x), teacher(x))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            nbopt.report(step, loss.item())

    result = optimize(
        mlp, prune=0.5, finetune=finetune, distill="self", example=digits[0][:8], **QUIET
    )
    teacher = seen["teacher"]
    assert teacher is not mlp and isinstance(teacher, type(mlp)) and not seen["training"]
    assert teacher.fc1.out_features == 128
    assert not any(p.requires_grad for p in teacher.parameters())
    assert same_state(mlp, saved)
    assert "distilled from the teacher" in result.steps[1].detail


def test_a_teacher_of_the_user_is_used_in_eval_mode_and_left_as_it_was(
    mlp: nn.Module, digits, models
) -> None:
    torch.manual_seed(2)
    teacher = models.MLP(hidden=64)
    teacher.train()
    calls: list[bool] = []
    teacher.register_forward_hook(lambda module, args, output: calls.append(module.training))
    result = optimize(
        mlp,
        prune=0.5,
        data=(digits[0], digits[1]),
        finetune_steps=3,
        distill=teacher,
        example=digits[0][:8],
        **QUIET,
    )
    assert teacher.training and calls == []  # its mode restored, its hooks not fired by nbopt
    assert result.steps[-1].info["steps"] == 3


class _FiveClasses(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"finetune": lambda m: None, "data": "D"}, "not both"),
        ({"loss": F.cross_entropy}, "loss= is for the built-in fine-tune loop: it needs data="),
        ({"epochs": 2, "finetune": lambda m: None}, "epochs= is for the built-in"),
        ({"finetune_steps": 3}, "finetune_steps= is given without finetune= or data="),
        ({"data": "D", "temperature": 2.0}, "temperature= only applies with distill="),
        ({"data": "D", "distill": "teacher"}, "distill= must be self"),
        ({"data": "D", "alpha": 1.5}, "alpha must be a number in"),
        ({"data": "D", "lr": 0}, "lr must be a number > 0"),
        ({"data": iter([1, 2])}, "iterator"),
        ({"data": "X"}, "no targets"),
        ({"data": "D", "distill": _FiveClasses()}, "teacher's outputs .* do not match"),
        ({"student": _FiveClasses(), "data": "D"}, "student=: the teacher's outputs"),
        ({"student": "small", "data": "D"}, "student= must be a torch.nn.Module"),
        ({"student": _FiveClasses()}, "student= needs a fine-tune"),
        ({"distill": "self"}, "distill= needs a fine-tune"),
        ({"finetune": lambda m: None, "distill": "self"}, "must take a teacher argument"),
        ({"finetune": lambda m, teacher: None}, "takes a teacher argument"),
    ],
)
def test_bad_fine_tune_input_is_one_line_before_any_work(
    mlp: nn.Module, digits, options: dict, message: str
) -> None:
    x, y = digits[0][:64], digits[1][:64]
    stand_ins = {"D": (x, y), "X": x}
    options = {k: stand_ins.get(v, v) if isinstance(v, str) else v for k, v in options.items()}
    events: list[Event] = []
    with pytest.raises(ConfigError, match=message):
        optimize(mlp, prune=0.5, example=x[:8], callbacks=[events.append], **options, **QUIET)
    assert not any(type(e).__name__ == "StepStarted" for e in events)
