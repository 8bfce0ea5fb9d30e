"""Which int8 kernels quantize a model: ``quant_backend=torch.ao``, ``torchao``, or ``auto``.

torch.ao's eager dynamic quantization is fast on CPU but deprecated, pending removal
(pytorch/ao#2259); torchao's ``quantize_`` is its maintained successor, slower in eager mode
on CPU. Neither is best for every model, and they differ in fidelity as much as in speed, so
``auto`` measures them: each backend that exists on this torch quantizes a copy of the model,
and the fastest on ``example=`` whose outputs stay within :data:`FIDELITY` (cosine similarity
to the float model's, the worst over the example's rows) wins. The choice is remembered for
models of the same structure and example shapes, so that a search trying many int8 plans on one
pruned model measures once.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils import _pytree as pytree

from nbopt.compress._inputs import call
from nbopt.compress._registry import StepContext
from nbopt.compress._undisturbed import undisturbed
from nbopt.errors import ConfigError

# A backend is faithful when the worst cosine similarity of its outputs to the float model's
# stays at or above this. On a pretrained sentence encoder torch.ao's per-channel int8 reached
# 0.965 and torchao's 0.997: embeddings 0.97 apart rank neighbours differently.
FIDELITY = 0.99
# Latencies within this fraction of the fastest are a tie, which the faithful one wins.
TIE = 0.05
# Choices remembered (model structure and example shapes -> choice).
_REMEMBERED = 64
_CHOICES: OrderedDict[tuple[Any, ...], BackendChoice] = OrderedDict()


@dataclass(frozen=True)
class BackendChoice:
    """The backend ``auto`` chose, and what it measured of each candidate.

    Attributes:
        name: ``"torch.ao"`` or ``"torchao"``.
        reason: Why, in a sentence.
        measured: For each candidate, ``(latency ratio to float, fidelity)``; empty when
            nothing could be measured (no example).
    """

    name: str
    reason: str
    measured: dict[str, tuple[float, float]] = field(default_factory=dict)


def torch_ao_available() -> bool:
    """Whether this torch still has ``torch.ao.quantization``'s eager dynamic quantization."""
    try:
        from torch.ao.quantization import quantize_dynamic  # noqa: F401
    except ImportError:
        return False
    return torch.backends.quantized.engine != "none"


def available(device: torch.device) -> list[str]:
    """The backends that can quantize a model on ``device``, fastest on CPU first."""
    if device.type == "cuda":
        return ["torchao"]
    return ["torch.ao", "torchao"] if torch_ao_available() else ["torchao"]


def check_backend(name: str, device: torch.device) -> None:
    """ConfigError, before any work, for a backend that cannot run here."""
    if name == "auto" or name in available(device):
        return
    if name == "torch.ao" and device.type == "cuda":
        raise ConfigError("quant_backend=torch.ao runs on CPU only; use torchao (or auto) on CUDA")
    raise ConfigError(
        "quant_backend=torch.ao: this torch has no torch.ao.quantization (removed, or no "
        "quantized engine); use quant_backend=torchao or auto"
    )


def fidelity(reference: Any, output: Any) -> float:
    """The worst cosine similarity between the float model's outputs and the quantized
    model's, row by row (each row of a batch flattened; a single value per row is compared
    over the batch)."""
    worst = 1.0
    pairs = zip(_tensors(reference), _tensors(output), strict=False)
    for expected, got in pairs:
        if not expected.is_floating_point() or expected.numel() == 0:
            continue
        rows = expected.reshape(len(expected), -1) if expected.dim() > 0 else expected.reshape(1, 1)
        if rows.shape[1] == 1:
            rows = rows.reshape(1, -1)
        other = got.reshape(rows.shape).to(rows.dtype)
        similarity = torch.nn.functional.cosine_similarity(rows.double(), other.double(), dim=1)
        worst = min(worst, float(similarity.min()))
    return worst


def _tensors(output: Any) -> list[torch.Tensor]:
    return [leaf.detach() for leaf in pytree.tree_leaves(output) if torch.is_tensor(leaf)]


