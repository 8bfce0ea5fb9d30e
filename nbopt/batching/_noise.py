"""The gradient noise scale (McCandlish et al., 2018), measured on the rows of the user's data.

The simple noise scale is ``B_noise = tr(Σ) / |G|²``: the trace of the covariance of the
per-sample gradients over the squared norm of the true gradient. It is estimated from the
squared norms of gradients at two batch sizes (the paper's appendix A): a batch of ``B``
samples gives a gradient whose squared norm has the expectation ``|G|² + tr(Σ)/B``, so with a
small batch ``b`` and a big batch ``B = k·b``

    |G|²  ≈ (B·|G_B|² − b·|G_b|²) / (B − b)
    tr(Σ) ≈ (|G_b|² − |G_B|²) / (1/b − 1/B)

Each big batch is the mean of ``k`` small ones (the gradient of their union, for a loss that
is a mean over the batch). Both norms are averaged over every group of the data before the
ratio is taken, which is less biased than a mean of ratios; the spread comes from resampling
the groups (a bootstrap). ``|G|²`` estimated at zero or below means that the noise drowns the
gradient at every batch size the data allows: the noise scale is then reported as infinite.

The noise scale moves as training goes on (it grows as ``|G|`` shrinks, and jumps from one
measurement to the next), so it is measured on a throwaway copy while it trains
(``noise_steps`` steps at a small batch): at the start and at four points of that training,
and the measurements of its second half are pooled (the mean norms over all their groups,
then the ratio): where training spends most of its steps, averaged.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from nbopt.batching._result import NoiseScale
from nbopt.batching._workload import call_model, map_tensors
from nbopt.errors import ConfigError

# Small batches of 8, big ones of 8 x 8: at least 4 groups of 64 rows are needed.
SMALL_BATCH = 8
GROUP = 8
MIN_GROUPS = 4
MIN_ROWS = SMALL_BATCH * GROUP * MIN_GROUPS
# More rows than this add little precision and cost time: the estimate uses at most these.
MAX_ROWS = 4096
_BOOTSTRAP = 200


@dataclass(frozen=True)
class GroupNorms:
    """The squared gradient norms of one measurement: for each group of rows, the mean over
    its small batches (``small``) and that of their mean (``big``); and the mean loss."""

    small: np.ndarray
    big: np.ndarray
    loss: float


def measure_groups(
    model: torch.nn.Module,
    loss: Callable[[Any, Any], Any],
    example: Any,
    target: Any,
    rows: int,
    *,
    seed: int,
) -> GroupNorms:
    """The gradient norms of ``model`` (in training mode, gradients only, no update) on up to
    ``MAX_ROWS`` of the ``rows`` rows of ``example``/``target``, in a random order."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(rows, generator=generator)
    groups = min(rows, MAX_ROWS) // (SMALL_BATCH * GROUP)
    small_norms = np.empty(groups)
    big_norms = np.empty(groups)
    losses: list[float] = []
    parameters = [p for p in model.parameters() if p.requires_grad]
    for group in range(groups):
        total = torch.zeros((), dtype=torch.float64)
        norms = []
        for part in range(GROUP):
            begin = (group * GROUP + part) * SMALL_BATCH
            index = order[begin : begin + SMALL_BATCH]
            gradient, value = _gradient(model, parameters, loss, example, target, index)
            losses.append(value)
            norms.append(float(gradient @ gradient))
            total = total + gradient
        mean = total / GROUP
        small_norms[group] = float(np.mean(norms))
        big_norms[group] = float(mean @ mean)
    for parameter in parameters:
        parameter.grad = None
    return GroupNorms(small_norms, big_norms, float(np.mean(losses)))


def noise_scale(measurements: list[GroupNorms], *, steps: int, seed: int) -> NoiseScale:
    """The noise scale of one or several measurements pooled: the mean squared norms over all
    their groups, then the ratio (a bootstrap over the groups gives the spread)."""
    small = np.concatenate([m.small for m in measurements])
    big = np.concatenate([m.big for m in measurements])
    value, gradient_norm, trace = _estimate(small, big)
    count = len(small)
    resampler = np.random.default_rng(seed)
    resampled = [
        _estimate(small[picked], big[picked])[0]
        for picked in resampler.integers(0, count, size=(_BOOTSTRAP, count))
    ]
    low, high = np.percentile(resampled, [10, 90]) if count > 1 else (value, value)
    return NoiseScale(
        value=value,
        low=float(low),
        high=float(high),
        gradient_norm=gradient_norm,
        trace=trace,
        loss=float(np.mean([m.loss for m in measurements])),
        steps=steps,
        rows=count * GROUP * SMALL_BATCH,
        pooled=len(measurements),
    )


def train_copy(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss: Callable[[Any, Any], Any],
    example: Any,
    target: Any,
    rows: int,
    *,
    batch_size: int,
    steps: int,
    seed: int,
) -> None:
    """``steps`` optimizer steps of the copy on random batches of ``batch_size`` rows."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(rows, generator=generator)
    position = 0
    for _ in range(steps):
        if position + batch_size > rows:
            order, position = torch.randperm(rows, generator=generator), 0
        index = order[position : position + batch_size]
        position += batch_size
        optimizer.zero_grad(set_to_none=True)
        value = _loss(model, loss, example, target, index)
        if not math.isfinite(value.item()):
            raise ConfigError(
                f"mode='efficient': the loss became {value.item()} while training a copy to "
                "measure the gradient noise; lower the learning rate of optimizer= (or lr=)"
            )
        value.backward()
        optimizer.step()


def fresh_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of the model in training mode."""
    return copy.deepcopy(model).train()


def _estimate(small: np.ndarray, big: np.ndarray) -> tuple[float, float, float]:
    b, k = SMALL_BATCH, SMALL_BATCH * GROUP
    small_mean, big_mean = float(np.mean(small)), float(np.mean(big))
    gradient_norm = (k * big_mean - b * small_mean) / (k - b)
    trace = (small_mean - big_mean) / (1 / b - 1 / k)
    if gradient_norm <= 0:
        return math.inf, gradient_norm, trace
    return max(trace, 0.0) / gradient_norm, gradient_norm, trace


def _gradient(
    model: torch.nn.Module,
    parameters: list[torch.nn.Parameter],
    loss: Callable[[Any, Any], Any],
    example: Any,
    target: Any,
    index: torch.Tensor,
) -> tuple[torch.Tensor, float]:
    for parameter in parameters:
        parameter.grad = None
    value = _loss(model, loss, example, target, index)
    value.backward()
    flat = [
        (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).double()
        for p in parameters
    ]
    return torch.cat(flat), float(value.item())


def _loss(
    model: torch.nn.Module,
    loss: Callable[[Any, Any], Any],
    example: Any,
    target: Any,
    index: torch.Tensor,
) -> torch.Tensor:
    inputs = map_tensors(example, lambda tensor: tensor[index.to(tensor.device)])
    labels = inputs if target is None else map_tensors(target, lambda t: t[index.to(t.device)])
    return loss(call_model(model, inputs), labels)
