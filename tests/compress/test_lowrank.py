"""Low-rank factorisation of Linear layers from their SVD."""

from __future__ import annotations

import torch
from torch import nn

from nbopt.compress._lowrank import chosen_rank, factorize, factorize_linears
from nbopt.compress._measure import count_weights
from nbopt.compress._registry import LowRank, StepContext

CPU = torch.device("cpu")


def test_rank_is_the_smallest_keeping_the_energy() -> None:
    singular_values = torch.tensor([3.0, 2.0, 1.0, 0.0])  # squares 9, 4, 1: 64%, 93%, 100%
    assert chosen_rank(singular_values, 0.5) == 1
    assert chosen_rank(singular_values, 0.9) == 2
    assert chosen_rank(singular_values, 0.95) == 3
    assert chosen_rank(singular_values, 0.999999999) == 3


def test_full_rank_factors_reproduce_the_layer() -> None:
    linear = nn.Linear(20, 12)
    pair = factorize(linear, 12)
    x = torch.randn(5, 20)
    torch.testing.assert_close(pair(x), linear(x), rtol=1e-4, atol=1e-5)
    assert (pair[0].weight.shape, pair[1].weight.shape) == ((12, 20), (12, 12))


def _low_rank_model(rank: int = 8) -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 96), nn.ReLU(), nn.Linear(96, 10))
    with torch.no_grad():
        model[0].weight.copy_(torch.randn(96, rank) @ torch.randn(rank, 128) / 10)
    return model.eval()


def test_large_linear_layers_are_factorised_where_it_saves_weights() -> None:
    model = _low_rank_model(rank=8)
    x = torch.randn(4, 128)
    expected = model(x)
    weights_before = count_weights(model)[0]
    outcome = factorize_linears(model, LowRank(0.999), StepContext(x, CPU))
    ranks = outcome.info["ranks"]
    assert ranks == {"0": (8, 96)}  # the 96x10 classifier is too small to gain
    assert isinstance(outcome.model[0], nn.Sequential)
    assert count_weights(outcome.model)[0] < 0.3 * weights_before
    torch.testing.assert_close(outcome.model(x), expected, rtol=1e-3, atol=1e-4)
    assert "0: 8/96" in outcome.detail


def test_a_full_rank_layer_is_left_alone() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64))
    outcome = factorize_linears(model, LowRank(0.99), StepContext(None, CPU))
    assert isinstance(outcome.model[0], nn.Linear)
    assert outcome.info["ranks"] == {}
    assert "nothing factorised" in outcome.detail


def test_a_factorised_transformer_layer_still_runs_in_eval_mode(
    text_model: nn.Module, token_ids: torch.Tensor
) -> None:
    """The layer's fused path reads linear1.weight; a factorised linear1 has none."""
    outcome = factorize_linears(text_model, LowRank(0.5, min_features=32), StepContext(None, CPU))
    assert isinstance(outcome.model.encoder.linear1, nn.Sequential)
    with torch.no_grad():
        assert outcome.model(token_ids).shape == (8, 4)
