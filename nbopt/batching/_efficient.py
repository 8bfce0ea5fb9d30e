"""``mode="efficient"``: the batch size that reaches a given loss soonest, from the measured
speed of each batch size and the gradient noise scale.

McCandlish et al. (2018) find that the optimisation steps needed to reach a given loss follow
``S(B) = S_min (1 + B_noise / B)`` when the learning rate is tuned for each batch size. A step
at batch ``B`` takes ``B / r(B)`` seconds at ``r(B)`` samples per second, so the time to reach
that loss is predicted as

    T(B) = S_min (1 + B_noise / B) · B / r(B) = S_min (B + B_noise) / r(B),

whose minimum does not depend on ``S_min``, that is on which loss is the target. Far below the
noise scale, a larger batch saves steps as fast as it costs time per step; far above it, each
step costs more and saves nothing. The learning rate that goes with a batch size follows the
same model's optimal step, ``ε(B) = ε_max / (1 + B_noise / B)``: linear in the batch up to
about the noise scale, constant beyond; from a rate ``lr`` that works at ``lr_batch``,

    lr(B) = lr · (1 + B_noise / lr_batch) / (1 + B_noise / B).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nbopt.batching._result import BatchMeasurement, NoiseScale, fastest_rate

if TYPE_CHECKING:
    import torch

    from nbopt.batching._noise import GroupNorms
    from nbopt.batching._workload import Batches

# Without lr= and optimizer=, the copy that measures the noise trains with Adam at this rate
# (PyTorch's default for Adam), on batches of this size.
DEFAULT_LR = 1e-3
DEFAULT_TRAIN_BATCH = 32
# Training steps of that copy by default: three passes over the rows, at most this many.
MAX_NOISE_STEPS = 200
# Measurements of the noise scale during that training, after the one at its start.
CHECKPOINTS = 4


@dataclass(frozen=True)
class NoisePlan:
    """How ``mode="efficient"`` measures the noise scale: the loss, the rows (the example and
    its target), the optimizer and learning rate the copy trains with, at ``lr_batch`` (or
    32) samples a step, for ``steps`` steps, from the random seed ``seed``."""

    loss: Callable[[Any, Any], Any]
    rows: int
    optimizer: Callable[[list[Any]], Any] | None
    lr: float | None
    lr_batch: int | None
    steps: int
    seed: int = 0

    @property
    def train_batch(self) -> int:
        return min(self.lr_batch or DEFAULT_TRAIN_BATCH, self.rows)


def default_noise_steps(rows: int, lr_batch: int | None) -> int:
    """Three passes over ``rows`` at the training batch, at most ``MAX_NOISE_STEPS``."""
    passes = 3 * rows // min(lr_batch or DEFAULT_TRAIN_BATCH, rows)
    return max(1, min(MAX_NOISE_STEPS, passes))


def measure_noise(
    model: torch.nn.Module, batches: Batches, plan: NoisePlan
) -> Iterator[tuple[NoiseScale, bool]]:
    """``(noise scale, final)``: at the model's weights, then at ``CHECKPOINTS`` points of
    ``plan.steps`` steps of training a throwaway copy, each as soon as it is measured; the
    final one pools the measurements of the second half of that training (or is the only
    one, without training)."""
    import torch

    from nbopt.batching._noise import fresh_copy, measure_groups, noise_scale, train_copy

    net = fresh_copy(model)
    example = batches.on_device(batches.example)
    target = batches.on_device(batches.target) if batches.target is not None else None

    def measure(steps: int) -> GroupNorms:
        return measure_groups(net, plan.loss, example, target, plan.rows, seed=plan.seed + steps)

    first = measure(0)
    yield noise_scale([first], steps=0, seed=plan.seed), plan.steps == 0
    if not plan.steps:
        return
    parameters = [p for p in net.parameters() if p.requires_grad]
    if plan.optimizer is not None:
        optimizer = plan.optimizer(parameters)
    else:
        optimizer = torch.optim.Adam(parameters, lr=plan.lr or DEFAULT_LR)
    marks = sorted({max(1, round(plan.steps * k / CHECKPOINTS)) for k in range(1, CHECKPOINTS + 1)})
    later: list[GroupNorms] = []
    done = 0
    for mark in marks:
        train_copy(
            net, optimizer, plan.loss, example, target, plan.rows,
            batch_size=plan.train_batch, steps=mark - done, seed=plan.seed + mark,
        )  # fmt: skip
        done = mark
        norms = measure(mark)
        if 2 * mark >= plan.steps:
            later.append(norms)
        yield noise_scale([norms], steps=mark, seed=plan.seed), False
    yield noise_scale(later, steps=plan.steps, seed=plan.seed), True


def predicted_times(
    measurements: Sequence[BatchMeasurement], noise_scale: float
) -> dict[int, float]:
    """``T(B)`` of each batch size that ran, relative to the smallest (which is 1.0)."""
    times: dict[int, float] = {}
    for size in sorted({m.batch_size for m in measurements if m.ok}):
        rate = fastest_rate(measurements, size)
        if not rate:
            continue
        # With an infinite noise scale, every step is worth the same: T is 1 / r(B).
        times[size] = 1 / rate if math.isinf(noise_scale) else (size + noise_scale) / rate
    if not times:
        return {}
    best = min(times.values())
    return {size: time / best for size, time in times.items()}


def efficient_size(times: dict[int, float], tolerance: float) -> int | None:
    """The smallest batch whose predicted time is within ``tolerance`` of the shortest."""
    if not times:
        return None
    return min(size for size, time in times.items() if time <= 1 + tolerance)


def scaled_learning_rate(lr: float, lr_batch: int, batch: int, noise_scale: float) -> float:
    """``lr(B)`` for ``batch``, from ``lr`` at ``lr_batch`` (the rule in the module's doc)."""
    if math.isinf(noise_scale):
        return lr * batch / lr_batch
    return lr * (1 + noise_scale / lr_batch) / (1 + noise_scale / batch)


RULE = "lr(B) = lr · (1 + B_noise/lr_batch) / (1 + B_noise/B): linear up to B_noise, flat beyond"
