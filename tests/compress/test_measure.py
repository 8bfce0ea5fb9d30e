"""Measurements: weights, non-zeros, size, MACs (checked against hand counts), latency, metric."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from nbopt.compress._measure import (
    count_macs,
    count_weights,
    measure,
    measure_latency,
    read_metric,
    serialized_size,
)
from nbopt.compress._quantize import quantize_int8_cpu
from nbopt.errors import ConfigError


def test_weights_count_parameters_and_nonzeros() -> None:
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 5))
    with torch.no_grad():
        model[0].weight[:, :4] = 0
    total, nonzero = count_weights(model)
    assert total == 10 * 20 + 20 + 20 * 5 + 5
    assert nonzero == total - 20 * 4


def test_shared_weights_count_once() -> None:
    embedding = nn.Embedding(100, 8)
    head = nn.Linear(8, 100, bias=False)
    head.weight = embedding.weight
    assert count_weights(nn.ModuleList([embedding, head]))[0] == 800


def test_quantized_weights_are_still_counted(mlp: nn.Module) -> None:
    """Dynamic int8 packs Linear weights out of ``parameters()``; they are still weights."""
    total, _ = count_weights(mlp)
    quantized = quantize_int8_cpu(mlp).model
    assert sum(p.numel() for p in quantized.parameters()) == 0
    assert count_weights(quantized)[0] == total


def test_serialized_size_is_torch_save_of_the_state_dict(mlp: nn.Module) -> None:
    buffer = io.BytesIO()
    torch.save(mlp.state_dict(), buffer)
    assert serialized_size(mlp) == len(buffer.getvalue())
    assert serialized_size(mlp) > 4 * count_weights(mlp)[0]


def test_macs_of_linear_and_conv_layers_match_a_hand_count() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10)
    )
    macs = count_macs(model, torch.randn(2, 3, 6, 6))
    assert macs == 2 * (8 * 6 * 6 * 3 * 9 + 8 * 6 * 6 * 10)


def test_macs_of_a_quantized_linear_are_counted_by_hooks() -> None:
    model = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))
    x = torch.randn(5, 32)
    expected = 5 * (32 * 16 + 16 * 4)
    assert count_macs(model, x) == expected
    assert count_macs(quantize_int8_cpu(model).model, x) == expected


@pytest.mark.parametrize("quantized", [False, True])
def test_macs_of_an_lstm_match_a_hand_count(quantized: bool) -> None:
    model = nn.LSTM(12, 20, num_layers=2, batch_first=True)
    x = torch.randn(3, 7, 12)
    per_step = 4 * 20 * (12 + 20) + 4 * 20 * (20 + 20)
    if quantized:
        model = quantize_int8_cpu(nn.Sequential(model)).model
    assert count_macs(model, x) == 3 * 7 * per_step


@pytest.mark.parametrize(
    ("cell", "gates", "form"),
    [
        (cell, gates, form)
        for cell, gates in [(nn.LSTM, 4), (nn.GRU, 3), (nn.RNN, 1)]
        for form in ("float", "int8", "exported")
        if not (cell is nn.RNN and form == "int8")  # torch.ao has no int8 nn.RNN
    ],
)
def test_macs_of_recurrent_layers_are_counted_once_in_every_form(
    cell: type[nn.RNNBase], gates: int, form: str
) -> None:
    """A float GRU's gate products are visible to torch's counter, a float LSTM's fused kernel
    is not, a quantized one runs one opaque kernel and an exported one has no module: each is
    counted once, by the same hand formula, so int8 shows no false change in MACs."""
    model = cell(6, 10, num_layers=2, batch_first=True, bidirectional=True).eval()
    x = torch.randn(3, 5, 6)
    per_step = 2 * (gates * 10 * (6 + 10) + gates * 10 * (2 * 10 + 10))
    if form == "int8":
        model = quantize_int8_cpu(nn.Sequential(model)).model
    elif form == "exported":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "tensor attributes ... were assigned during export"
            model = torch.export.export(model, (x,)).module()
    assert count_macs(model, x) == 3 * 5 * per_step


def test_macs_of_hugging_face_attention_match_a_hand_count() -> None:
    """A BERT layer: four projections, two feed-forward layers, and the two attention products
    (scores and weighted values) of every head, run through scaled_dot_product_attention."""
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertLayer

    dim, heads, hidden, batch, length = 32, 4, 64, 2, 7
    config = BertConfig(hidden_size=dim, num_attention_heads=heads, intermediate_size=hidden)
    layer = BertLayer(config).eval()
    projections = batch * length * (4 * dim * dim + 2 * dim * hidden)
    attention = 2 * batch * length * length * dim
    assert count_macs(layer, torch.randn(batch, length, dim)) == projections + attention


def test_macs_of_a_transformer_layer_are_seen_despite_its_fused_path() -> None:
    """In eval mode the layer runs one fused kernel; the count still sees its products."""
    layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True).eval()
    batch, length, dim = 2, 5, 32
    projections = batch * length * (4 * dim * dim + 2 * dim * 64)
    attention = 2 * batch * length * length * dim
    assert count_macs(layer, torch.randn(batch, length, dim)) == projections + attention
    assert torch.backends.mha.get_fastpath_enabled()


def test_example_may_be_a_tuple_or_a_dict() -> None:
    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 3), nn.Linear(6, 3)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self.a(x) + self.b(y)

    x, y = torch.randn(2, 4), torch.randn(2, 6)
    model = TwoInputs()
    assert count_macs(model, (x, y)) == count_macs(model, {"x": x, "y": y}) == 2 * (12 + 18)


def test_latency_is_a_positive_median_per_model(mlp: nn.Module) -> None:
    x = torch.randn(16, 64)
    small = nn.Linear(64, 10)
    latencies = measure_latency([mlp, small], x, min_repeats=10, min_seconds=0.0)
    assert len(latencies) == 2
    assert all(latency > 0 for latency in latencies)


def test_measure_without_example_skips_macs_and_latency(mlp: nn.Module) -> None:
    measurement = measure(mlp, None, metric=0.5)
    assert measurement.macs is None and measurement.latency_s is None
    assert measurement.metric == 0.5 and measurement.params == count_weights(mlp)[0]


@pytest.mark.parametrize(
    ("value", "expected"), [(0.25, 0.25), (3, 3.0), (torch.tensor(0.5), 0.5), (np.float32(2), 2.0)]
)
def test_metric_accepts_numbers_and_scalar_tensors(value: object, expected: float) -> None:
    assert read_metric(value) == expected


@pytest.mark.parametrize("value", ["0.9", None, True, torch.ones(3), {"acc": 0.9}])
def test_metric_rejects_what_is_not_a_number(value: object) -> None:
    with pytest.raises(ConfigError, match="evaluate= must return a number"):
        read_metric(value)
