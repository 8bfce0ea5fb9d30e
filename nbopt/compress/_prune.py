"""Pruning: structured (whole channels, Torch-Pruning) and unstructured (single weights)."""

from __future__ import annotations

import warnings
import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from nbopt._imports import optional_import
from nbopt.compress._guard import guarded_step
from nbopt.compress._inputs import call, shapes
from nbopt.compress._measure import count_weights
from nbopt.compress._registry import (
    StepContext,
    StepOutcome,
    StructuredPruning,
    UnstructuredPruning,
)
from nbopt.compress._tied import Ties
from nbopt.compress._undisturbed import undisturbed
from nbopt.errors import ConfigError, did_you_mean

_PRUNABLE = (nn.Linear, nn.modules.conv._ConvNd)
# Layers whose channels start a group to prune. Torch-Pruning's default (conv, Linear, LSTM)
# leaves alone the group that starts at an embedding table: a transformer's model width
# (embedding, attention, residual stream, LayerNorms) would never shrink, only its
# feed-forward width.
_GROUP_ROOTS = [nn.modules.conv._ConvNd, nn.Linear, nn.RNNBase, nn.Embedding, nn.LayerNorm]


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


@guarded_step(
    "prune_mode=structured",
    "leave the layer it names out with prune_ignore=NAME, or use prune_mode=unstructured",
)
def prune_structured(
    model: nn.Module, config: StructuredPruning, context: StepContext
) -> StepOutcome:
    """Remove ``config.amount`` of the channels of every prunable group of layers.

    Attention loses whole heads (:mod:`nbopt.compress._heads`). Torch-Pruning then traces the
    model on the example to find which layers must shrink together (a convolution, its
    BatchNorm, the next layer's inputs, both branches of a residual sum, every gate of a
    recurrent layer) and removes the channels of smallest L2 magnitude from each group, so the
    model becomes physically smaller. A group whose pruning would change the shape of any
    output keeps its width, as do the layers in ``config.ignore``; tied parameters stay tied.
    """
    optional_import("torch_pruning", "compress", "prune_mode=structured")
    from nbopt.compress._heads import find_heads, prune_heads
    from nbopt.compress._prune_graph import frozen_group

    before = shapes(output_of(model, context.example))
    ties = Ties(model)
    ignored = ignored_modules(model, config.ignore)
    notes = leave_unprunable(model, ignored)
    params_before, _ = count_weights(model)
    attention = find_heads(model, ignored)
    widths = _widths_of_original(model, config)
    counts = [prune_heads(item, _head_share(item, widths, config.amount)) for item in attention]
    heads = sum(counts)
    ties.restore(model)
    frozen = {layer for item in attention for layer, _ in item.inputs}
    pruner, graph, outputs = build_pruner(model, context.example, ignored, config.amount)
    if widths is not None and hasattr(pruner, "_scope_initial_channels"):
        # Torch-Pruning keeps int(initial * (1 - amount)) channels of each group, the initial
        # width being what the group had at the pruner's first step: the original's here.
        pruner._scope_initial_channels.update(widths.channels)
    tied = ties.holder_modules(model)
    kept_tied = False
    for group in pruner.step(interactive=True):
        reason = frozen_group(graph, group, outputs, frozen, tied)
        kept_tied |= reason == "tied"
        if reason is None:
            group.prune()
    ties.restore(model)
    if config.of_original and widths is None:
        _ORIGINAL_WIDTHS[model] = _Widths(
            dict(getattr(pruner, "_scope_initial_channels", {})),
            {
                item.name: item.heads + pruned
                for item, pruned in zip(attention, counts, strict=True)
            },
        )
    after = shapes(output_of(model, context.example))
    if after != before:
        raise ConfigError(
            f"structured pruning changed the model's output shapes from {before} to {after}; "
            "name the layers that produce the outputs in prune_ignore="
        )
    params_after, _ = count_weights(model)
    removed = 1 - params_after / params_before if params_before else 0.0
    share = "of the original's channels" if config.of_original else "of channels"
    detail = f"removed {config.amount:.0%} {share} per layer group: {removed:.0%} of weights"
    if heads:
        detail += f"; {heads} attention heads of {sum(a.heads for a in attention) + heads}"
    if ties:
        notes.append(f"tied parameters stay tied: {ties.describe()}")
    if kept_tied:
        notes.append(
            "layers sharing a weight keep their width where their channels belong to "
            "different groups (pruning one group would need the shared weight in two shapes)"
        )
    return StepOutcome(model, detail, notes=notes, info={"weights_removed": removed})


@dataclass(frozen=True)
class _Widths:
    """What a model iterative pruning works on had before its first increment: each
    Torch-Pruning scope's channels, and each attention module's heads (by its name)."""

    channels: dict[str, int]
    heads: dict[int, int]


# The widths each model had at its first increment, for the increments after it (the same
# model object goes through every step of a run; a new object starts afresh).
_ORIGINAL_WIDTHS: weakref.WeakKeyDictionary[nn.Module, _Widths] = weakref.WeakKeyDictionary()


def _widths_of_original(model: nn.Module, config: StructuredPruning) -> _Widths | None:
    return _ORIGINAL_WIDTHS.get(model) if config.of_original else None


