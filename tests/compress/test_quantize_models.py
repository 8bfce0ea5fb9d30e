"""Quantization and low-rank on the model shapes users bring: tied weights, float16 and
float64 models, EmbeddingBags, modules called twice in one forward pass."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nbopt.compress import optimize
from nbopt.compress._lowrank import factorize_linears
from nbopt.compress._measure import count_weights, serialized_size
from nbopt.compress._quantize import quantize_int8
from nbopt.compress._registry import DynamicInt8, LowRank, StaticInt8, StepContext
from nbopt.compress._static import quantize_int8_static

CPU = torch.device("cpu")


class TiedLM(nn.Module):
    """A token embedding shared with the output layer, as GPT-2 does."""

    def __init__(self, vocab: int = 300, dim: int = 48) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.mix = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.mix(self.embed(ids))))


def _ids() -> torch.Tensor:
    return torch.randint(0, 300, (4, 6), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("backend", ["torch.ao", "torchao"])
def test_int8_keeps_tied_weights_in_float_shared_and_counted_once(backend: str, quantized) -> None:
    torch.manual_seed(0)
    model = TiedLM().eval()
    weights = count_weights(model)[0]
    size = serialized_size(model)
    outcome = quantize_int8(model, DynamicInt8(backend=backend), StepContext(_ids(), CPU))
    int8 = outcome.model
    assert int8.head.weight is int8.embed.weight
    assert quantized(int8.mix) and not quantized(int8.head)
    assert count_weights(int8)[0] == weights  # not one copy per holder
    assert serialized_size(int8) < size
    assert any(
        "share a weight" in note and "embed.weight = head.weight" in note for note in outcome.notes
    )


def test_optimize_reports_a_tied_model_counted_once_through_every_step() -> None:
    torch.manual_seed(0)
    model = TiedLM().eval()
    result = optimize(
        model, prune=0.5, lowrank=0.9, quant="int8", example=_ids(), progress="none", logdir=None
    )
    """The embedding's width and the head's inputs are different groups of channels here,
    so pruning either would need the shared table in two shapes: both stay whole."""
    assert result.model.head.weight is result.model.embed.weight
    assert result.model.embed.embedding_dim == 48
    assert result.report["params"].before == count_weights(model)[0] == 300 * 48 + 48 * 48 + 48
    assert result.report["params"].after == result.report["params"].before
    assert result.report["size_bytes"].ratio < 1
    notes = " ".join(result.notes)
    assert "layers sharing a weight keep their width" in notes
    assert "share a weight" in notes


def test_lowrank_leaves_a_tied_linear_whole() -> None:
    torch.manual_seed(0)
    model = TiedLM().eval()
    outcome = factorize_linears(model, LowRank(0.5), StepContext(_ids(), CPU))
    assert model.head.weight is model.embed.weight
    assert any(note.startswith("head shares its weight") for note in outcome.notes)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_int8_of_a_float16_or_float64_model_takes_and_returns_its_type(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).to(dtype).eval()
    x = torch.randn(8, 16, dtype=dtype)
    expected = model(x)
    result = optimize(model, quant="int8", example=x, progress="none", logdir=None)
    output = result.model(x)
    assert output.dtype == dtype
    torch.testing.assert_close(output.double(), expected.double(), atol=0.05, rtol=0.05)
    assert any("was cast to float32 for quant=int8" in note for note in result.notes)


def test_int8_static_of_a_float64_conv_model_takes_and_returns_float64() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3)).double().eval()
    x = torch.randn(2, 3, 10, 10, dtype=torch.float64)
    outcome = quantize_int8_static(model, StaticInt8(calib=[x]), StepContext(x, CPU))
    assert outcome.model(x).dtype == torch.float64
    assert any("float64 model was quantized from float32" in note for note in outcome.notes)


@pytest.mark.parametrize("offsets", [False, True])
def test_int8_mean_embedding_bags_average_as_the_float_ones(offsets: bool) -> None:
    """torch.ao's quantized EmbeddingBag sums whatever its mode; a mean bag is averaged."""

    class Bag(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bag = nn.EmbeddingBag(200, 16, mode="mean")

        def forward(self, ids: torch.Tensor, offsets: torch.Tensor | None = None) -> torch.Tensor:
            return self.bag(ids, offsets)

    torch.manual_seed(0)
    model = Bag().eval()
    ids = torch.randint(0, 200, (5, 7))
    inputs = (ids.flatten(), torch.tensor([0, 3, 10, 20, 30])) if offsets else (ids,)
    expected = model(*inputs)
    quantized = quantize_int8(model, DynamicInt8(), StepContext(inputs, CPU)).model
    torch.testing.assert_close(quantized(*inputs), expected, atol=0.02, rtol=0.05)


def test_int8_leaves_max_embedding_bags_in_float() -> None:
    model = nn.Sequential(nn.EmbeddingBag(50, 8, mode="max"), nn.Linear(8, 2)).eval()
    ids = torch.randint(0, 50, (3, 4))
    outcome = quantize_int8(model, DynamicInt8(backend="torch.ao"), StepContext(ids, CPU))
    assert type(outcome.model[0]) is nn.EmbeddingBag
    assert any("mode='max') stays in float" in note for note in outcome.notes)


class SharedReluBlock(nn.Module):
    """torchvision's BasicBlock pattern: one ReLU module called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        out += x
        return self.relu(out)


def test_int8_static_quantizes_a_block_that_calls_one_relu_twice() -> None:
    torch.manual_seed(0)
    model = SharedReluBlock().eval()
    x = torch.randn(4, 8, 12, 12)
    expected = model(x)
    outcome = quantize_int8_static(
        model, StaticInt8(calib=[torch.randn(4, 8, 12, 12) for _ in range(3)]), StepContext(x, CPU)
    )
    torch.testing.assert_close(outcome.model(x), expected, atol=0.15, rtol=0.1)
    assert any("called more than once (relu)" in note for note in outcome.notes)


@pytest.mark.parametrize("backend", ["torch.ao", "torchao"])
def test_int8_quantizes_gpt2s_conv1d_projections_and_keeps_its_tied_table(
    backend: str, quantized
) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=100, n_embd=32, n_layer=1, n_head=4, n_positions=16)
    model = GPT2LMHeadModel(config).eval()
    ids = torch.randint(0, 100, (2, 8))
    expected = model(input_ids=ids).logits
    context = StepContext({"input_ids": ids}, CPU)
    int8 = quantize_int8(model, DynamicInt8(backend=backend), context).model
    block = int8.transformer.h[0]
    for layer in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj):
        assert quantized(layer)
    assert int8.lm_head.weight is int8.transformer.wte.weight
    torch.testing.assert_close(int8(input_ids=ids).logits, expected, atol=0.05, rtol=0.05)
