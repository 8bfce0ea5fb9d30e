"""Low-rank factorisation of Linear layers from their singular value decomposition."""

from __future__ import annotations

import torch
from torch import nn

from nbopt.compress._guard import guarded_step
from nbopt.compress._inputs import (
    keep_transformer_layers_working,
    linears_from_conv1d,
    parent_and_name,
)
from nbopt.compress._registry import LowRank, StepContext, StepOutcome
from nbopt.compress._tied import Ties


def chosen_rank(singular_values: torch.Tensor, energy: float) -> int:
    """The smallest rank whose singular values keep ``energy`` of the sum of their squares."""
    squares = singular_values.double() ** 2
    kept = torch.cumsum(squares, 0) / squares.sum()
    index = int(torch.searchsorted(kept, torch.tensor(energy, dtype=kept.dtype)))
    # Rounding can leave the last cumulative share a hair under 1.
    return min(index + 1, len(singular_values))


def factorize(linear: nn.Linear, rank: int) -> nn.Sequential:
    """Two Linear layers, ``in -> rank -> out``, whose product is ``linear``'s best rank-``rank``
    approximation; the singular values are split evenly between the two."""
    weight = linear.weight.detach()
    u, s, vh = torch.linalg.svd(weight.float(), full_matrices=False)
    root = s[:rank].sqrt()
    first = nn.Linear(
        linear.in_features, rank, bias=False, device=weight.device, dtype=weight.dtype
    )
    second = nn.Linear(
        rank,
        linear.out_features,
        bias=linear.bias is not None,
        device=weight.device,
        dtype=weight.dtype,
    )
    with torch.no_grad():
        first.weight.copy_(root[:, None] * vh[:rank])
        second.weight.copy_(u[:, :rank] * root)
        if linear.bias is not None:
            second.bias.copy_(linear.bias)
    return nn.Sequential(first, second)


@guarded_step("lowrank", "use another lowrank= energy, or leave it out")
def factorize_linears(model: nn.Module, config: LowRank, context: StepContext) -> StepOutcome:
    """Replace each large ``nn.Linear`` by two thinner ones where that saves weights.

    Only plain ``nn.Linear`` modules are replaced: subclasses such as attention's output
    projection are read directly by the code that owns them; transformers' ``Conv1D`` layers
    (GPT-2) become equal Linear layers first. A Linear whose weight is tied to
    another layer's (a language model's output layer and its embedding table) is left alone:
    its factors would be stored beside the table instead of sharing it.
    """
    ranks: dict[str, tuple[int, int]] = {}
    linears_from_conv1d(model)
    ties = Ties(model)
    tied = ties.module_names()
    notes = []
    for name, module in list(model.named_modules()):
        if type(module) is not nn.Linear:
            continue
        if name in tied:
            notes.append(f"{name} shares its weight ({ties.describe()}): not factorised")
            continue
        out_features, in_features = module.weight.shape
        if min(in_features, out_features) < config.min_features:
            continue
        singular_values = torch.linalg.svdvals(module.weight.detach().float())
        rank = chosen_rank(singular_values, config.energy)
        if rank * (in_features + out_features) >= in_features * out_features:
            continue
        parent, attribute = parent_and_name(model, name)
        setattr(parent, attribute, factorize(module, rank))
        ranks[name] = (rank, min(in_features, out_features))
    keep_transformer_layers_working(model)
    if ranks:
        shown = ", ".join(f"{name}: {rank}/{full}" for name, (rank, full) in ranks.items())
        detail = f"factorised {len(ranks)} Linear layers (rank/full: {shown})"
    else:
        detail = "no Linear layer got smaller at this energy; nothing factorised"
    return StepOutcome(model, detail, notes=notes, info={"ranks": ranks})
