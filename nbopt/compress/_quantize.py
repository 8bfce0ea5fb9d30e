"""Dynamic int8 quantization (CPU: torch.ao; CUDA: torchao) and float16/bfloat16 casts."""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from nbopt._imports import optional_import
from nbopt.compress._bags import average_quantized_bags, float_only_bags
from nbopt.compress._cast import cast_inputs, cast_outputs
from nbopt.compress._guard import guarded_step
from nbopt.compress._inputs import (
    keep_transformer_layers_working,
    linears_from_conv1d,
)
from nbopt.compress._registry import DynamicInt8, StepContext, StepOutcome
from nbopt.compress._tied import Ties
from nbopt.errors import ConfigError

_DYNAMIC_TYPES = (nn.Linear, nn.LSTM, nn.GRU)
_EMBEDDING_TYPES = (nn.Embedding, nn.EmbeddingBag)


@contextlib.contextmanager
def quiet_torch_ao() -> Iterator[None]:
    """Hide torch.ao.quantization's deprecation warnings, for this call only."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="torch.ao.quantization is deprecated", category=DeprecationWarning
        )
        warnings.filterwarnings(
            "ignore",
            message="torch.quantize_per_tensor, torch.quantize_per_channel",
            category=UserWarning,
        )
        yield


@contextlib.contextmanager
def quiet_torchao() -> Iterator[None]:
    """torchao's log lines silenced for the block: on machines without its CUDA extensions
    ("Failed to load ..._C_cutlass_90a.abi3.so"), and with a newer torch (pytree notices such
    as "<enum 'KernelPreference'> is an Enum subclass ...", logged when a config is first
    applied, not only on import); and the deprecation warnings of the torch internals it
    imports (``torch.jit.script_method``). They say nothing about the user's model."""
    loggers = [logging.getLogger("torchao"), logging.getLogger("torch.utils._pytree")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore",
                message="`torch.jit.script_method` is deprecated",
                category=DeprecationWarning,
            )
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def import_torchao(module: str, purpose: str) -> Any:
    """Import a torchao module quietly (:func:`quiet_torchao`), or say which extra to install."""
    with quiet_torchao():
        return optional_import(module, "compress", purpose)


def check_int8(model: nn.Module, config: DynamicInt8, context: StepContext) -> None:
    from nbopt.compress._int8 import check_backend

    device = context.device.type
    if device not in ("cpu", "cuda"):
        raise ConfigError(
            f"quant=int8 is not supported on {device}; it runs on cpu (torch.ao or torchao) "
            "and cuda (torchao)"
        )
    check_backend(config.backend, context.device)
    if config.backend != "torch.ao":
        import_torchao("torchao.quantization", "quant=int8")
    if not any(isinstance(m, _DYNAMIC_TYPES + _EMBEDDING_TYPES) for m in model.modules()):
        raise ConfigError(
            "quant=int8 found no Linear, LSTM, GRU or Embedding layer to quantize; for "
            "convolutions use quant=int8-static with calib="
        )
    skipped_modules(model, config.skip)


def dynamic_int8_layers(model: nn.Module) -> list[str]:
    """Names of the layers dynamic int8 quantizes: exactly ``nn.Linear`` (not its subclasses,
    such as attention's output projection, which their owners read directly), LSTM, GRU and
    embedding tables; not those holding a tied parameter, which stay in float."""
    tied = Ties(model).module_names()
    return [
        name
        for name, module in model.named_modules()
        if type(module) in (*_DYNAMIC_TYPES, *_EMBEDDING_TYPES) and name not in tied
    ]


def skipped_modules(model: nn.Module, names: tuple[str, ...]) -> list[str]:
    """The names in ``skip`` with every module inside them; ConfigError for a name the model
    does not have."""
    modules = dict(model.named_modules())
    found = []
    for name in names:
        if not name or name not in modules:
            raise ConfigError(
                f"quantization skip: the model has no module named {name!r}; names are "
                "those of model.named_modules()"
            )
        found.extend(
            f"{name}.{inner}" if inner else name for inner, _ in modules[name].named_modules()
        )
    return found


@guarded_step("quant=int8", "leave the layer it names in float, or use another quant=")
def quantize_int8(model: nn.Module, config: DynamicInt8, context: StepContext) -> StepOutcome:
    """8-bit weights with activations quantized at each call; embeddings 8-bit weight-only.

    Layers holding a tied parameter stay in float, so that it stays one tensor; a model in
    another float type is cast to float32 first (the int8 kernels take float32), and keeps
    taking and returning its own type.
    """
    model, notes = as_float32(model, "quant=int8")
    if linears_from_conv1d(model):
        notes.append(
            "transformers' Conv1D layers were made nn.Linear (the same product) to be quantized"
        )
    ties = Ties(model)
    skip = config.skip
    if ties:
        tied = tuple(sorted(name for name in ties.module_names() if name))
        skip = (*skip, *(name for name in tied if name not in skip))
        notes.append(
            f"{', '.join(tied)} share a weight ({ties.describe()}): they stay in float so that "
            "it stays one tensor (int8 would store a copy for each)"
        )
    outcome = _quantize_with_backend(model, skip, config.backend, context)
    outcome.notes[:0] = notes
    return outcome


