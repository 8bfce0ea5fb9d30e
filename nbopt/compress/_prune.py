"""Pruning: structured (whole channels, Torch-Pruning) and unstructured (single weights)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from nbopt._imports import optional_import
from nbopt.compress._inputs import call, shapes
from nbopt.compress._measure import count_weights
from nbopt.compress._registry import (
    StepContext,
    StepOutcome,
    StructuredPruning,
    UnstructuredPruning,
)
from nbopt.errors import ConfigError, did_you_mean

_PRUNABLE = (nn.Linear, nn.modules.conv._ConvNd)
# Layers whose channels start a group to prune. Torch-Pruning's default (conv, Linear, LSTM)
# leaves alone the group that starts at an embedding table: a transformer's model width
# (embedding, attention, residual stream, LayerNorms) would never shrink, only its
# feed-forward width.
_GROUP_ROOTS = [nn.modules.conv._ConvNd, nn.Linear, nn.LSTM, nn.Embedding, nn.LayerNorm]


def ignored_modules(model: nn.Module, names: tuple[str, ...]) -> list[nn.Module]:
    """The modules named in ``prune_ignore=`` (as in ``named_modules()``); ConfigError for a
    name the model does not have."""
    modules = dict(model.named_modules())
    found = []
    for name in names:
        if name not in modules or not name:
            hint = did_you_mean(name, [n for n in modules if n])
            raise ConfigError(
                f"prune_ignore=: the model has no module named {name!r}{hint}; names are "
                "those of model.named_modules()"
            )
        found.append(modules[name])
    return found


def check_structured(model: nn.Module, config: StructuredPruning, context: StepContext) -> None:
    if context.example is None:
        raise ConfigError(
            "prune_mode=structured needs example=: an input to trace how layers connect"
        )
    ignored_modules(model, config.ignore)


def prune_structured(
    model: nn.Module, config: StructuredPruning, context: StepContext
) -> StepOutcome:
    """Remove ``config.amount`` of the channels of every prunable group of layers.

    Torch-Pruning traces the model on the example to find which layers must shrink together
    (a convolution, its BatchNorm, the next layer's inputs, both branches of a residual sum)
    and removes the channels of smallest L2 magnitude from each group, so the model becomes
    physically smaller. The layer producing the output keeps its width; so do the layers in
    ``config.ignore``.
    """
    tp = optional_import("torch_pruning", "compress", "prune_mode=structured")
    before = shapes(_forward(model, context.example))
    output_layer = _output_layer(model, context.example)
    ignored = ignored_modules(model, config.ignore)
    if output_layer is not None:
        ignored.append(output_layer)
    params_before, _ = count_weights(model)
    pruner = tp.pruner.BasePruner(
        model,
        context.example,
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=config.amount,
        ignored_layers=ignored,
        num_heads={m: m.num_heads for m in model.modules() if isinstance(m, nn.MultiheadAttention)},
        root_module_types=_GROUP_ROOTS,
    )
    pruner.step()
    after = shapes(_forward(model, context.example))
    if after != before:
        raise ConfigError(
            f"structured pruning changed the model's output shapes from {before} to {after}; "
            "name the layers that produce the outputs in prune_ignore="
        )
    params_after, _ = count_weights(model)
    removed = 1 - params_after / params_before if params_before else 0.0
    return StepOutcome(
        model,
        f"removed {config.amount:.0%} of channels per layer group: {removed:.0%} of weights",
        info={"weights_removed": removed},
    )


def prune_groups(model: nn.Module, example: Any, ignore: tuple[str, ...] = ()) -> list[list[str]]:
    """The groups of layers that structured pruning shrinks together, each as the names of
    its layers whose outputs lose channels, the one with the most weights first.

    Naming any one layer of a group in ``prune_ignore=`` leaves the whole group unpruned
    (Torch-Pruning skips a group that holds an ignored layer). The output layer's group and
    the groups of the layers in ``ignore`` are not listed.
    """
    tp = optional_import("torch_pruning", "compress", "prune_mode=structured")
    names = {module: name for name, module in model.named_modules() if name}
    ignored = ignored_modules(model, ignore)
    output_layer = _output_layer(model, example)
    if output_layer is not None:
        ignored.append(output_layer)
    graph = tp.DependencyGraph().build_dependency(model, example)
    groups = []
    for group in graph.get_all_groups(
        ignored_layers=[m for layer in ignored for m in layer.modules()],
        root_module_types=_GROUP_ROOTS,
    ):
        layers = list(
            dict.fromkeys(
                dep.target.module
                for dep, _ in group
                if graph.is_out_channel_pruning_fn(dep.handler) and dep.target.module in names
            )
        )
        if layers:
            layers.sort(key=lambda m: -sum(p.numel() for p in m.parameters(recurse=False)))
            groups.append([names[m] for m in layers])
    return groups


def _forward(model: nn.Module, example: Any) -> Any:
    with torch.no_grad():
        return call(model, example)


def _output_layer(model: nn.Module, example: Any) -> nn.Module | None:
    """The Linear or convolution that ran last: the classifier whose width is the output's."""
    order: list[nn.Module] = []
    handles = [
        module.register_forward_hook(lambda module, inputs, output: order.append(module))
        for module in model.modules()
        if isinstance(module, _PRUNABLE)
    ]
    try:
        _forward(model, example)
    finally:
        for handle in handles:
            handle.remove()
    return order[-1] if order else None


def check_unstructured(model: nn.Module, config: UnstructuredPruning, context: StepContext) -> None:
    """Before any work: ``prune_ignore=`` names modules that exist."""
    ignored_modules(model, config.ignore)


def prune_unstructured(
    model: nn.Module, config: UnstructuredPruning, context: StepContext
) -> StepOutcome:
    """Zero the ``config.amount`` of weights smallest in magnitude, over all Linear,
    convolution and attention projection weights together, and make it permanent."""
    ignored = {id(m) for layer in ignored_modules(model, config.ignore) for m in layer.modules()}
    targets = [
        (module, "weight")
        for module in model.modules()
        if isinstance(module, _PRUNABLE) and id(module) not in ignored
    ]
    targets += [
        (module, "in_proj_weight")
        for module in model.modules()
        if isinstance(module, nn.MultiheadAttention)
        and module.in_proj_weight is not None
        and id(module) not in ignored
    ]
    if not targets:
        raise ConfigError("prune_mode=unstructured found no Linear or convolution to prune")
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=config.amount)
    # Masks alone cost memory and time at every call: fold them into the weights.
    for module, name in targets:
        prune.remove(module, name)
    pruned = sum(getattr(m, name).numel() for m, name in targets)
    zeros = sum(int((getattr(m, name) == 0).sum()) for m, name in targets)
    return StepOutcome(
        model,
        f"zeroed {zeros / pruned:.0%} of {pruned:,} weights in {len(targets)} layers",
        notes=[
            "unstructured pruning keeps every tensor's shape: dense CPU and GPU kernels do "
            "not get faster and torch.save stores the zeros, so latency and size stay the "
            "same; only the non-zero count drops"
        ],
        info={"sparsity": zeros / pruned},
    )
