"""What is measured: batches of any size, and one inference or training step on them.

A batch is a tensor, a tuple/list of positional inputs or a dict of keyword inputs; every
tensor in it (at the top level) has the batch as its first dimension. The model is called as
``model(x)``, ``model(*inputs)`` or ``model(**inputs)`` accordingly.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import torch

from nbopt.errors import ConfigError

LossFn = Callable[[Any, Any], Any]
OptimizerFactory = Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]


def batch_length(batch: Any, what: str) -> int:
    """The batch size of ``batch``: the common first dimension of its tensors.

    Raises:
        ConfigError: It holds no tensor, a tensor without a batch dimension, an empty batch,
            or tensors that disagree on their first dimension.
    """
    tensors = list(_top_level_tensors(batch))
    if not tensors:
        raise ConfigError(
            f"{what} holds no tensor: give a tensor, or a tuple or dict of tensors, whose first "
            "dimension is the batch"
        )
    if any(tensor.dim() == 0 for tensor in tensors):
        raise ConfigError(
            f"{what} has no batch dimension (a 0-d tensor); give a batch, e.g. x.reshape(1, -1)"
        )
    sizes = sorted({tensor.shape[0] for tensor in tensors})
    if len(sizes) > 1:
        raise ConfigError(
            f"the tensors of {what} have different first dimensions {sizes}; the first "
            "dimension of each must be the batch (use make_batch= for other layouts)"
        )
    if sizes[0] == 0:
        raise ConfigError(f"{what} is an empty batch (its first dimension is 0)")
    return sizes[0]


class Batches:
    """Builds the inputs (and training target) for a batch size, on the model's device."""

    def __init__(
        self,
        example: Any,
        make_batch: Callable[[int], Any] | None,
        target: Any,
        device: torch.device,
    ) -> None:
        self.example = example
        self.make_batch = make_batch
        self.target = target
        self.device = device
        self.example_size = batch_length(example, "example") if make_batch is None else None
        target_size = batch_length(target, "target") if target is not None else None
        if self.example_size and target_size and self.example_size != target_size:
            raise ConfigError(
                f"example has {self.example_size} samples but target has {target_size}; "
                "give them for the same samples"
            )

    def __call__(self, size: int) -> tuple[Any, Any]:
        """``(inputs, target)`` for a batch of ``size``; target is None unless one was given."""
        if self.make_batch is not None:
            inputs = self.make_batch(size)
            built = batch_length(inputs, f"make_batch({size})")
            if built != size:
                raise ConfigError(
                    f"make_batch({size}) returned a batch of {built}; it must build a batch of "
                    "exactly the size it is given"
                )
            inputs = map_tensors(inputs, self._to_device)
        else:
            inputs = _tile(self.example, size, self.device)
        target = _tile(self.target, size, self.device) if self.target is not None else None
        return inputs, target

    def on_device(self, batch: Any) -> Any:
        """``batch`` with its top-level tensors on the model's device."""
        return map_tensors(batch, self._to_device)

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(self.device)


def call_model(model: torch.nn.Module, inputs: Any) -> Any:
    """``model(x)``, ``model(*inputs)`` or ``model(**inputs)``, by the shape of ``inputs``."""
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