def _head_share(item: Any, widths: _Widths | None, amount: float) -> float:
    """The fraction of its heads ``item`` loses now: ``amount`` of its current heads, or of
    its original heads with ``widths`` (as many as make up the total reached)."""
    if widths is None or item.name not in widths.heads:
        return amount
    original = widths.heads[item.name]
    target = original - min(original - 1, round(amount * original))
    return max(0.0, (item.heads - target) / item.heads) if item.heads else 0.0


def build_pruner(
    model: nn.Module,
    example: Any,
    ignored: list[nn.Module],
    amount: float,
    importance: Any = None,
) -> tuple[Any, Any, set[Any]]:
    """Torch-Pruning's pruner over ``model`` (ranking channels by ``importance``, by default
    the L2 magnitude of every weight of their group), its dependency graph, and the graph's
    nodes that produce the model's outputs."""
    import torch_pruning as tp

    from nbopt.compress._prune_graph import (
        OutputRecorder,
        customized_pruners,
        output_nodes,
        traceable,
    )

    recorder = OutputRecorder()
    pruners = customized_pruners(model)
    # Torch-Pruning traces the model by running it (before any shape changes): not a call for
    # the user's hooks to see, nor one that moves the model's buffers.
    with traceable(model), undisturbed(model):
        pruner = tp.pruner.BasePruner(
            model,
            _positional(example),
            importance=importance or tp.importance.GroupMagnitudeImportance(p=2),
            pruning_ratio=amount,
            ignored_layers=ignored,
            num_heads={
                m: m.num_heads for m in model.modules() if isinstance(m, nn.MultiheadAttention)
            },
            customized_pruners=pruners,
            root_module_types=[*_GROUP_ROOTS, *pruners],
            output_transform=recorder,
        )
    return pruner, pruner.DG, output_nodes(pruner.DG, recorder)


def _positional(example: Any) -> Any:
    # Torch-Pruning calls model(*example) for a list or tuple and model(**example) for a dict;
    # a single tensor must come as a one-element tuple, or a batch would be split in rows.
    return (example,) if isinstance(example, torch.Tensor) else example


def leave_unprunable(model: nn.Module, ignored: list[nn.Module]) -> list[str]:
    """Leave out what cannot be pruned coherently (LSTMs with ``proj_size``), with a note."""
    notes = []
    for name, module in model.named_modules():
        if isinstance(module, nn.LSTM) and module.proj_size > 0:
            ignored.append(module)
            notes.append(f"{name}: an LSTM with proj_size is left unpruned")
    return notes


def prune_groups(model: nn.Module, example: Any, ignore: tuple[str, ...] = ()) -> list[list[str]]:
    """The groups of layers that structured pruning shrinks together, each as the names of
    its layers whose outputs lose channels, the one with the most weights first.

    Naming any one layer of a group in ``prune_ignore=`` leaves the whole group unpruned
    (Torch-Pruning skips a group in which an ignored layer would lose outputs). The heads of
    each attention module are a group, named by its query, key and value projections (one
    fused projection for GPT-2). Groups whose pruning would change an output's shape and the
    groups of the layers in ``ignore`` are not listed.
    """
    optional_import("torch_pruning", "compress", "prune_mode=structured")
    from nbopt.compress._heads import find_heads
    from nbopt.compress._prune_graph import frozen_group

    names = {module: name for name, module in model.named_modules() if name}
    ignored = ignored_modules(model, ignore)
    leave_unprunable(model, ignored)
    attention = find_heads(model, ignored)
    frozen = {layer for item in attention for layer, _ in item.inputs}
    tied = Ties(model).holder_modules(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner, graph, outputs = build_pruner(model, example, ignored, 0.5)
    groups = []
    for group in graph.get_all_groups(
        ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types
    ):
        if frozen_group(graph, group, outputs, frozen, tied):
            continue
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
    # Each attention module's heads are a group of their own, named by its projections.
    groups += [[names[layer] for layer, _ in item.inputs] for item in attention]
    return groups


def output_of(model: nn.Module, example: Any) -> Any:
    """The model's output on ``example``, without gradients, leaving no trace on it."""
    with torch.no_grad(), undisturbed(model):
        return call(model, example)


def check_unstructured(model: nn.Module, config: UnstructuredPruning, context: StepContext) -> None:
    """Before any work: ``prune_ignore=`` names modules that exist."""
    ignored_modules(model, config.ignore)


@guarded_step("prune_mode=unstructured", "leave the layer it names out with prune_ignore=NAME")
def prune_unstructured(
    model: nn.Module, config: UnstructuredPruning, context: StepContext
) -> StepOutcome:
    """Zero the ``config.amount`` of weights smallest in magnitude, over all Linear,
    convolution and attention projection weights together, and make it permanent."""
    ignored = {id(m) for layer in ignored_modules(model, config.ignore) for m in layer.modules()}
    ties = Ties(model)
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
    # A tied weight is pruned once, through its first holder, and stays shared.
    targets = list(
        {id(getattr(module, name)): (module, name) for module, name in targets[::-1]}.values()
    )[::-1]
    if not targets:
        raise ConfigError("prune_mode=unstructured found no Linear or convolution to prune")
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=config.amount)
    # Masks alone cost memory and time at every call: fold them into the weights.
    for module, name in targets:
        prune.remove(module, name)
    ties.restore(model)
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
