"""Soft filter pruning (He et al., 2018): prune by zeroing, keep training, remove at the end.

Each group of layers that structured pruning shrinks together (a convolution, its BatchNorm,
the layers reading its channels, both branches of a residual sum) loses the channels whose
own weights, those that produce them, have the smallest L2 norm. Soft pruning sets those
weights (the producing rows of every layer of the group, its biases, its normalisation's scale
and shift) to zero instead of removing them: the channel outputs zero, and training can make it
grow back if it mattered. The fine-tune zeroes the selection again at each report, so the
channels that stay unimportant stay zero; at its end, those channels are removed physically
(:func:`remove_soft`), which leaves the outputs as they were, the removed channels being zero.

The ranking uses the producing weights only (SFP's filter norm): a zeroed channel then ranks
last until it regrows, so the removal takes exactly the channels the last zeroing left.
Attention heads and recurrent layers are left whole.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nbopt._imports import optional_import
from nbopt.compress._guard import guarded_step
from nbopt.compress._inputs import shapes
from nbopt.compress._measure import count_weights
from nbopt.compress._prune import build_pruner, ignored_modules, leave_unprunable, output_of
from nbopt.compress._registry import SoftPruning, StepContext, StepOutcome
from nbopt.compress._tied import Ties
from nbopt.errors import ConfigError

_ADVICE = "leave the layer it names out with prune_ignore=NAME, or use prune_mode=structured"


def check_soft(model: nn.Module, config: SoftPruning, context: StepContext) -> None:
    """Before any work: an example to trace the model with, and names that exist."""
    if context.example is None:
        raise ConfigError("prune_mode=soft needs example=: an input to trace how layers connect")
    ignored_modules(model, config.ignore)


@dataclass(frozen=True)
class Zeroing:
    """What one zeroing did: channels zero now, of how many in the groups pruned, and how many
    of those zeroed last time had grown back enough to stay (``revived``)."""

    zeroed: int
    channels: int
    revived: int


class SoftPruner:
    """Zeroes the selected channels of ``model`` in place, as often as asked.

    The dependency graph is traced once, on construction (the model's buffers and the user's
    hooks untouched); the model's modules must stay the same objects afterwards.
    """

    def __init__(self, model: nn.Module, config: SoftPruning, context: StepContext) -> None:
        optional_import("torch_pruning", "compress", "prune_mode=soft")
        self.model = model
        self.ignored = soft_ignored(model, config)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.pruner, self.graph, self.outputs = build_pruner(
                model, context.example, self.ignored, config.amount, importance=OwnMagnitude()
            )
        self.tied = Ties(model).holder_modules(model)
        self.previous: set[tuple[int, int]] = set()
        self.selection: list[tuple[nn.Module, list[int]]] = []
        self.channels = 0

    def zero(self) -> Zeroing:
        """Select and zero the channels of every group; what was zeroed."""
        from nbopt.compress._prune_graph import frozen_group

        self.pruner.reset()
        selected: set[tuple[int, int]] = set()
        self.selection, self.channels = [], 0
        for group in self.pruner.step(interactive=True):
            if frozen_group(self.graph, group, self.outputs, set(), self.tied):
                continue
            root = group[0].dep.target.module
            selected.update((id(root), int(i)) for i in group[0].idxs)
            self.channels += _width(root)
            self.selection += [
                (dep.target.module, list(idxs)) for dep, idxs in group if _produces(dep)
            ]
        self.hold()
        revived = len(self.previous - selected)
        self.previous = selected
        return Zeroing(len(selected), self.channels, revived)

    def hold(self) -> Zeroing:
        """Zero the last selection again, without ranking anew: after an optimizer step, the
        channels stay zero while the rest of the network adapts to their removal."""
        with torch.no_grad():
            for module, idxs in self.selection:
                zero_channels(module, idxs)
        return Zeroing(len(self.previous), self.channels, 0)


class SoftSchedule:
    """When soft pruning zeroes during a fine-tune.

    With the user's function: at each ``nbopt.report``. With the built-in loop: the channels
    are chosen anew at the end of each epoch but the last (each quarter of the budget for a
    single epoch), and the last choice is held at zero through the final epoch, so that the
    rest of the network adapts to the removal before it happens (with a few epochs of budget,
    removing channels just regrown, with no training after, cost more than one-shot pruning).
    Each choice, and the end, is passed to ``on_zeroing``.
    """

    def __init__(self, pruner: SoftPruner, on_zeroing: Any) -> None:
        self.pruner, self.on_zeroing = pruner, on_zeroing
        self.checkpoints: set[int] = set()
        self.hold_after: int | None = None
        self.epochs: int | None = None

    def choose(self) -> None:
        self.on_zeroing(self.pruner.zero())

    def plan(self, steps: int | None, epochs: int | None) -> None:
        """Where the loop of ``steps`` optimizer steps (None: unknown) chooses anew."""
        if steps is None:
            # Data of unknown length: choose at the end of each epoch but the last.
            self.epochs = epochs or 1
            return
        rounds = min(epochs if epochs and epochs >= 2 else 4, steps)
        self.checkpoints = {round(k * steps / rounds) for k in range(1, rounds)}
        self.hold_after = max(self.checkpoints, default=0)

    def after_step(self, step: int) -> None:
        if step in self.checkpoints:
            self.choose()
        elif self.hold_after is not None and step > self.hold_after:
            self.pruner.hold()

    def after_epoch(self, epoch: int) -> None:
        if self.epochs is not None and epoch < self.epochs:
            self.choose()

    def finish(self, hold: bool) -> None:
        """The last zeroing: the held choice (the built-in loop), or a new one."""
        if hold:
            self.on_zeroing(self.pruner.hold())
        else:
            self.choose()


def soft_ignored(model: nn.Module, config: SoftPruning) -> list[nn.Module]:
    """The modules soft pruning leaves whole: those named, attention and recurrent layers."""
    from nbopt.compress._heads import find_heads

    ignored = ignored_modules(model, config.ignore)
    leave_unprunable(model, ignored)
    for item in find_heads(model, ignored):
        ignored.extend(layer for layer, _ in item.inputs)
    ignored.extend(m for m in model.modules() if isinstance(m, (nn.RNNBase, nn.MultiheadAttention)))
    return ignored


class OwnMagnitude:
    """Torch-Pruning importance: each channel's L2 norm over the weights that produce it (the
    rows of the group's layers, their biases and normalisation parameters), not those of the
    layers that read it, so that a zeroed channel scores exactly 0."""

    def __call__(self, group: Any) -> torch.Tensor | None:
        total: torch.Tensor | None = None
        for index, (dep, idxs) in enumerate(group):
            root_idxs = group[index].root_idxs
            if not _produces(dep) or any(i is None for i in root_idxs):
                continue
            squares = _channel_squares(dep.target.module, idxs)
            if squares is None:
                continue
            if total is None:
                total = torch.zeros(len(group[0].idxs), dtype=torch.float64)
            total.scatter_add_(0, torch.tensor(root_idxs), squares.double().cpu())
        return None if total is None else total.sqrt()


def _produces(dep: Any) -> bool:
    # Torch-Pruning's handlers are the prune_out_channels / prune_in_channels methods of its
    # per-type pruners; a group's out-channel handlers are the layers producing the channels.
    return getattr(dep.handler, "__name__", "") == "prune_out_channels"


def _width(module: nn.Module) -> int:
    for name, dim in _producing(module):
        return getattr(module, name).shape[dim]
    return 0


def _producing(module: nn.Module) -> list[tuple[str, int]]:
    """``(parameter, dimension)`` pairs holding each output channel of ``module``."""
    if isinstance(module, nn.modules.conv._ConvNd):
        return [("weight", 1 if module.transposed else 0), ("bias", 0)]
    if isinstance(module, nn.Linear):
        return [("weight", 0), ("bias", 0)]
    if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)):
        return [("weight", -1), ("bias", -1)]
    if isinstance(module, nn.Embedding):
        return [("weight", 1)]
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf"):
        return [("weight", 1), ("bias", 0)]
    return []


def _nonzero_channels(group: Any) -> set[int]:
    """The channels of a selection (by the index of its root) with a producing weight that
    is not zero."""
    found: set[int] = set()
    for index, (dep, idxs) in enumerate(group):
        squares = _channel_squares(dep.target.module, idxs) if _produces(dep) else None
        if squares is None:
            continue
        root_idxs = group[index].root_idxs
        found.update(int(root) for root, value in zip(root_idxs, squares, strict=True) if value > 0)
    return found


def _channel_squares(module: nn.Module, idxs: Any) -> torch.Tensor | None:
    index = torch.as_tensor(list(idxs), dtype=torch.long)
    found = None
    for name, dim in _producing(module):
        tensor = getattr(module, name, None)
        if not isinstance(tensor, torch.Tensor):
            continue
        picked = tensor.detach().index_select(dim % tensor.dim(), index.to(tensor.device))
        picked = picked.movedim(dim % tensor.dim(), 0).reshape(len(index), -1)
        squares = picked.double().pow(2).sum(1)
        found = squares if found is None else found + squares
    return found


def zero_channels(module: nn.Module, idxs: Any) -> None:
    """Set the weights producing channels ``idxs`` of ``module`` to zero, in place."""
    index = torch.as_tensor(list(idxs), dtype=torch.long)
    for name, dim in _producing(module):
        tensor = getattr(module, name, None)
        if isinstance(tensor, torch.Tensor):
            tensor.data.index_fill_(dim % tensor.dim(), index.to(tensor.device), 0)


@guarded_step("prune_mode=soft", _ADVICE)
def prune_soft(model: nn.Module, config: SoftPruning, context: StepContext) -> StepOutcome:
    """The first zeroing, before the fine-tune: the model keeps its shape."""
    zeroing = SoftPruner(model, config, context).zero()
    if zeroing.zeroed == 0:
        raise ConfigError(
            "prune_mode=soft found no group of channels to prune (attention heads and "
            "recurrent layers stay whole in soft pruning); use prune_mode=structured"
        )
    return StepOutcome(
        model,
        f"zeroed {zeroing.zeroed} of {zeroing.channels} channels; they keep training during "
        "the fine-tune and are removed after it",
        info={"zeroed": zeroing.zeroed, "channels": zeroing.channels},
    )


@guarded_step("prune_mode=soft", _ADVICE)
def remove_soft(model: nn.Module, config: SoftPruning, context: StepContext) -> StepOutcome:
    """Remove the channels soft pruning left at zero (they rank last), physically."""
    from nbopt.compress._prune_graph import frozen_group

    before = shapes(output_of(model, context.example))
    ties = Ties(model)
    params_before, _ = count_weights(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner, graph, outputs = build_pruner(
            model,
            context.example,
            soft_ignored(model, config),
            config.amount,
            importance=OwnMagnitude(),
        )
    tied = ties.holder_modules(model)
    removed = nonzero = 0
    for group in pruner.step(interactive=True):
        if frozen_group(graph, group, outputs, set(), tied):
            continue
        nonzero += len(_nonzero_channels(group))
        removed += len(group[0].idxs)
        group.prune()
    ties.restore(model)
    if shapes(output_of(model, context.example)) != before:
        raise ConfigError(
            "removing the soft-pruned channels changed the model's output shapes; name the "
            "layers that produce the outputs in prune_ignore="
        )
    params_after, _ = count_weights(model)
    share = 1 - params_after / params_before if params_before else 0.0
    detail = f"removed {removed} channels: {share:.0%} of weights"
    notes = []
    if nonzero:
        notes.append(
            f"{nonzero} of the {removed} removed channels were not zero: the fine-tune ended "
            "after a training step, not a zeroing"
        )
    return StepOutcome(
        model,
        detail,
        notes=notes,
        info={"weights_removed": share, "channels_removed": removed, "nonzero_removed": nonzero},
    )
