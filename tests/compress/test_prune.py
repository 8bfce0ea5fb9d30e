"""Structured pruning (Torch-Pruning) and unstructured pruning (torch.nn.utils.prune)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nbopt.compress._measure import count_macs, count_weights, serialized_size
from nbopt.compress._prune import prune_structured, prune_unstructured
from nbopt.compress._registry import StepContext, StructuredPruning, UnstructuredPruning
from nbopt.errors import ConfigError

CPU = torch.device("cpu")


def _structured(model: nn.Module, example: torch.Tensor, amount: float = 0.5, ignore=()):
    return prune_structured(
        model, StructuredPruning(amount, tuple(ignore)), StepContext(example, CPU)
    )


def test_structured_pruning_halves_hidden_widths_and_keeps_the_output(mlp: nn.Module) -> None:
    x = torch.randn(4, 64)
    pruned = _structured(mlp, x).model
    assert (pruned.fc1.out_features, pruned.fc2.out_features) == (64, 64)
    assert pruned.fc1.in_features == 64  # the input width is the data's
    assert pruned.out.out_features == 10
    assert pruned(x).shape == (4, 10)


def test_structured_pruning_of_a_residual_cnn_removes_about_three_quarters_of_macs(
    cnn: nn.Module, digits: tuple[torch.Tensor, ...]
) -> None:
    """Half the channels on both sides of each convolution: about a quarter of the MACs."""
    x = digits[2][:32]
    macs_before = count_macs(cnn, x)
    size_before = serialized_size(cnn)
    pruned = _structured(cnn, x).model
    assert pruned.block.conv1.out_channels == pruned.block.bn1.num_features == 8
    assert pruned.stem[0].out_channels == pruned.block.conv2.out_channels == 8  # residual sum
    assert pruned.fc.out_features == 10
    assert 0.2 < count_macs(pruned, x) / macs_before < 0.32
    assert serialized_size(pruned) < 0.5 * size_before


def test_prune_ignore_leaves_named_layers_alone(cnn: nn.Module) -> None:
    x = torch.randn(2, 1, 8, 8)
    pruned = _structured(cnn, x, ignore=["block.conv1"]).model
    assert pruned.block.conv1.out_channels == 16
    assert pruned.block.bn1.num_features == 16
    assert pruned.stem[0].out_channels == 8


def test_prune_ignore_names_a_container_and_everything_in_it(cnn: nn.Module) -> None:
    x = torch.randn(2, 1, 8, 8)
    pruned = _structured(cnn, x, ignore=["block"]).model
    assert pruned.block.conv1.out_channels == 16


def test_unknown_prune_ignore_name_is_a_config_error(cnn: nn.Module) -> None:
    with pytest.raises(
        ConfigError, match=r"no module named 'block.conv3'.*did you mean block.conv"
    ):
        _structured(cnn, torch.randn(2, 1, 8, 8), ignore=["block.conv3"])


def test_structured_pruning_of_a_transformer_block_keeps_it_working(
    text_model: nn.Module, token_ids: torch.Tensor
) -> None:
    """Both widths shrink: the model's (embedding, attention, residual stream) and the
    feed-forward one; the head keeps its four classes."""
    weights_before = count_weights(text_model)[0]
    pruned = _structured(text_model, token_ids).model
    assert pruned.embed.embedding_dim == pruned.encoder.self_attn.embed_dim == 32
    assert pruned.encoder.self_attn.head_dim * pruned.encoder.self_attn.num_heads == 32
    assert pruned.encoder.linear1.out_features == 128
    assert pruned.head.out_features == 4
    assert count_weights(pruned)[0] < 0.55 * weights_before
    with torch.no_grad():
        assert pruned(token_ids).shape == (8, 4)


def test_every_output_keeps_its_width_without_prune_ignore() -> None:
    """Two heads, one behind an activation: both are found as outputs in the traced graph, so
    neither width changes; the shared body is still pruned."""

    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(8, 32)
            self.head_a, self.head_b = nn.Linear(32, 16), nn.Linear(32, 3)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            hidden = torch.relu(self.body(x))
            return torch.relu(self.head_a(hidden)), self.head_b(hidden)

    pruned = _structured(TwoHeads(), torch.randn(2, 8)).model
    assert (pruned.head_a.out_features, pruned.head_b.out_features) == (16, 3)
    assert pruned.body.out_features == 16
    assert [tuple(t.shape) for t in pruned(torch.randn(2, 8))] == [(2, 16), (2, 3)]


def test_unstructured_pruning_zeroes_the_fraction_and_keeps_shapes(mlp: nn.Module) -> None:
    shapes = {name: p.shape for name, p in mlp.named_parameters()}
    size = serialized_size(mlp)
    outcome = prune_unstructured(mlp, UnstructuredPruning(0.6), StepContext(None, CPU))
    model = outcome.model
    assert {name: p.shape for name, p in model.named_parameters()} == shapes
    weights = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert zeros / sum(w.numel() for w in weights) == pytest.approx(0.6, abs=0.01)
    assert not any(hasattr(m, "weight_mask") for m in model.modules())  # made permanent
    assert serialized_size(model) == pytest.approx(size, rel=0.01)
    assert any("do not get faster" in note for note in outcome.notes)


def test_unstructured_pruning_is_global_and_honours_prune_ignore(mlp: nn.Module) -> None:
    outcome = prune_unstructured(mlp, UnstructuredPruning(0.5, ("out",)), StepContext(None, CPU))
    model = outcome.model
    assert int((model.out.weight == 0).sum()) == 0
    fc1_sparsity = (model.fc1.weight == 0).float().mean().item()
    fc2_sparsity = (model.fc2.weight == 0).float().mean().item()
    assert fc1_sparsity != pytest.approx(fc2_sparsity, abs=1e-3)  # one threshold for all layers
