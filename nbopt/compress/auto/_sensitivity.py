"""Per-layer sensitivity: how much the metric moves when one layer alone is compressed.

Intel Neural Compressor falls back to float the operators whose quantization costs the most
accuracy; the search does the same with the ranking measured here. Each quantizable layer is
quantized (dynamic int8) with every other layer left in float, and each group of layers that
structured pruning shrinks together is pruned by half with every other group left whole; the
model's metric is measured after each. The layers are then ranked, most harmful first.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from nbopt.compress._inputs import set_eval
from nbopt.compress._measure import read_metric
from nbopt.compress._registry import PRUNING, QUANTIZATION, StepContext
from nbopt.compress.auto._result import LayerSensitivity
from nbopt.compress.auto._tolerance import Tolerance
from nbopt.errors import ConfigError

# How much of each group the pruning pass removes: the middle of the searched range.
PRUNE_AMOUNT = 0.5
# Layers (or groups) measured per kind: the largest ones, which matter most to the gains.
MAX_LAYERS = 32


def quantization_sensitivity(
    model: nn.Module,
    layers: Sequence[str],
    *,
    evaluate: Callable[[nn.Module], Any],
    tolerance: Tolerance,
    context: StepContext,
    backend: str = "auto",
    on_layer: Callable[[LayerSensitivity], None] = lambda item: None,
    skipped: list[str] | None = None,
) -> list[LayerSensitivity]:
    """Quantize each of ``layers`` alone with dynamic int8 on ``backend``; the layers, most
    sensitive first. A layer the step cannot quantize is left out, and ``skipped`` says why."""
    int8 = backend
    backend = QUANTIZATION.get("int8")
    measured = []
    for name in _largest(model, layers):
        others = tuple(other for other in layers if other != name)
        try:
            quantized = backend.load()(
                copy.deepcopy(model), backend.make_config(skip=others, backend=int8), context
            ).model
        except ConfigError as exc:
            _skip(skipped, f"int8 of {name} alone", exc)
            continue
        measured.append(_judge("quant", name, (name,), quantized, evaluate, tolerance))
        on_layer(measured[-1])
    return ranked(measured)


def pruning_sensitivity(
    model: nn.Module,
    groups: Sequence[Sequence[str]],
    *,
    evaluate: Callable[[nn.Module], Any],
    tolerance: Tolerance,
    context: StepContext,
    prune_ignore: tuple[str, ...] = (),
    on_layer: Callable[[LayerSensitivity], None] = lambda item: None,
    skipped: list[str] | None = None,
) -> list[LayerSensitivity]:
    """Prune each group alone (``PRUNE_AMOUNT`` of its channels, no fine-tuning); the groups,
    most sensitive first. ``groups`` are lists of layer names, the naming layer first. A group
    the step cannot prune is left out, and ``skipped`` says why."""
    backend = PRUNING.get("structured")
    by_name = {group[0]: tuple(group) for group in groups}
    measured = []
    for name in _largest(model, list(by_name)):
        others = tuple(other for other in by_name if other != name)
        config = backend.make_config(amount=PRUNE_AMOUNT, ignore=(*prune_ignore, *others))
        try:
            pruned = backend.load()(copy.deepcopy(model), config, context).model
        except ConfigError as exc:
            _skip(skipped, f"pruning the group of {name} alone", exc)
            continue
        measured.append(_judge("prune", name, by_name[name], pruned, evaluate, tolerance))
        on_layer(measured[-1])
    return ranked(measured)


def _skip(skipped: list[str] | None, what: str, error: ConfigError) -> None:
    if skipped is not None:
        skipped.append(f"{what} was left out of the sensitivity pass: {error}")


def ranked(items: Sequence[LayerSensitivity]) -> list[LayerSensitivity]:
    """Most harmful first; ties keep the model's order."""
    return sorted(items, key=lambda item: -item.loss)


def _largest(model: nn.Module, names: Sequence[str]) -> list[str]:
    """``names`` in model order, only the ``MAX_LAYERS`` with the most weights if more."""
    if len(names) <= MAX_LAYERS:
        return list(names)
    size = {name: sum(p.numel() for p in model.get_submodule(name).parameters()) for name in names}
    largest = set(sorted(names, key=lambda name: -size[name])[:MAX_LAYERS])
    return [name for name in names if name in largest]


def _judge(
    kind: str,
    name: str,
    members: tuple[str, ...],
    model: nn.Module,
    evaluate: Callable[[nn.Module], Any],
    tolerance: Tolerance,
) -> LayerSensitivity:
    set_eval(model)
    metric = read_metric(evaluate(model))
    return LayerSensitivity(
        kind, name, members, metric, tolerance.loss(metric), not tolerance.within(metric)
    )
