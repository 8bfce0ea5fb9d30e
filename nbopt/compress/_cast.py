"""float16 and bfloat16 casts: half the size, faster where the hardware has kernels for them."""

from __future__ import annotations

import functools
import warnings
from typing import Any

import torch
from torch import nn

from nbopt.compress._guard import guarded_step
from nbopt.compress._inputs import map_tensors
from nbopt.compress._registry import Cast, StepContext, StepOutcome


def fast_path(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether ``device`` has fast kernels for ``dtype`` (float16 or bfloat16)."""
    if device.type == "cuda":
        return dtype == torch.float16 or torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        if dtype == torch.bfloat16:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        return bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
    return True


def check_cast(model: nn.Module, config: Cast, context: StepContext) -> None:
    """Every dtype casts on every device; where it has no fast path, warn now."""
    dtype = getattr(torch, config.dtype)
    if not fast_path(dtype, context.device):
        warnings.warn(
            f"nbopt: this {context.device.type.upper()} has no fast {config.dtype} kernels: "
            f"the cast halves the size but expect the model to run slower than in float32",
            RuntimeWarning,
            stacklevel=2,
        )


@guarded_step("quant=fp16/bf16", "use another quant=")
def cast(model: nn.Module, config: Cast, context: StepContext) -> StepOutcome:
    """Cast the model to ``config.dtype``; it still takes and returns float32 tensors.

    Forward hooks on the model cast its floating-point inputs to the new dtype and its outputs
    back, so code written for the float32 model (an evaluation loop, ``example=``) runs
    unchanged.
    """
    dtype = getattr(torch, config.dtype)
    original = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    model.to(dtype)
    model.register_forward_pre_hook(functools.partial(cast_inputs, dtype=dtype), with_kwargs=True)
    model.register_forward_hook(functools.partial(cast_outputs, dtype=original))
    notes = [
        f"the model casts floating-point inputs to {config.dtype} and its outputs back to "
        f"{str(original).removeprefix('torch.')}"
    ]
    if not fast_path(dtype, context.device):
        notes.append(
            f"this {context.device.type.upper()} has no fast {config.dtype} kernels: the cast "
            "halves the size, not the latency"
        )
    return StepOutcome(model, f"cast to {config.dtype}", notes=notes)


def _cast_floats(value: Any, dtype: torch.dtype) -> Any:
    return map_tensors(value, lambda t: t.to(dtype) if t.is_floating_point() else t)


def cast_inputs(
    module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], *, dtype: torch.dtype
) -> tuple[Any, Any]:
    return _cast_floats(args, dtype), _cast_floats(kwargs, dtype)


def cast_outputs(module: nn.Module, args: Any, output: Any, *, dtype: torch.dtype) -> Any:
    return _cast_floats(output, dtype)