def _quantize_with_backend(
    model: nn.Module, skip: tuple[str, ...], backend: str, context: StepContext
) -> StepOutcome:
    """Quantize with ``backend`` (``auto``: the one :mod:`nbopt.compress._int8` chooses) and
    measure how close the outputs stay to the float model's on the example."""
    from nbopt.compress._int8 import describe, fidelity, outputs

    notes = []
    if backend == "auto":
        choice = choose_backend(model, skip, context)
        backend = choice.name
        notes.append(describe(choice))
    reference = None if context.example is None else outputs(model, context.example)
    outcome = _quantize(backend, model, skip)
    info: dict[str, Any] = {"backend": backend}
    if reference is not None:
        info["fidelity"] = fidelity(reference, outputs(outcome.model, context.example))
    outcome.detail += f" ({backend}"
    if "fidelity" in info:
        outcome.detail += f"; outputs {info['fidelity']:.4f} cosine to float"
    outcome.detail += ")"
    outcome.notes[:0] = notes
    outcome.info.update(info)
    return outcome


def choose_backend(model: nn.Module, skip: tuple[str, ...], context: StepContext) -> Any:
    """The int8 backend ``quant_backend=auto`` takes for ``model`` (a
    :class:`~nbopt.compress._int8.BackendChoice`), measured on a copy."""
    from nbopt.compress._int8 import choose

    return choose(model, skip, context, lambda name, m, s: _candidate(name, m, s).model)


def _quantize(backend: str, model: nn.Module, skip: tuple[str, ...]) -> StepOutcome:
    if backend == "torch.ao":
        return quantize_int8_cpu(model, skip)
    return quantize_int8_torchao(model, skip)


@guarded_step("quant=int8", "leave the layer it names in float, or use another quant_backend=")
def _candidate(backend: str, model: nn.Module, skip: tuple[str, ...]) -> StepOutcome:
    """A copy quantized by ``backend``, for ``auto`` to measure; a library's failure is a
    ConfigError, and the candidate is left out."""
    return _quantize(backend, model, skip)


def as_float32(model: nn.Module, purpose: str) -> tuple[nn.Module, list[str]]:
    """``model`` in float32, taking and returning tensors of its own float type, with a note;
    a float32 model as it is."""
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    if dtype == torch.float32:
        return model, []
    model.float()
    model.register_forward_pre_hook(
        functools.partial(cast_inputs, dtype=torch.float32), with_kwargs=True
    )
    model.register_forward_hook(functools.partial(cast_outputs, dtype=dtype))
    name = str(dtype).removeprefix("torch.")
    return model, [
        f"the {name} model was cast to float32 for {purpose} (its int8 kernels take float32); "
        f"it still takes and returns {name}"
    ]


def quantize_int8_cpu(model: nn.Module, skip: tuple[str, ...] = ()) -> StepOutcome:
    """torch.ao's ``quantize_dynamic``: per-channel int8 Linear, int8 LSTM/GRU, and
    embedding tables with 8-bit rows (each with its own scale and offset); the modules named in
    ``skip`` stay in float."""
    with quiet_torch_ao():
        from torch.ao.quantization import (
            default_dynamic_qconfig,
            float_qparams_weight_only_qconfig,
            per_channel_dynamic_qconfig,
            quantize_dynamic,
        )

    spec: dict[type, Any] = {
        nn.Linear: per_channel_dynamic_qconfig,
        nn.LSTM: default_dynamic_qconfig,
        nn.GRU: default_dynamic_qconfig,
    }
    if any(isinstance(m, _EMBEDDING_TYPES) for m in model.modules()):
        spec.update(dict.fromkeys(_EMBEDDING_TYPES, float_qparams_weight_only_qconfig))
    # A name's entry overrides its type's, but a skipped parent does not pass its None down
    # to children that have a type entry: every module inside it is named.
    spec.update(dict.fromkeys(skipped_modules(model, skip)))
    notes = []
    bags = [name for name in float_only_bags(model) if name not in spec]
    if bags:
        spec.update(dict.fromkeys(bags))
        notes.append(
            f"{', '.join(bags)}: EmbeddingBag(mode='max') stays in float (torch.ao's quantized "
            "bags only sum)"
        )
    with quiet_torch_ao():
        quantized = quantize_dynamic(model, spec, dtype=torch.qint8, inplace=True)
    average_quantized_bags(quantized)
    keep_transformer_layers_working(quantized)
    notes += _float_leftovers(quantized)
    if any(
        type(m).__name__ in ("Embedding", "EmbeddingBag") and _is_torch_ao(m)
        for m in quantized.modules()
    ):
        notes.append(
            "8-bit embedding tables are 4x smaller, but each lookup dequantizes its rows: "
            "lookups are no faster than in float, and can be slower"
        )
    recurrent = [
        name
        for name, module in quantized.named_modules()
        if _is_torch_ao(module) and type(module).__name__ in ("LSTM", "GRU")
    ]
    if recurrent:
        # Measured on a 256-unit LSTM forecaster (64 steps, batch 16, one thread): 1.09x the
        # float latency, while 4x smaller.
        notes.append(
            f"{', '.join(recurrent)}: int8 recurrent layers store 4x smaller weights, but "
            "torch.ao's int8 LSTM/GRU kernels are not faster than the float ones on every CPU "
            "and size (they can be slower): the latency above says which"
        )
    return StepOutcome(quantized, _quantized_layers(quantized), notes=notes)