def outputs(model: nn.Module, example: Any) -> Any:
    """The model's output on ``example``, leaving no trace on it."""
    with torch.no_grad(), undisturbed(model):
        return call(model, example)


def choose(
    model: nn.Module,
    skip: tuple[str, ...],
    context: StepContext,
    quantize: Any,
) -> BackendChoice:
    """The backend for ``model``: the fastest faithful one, measured on the example.

    ``quantize(name, model, skip)`` quantizes a copy with a backend. Without an example
    nothing can be measured, and torch.ao (the faster on CPU in nbopt's benchmarks, where it
    exists) is taken.
    """
    names = available(context.device)
    if len(names) == 1:
        return BackendChoice(names[0], f"the only int8 backend on {context.device.type}")
    if context.example is None:
        return BackendChoice(
            names[0], "no example= to measure on: the faster on CPU in nbopt's benchmarks"
        )
    key = _key(model, skip, context)
    if key in _CHOICES:
        _CHOICES.move_to_end(key)
        return _CHOICES[key]
    choice = _measure(model, skip, context, names, quantize)
    _CHOICES[key] = choice
    if len(_CHOICES) > _REMEMBERED:
        _CHOICES.popitem(last=False)
    return choice


def _measure(
    model: nn.Module,
    skip: tuple[str, ...],
    context: StepContext,
    names: list[str],
    quantize: Any,
) -> BackendChoice:
    from nbopt.compress._measure import measure_latency

    reference = outputs(model, context.example)
    candidates: dict[str, nn.Module] = {}
    failed = []
    for name in names:
        try:
            candidates[name] = quantize(name, copy.deepcopy(model), skip)
        except ConfigError as exc:
            failed.append(f"{name} ({exc})")
    if not candidates:
        raise ConfigError(f"quant=int8: no backend could quantize this model: {'; '.join(failed)}")
    seconds = measure_latency([model, *candidates.values()], context.example)
    measured = {
        name: (seconds[index + 1] / seconds[0], fidelity(reference, outputs(q, context.example)))
        for index, (name, q) in enumerate(candidates.items())
    }
    faithful = {name: m for name, m in measured.items() if m[1] >= FIDELITY}
    fastest = min((m[0] for m in faithful.values()), default=0.0)
    tied = {name: m for name, m in faithful.items() if m[0] <= fastest * (1 + TIE)}
    # Without a faithful backend, speed does not matter: the closest to float wins.
    pool = tied or measured
    name = max(pool, key=lambda n: pool[n][1])
    if not faithful:
        reason = f"no backend kept the outputs within {FIDELITY} cosine of float: the closest"
    elif len(tied) > 1:
        reason = f"as fast as the fastest (within {TIE:.0%}) and the closest to float"
    else:
        reason = f"the fastest with outputs within {FIDELITY} cosine of float"
    if failed:
        reason += f"; {'; '.join(failed)} could not quantize it"
    return BackendChoice(name, reason, measured)


def describe(choice: BackendChoice) -> str:
    """``int8 backend torch.ao (auto: ...; measured: torch.ao 0.21x latency, 0.9995 cosine;
    torchao 0.70x, 0.9999)``."""
    text = f"int8 backend {choice.name} (auto: {choice.reason}"
    if choice.measured:
        shown = "; ".join(
            f"{name} {ratio:.2f}x latency, {similarity:.4f} cosine"
            for name, (ratio, similarity) in choice.measured.items()
        )
        text += f"; measured on example=: {shown}"
    return text + ")"


def _key(model: nn.Module, skip: tuple[str, ...], context: StepContext) -> tuple[Any, ...]:
    structure = tuple(
        (name, type(module).__name__, tuple(tuple(p.shape) for p in module.parameters(False)))
        for name, module in model.named_modules()
    )
    example = tuple(
        (tuple(leaf.shape), str(leaf.dtype))
        for leaf in pytree.tree_leaves(context.example)
        if torch.is_tensor(leaf)
    )
    return structure, example, skip, str(context.device), torch.get_num_threads()
