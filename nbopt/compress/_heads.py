"""Structured pruning of attention: whole heads, coherently in every projection.

A head is a slice of the query, key and value projections' outputs and the matching slice of
the output projection's inputs. Removing channels inside heads (what a channel pruner does
left alone) would leave every head narrower than the ``head_dim`` the attention code reshapes
by, so the remaining channels regroup into wrong heads and the scaling is off. Here the heads
of smallest weight magnitude are removed whole and the attention module's head count updated.

Recognised: the Hugging Face layouts of separate projections (BERT's ``query``/``key``/
``value`` with the sibling ``output.dense``; ``q_proj``/``k_proj``/``v_proj`` with ``o_proj`` or
``out_proj``, as ViT and most recent models) and GPT-2's fused ``c_attn``/``c_proj``.
Grouped-query attention (fewer key/value heads than query heads) is left alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

# Attributes holding an attention module's head count, in the libraries' spellings.
_HEAD_COUNTS = ("num_attention_heads", "num_heads", "n_head")
_SEPARATE = (("query", "key", "value"), ("q_proj", "k_proj", "v_proj"))


@dataclass
class Heads:
    """One attention module: where its head slices are.

    ``inputs`` are ``(module, dim)`` of the projections producing the heads (query, key, value:
    ``heads * head_dim`` wide along ``dim``, in blocks of ``parts`` for a fused projection);
    ``output`` is ``(module, dim)`` of the projection reading them.
    """

    name: str
    owner: nn.Module
    inputs: list[tuple[nn.Module, int]]
    output: tuple[nn.Module, int]
    heads: int
    head_dim: int
    parts: int = 1


def find_heads(model: nn.Module, ignored: Iterable[nn.Module] = ()) -> list[Heads]:
    """The attention modules of ``model`` whose heads can be pruned whole; none inside an
    ignored module."""
    skipped = {id(m) for layer in ignored for m in layer.modules()}
    modules = dict(model.named_modules())
    found = []
    for name, module in modules.items():
        heads = _head_count(module)
        if heads is None or id(module) in skipped:
            continue
        attention = _separate(name, module, modules, heads) or _fused(name, module, heads)
        if attention is not None and not any(
            id(layer) in skipped for layer, _ in [*attention.inputs, attention.output]
        ):
            found.append(attention)
    return found


def _head_count(module: nn.Module) -> int | None:
    for attribute in _HEAD_COUNTS:
        value = getattr(module, attribute, None)
        if isinstance(value, int) and value > 1:
            return value
    return None


def _separate(
    name: str, module: nn.Module, modules: dict[str, nn.Module], heads: int
) -> Heads | None:
    for names in _SEPARATE:
        projections = [getattr(module, attribute, None) for attribute in names]
        if not all(type(p) is nn.Linear for p in projections):
            continue
        width = projections[0].out_features
        if any(p.out_features != width for p in projections) or width % heads:
            return None  # grouped-query attention: keys and values have fewer heads
        output = _output_projection(name, module, modules)
        if output is None or output.in_features != width:
            return None
        return Heads(
            name, module, [(p, 0) for p in projections], (output, 1), heads, width // heads
        )
    return None


def _output_projection(
    name: str, module: nn.Module, modules: dict[str, nn.Module]
) -> nn.Linear | None:
    for attribute in ("o_proj", "out_proj"):
        projection = getattr(module, attribute, None)
        if type(projection) is nn.Linear:
            return projection
    # BERT and the models derived from it: the projection is the sibling ``output.dense``.
    parent = name.rpartition(".")[0]
    sibling = modules.get(f"{parent}.output.dense" if parent else "output.dense")
    return sibling if type(sibling) is nn.Linear else None


def _fused(name: str, module: nn.Module, heads: int) -> Heads | None:
    """GPT-2's layout: ``c_attn`` (weight ``[in, 3 * width]``) split into query, key and value,
    then ``c_proj`` (weight ``[width, out]``); transformers' ``Conv1D`` stores weights
    transposed."""
    fused, projection = getattr(module, "c_attn", None), getattr(module, "c_proj", None)
    if getattr(module, "is_cross_attention", False) or not all(
        _is_conv1d(layer) for layer in (fused, projection)
    ):
        return None
    width = projection.weight.shape[0]
    if fused.weight.shape[1] != 3 * width or width % heads or not hasattr(module, "split_size"):
        return None
    return Heads(name, module, [(fused, 1)], (projection, 0), heads, width // heads, parts=3)


def _is_conv1d(module: object) -> bool:
    """transformers' ``Conv1D``: a Linear with its weight stored ``[in, out]``."""
    return (
        isinstance(module, nn.Module)
        and type(module).__name__ == "Conv1D"
        and hasattr(module, "nf")
        and hasattr(module, "nx")
    )


