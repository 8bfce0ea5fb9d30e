"""The built-in fine-tune loop (``data=``) and knowledge distillation's loss.

The loop is what a user without a training function of their own needs after pruning: Adam
over the model's parameters, a task loss (cross-entropy by default), optionally mixed with
the teacher's outputs (Hinton et al., 2015), a budget of epochs or optimizer steps, and
progress reported as it goes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nbopt.compress._inputs import call, device_of, map_tensors
from nbopt.errors import ConfigError

# Rows per batch when data= is a tuple of tensors (a DataLoader brings its own batches).
BATCH_SIZE = 64
DEFAULT_LR = 1e-3
DEFAULT_TEMPERATURE = 2.0
DEFAULT_ALPHA = 0.5
# Progress reports per run of the loop, besides one at the end of each epoch.
REPORTS = 20


def primary(output: Any) -> tuple[torch.Tensor, str]:
    """The tensor a loss is computed on, and what it is: ``("logits", ...)`` for a Hugging
    Face output's ``logits`` or a plain tensor, ``("hidden", ...)`` for a ``last_hidden_state``
    (an encoder without a head); the first element of a tuple or list."""
    for key, kind in (("logits", "logits"), ("last_hidden_state", "hidden")):
        value = output.get(key) if isinstance(output, Mapping) else getattr(output, key, None)
        if isinstance(value, torch.Tensor):
            return value, kind
    if isinstance(output, (tuple, list)) and output:
        return primary(output[0])
    if isinstance(output, torch.Tensor):
        return output, "logits"
    raise ConfigError(
        f"the model's output ({type(output).__name__}) holds no tensor to compute a loss on"
    )


def distillation_loss(
    student: Any,
    teacher: Any,
    target: Any = None,
    *,
    temperature: float = DEFAULT_TEMPERATURE,
    alpha: float = DEFAULT_ALPHA,
    loss: Callable[[Any, Any], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Hinton's distillation loss: ``alpha * T² * KL(teacher_T || student_T) + (1 - alpha) *
    task``, where ``_T`` are softmaxes at temperature ``T``.

    Outputs may be tensors, tuples or Hugging Face outputs: their logits are compared (or,
    for a model without logits, the last hidden states, by mean squared error). Without a
    ``target`` the task term is left out.

    Args:
        student: The student model's output.
        teacher: The teacher's output on the same input (computed without gradients).
        target: The labels, for the task loss.
        temperature: Softens both distributions; the KL term is scaled by its square so that
            its gradients keep their size as it changes.
        alpha: Weight of the distillation term, in [0, 1]; 0 is the task loss alone.
        loss: The task loss, ``loss(student_output, target)``; by default cross-entropy for
            integer targets and mean squared error for float ones.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[2.0, 0.0, -1.0]])
        >>> float(distillation_loss(logits, logits, alpha=1.0))
        0.0
    """
    task = task_loss(student, target, loss) if target is not None and alpha < 1 else None
    if alpha == 0:
        if task is None:
            raise ConfigError("alpha=0 leaves no loss without targets: the batches hold none")
        return task
    soft = _soft_term(student, teacher, temperature)
    return soft if task is None else alpha * soft + (1 - alpha) * task


def _soft_term(student: Any, teacher: Any, temperature: float) -> torch.Tensor:
    s, kind = primary(student)
    t, _ = primary(teacher)
    if kind == "hidden":
        return F.mse_loss(s, t.to(s.dtype))
    s = s.reshape(-1, s.shape[-1]) / temperature
    t = t.reshape(-1, t.shape[-1]).to(s.dtype) / temperature
    log_s, log_t = F.log_softmax(s, -1), F.log_softmax(t, -1)
    return F.kl_div(log_s, log_t, log_target=True, reduction="batchmean") * temperature**2


def task_loss(output: Any, target: Any, loss: Callable[[Any, Any], torch.Tensor] | None) -> Any:
    """``loss(output, target)``, or the default: cross-entropy over the last dimension for
    integer targets, mean squared error for float ones."""
    if loss is not None:
        return loss(output, target)
    prediction, _ = primary(output)
    if not target.is_floating_point():
        return F.cross_entropy(prediction.reshape(-1, prediction.shape[-1]), target.reshape(-1))
    return F.mse_loss(prediction, target.reshape(prediction.shape).to(prediction.dtype))


# -- the data -------------------------------------------------------------------------------


def batches(data: Any, *, seed: int = 0) -> Iterable[Any]:
    """The batches of ``data``: a DataLoader (or any re-iterable of batches) as it is; a
    tensor, or a tuple of tensors sharing their first dimension, cut into shuffled batches of
    :data:`BATCH_SIZE` rows, a new order each epoch (reproducible from ``seed``)."""
    if isinstance(data, torch.Tensor):
        return _Shuffled((data,), seed, single=True)
    if isinstance(data, (tuple, list)) and data and all(isinstance(t, torch.Tensor) for t in data):
        rows = {len(t) for t in data}
        if len(rows) != 1:
            raise ConfigError(
                f"data=: the tensors of the tuple must have as many rows each, got {sorted(rows)}"
            )
        return _Shuffled(tuple(data), seed)
    if isinstance(data, (str, bytes, Mapping)) or not isinstance(data, Iterable):
        raise ConfigError(
            "data= must be a DataLoader (or a list of batches), a tuple of tensors (inputs, "
            f"targets) or a tensor of inputs, got {type(data).__name__}"
        )
    if iter(data) is data:
        raise ConfigError(
            "data= is an iterator, which runs out after one pass: give a DataLoader or a list"
        )
    return data


