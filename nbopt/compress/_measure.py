"""Measuring a model: weights, non-zeros, serialized size, MACs, latency and the user's metric.

Everything here is measured on the model as it is, never estimated from its configuration:
quantized weights are counted where each kind of quantized module keeps them, the size is the
bytes ``torch.save`` writes, and latency is a median over repeated timed calls.
"""

from __future__ import annotations

import io
import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from nbopt._numbers import as_number
from nbopt.compress._inputs import call, device_of
from nbopt.compress._result import ModelMeasurement
from nbopt.compress._undisturbed import undisturbed
from nbopt.errors import ConfigError

# Integer weights that quantized models keep as buffers (PT2E's folded int8 weights).
_LOW_BIT_DTYPES = {torch.int8, torch.uint8, torch.qint8, torch.quint8, torch.quint4x2}
_WARMUP_CALLS = 3
_WARMUP_SECONDS = 0.05


def measure(
    model: nn.Module,
    example: Any,
    *,
    metric: float | None = None,
    latency: bool = True,
) -> ModelMeasurement:
    """Weights, non-zeros, size and, with an ``example``, MACs and latency."""
    params, nonzero = count_weights(model)
    macs = latency_s = None
    if example is not None:
        macs = count_macs(model, example)
        if latency:
            latency_s = measure_latency([model], example)[0]
    return ModelMeasurement(params, nonzero, serialized_size(model), macs, latency_s, metric)


def weights(model: nn.Module) -> Iterator[torch.Tensor]:
    """Every weight the model stores, in float or quantized form; a shared one once."""
    seen: set[int] = set()
    for module in model.modules():
        for tensor in (*module.parameters(recurse=False), *_low_bit_buffers(module)):
            if id(tensor) not in seen:
                seen.add(id(tensor))
                yield tensor
        yield from _packed_weights(module)


def _low_bit_buffers(module: nn.Module) -> Iterator[torch.Tensor]:
    return (b for b in module.buffers(recurse=False) if b.dtype in _LOW_BIT_DTYPES)


def _packed_weights(module: nn.Module) -> Iterator[torch.Tensor]:
    """The weights torch.ao's quantized modules pack; each kind unpacks them its own way, into
    new tensors at each call."""
    if not type(module).__module__.startswith("torch.ao.nn.quantized"):
        return
    if hasattr(module, "get_weight"):
        yield from module.get_weight().values()
        yield from module.get_bias().values()
        return
    for name in ("weight", "bias"):
        getter = getattr(module, name, None)
        tensor = getter() if callable(getter) else None
        if isinstance(tensor, torch.Tensor):
            yield tensor


def count_weights(model: nn.Module) -> tuple[int, int]:
    """``(weights, non-zero weights)``; a quantized weight is zero where it dequantizes to 0."""
    total = nonzero = 0
    with torch.no_grad():
        for tensor in weights(model):
            total += tensor.numel()
            nonzero += int(torch.count_nonzero(_dense(tensor)))
    return total, nonzero


def _dense(tensor: torch.Tensor) -> torch.Tensor:
    # Quantized tensors and torchao's tensor subclasses compare with 0 only once dequantized.
    if tensor.is_quantized or type(tensor) not in (torch.Tensor, nn.Parameter):
        return tensor.dequantize()
    return tensor


def serialized_size(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def count_macs(model: nn.Module, example: Any) -> int:
    """Multiply-accumulates of one forward pass on ``example``, each operation counted once.

    torch's ``FlopCounterMode`` counts the matrix products and convolutions it sees at dispatch
    (also those of functional code). Recurrent layers and torch.ao's quantized modules run
    kernels it cannot see into, or sees only in part (a float GRU's gate products, but not a
    float LSTM's fused ``mkldnn_rnn_layer``): they are counted by a formula of their shapes,
    from forward hooks, and whatever the counter saw inside them is left out, so a layer counts
    the same in float and in int8. Attention's fused fast path is turned off for the count, so
    its products are seen too.
    """
    with undisturbed(model):
        return _count_macs(model, example)


def _count_macs(model: nn.Module, example: Any) -> int:
    opaque = 0
    seen_inside = 0
    entered: list[int] = []
    counter = FlopCounterMode(display=False, custom_mapping=_MISSING_FORMULAS)

    def enter(module: nn.Module, inputs: tuple[Any, ...]) -> None:
        entered.append(counter.get_total_flops())

    def leave(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        nonlocal opaque, seen_inside
        seen_inside += counter.get_total_flops() - entered.pop()
        opaque += _opaque_macs(module, inputs, output)

    handles = []
    for module in model.modules():
        if _is_opaque(module):
            handles.append(module.register_forward_pre_hook(enter))
            handles.append(module.register_forward_hook(leave))
    fast_path = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), counter:
            call(model, example)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast_path)
        for handle in handles:
            handle.remove()
    return (counter.get_total_flops() - seen_inside) // 2 + opaque