def prune_heads(attention: Heads, amount: float) -> int:
    """Remove ``amount`` of the heads of smallest L2 magnitude (at least one head stays);
    the number removed."""
    removed = min(attention.heads - 1, round(amount * attention.heads))
    if removed <= 0:
        return 0
    scores = _head_magnitudes(attention)
    dropped = set(torch.argsort(scores)[:removed].tolist())
    kept = [head for head in range(attention.heads) if head not in dropped]
    dim = attention.head_dim
    per_part = torch.cat([torch.arange(h * dim, (h + 1) * dim) for h in kept])
    width = attention.heads * dim
    for layer, axis in attention.inputs:
        index = torch.cat([per_part + part * width for part in range(attention.parts)])
        _select(layer, axis, index)
    _select(attention.output[0], attention.output[1], per_part)
    _set_head_count(attention.owner, len(kept), dim)
    attention.heads = len(kept)
    return removed


def _head_magnitudes(attention: Heads) -> torch.Tensor:
    heads, dim, width = attention.heads, attention.head_dim, attention.heads * attention.head_dim
    squares = torch.zeros(heads, dtype=torch.float64)
    with torch.no_grad():
        for layer, axis in attention.inputs:
            weight = layer.weight.detach().double().movedim(axis, 0)
            for part in range(attention.parts):
                block = weight[part * width : (part + 1) * width]
                squares += block.reshape(heads, -1).pow(2).sum(1)
                if layer.bias is not None:
                    bias = layer.bias.detach().double()[part * width : (part + 1) * width]
                    squares += bias.reshape(heads, dim).pow(2).sum(1)
        layer, axis = attention.output
        weight = layer.weight.detach().double().movedim(axis, 0)
        squares += weight.reshape(heads, -1).pow(2).sum(1)
    return squares.sqrt()


def _select(layer: nn.Module, axis: int, index: torch.Tensor) -> None:
    """Keep the ``index`` entries of ``layer``'s weight along ``axis`` (and of its bias when
    that axis is the output's); the layer's size attributes follow."""
    weight = layer.weight
    index = index.to(weight.device)
    layer.weight = nn.Parameter(weight.detach().index_select(axis, index).clone())
    output_axis = 1 if _is_conv1d(layer) else 0
    if axis == output_axis and layer.bias is not None:
        layer.bias = nn.Parameter(layer.bias.detach().index_select(0, index).clone())
    size = len(index)
    if isinstance(layer, nn.Linear):
        if axis == 0:
            layer.out_features = size
        else:
            layer.in_features = size
    elif axis == output_axis:
        layer.nf = size
    else:
        layer.nx = size


def _set_head_count(owner: nn.Module, heads: int, head_dim: int) -> None:
    for attribute in _HEAD_COUNTS:
        if isinstance(getattr(owner, attribute, None), int):
            setattr(owner, attribute, heads)
    for attribute in ("all_head_size", "split_size"):
        if isinstance(getattr(owner, attribute, None), int):
            setattr(owner, attribute, heads * head_dim)
