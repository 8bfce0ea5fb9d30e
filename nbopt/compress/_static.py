"""Static int8 quantization with torchao's PT2E flow and the x86 Inductor quantizer."""

from __future__ import annotations

import torch
from torch import nn

from nbopt.compress._inputs import (
    batch_dynamic_shapes,
    calibration_batches,
    call,
    export_arguments,
)
from nbopt.compress._quantize import import_torchao, skipped_modules
from nbopt.compress._registry import StaticInt8, StepContext, StepOutcome
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


def quantize_int8_static(model: nn.Module, config: StaticInt8, context: StepContext) -> StepOutcome:
    """Export the model, observe activations on ``config.calib``, then convert it.

    The result is a ``torch.fx.GraphModule`` holding int8 weights. Run as it is, it executes
    reference quantize/dequantize operations around float kernels; ``torch.compile`` lowers
    them to fused int8 kernels.
    """
    pt2e = import_torchao("torchao.quantization.pt2e.quantize_pt2e", _PURPOSE)
    x86 = import_torchao("torchao.quantization.pt2e.quantizer.x86_inductor_quantizer", _PURPOSE)
    args, kwargs = export_arguments(context.example)
    exported = torch.export.export(
        model, args, kwargs, dynamic_shapes=batch_dynamic_shapes(args, kwargs)
    ).module()
    quantizer = x86.X86InductorQuantizer()
    quantizer.set_global(x86.get_default_x86_inductor_quantization_config())
    for name in config.skip:
        quantizer.set_module_name_qconfig(name, None)
    prepared = pt2e.prepare_pt2e(exported, quantizer)
    batches = 0
    with torch.no_grad():
        for batch in calibration_batches(config.calib, context.example):
            call(prepared, batch)
            batches += 1
    converted = pt2e.convert_pt2e(prepared)
    _drop_unused_weights(converted)
    return StepOutcome(
        converted,
        f"int8 weights and activations, calibrated on {batches} batches",
        notes=[
            "the int8-static model runs in eager mode as reference quantize/dequantize "
            "operations around float kernels, not int8 kernels: it is smaller, not faster; for "
            "int8 kernels run torch.compile(model) with torch._inductor.config.freezing = True"
        ],
        info={"calibration_batches": batches},
    )


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