class _Shuffled:
    """Shuffled batches of a tuple of tensors."""

    def __init__(self, tensors: tuple[torch.Tensor, ...], seed: int, single: bool = False):
        self.tensors, self.single = tensors, single
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.tensors[0]) / BATCH_SIZE)

    def __iter__(self) -> Iterator[Any]:
        order = torch.randperm(len(self.tensors[0]), generator=self.generator)
        for rows in order.split(BATCH_SIZE):
            picked = tuple(t[rows] for t in self.tensors)
            yield picked[0] if self.single else picked


def split_batch(batch: Any, example: Any) -> tuple[Any, Any]:
    """``(inputs, target)`` of a batch, the inputs in the form of ``example``: a tuple batch
    gives its first element (or, for a tuple example, its first ``len(example)``) as inputs
    and the next as targets; a dict batch gives its ``labels`` as targets and the rest as
    keyword inputs; a tensor is inputs without targets."""
    if isinstance(batch, Mapping):
        inputs = {key: value for key, value in batch.items() if key != "labels"}
        return inputs, batch.get("labels")
    if isinstance(batch, (tuple, list)):
        count = len(example) if isinstance(example, (tuple, list)) else 1
        inputs = tuple(batch[:count]) if count > 1 else batch[0]
        target = batch[count] if len(batch) > count else None
        return inputs, target
    return batch, None


# -- the loop -------------------------------------------------------------------------------


@dataclass
class Teacher:
    """The model whose outputs the student learns from, and how the two losses mix."""

    model: nn.Module
    temperature: float = DEFAULT_TEMPERATURE
    alpha: float = DEFAULT_ALPHA

    def outputs(self, inputs: Any) -> Any:
        device = device_of(self.model)
        with torch.no_grad():
            return call(self.model, map_tensors(inputs, lambda t: t.to(device)))


@dataclass
class Budget:
    """How long one run of the loop trains: ``steps`` optimizer steps, or (when the data has
    no length and no steps were given) ``epochs`` whole passes."""

    steps: int | None
    epochs: int | None

    @classmethod
    def of(cls, data: Iterable[Any], epochs: int | None, steps: int | None, share: float) -> Budget:
        """``share`` of the budget that ``epochs`` or ``steps`` give (one epoch by default)."""
        total = steps
        if total is None and hasattr(data, "__len__"):
            total = (epochs or 1) * len(data)
        if total is None:
            return cls(None, max(1, round((epochs or 1) * share)))
        return cls(max(1, round(total * share)), None)

    def spent(self, step: int, epoch: int) -> bool:
        """Whether ``step`` optimizer steps or ``epoch`` complete passes use the budget up."""
        if self.steps is not None:
            return step >= self.steps
        return self.epochs is not None and epoch >= self.epochs


def train(
    model: nn.Module,
    data: Iterable[Any],
    *,
    budget: Budget,
    example: Any,
    loss: Callable[[Any, Any], torch.Tensor] | None = None,
    lr: float = DEFAULT_LR,
    teacher: Teacher | None = None,
    on_report: Callable[[int, float, dict[str, float]], None],
    on_epoch: Callable[[int], None] = lambda epoch: None,
    on_step: Callable[[int], None] = lambda step: None,
) -> int:
    """Train ``model`` (in training mode) on ``data`` within ``budget``; the steps taken.

    ``on_report(step, loss, metrics)`` gets the mean loss since the last report about
    :data:`REPORTS` times and at the end of each epoch; ``on_step(step)`` runs after each
    optimizer step and ``on_epoch(epoch)`` after each complete pass (where soft pruning
    zeroes its channels).
    """
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        raise ConfigError("the model has no trainable parameter for the fine-tune to train")
    optimizer = torch.optim.Adam(parameters, lr=lr)
    device = device_of(model)
    every = max(1, budget.steps // REPORTS) if budget.steps else None
    sums: dict[str, float] = {}
    count = step = epoch = 0
    model.train()
    while not budget.spent(step, epoch):
        complete, seen = True, 0
        for batch in data:
            if budget.spent(step, epoch):
                complete = False
                break
            seen += 1
            inputs, target = split_batch(batch, example)
            inputs = map_tensors(inputs, lambda t: t.to(device))
            target = None if target is None else target.to(device)
            terms = _losses(model, inputs, target, loss, teacher)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
            step += 1
            count += 1
            on_step(step)
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
            if every is not None and step % every == 0:
                on_report(step, *_means(sums, count))
                sums, count = {}, 0
        if seen == 0 and complete:
            raise ConfigError("data= holds no batch to train on")
        if not complete:
            break
        epoch += 1
        if count:
            on_report(step, *_means(sums, count))
            sums, count = {}, 0
        on_epoch(epoch)
    if count:
        on_report(step, *_means(sums, count))
    return step


def _means(sums: dict[str, float], count: int) -> tuple[float, dict[str, float]]:
    means = {name: value / count for name, value in sums.items()}
    return means.pop("loss"), means


def _losses(
    model: nn.Module,
    inputs: Any,
    target: Any,
    loss: Callable[[Any, Any], torch.Tensor] | None,
    teacher: Teacher | None,
) -> dict[str, torch.Tensor]:
    output = call(model, inputs)
    if teacher is None or teacher.alpha == 0:
        if target is None:
            raise ConfigError(
                "data= batches hold no targets: give (inputs, targets), or distill= to learn "
                "from a teacher's outputs alone"
            )
        return {"loss": task_loss(output, target, loss)}
    soft = _soft_term(output, teacher.outputs(inputs), teacher.temperature)
    if target is None or teacher.alpha == 1:
        return {"loss": soft, "distill": soft}
    task = task_loss(output, target, loss)
    return {
        "loss": teacher.alpha * soft + (1 - teacher.alpha) * task,
        "task": task,
        "distill": soft,
    }
