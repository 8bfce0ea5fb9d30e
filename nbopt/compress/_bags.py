"""``nn.EmbeddingBag`` under torch.ao's dynamic quantization.

torch.ao's quantized ``EmbeddingBag`` sums whatever its mode: its ``forward`` passes mode 0 to
``torch.ops.quantized.embedding_bag_byte`` and the kernel ignores any other value
(``torch/ao/nn/quantized/modules/embedding_ops.py``, torch 2.13). A ``mode="mean"`` bag is
wrapped to divide the sums by the bag sizes; a ``mode="max"`` bag stays in float.
"""

from __future__ import annotations

import torch
from torch import nn

from nbopt.compress._inputs import parent_and_name


class MeanOfQuantizedBag(nn.Module):
    """The mean of each bag, from a quantized bag that sums."""

    def __init__(self, bag: nn.Module) -> None:
        super().__init__()
        self.bag = bag

    def forward(
        self,
        input: torch.Tensor,
        offsets: torch.Tensor | None = None,
        per_sample_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        sums = self.bag(input, offsets, per_sample_weights)
        if input.dim() == 2:
            sizes = torch.full((input.shape[0],), input.shape[1], device=input.device)
        else:
            bounds = (
                offsets
                if self.bag.include_last_offset
                else torch.cat([offsets, offsets.new_tensor([input.numel()])])
            )
            sizes = bounds.diff()
        return sums / sizes.clamp(min=1).unsqueeze(1).to(sums.dtype)


def float_only_bags(model: nn.Module) -> list[str]:
    """Names of the bags quantized kernels cannot compute: those taking the maximum."""
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.EmbeddingBag) and module.mode == "max"
    ]


def average_quantized_bags(model: nn.Module) -> None:
    """Wrap every quantized mean bag of ``model`` in :class:`MeanOfQuantizedBag`."""
    for name, module in list(model.named_modules()):
        if (
            type(module).__module__.startswith("torch.ao.nn.quantized")
            and type(module).__name__ == "EmbeddingBag"
            and module.mode == "mean"
        ):
            parent, attribute = parent_and_name(model, name)
            setattr(parent, attribute, MeanOfQuantizedBag(module))
