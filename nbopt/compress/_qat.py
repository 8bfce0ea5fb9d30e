"""Quantization-aware training with torchao's ``QATConfig``: prepare, fine-tune, convert.

``prepare`` swaps each Linear layer that int8 will quantize for torchao's
``FakeQuantizedLinear``, which rounds its weights (int8, per output channel, symmetric) and its
inputs as the int8 kernels will, in float, so that training adapts the weights to the
rounding: for torchao's kernels each input row symmetrically (a group as wide as the row:
torchao's fake quantizer has no symmetric per-token mode), for torch.ao's each row
asymmetrically (the nearest it has to torch.ao's per-tensor activations). ``convert`` swaps
them back to plain ``nn.Linear`` holding the trained weights; the quantization step then makes
them int8. Simulating the kernel that will run matters: on a digits MLP with an activation
outlier, QAT simulating asymmetric rows recovered less than half of what simulating torchao's
symmetric rows did.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nbopt.compress._inputs import linears_from_conv1d
from nbopt.compress._quantize import import_torchao, quiet_torchao
from nbopt.compress._tied import Ties

_PURPOSE = "qat=True"


def prepare_qat(
    model: nn.Module, skip: tuple[str, ...] = (), backend: str = "torchao"
) -> tuple[int, list[str]]:
    """Fake-quantize, in place, the Linear layers of ``model`` that int8 quantizes (not those
    named in ``skip``, nor those holding a tied weight) as ``backend`` will compute them; how
    many, and notes."""
    qat = import_torchao("torchao.quantization.qat", _PURPOSE)
    quantization = import_torchao("torchao.quantization", _PURPOSE)
    notes = []
    if linears_from_conv1d(model):
        notes.append("transformers' Conv1D layers were made nn.Linear (the same product) for QAT")
    kept = set(skip) | Ties(model).module_names()
    chosen = {
        name: module
        for name, module in model.named_modules()
        if type(module) is nn.Linear and not any(_within(name, k) for k in kept)
    }
    weights = qat.IntxFakeQuantizeConfig(torch.int8, "per_channel", is_symmetric=True)
    with quiet_torchao():
        for name, module in chosen.items():
            if backend == "torch.ao":
                rows = qat.IntxFakeQuantizeConfig(torch.int8, "per_token", is_symmetric=False)
            else:
                rows = qat.IntxFakeQuantizeConfig(
                    torch.int8, group_size=module.in_features, is_symmetric=True
                )
            config = qat.QATConfig(activation_config=rows, weight_config=weights, step="prepare")
            quantization.quantize_(model, config, filter_fn=lambda m, n, name=name: n == name)
    return len(chosen), notes


def convert_qat(model: nn.Module) -> None:
    """Swap the fake-quantized layers back to ``nn.Linear`` with their trained weights."""
    qat = import_torchao("torchao.quantization.qat", _PURPOSE)
    quantization = import_torchao("torchao.quantization", _PURPOSE)
    with quiet_torchao():
        quantization.quantize_(model, qat.QATConfig(step="convert"), filter_fn=_fake_quantized)


def _fake_quantized(module: nn.Module, name: str) -> bool:
    return type(module).__name__ == "FakeQuantizedLinear"


def fake_quantized_layers(model: nn.Module) -> int:
    """How many layers of ``model`` are fake-quantized now."""
    return sum(_fake_quantized(module, "") for module in model.modules())


def _within(name: str, parent: Any) -> bool:
    return bool(parent) and (name == parent or name.startswith(f"{parent}."))