def quantize_int8_torchao(model: nn.Module, skip: tuple[str, ...] = ()) -> StepOutcome:
    """torchao's ``quantize_``: int8 dynamic-activation Linear layers (per-token activations,
    per-channel weights) and int8 weight-only embedding rows, on CPU and CUDA. The modules
    named in ``skip`` stay in float."""
    quantization = import_torchao("torchao.quantization", "quant=int8")
    granularity = import_torchao("torchao.quantization.granularity", "quant=int8")
    recurrent = any(isinstance(m, (nn.LSTM, nn.GRU)) for m in model.modules())
    kept = set(skipped_modules(model, skip))
    with quiet_torchao():
        quantization.quantize_(
            model,
            quantization.Int8DynamicActivationInt8WeightConfig(),
            filter_fn=lambda module, name: _plain_linear(module) and name not in kept,
        )
        if any(isinstance(m, nn.Embedding) for m in model.modules()):
            quantization.quantize_(
                model,
                quantization.IntxWeightOnlyConfig(
                    weight_dtype=torch.int8, granularity=granularity.PerAxis(0)
                ),
                filter_fn=lambda module, name: (
                    isinstance(module, nn.Embedding) and name not in kept
                ),
            )
    keep_transformer_layers_working(model)
    notes = _float_leftovers(model, static_available=model_on_cpu(model))
    if recurrent:
        notes.append("torchao has no int8 LSTM/GRU: recurrent layers stay in float")
    if any(isinstance(m, nn.EmbeddingBag) for m in model.modules()):
        notes.append("torchao has no int8 EmbeddingBag: bags stay in float")
    return StepOutcome(model, _quantized_layers(model), notes=notes)


def model_on_cpu(model: nn.Module) -> bool:
    return all(p.device.type == "cpu" for p in model.parameters())


def _is_torch_ao(module: nn.Module) -> bool:
    return type(module).__module__.startswith("torch.ao.nn.quantized")


def _plain_linear(module: nn.Module) -> bool:
    """The Linear layers torchao's ``quantize_`` takes by default: not attention's output
    projection (read directly by its owner) and not already quantized."""
    return (
        isinstance(module, nn.Linear)
        and not isinstance(module, nn.modules.linear.NonDynamicallyQuantizableLinear)
        and type(module.weight) in (torch.Tensor, nn.Parameter)
    )


def _quantized_layers(model: nn.Module) -> str:
    """``int8 weights in 3 Linear, 1 Embedding``: the layers that now hold int8 weights."""
    counts: Counter[str] = Counter()
    for module in model.modules():
        name = type(module).__name__
        weight = getattr(module, "weight", None)
        packed = type(module).__module__.startswith("torch.ao.nn.quantized") and name in (
            "Linear",
            "LSTM",
            "GRU",
            "Embedding",
            "EmbeddingBag",
        )
        # torchao keeps the module and swaps its weight for a quantized tensor subclass.
        subclass = isinstance(weight, torch.Tensor) and type(weight) not in (
            torch.Tensor,
            nn.Parameter,
        )
        if packed or subclass:
            counts[name] += 1
    if not counts:
        return "no layer was quantized"
    return "int8 weights in " + ", ".join(f"{n} {name}" for name, n in counts.items())


def _float_leftovers(model: nn.Module, static_available: bool = True) -> list[str]:
    """What dynamic quantization leaves in float, said plainly."""
    notes = []
    attention = [m for m in model.modules() if isinstance(m, nn.MultiheadAttention)]
    if attention:
        projections = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
        weights = sum(
            m.out_proj.weight.numel()
            + sum(getattr(m, name).numel() for name in projections if getattr(m, name) is not None)
            for m in attention
        )
        notes.append(
            f"nn.MultiheadAttention projections ({weights:,} weights) stay in float: "
            "dynamic quantization does not reach into nn.MultiheadAttention"
        )
    if any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules()):
        hint = "; quant=int8-static (with calib=) quantizes them" if static_available else ""
        notes.append(f"convolutions stay in float with dynamic int8{hint}")
    return notes