class Workload:
    """One step of the model, used as a context that restores everything it changes.

    Inference runs the model itself in eval mode under ``torch.inference_mode`` (each
    module's train/eval mode is put back afterwards). Training runs a deep copy with a
    throwaway optimizer: forward, loss, backward and optimizer step; the copy is dropped on
    exit, so the model's weights, buffers and gradients are never touched.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        train: bool,
        loss: LossFn | None = None,
        optimizer: OptimizerFactory | None = None,
    ) -> None:
        self.model = model
        self.train = train
        self.loss = loss
        self.optimizer_factory = optimizer
        self._modes: list[tuple[torch.nn.Module, bool]] = []
        self._net: torch.nn.Module | None = None
        self._optimizer: torch.optim.Optimizer | None = None

    def __enter__(self) -> Workload:
        if not self.train:
            self._modes = [(module, module.training) for module in self.model.modules()]
            self.model.eval()
            return self
        net = copy.deepcopy(self.model).train()
        parameters = [p for p in net.parameters() if p.requires_grad]
        if not parameters:
            raise ConfigError("train=True: the model has no parameter that requires grad")
        factory = self.optimizer_factory or _default_optimizer
        self._net, self._optimizer = net, factory(parameters)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for module, training in self._modes:
            module.training = training
        self._modes = []
        self._net = self._optimizer = None

    def step(self, inputs: Any, target: Any) -> None:
        """Run one step on a batch (the output is dropped)."""
        if not self.train:
            with torch.inference_mode():
                call_model(self.model, inputs)
            return
        assert self._net is not None and self._optimizer is not None, "use the workload in a with"
        self._optimizer.zero_grad(set_to_none=True)
        output = call_model(self._net, inputs)
        if self.loss is None:
            loss = surrogate_loss(output)
        else:
            loss = self.loss(output, inputs if target is None else target)
            if not (isinstance(loss, torch.Tensor) and loss.numel() == 1):
                raise ConfigError(
                    f"loss must return a tensor with one element, got {_describe(loss)}"
                )
        loss.backward()
        self._optimizer.step()


def check_training(
    model: torch.nn.Module, batches: Batches, loss: LossFn | None, size: int
) -> None:
    """One forward, loss and backward pass of a copy on a batch of ``size``, before any
    measurement: ConfigError for data that does not fit the model, a loss that is not a
    finite one-element tensor, or a model that does not train. Running out of memory is left
    to the search, which reports it for what it is.
    """
    from nbopt.batching._memory import is_oom_error

    net = copy.deepcopy(model).train()
    parameters = [p for p in net.parameters() if p.requires_grad]
    if not parameters:
        raise ConfigError("the model does not train: it has no parameter that requires grad")
    inputs, target = batches(size)
    try:
        output = call_model(net, inputs)
        value = (
            surrogate_loss(output)
            if loss is None
            else loss(output, inputs if target is None else target)
        )
    except ConfigError:
        raise
    except Exception as exc:
        if is_oom_error(exc):
            return
        shapes = ", ".join(str(tuple(t.shape)) for t in _top_level_tensors(inputs))
        lines = str(exc).strip().splitlines() or ["(no message)"]
        raise ConfigError(
            f"data does not fit the model: a batch of {size} (inputs {shapes}) fails in the "
            f"model or loss with {type(exc).__name__}: {lines[0]}"
        ) from None
    if not (isinstance(value, torch.Tensor) and value.numel() == 1):
        raise ConfigError(f"loss must return a tensor with one element, got {_describe(value)}")
    if not torch.isfinite(value.detach()).all():
        raise ConfigError(
            f"the loss is {value.item()} on the first batch, before any training step: check "
            "the data (NaN or infinite inputs?) and loss="
        )
    if not value.requires_grad:
        raise ConfigError(
            "the model does not train: the loss has no gradient with respect to its parameters "
            "(are they frozen, or is the output detached?)"
        )
    try:
        value.backward()
    except Exception as exc:
        if is_oom_error(exc):
            return
        lines = str(exc).strip().splitlines() or ["(no message)"]
        raise ConfigError(
            f"the backward pass of the loss fails with {type(exc).__name__}: {lines[0]}"
        ) from None
    if not any(p.grad is not None and bool(p.grad.any()) for p in parameters):
        raise ConfigError(
            "the model does not train: the gradient of the loss is zero for every parameter"
        )


def surrogate_loss(output: Any) -> torch.Tensor:
    """The sum of every floating-point output that requires grad.

    The backward pass of the network costs the same whatever scalar it starts from, so this
    measures a training step without labels or the user's loss function.
    """
    parts = [
        tensor.float().sum()
        for tensor in _all_tensors(output)
        if tensor.is_floating_point() and tensor.requires_grad
    ]
    if not parts:
        raise ConfigError(
            "train=True: the model's output holds no floating-point tensor that requires grad; "
            "give loss="
        )
    return torch.stack(parts).sum()


def _default_optimizer(parameters: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    # Adam keeps two buffers per weight: a common choice, and the larger memory bill.
    return torch.optim.Adam(parameters, lr=1e-4)


def _top_level_tensors(batch: Any) -> Iterator[torch.Tensor]:
    if isinstance(batch, torch.Tensor):
        yield batch
    elif isinstance(batch, (tuple, list)):
        yield from (item for item in batch if isinstance(item, torch.Tensor))
    elif isinstance(batch, dict):
        yield from (item for item in batch.values() if isinstance(item, torch.Tensor))


def _all_tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _all_tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _all_tensors(item)


def map_tensors(batch: Any, function: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """Apply ``function`` to the top-level tensors of a batch, keeping its shape."""
    if isinstance(batch, torch.Tensor):
        return function(batch)
    if isinstance(batch, (tuple, list)):
        items = [function(i) if isinstance(i, torch.Tensor) else i for i in batch]
        if hasattr(batch, "_fields"):  # a named tuple
            return type(batch)(*items)
        return tuple(items) if isinstance(batch, tuple) else items
    if isinstance(batch, dict):
        return {k: function(v) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    return batch


def _tile(batch: Any, size: int, device: torch.device) -> Any:
    """A fresh batch of ``size`` rows, repeating the rows of ``batch`` as often as needed."""

    def tile(tensor: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(size, device=tensor.device) % tensor.shape[0]
        return tensor.index_select(0, rows).to(device)

    return map_tensors(batch, tile)


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"
