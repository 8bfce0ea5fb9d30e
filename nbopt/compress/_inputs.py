"""Model inputs in the three forms ``example=`` takes, and small model utilities.

An input is a tensor (``model(x)``), a tuple or list of positional inputs (``model(*xs)``) or a
dict of keyword inputs (``model(**batch)``, as Hugging Face models take).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils import _pytree as pytree

from nbopt.errors import ConfigError

# Calibration stops after this many batches: enough for min/max observers, and bounded for a
# DataLoader over a whole training set.
MAX_CALIBRATION_BATCHES = 100


def call(model: Callable[..., Any], inputs: Any) -> Any:
    """Run ``model`` on an input in any of the three forms."""
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def map_tensors(inputs: Any, function: Callable[[torch.Tensor], Any]) -> Any:
    """``inputs`` with ``function`` applied to every tensor in it."""
    return pytree.tree_map(
        lambda leaf: function(leaf) if isinstance(leaf, torch.Tensor) else leaf, inputs
    )


def shapes(output: Any) -> list[tuple[int, ...]]:
    """The shapes of the tensors in a model's output (a tensor, tuple, dict, ModelOutput ...)."""
    return [tuple(leaf.shape) for leaf in pytree.tree_leaves(output) if torch.is_tensor(leaf)]


def device_of(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer; CPU for a model without any."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def export_arguments(inputs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` for ``torch.export.export``."""
    if isinstance(inputs, Mapping):
        return (), dict(inputs)
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs), {}
    return (inputs,), {}


def batch_dynamic_shapes(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``dynamic_shapes`` for ``torch.export``: the first dimension of every tensor may vary,
    so that the exported model takes any batch size, not only the example's.

    An example gives either positional or keyword inputs, never both: the specification is a
    tuple for the first and a dict of argument names for the second, as ``export`` wants.
    """

    def spec(leaf: Any) -> Any:
        if isinstance(leaf, torch.Tensor) and leaf.dim() > 0:
            return {0: torch.export.Dim.AUTO}
        return None

    if kwargs:
        return {key: pytree.tree_map(spec, value) for key, value in kwargs.items()}
    return tuple(pytree.tree_map(spec, arg) for arg in args)


def calibration_batches(calib: Any, example: Any) -> Iterator[Any]:
    """Model inputs from ``calib``: one batch tensor or dict, a list of batches, or a DataLoader.

    A batch of ``(inputs, labels)`` gives its inputs, in the form of ``example``: the first
    element for a tensor example, the first ``len(example)`` for a tuple, the example's keys for
    a dict.
    """
    batches: Iterable[Any] = [calib] if isinstance(calib, (torch.Tensor, Mapping)) else calib
    try:
        iterator = iter(batches)
    except TypeError:
        raise ConfigError(
            "calib= must be a tensor, a list of batches or a DataLoader, "
            f"got {type(calib).__name__}"
        ) from None
    for index, batch in enumerate(iterator):
        if index >= MAX_CALIBRATION_BATCHES:
            return
        yield _as_input(batch, example)


def _as_input(batch: Any, example: Any) -> Any:
    if isinstance(example, Mapping) and isinstance(batch, Mapping):
        return {key: batch[key] for key in example if key in batch}
    if isinstance(example, (tuple, list)) and isinstance(batch, (tuple, list)):
        return tuple(batch[: len(example)])
    if isinstance(example, torch.Tensor) and isinstance(batch, (tuple, list)) and batch:
        return batch[0]
    return batch


def working_copy(model: nn.Module, example: Any, why: str) -> nn.Module:
    """A deep copy of ``model`` in eval mode, checked to run on ``example`` (when given).

    ``why`` ends the error for a model that cannot be copied: what the copy is for.
    """
    try:
        work = copy.deepcopy(model)
    except Exception as exc:
        raise ConfigError(
            f"the model cannot be copied ({type(exc).__name__}: {exc}); {why}"
        ) from None
    set_eval(work)
    if example is not None:
        from nbopt.compress._undisturbed import undisturbed

        try:
            with torch.no_grad(), undisturbed(work):
                call(work, example)
        except Exception as exc:
            raise ConfigError(
                f"example= does not run through the model: {type(exc).__name__}: {exc}"
            ) from None
    return work


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode for the block; every module's own mode is restored after it."""
    modes = [(module, module.training) for module in model.modules()]
    set_eval(model)
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def set_eval(model: nn.Module) -> None:
    """``model.eval()``, except on a model from ``torch.export``: it was captured in one mode
    and refuses ``eval()``."""
    with contextlib.suppress(NotImplementedError):
        model.eval()


def parent_and_name(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The module holding submodule ``name`` (a dotted path) and its attribute name there."""
    parent_path, _, child = name.rpartition(".")
    return (model.get_submodule(parent_path) if parent_path else model), child


def keep_transformer_layers_working(model: nn.Module) -> None:
    """Turn off ``nn.TransformerEncoderLayer``'s fused path where its feed-forward layers are no
    longer plain ``nn.Linear`` (factorised, dynamically quantized).

    In eval mode the layer's fast-path check reads ``linear1.weight.device``; on a quantized
    Linear ``weight`` is a method and the check raises AttributeError (torch 2.13), and the
    fused kernel cannot take torchao's quantized weights. With the
    activation flag cleared the layer takes its ordinary path, which calls its submodules;
    ``nn.TransformerEncoder`` must then not pack inputs into nested tensors either, which the
    quantized kernels do not take.
    """
    changed = set()
    for module in model.modules():
        if isinstance(module, nn.TransformerEncoderLayer) and not (
            _dense_linear(module.linear1) and _dense_linear(module.linear2)
        ):
            module.activation_relu_or_gelu = 0
            changed.add(module)
    for module in model.modules():
        if isinstance(module, nn.TransformerEncoder) and any(
            layer in changed for layer in module.layers
        ):
            module.use_nested_tensor = False


def _dense_linear(module: nn.Module) -> bool:
    """A plain ``nn.Linear`` whose weight is a plain tensor (not one of torchao's quantized
    tensor subclasses, which the fused path cannot read)."""
    return type(module) is nn.Linear and type(module.weight) in (torch.Tensor, nn.Parameter)


def linears_from_conv1d(model: nn.Module) -> list[str]:
    """Replace each transformers ``Conv1D`` (GPT-2's projections: a Linear whose weight is
    stored ``[in, out]``) by the equal ``nn.Linear``, so that the steps made for Linear layers
    (dynamic int8, low-rank) reach it; the names replaced."""
    replaced = []
    for name, module in list(model.named_modules()):
        if not (type(module).__name__ == "Conv1D" and hasattr(module, "nf")):
            continue
        weight = module.weight
        linear = nn.Linear(
            weight.shape[0],
            weight.shape[1],
            bias=module.bias is not None,
            device=weight.device,
            dtype=weight.dtype,
        )
        with torch.no_grad():
            linear.weight.copy_(weight.t())
            if module.bias is not None:
                linear.bias.copy_(module.bias)
        parent, attribute = parent_and_name(model, name)
        setattr(parent, attribute, linear)
        replaced.append(name)
    return replaced
