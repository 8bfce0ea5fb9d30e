"""What the automatic search searches: the compressions that apply to the model, each layer's
sensitivity, and the space of plans made from them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from nbopt.compress._cast import fast_path
from nbopt.compress._prune import prune_groups
from nbopt.compress._quantize import check_int8, choose_backend, dynamic_int8_layers
from nbopt.compress._registry import DynamicInt8, StepContext
from nbopt.compress.auto._result import LayerSensitivity
from nbopt.compress.auto._search import PlanSpace
from nbopt.compress.auto._sensitivity import pruning_sensitivity, quantization_sensitivity
from nbopt.compress.auto._tolerance import Tolerance
from nbopt.errors import ConfigError

# At most this many of the most sensitive layers are offered to keep uncompressed: beyond it,
# the gain left is small and every option dilutes the search.
MAX_KEEP = 3
# Low-rank factorisation only takes Linear layers with both sides at least this wide.
LOWRANK_MIN_FEATURES = 32


def plan_space(
    model: nn.Module,
    *,
    evaluate: Callable[[Any], Any],
    tolerance: Tolerance,
    context: StepContext,
    target: str,
    calib: Any,
    prune_ignore: tuple[str, ...],
    stop_at: float | None,
    soft: bool,
    quant_backend: str,
    halted: Callable[[], bool],
    on_layer: Callable[[LayerSensitivity, int, int], None],
    notes: list[str],
) -> tuple[PlanSpace, list[LayerSensitivity]]:
    """The plans to search for ``model``, and each layer's sensitivity (measured here).

    What cannot help the target, or cannot run on this model, is left out, and ``notes`` says
    why. ``on_layer`` receives each layer's sensitivity as it is measured, with its index
    (from 1) and the number of layers. ``soft``: the plans fine-tune, so soft pruning is
    searched too. ``quant_backend``: the int8 backend (``auto``: the sensitivity pass uses the
    one measured fastest on the whole model, each plan its own).
    """
    modes = _quant_modes(model, context, target, calib, notes)
    groups = _prune_groups(model, context.example, prune_ignore, notes)
    lowrank = any(
        type(m) is nn.Linear and min(m.in_features, m.out_features) >= LOWRANK_MIN_FEATURES
        for m in model.modules()
    )
    int8_layers = dynamic_int8_layers(model) if "int8" in modes else []
    total = len(int8_layers) + len(groups or [])
    counter = iter(range(1, total + 1))

    def measured(item: LayerSensitivity) -> None:
        on_layer(item, next(counter), total)

    judged = {"evaluate": evaluate, "tolerance": tolerance, "context": context}
    backend = quant_backend
    if int8_layers and backend == "auto":
        backend = choose_backend(model, (), context).name
    quant = quantization_sensitivity(
        model, int8_layers, **judged, backend=backend, on_layer=measured, skipped=notes
    )
    prune = []
    if groups:
        prune = pruning_sensitivity(
            model, groups, **judged, prune_ignore=prune_ignore, on_layer=measured, skipped=notes
        )
    space = PlanSpace(
        prune_keeps=_keeps([item.layer for item in prune]) if groups else None,
        prune_modes=("structured", "soft") if soft else ("structured",),
        lowrank=lowrank,
        quant_modes=modes,
        int8_keeps=_keeps([item.layer for item in quant]),
        int8_start=sum(item.breaks for item in quant),
        stop_at=stop_at,
        halted=halted,
    )
    return space, [*quant, *prune]


def _quant_modes(
    model: nn.Module, context: StepContext, target: str, calib: Any, notes: list[str]
) -> list[str]:
    if target == "macs":
        notes.append(
            "quantization is not searched for target=macs: it leaves the number of "
            "multiply-accumulates as it is"
        )
        return []
    modes = []
    if dynamic_int8_layers(model):
        try:
            check_int8(model, DynamicInt8(), context)
            modes.append("int8")
        except ConfigError as exc:
            notes.append(f"int8 is not searched: {exc}")
    if calib is not None:
        modes.append("int8-static")
    for mode, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        # A cast halves the size; it is faster only where the device has kernels for it.
        if fast_path(dtype, context.device) or (mode == "bf16" and target == "size"):
            modes.append(mode)
    return modes


def _prune_groups(
    model: nn.Module, example: Any, prune_ignore: tuple[str, ...], notes: list[str]
) -> list[list[str]] | None:
    notes.append(
        "unstructured pruning is not searched: dense kernels run no faster and the zeros are "
        "stored, so it gains no latency, size or MACs"
    )
    if example is None:
        notes.append("structured pruning is not searched: it needs example=")
        return None
    try:
        groups = prune_groups(model, example, prune_ignore)
    except Exception as exc:
        notes.append(
            f"structured pruning is not searched: Torch-Pruning cannot trace the model "
            f"({type(exc).__name__}: {exc})"
        )
        return None
    if not groups:
        notes.append("structured pruning is not searched: no group of layers can shrink")
    return groups or None


def _keeps(ranking: Sequence[str]) -> list[tuple[str, ...]]:
    """Options of layers to leave uncompressed: none, the most sensitive, the two most ...;
    never all of them (that is the option of not compressing at all)."""
    return [tuple(ranking[:k]) for k in range(min(MAX_KEEP, max(len(ranking) - 1, 0)) + 1)]
