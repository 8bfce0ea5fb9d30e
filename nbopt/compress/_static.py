"""Static int8 quantization with torchao's PT2E flow and the x86 Inductor quantizer."""

from __future__ import annotations

import copy
import functools
from collections import Counter
from typing import Any

import torch
from torch import nn

from nbopt.compress._cast import cast_inputs, cast_outputs
from nbopt.compress._guard import guarded_step
from nbopt.compress._inputs import (
    batch_dynamic_shapes,
    calibration_batches,
    call,
    export_arguments,
    linears_from_conv1d,
    map_tensors,
    parent_and_name,
)
from nbopt.compress._quantize import import_torchao, skipped_modules
from nbopt.compress._registry import StaticInt8, StepContext, StepOutcome
from nbopt.compress._tied import Ties
from nbopt.errors import ConfigError

_PURPOSE = "quant=int8-static"


def check_int8_static(model: nn.Module, config: StaticInt8, context: StepContext) -> None:
    if context.device.type != "cpu":
        raise ConfigError(
            f"quant=int8-static is not supported on {context.device.type}: its quantizer "
            "targets x86 CPUs; use quant=int8 on GPUs"
        )
    if context.example is None:
        raise ConfigError("quant=int8-static needs example=: an input to export the model with")
    skipped_modules(model, config.skip)
    first = next(iter(calibration_batches(config.calib, context.example)), None)
    if first is None:
        raise ConfigError("calib= holds no batch to calibrate with")
    try:
        with torch.no_grad():
            call(model, first)
    except Exception as exc:
        raise ConfigError(
            f"calib=: a calibration batch does not run through the model: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


@guarded_step(
    _PURPOSE,
    "leave the layer it names in float, or use quant=int8 (dynamic) for Linear, LSTM and GRU",
)
def quantize_int8_static(model: nn.Module, config: StaticInt8, context: StepContext) -> StepOutcome:
    """Export the model, observe activations on ``config.calib``, then convert it.

    The result is a ``torch.fx.GraphModule`` holding int8 weights. Run as it is, it executes
    reference quantize/dequantize operations around float kernels; ``torch.compile`` lowers
    them to fused int8 kernels. A model in another float type is quantized from float32 and
    keeps taking and returning its own type; layers holding a tied parameter stay in float;
    a Hugging Face model stops returning its key/value cache (an exported graph cannot build
    the cache object).
    """
    pt2e = import_torchao("torchao.quantization.pt2e.quantize_pt2e", _PURPOSE)
    x86 = import_torchao("torchao.quantization.pt2e.quantizer.x86_inductor_quantizer", _PURPOSE)
    dtype = _float_type(model)
    example = _as_float32(context.example)
    notes = _exportable(model, example)
    ties = Ties(model)
    args, kwargs = export_arguments(example)
    exported = torch.export.export(
        model, args, kwargs, dynamic_shapes=batch_dynamic_shapes(args, kwargs)
    ).module()
    quantizer = x86.X86InductorQuantizer()
    quantizer.set_global(x86.get_default_x86_inductor_quantization_config())
    kept = list(dict.fromkeys([*config.skip, *sorted(n for n in ties.module_names() if n)]))
    for name in kept:
        quantizer.set_module_name_qconfig(name, None)
    if ties:
        notes.append(
            f"layers sharing a weight stay in float so that it is stored once: {ties.describe()}"
        )
    prepared = pt2e.prepare_pt2e(exported, quantizer)
    batches = 0
    with torch.no_grad():
        for batch in calibration_batches(config.calib, context.example):
            call(prepared, _as_float32(batch))
            batches += 1
    converted = pt2e.convert_pt2e(prepared)
    _drop_unused_weights(converted)
    if dtype != torch.float32:
        converted.register_forward_pre_hook(
            functools.partial(cast_inputs, dtype=torch.float32), with_kwargs=True
        )
        converted.register_forward_hook(functools.partial(cast_outputs, dtype=dtype))
    notes.insert(
        0,
        "the int8-static model runs in eager mode as reference quantize/dequantize "
        "operations around float kernels, not int8 kernels: it is smaller, not faster; for "
        "int8 kernels run torch.compile(model) with torch._inductor.config.freezing = True",
    )
    return StepOutcome(
        converted,
        f"int8 weights and activations, calibrated on {batches} batches",
        notes=notes,
        info={"calibration_batches": batches},
    )


def _exportable(model: nn.Module, example: Any) -> list[str]:
    """Make ``model`` what export and the x86 quantizer take, in place: float32, Linear layers
    for transformers' Conv1D, no key/value cache, one module per call; what changed, as notes."""
    notes = []
    dtype = _float_type(model)
    if dtype != torch.float32:
        model.float()
        notes.append(
            f"the {_name(dtype)} model was quantized from float32; it still takes and returns "
            f"{_name(dtype)}"
        )
    linears_from_conv1d(model)
    config = getattr(model, "config", None)
    if getattr(config, "use_cache", False):
        config.use_cache = False
        notes.append("the exported model does not return a key/value cache (use_cache=False)")
    repeated = _one_module_per_call(model, example)
    if repeated:
        notes.append(
            f"modules called more than once ({', '.join(repeated)}) were given one copy per "
            "call, so that each call is quantized on its own"
        )
    return notes


def _float_type(model: nn.Module) -> torch.dtype:
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _as_float32(inputs: Any) -> Any:
    return map_tensors(inputs, lambda t: t.float() if t.is_floating_point() else t)


class _PerCall(nn.Module):
    """A stateless module called ``calls`` times in a forward pass, as ``calls`` copies: the
    k-th call runs the k-th copy.

    torchvision's ResNet blocks call one ``self.relu`` twice; exported, both calls come from
    one module, and the x86 quantizer, which groups operations by the module they came from,
    then finds a group with two outputs and fails ("Input partition has more than one output
    node", ``torchao/quantization/pt2e/quantizer/x86_inductor_quantizer.py``,
    ``_get_output_nodes_of_partitions``). The routing is Python: export traces it away.
    """

    def __init__(self, module: nn.Module, calls: int) -> None:
        super().__init__()
        self.copies = nn.ModuleList([module, *(copy.deepcopy(module) for _ in range(calls - 1))])
        self.calls = 0

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        module = self.copies[self.calls % len(self.copies)]
        self.calls += 1
        return module(*args, **kwargs)


def _one_module_per_call(model: nn.Module, example: Any) -> list[str]:
    """Give each stateless leaf module called more than once per forward pass one copy per
    call (:class:`_PerCall`); the names of those modules."""
    calls: Counter[str] = Counter()
    leaves = {
        name: module
        for name, module in model.named_modules()
        if name
        and not any(True for _ in module.children())
        and not any(True for _ in module.parameters())
        and not any(True for _ in module.buffers())
    }
    handles = [
        module.register_forward_hook(lambda *_, name=name: calls.update([name]))
        for name, module in leaves.items()
    ]
    try:
        with torch.no_grad():
            call(model, example)
    finally:
        for handle in handles:
            handle.remove()
    repeated = [name for name, count in calls.items() if count > 1]
    for name in repeated:
        parent, attribute = parent_and_name(model, name)
        setattr(parent, attribute, _PerCall(leaves[name], calls[name]))
    return repeated


def _drop_unused_weights(graph_module: torch.fx.GraphModule) -> None:
    """Delete the float weights ``convert_pt2e`` leaves behind.

    Conversion folds each quantized weight into a new int8 constant but keeps the float
    original attached to its submodule (torchao 0.18), so the state dict holds both and is
    larger than the float model's. Only what the graph reads is kept.
    """
    used = {node.target for node in graph_module.graph.nodes if node.op == "get_attr"}
    named = [*graph_module.named_parameters(), *graph_module.named_buffers()]
    for name, _ in named:
        if name in used:
            continue
        owner_path, _, attribute = name.rpartition(".")
        owner = graph_module.get_submodule(owner_path) if owner_path else graph_module
        delattr(owner, attribute)