def _cpu_attention_flops(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
    return sdpa_flop_count(query, key, value)


def _rnn_layer_flops(
    input: Any, weight_ih: Any, weight_hh: Any, *args: Any, out_val: Any = None, **kwargs: Any
) -> int:
    """One direction of one layer of a CPU LSTM (``aten.mkldnn_rnn_layer``): every step
    multiplies the input by ``weight_ih`` and the state by ``weight_hh``. Seen where no module
    hook is (a model exported by torch.export). The counter passes shapes, not tensors."""
    steps = math.prod(input) // input[-1]
    return 2 * steps * (math.prod(weight_ih) + math.prod(weight_hh))


# torch's counter knows the CUDA attention kernels but not the CPU one, nor the CPU LSTM
# kernel (torch 2.13).
_MISSING_FORMULAS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops,
    torch.ops.aten.mkldnn_rnn_layer: _rnn_layer_flops,
}


def _is_opaque(module: nn.Module) -> bool:
    if isinstance(module, nn.RNNBase):
        return True
    if isinstance(module, nn.Linear) and type(module.weight) not in (torch.Tensor, nn.Parameter):
        # torchao's int8 weights run torch._int_mm, which the counter has no formula for.
        return True
    name = type(module).__module__
    return name.startswith("torch.ao.nn.quantized") and (
        # Recurrent layers (``mode`` alone would take in quantized EmbeddingBags too), Linear
        # layers and convolutions; quantized embeddings multiply nothing.
        hasattr(module, "hidden_size")
        or hasattr(module, "in_features")
        or hasattr(module, "kernel_size")
    )


def _opaque_macs(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> int:
    if hasattr(module, "hidden_size"):
        return _recurrent_macs(module, inputs[0])
    if hasattr(module, "in_features"):
        return inputs[0].numel() * module.out_features
    kernel = math.prod(module.kernel_size)
    return output.numel() * (module.in_channels // module.groups) * kernel


def _recurrent_macs(module: Any, first_input: Any) -> int:
    data = first_input.data if hasattr(first_input, "batch_sizes") else first_input
    steps = data.numel() // data.shape[-1]
    gates = {"LSTM": 4, "GRU": 3}.get(module.mode, 1)
    hidden = module.hidden_size
    projected = getattr(module, "proj_size", 0) or hidden
    directions = 2 if module.bidirectional else 1
    per_step = 0
    for layer in range(module.num_layers):
        inputs = module.input_size if layer == 0 else projected * directions
        per_step += gates * hidden * (inputs + projected)
        if projected != hidden:  # an LSTM with proj_size projects each hidden state
            per_step += hidden * projected
    return steps * per_step * directions


def measure_latency(
    models: Sequence[Callable[..., Any]],
    example: Any,
    *,
    min_repeats: int = 10,
    min_seconds: float = 0.3,
    max_repeats: int = 200,
) -> list[float]:
    """Median seconds per call of each model on ``example``, measured side by side.

    Each model is warmed up, then the models are called in turn, round after round, until each
    has run ``min_repeats`` times and ``min_seconds`` have passed: a burst of load from another
    process then slows every model alike instead of one of them.
    """
    with undisturbed(*models):
        return _median_latencies(models, example, min_repeats, min_seconds, max_repeats)


def _median_latencies(
    models: Sequence[Callable[..., Any]],
    example: Any,
    min_repeats: int,
    min_seconds: float,
    max_repeats: int,
) -> list[float]:
    devices = {device_of(m) for m in models if isinstance(m, nn.Module)}
    synchronize = torch.cuda.synchronize if any(d.type == "cuda" for d in devices) else None
    times: list[list[float]] = [[] for _ in models]
    with torch.no_grad():
        for model in models:
            started = time.perf_counter()
            for calls in range(1, 1000):
                call(model, example)
                if calls >= _WARMUP_CALLS and time.perf_counter() - started > _WARMUP_SECONDS:
                    break
        started = time.perf_counter()
        while len(times[0]) < max_repeats and (
            len(times[0]) < min_repeats or time.perf_counter() - started < min_seconds
        ):
            for model, samples in zip(models, times, strict=True):
                if synchronize is not None:
                    synchronize()
                clock = time.perf_counter()
                call(model, example)
                if synchronize is not None:
                    synchronize()
                samples.append(time.perf_counter() - clock)
    return [statistics.median(samples) for samples in times]


def read_metric(value: Any) -> float:
    """The number ``evaluate`` returned; ConfigError for anything else, NaN and inf included
    (a metric that is not a finite number cannot be compared, and would be reported as such)."""
    number = as_number(value)
    if number is None:
        raise ConfigError(
            f"evaluate= must return a number (the metric), got {type(value).__name__}: "
            f"{_short_repr(value)}"
        )
    if not math.isfinite(number):
        raise ConfigError(
            f"evaluate= returned {number}, not a finite number; check it on the model "
            "(a division by an empty count, a diverged model or an overflow gives NaN or inf)"
        )
    return number


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"
