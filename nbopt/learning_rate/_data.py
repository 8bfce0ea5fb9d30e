"""The training data of a range test, the loss of a batch, and the throwaway copies it trains.

``data`` is a ``torch.utils.data.DataLoader`` or a tuple of tensors ``(inputs..., target)``
whose first dimension is the sample. A batch is split the same way in both cases: a tuple or
list is ``(inputs..., target)``, a lone tensor is an input whose target is itself (an
autoencoder's), a dict is keyword inputs (``model(**batch)``) whose loss the model returns.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import torch

from nbopt.errors import ConfigError

LossFn = Callable[[Any, Any], Any]
OptimizerSpec = Any  # an optimizer of the model, a factory of one, or None

_DEFAULT_BATCH = 64


class TrainingData:
    """Batches ``(inputs, target)`` on ``device``, for ever, in an order fixed by a seed.

    Iterating a DataLoader advances the random generator its sampler draws from; a loader's
    own generators are put back as they were after each pass, so the user's loader shuffles
    as it would have.
    """

    def __init__(self, data: Any, batch_size: int | None, device: torch.device) -> None:
        self.device = device
        self.loader: Any = None
        self.tensors: tuple[torch.Tensor, ...] = ()
        if isinstance(data, torch.utils.data.DataLoader):
            if batch_size is not None:
                raise ConfigError(
                    "batch_size= is for data given as tensors; a DataLoader has its own"
                )
            self.loader = data
            self.batch_size = data.batch_size
        elif isinstance(data, (tuple, list)) and data:
            if not all(isinstance(item, torch.Tensor) for item in data):
                kinds = ", ".join(type(item).__name__ for item in data)
                raise ConfigError(f"data must be a tuple of tensors, got a tuple of {kinds}")
            sizes = {item.shape[0] if item.dim() else None for item in data}
            if None in sizes or len(sizes) != 1 or 0 in sizes:
                shapes = ", ".join(str(tuple(item.shape)) for item in data)
                raise ConfigError(
                    f"the tensors of data must share their first dimension, the samples "
                    f"(got shapes {shapes})"
                )
            self.tensors = tuple(data)
            samples = self.tensors[0].shape[0]
            if batch_size is None:
                batch_size = min(_DEFAULT_BATCH, samples)
            if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
                raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
            self.batch_size = min(batch_size, samples)
        else:
            raise ConfigError(
                "data must be a DataLoader or a tuple of tensors such as (x, y), got "
                f"{type(data).__name__}"
            )

    def batches(self, seed: int) -> Iterator[tuple[Any, Any]]:
        """``(inputs, target)`` pairs, epoch after epoch; target is None when the batch has
        none (a lone tensor, a dict)."""
        epoch = 0
        while True:
            produced = False
            for batch in self._epoch(seed, epoch):
                produced = True
                yield split_batch(_to_device(batch, self.device))
            if not produced:
                raise ConfigError("data holds no batch")
            epoch += 1

    def _epoch(self, seed: int, epoch: int) -> Iterator[Any]:
        if self.loader is None:
            generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            samples = self.tensors[0].shape[0]
            order = torch.randperm(samples, generator=generator)
            stop = samples - samples % self.batch_size if samples > self.batch_size else samples
            for begin in range(0, stop, self.batch_size):
                rows = order[begin : begin + self.batch_size]
                yield tuple(item[rows] for item in self.tensors)
            return
        generators = _loader_generators(self.loader)
        states = [generator.get_state() for generator in generators]
        torch.manual_seed(seed * 1_000_003 + epoch)
        try:
            yield from self.loader
        finally:
            for generator, state in zip(generators, states, strict=True):
                generator.set_state(state)

    def describe(self, inputs: Any) -> str:
        """``inputs of shape (64, 1, 8, 8)``, for messages."""
        if isinstance(inputs, torch.Tensor):
            return f"inputs of shape {tuple(inputs.shape)}"
        if isinstance(inputs, dict):
            return f"keyword inputs {', '.join(inputs)}"
        shapes = ", ".join(
            str(tuple(item.shape)) if isinstance(item, torch.Tensor) else type(item).__name__
            for item in inputs
        )
        return f"inputs of shapes {shapes}"


def split_batch(batch: Any) -> tuple[Any, Any]:
    """``(inputs, target)`` of a batch; inputs is a tensor, a tuple or a dict."""
    if isinstance(batch, (tuple, list)):
        if len(batch) == 1:
            return batch[0], None
        inputs = batch[0] if len(batch) == 2 else tuple(batch[:-1])
        return inputs, batch[-1]
    return batch, None


def call_model(model: torch.nn.Module, inputs: Any) -> Any:
    """``model(x)``, ``model(*inputs)`` or ``model(**inputs)``, by the shape of ``inputs``."""
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, tuple):
        return model(*inputs)
    return model(inputs)


def batch_loss(model: torch.nn.Module, loss: LossFn | None, inputs: Any, target: Any) -> Any:
    """The loss of one batch: ``loss(output, target)`` (the target of a lone tensor is the
    tensor), or, without ``loss``, what the model returns as its loss."""
    output = call_model(model, inputs)
    if loss is not None:
        return loss(output, inputs if target is None else target)
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict) and "loss" in output:
        return output["loss"]
    return getattr(output, "loss", output)


def copy_for_training(
    model: torch.nn.Module, optimizer: OptimizerSpec
) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """A deep copy of the model in training mode, and an optimizer of the copy.

    An optimizer instance is copied together with the model, so that its parameters become
    the copy's (and its state, momentum and all, is the copy's own); a factory is called
    with the copy's parameters; None means Adam with PyTorch's defaults.
    """
    if isinstance(optimizer, torch.optim.Optimizer):
        net, opt = copy.deepcopy((model, optimizer))
        return net.train(), opt
    net = copy.deepcopy(model).train()
    parameters = [p for p in net.parameters() if p.requires_grad]
    factory = optimizer if optimizer is not None else torch.optim.Adam
    opt = factory(parameters)
    if not isinstance(opt, torch.optim.Optimizer):
        raise ConfigError(
            f"optimizer= must return a torch optimizer, got {type(opt).__name__}; give an "
            "optimizer of the model or a function of the parameters, e.g. "
            "lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)"
        )
    return net, opt


def check_optimizer(model: torch.nn.Module, optimizer: OptimizerSpec) -> None:
    """ConfigError for an optimizer that cannot train the model."""
    if optimizer is None:
        return
    if isinstance(optimizer, torch.optim.Optimizer):
        own = {id(p) for p in model.parameters()}
        held = [p for group in optimizer.param_groups for p in group["params"]]
        if not any(id(p) in own for p in held):
            raise ConfigError(
                "optimizer= holds none of the model's parameters (was it made for another "
                "model, or for a model that was rebuilt since?)"
            )
        return
    if not callable(optimizer):
        raise ConfigError(
            "optimizer= must be an optimizer of the model or a function of the parameters, "
            f"got {type(optimizer).__name__}"
        )


def set_learning_rate(optimizer: torch.optim.Optimizer, rate: float) -> None:
    """Every parameter group at ``rate`` (in place where the rate is a tensor)."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(rate)
        else:
            group["lr"] = rate


def optimizer_name(optimizer: OptimizerSpec) -> str:
    if optimizer is None:
        return "Adam"
    if isinstance(optimizer, torch.optim.Optimizer):
        return type(optimizer).__name__
    return getattr(optimizer, "__name__", type(optimizer).__name__)


def _loader_generators(loader: Any) -> list[torch.Generator]:
    found: list[torch.Generator] = []
    for owner in (loader, loader.sampler, getattr(loader.batch_sampler, "sampler", None)):
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator) and all(generator is not g for g in found):
            found.append(generator)
    return found


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, (tuple, list)):
        items = [_to_device(item, device) for item in batch]
        return tuple(items) if isinstance(batch, tuple) else items
    if isinstance(batch, dict):
        return {key: _to_device(value, device) for key, value in batch.items()}
    return batch
