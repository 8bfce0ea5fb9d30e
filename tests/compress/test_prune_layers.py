"""Structured pruning of the layers Torch-Pruning alone gets wrong: recurrent layers (every
gate, both directions, stacked layers), attention (whole heads), tied weights, and models
whose outputs are several tensors."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

from nbopt.compress._heads import find_heads, prune_heads
from nbopt.compress._prune import prune_groups, prune_structured, prune_unstructured
from nbopt.compress._registry import StepContext, StructuredPruning, UnstructuredPruning

CPU = torch.device("cpu")


def _structured(model: nn.Module, example: object, amount: float = 0.5, ignore=()):
    return prune_structured(
        model, StructuredPruning(amount, tuple(ignore)), StepContext(example, CPU)
    )


class Forecaster(nn.Module):
    def __init__(self, cell: type[nn.RNNBase], layers: int, bidirectional: bool) -> None:
        super().__init__()
        self.rnn = cell(6, 16, layers, batch_first=True, bidirectional=bidirectional)
        self.head = nn.Linear(16 * (2 if bidirectional else 1), 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


def _kill_units(model: Forecaster, units: range) -> None:
    """Make hidden ``units`` dead in every layer and direction: zero weights into and out of
    them. A dead unit's state stays 0, so removing it changes no output."""
    rnn = model.rnn
    gates = {"LSTM": 4, "GRU": 3}[rnn.mode]
    hidden, directions = rnn.hidden_size, 2 if rnn.bidirectional else 1
    rows = [u + g * hidden for g in range(gates) for u in units]
    with torch.no_grad():
        for name, parameter in rnn.named_parameters():
            if name.startswith(("weight", "bias")):
                parameter[rows] = 0
            if name.startswith("weight_hh"):
                parameter[:, list(units)] = 0
            if name.startswith("weight_ih") and not name.startswith("weight_ih_l0"):
                for d in range(directions):
                    parameter[:, [u + d * hidden for u in units]] = 0
        for d in range(directions):
            model.head.weight[:, [u + d * hidden for u in units]] = 0


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU])
@pytest.mark.parametrize(("layers", "bidirectional"), [(1, False), (2, True)])
def test_recurrent_hidden_units_go_with_every_gate_and_direction(
    cell: type[nn.RNNBase], layers: int, bidirectional: bool
) -> None:
    torch.manual_seed(0)
    model = Forecaster(cell, layers, bidirectional).eval()
    _kill_units(model, range(8, 16))
    x = torch.randn(4, 9, 6)
    with torch.no_grad():
        expected = model(x)
    pruned = _structured(model, x).model
    assert pruned.rnn.hidden_size == 8
    assert pruned.head.in_features == 8 * (2 if bidirectional else 1)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), expected, rtol=1e-5, atol=1e-5)


def test_an_lstm_with_a_projection_is_left_unpruned_with_a_note() -> None:
    class Projected(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.LSTM(6, 16, proj_size=4, batch_first=True)
            self.head = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.rnn(x)[0][:, -1])

    outcome = _structured(Projected().eval(), torch.randn(2, 5, 6))
    assert outcome.model.rnn.hidden_size == 16
    assert any("rnn: an LSTM with proj_size is left unpruned" in n for n in outcome.notes)


def _bert(heads: int = 4):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=heads,
        intermediate_size=64,
        max_position_embeddings=32,
    )
    return BertModel(config).eval()


def _ids(vocab: int = 100) -> dict[str, torch.Tensor]:
    ids = torch.randint(0, vocab, (2, 8), generator=torch.Generator().manual_seed(1))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_a_dead_attention_head_is_the_one_removed_and_nothing_changes() -> None:
    model = _bert()
    attention = find_heads(model)
    assert [a.name for a in attention] == [
        "encoder.layer.0.attention.self",
        "encoder.layer.1.attention.self",
    ]
    dead = slice(8, 16)  # head 1 of 4, head_dim 8
    with torch.no_grad():
        for item in attention:
            for layer, _ in item.inputs:
                layer.weight[dead] = 0
                layer.bias[dead] = 0
            item.output[0].weight[:, dead] = 0
        expected = model(**_ids()).last_hidden_state
    assert [prune_heads(item, 0.25) for item in attention] == [1, 1]
    owner = model.encoder.layer[0].attention.self
    assert (owner.num_attention_heads, owner.all_head_size, owner.query.out_features) == (3, 24, 24)
    assert model.encoder.layer[0].attention.output.dense.in_features == 24
    with torch.no_grad():
        torch.testing.assert_close(model(**_ids()).last_hidden_state, expected)


def test_structured_pruning_of_bert_keeps_its_outputs_and_removes_whole_heads() -> None:
    """Both outputs (the hidden states and the pooled vector) keep their width without any
    prune_ignore=; attention loses whole heads, the feed-forward layers half their width."""
    model = _bert()
    outcome = _structured(model, _ids())
    output = model(**_ids())
    assert output.last_hidden_state.shape == (2, 8, 32)
    assert output.pooler_output.shape == (2, 32)
    layer = model.encoder.layer[0]
    assert layer.attention.self.num_attention_heads == 2
    assert layer.attention.self.query.out_features == 16  # two heads of 8
    assert layer.intermediate.dense.out_features == 32
    assert "4 attention heads of 8" in outcome.detail
    assert prune_groups(_bert(), _ids()) == [
        ["encoder.layer.0.intermediate.dense"],
        ["encoder.layer.1.intermediate.dense"],
        [f"encoder.layer.0.attention.self.{name}" for name in ("query", "key", "value")],
        [f"encoder.layer.1.attention.self.{name}" for name in ("query", "key", "value")],
    ]


def test_naming_an_attention_projection_in_prune_ignore_keeps_its_heads() -> None:
    model = _bert()
    _structured(model, _ids(), ignore=["encoder.layer.1.attention.self.query"])
    assert model.encoder.layer[0].attention.self.num_attention_heads == 2
    assert model.encoder.layer[1].attention.self.num_attention_heads == 4


def _gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=32)
    return GPT2LMHeadModel(config).eval()


def test_gpt2_keeps_its_tied_embedding_through_structured_pruning() -> None:
    model = _gpt2()
    params = sum(p.numel() for p in model.parameters())
    outcome = _structured(model, _ids())
    assert model.lm_head.weight is model.transformer.wte.weight
    assert model.transformer.wte.weight.shape == (100, 16)
    attention = model.transformer.h[0].attn
    assert (attention.num_heads, attention.split_size, attention.c_attn.nf) == (2, 16, 48)
    assert model(**_ids()).logits.shape == (2, 8, 100)
    assert sum(p.numel() for p in model.parameters()) < 0.5 * params
    assert any("tied parameters stay tied" in note for note in outcome.notes)


def test_unstructured_pruning_prunes_a_tied_weight_once_and_keeps_it_tied() -> None:
    model = _gpt2()
    prune_unstructured(model, UnstructuredPruning(0.5), StepContext(None, CPU))
    assert model.lm_head.weight is model.transformer.wte.weight
    assert (model.transformer.wte.weight == 0).any()


def test_library_warnings_become_one_note() -> None:
    """Torch-Pruning warns about the parameters it prunes without a layer (ViT's class token
    and position embeddings): the step returns that as one note and lets nothing out."""
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(
        image_size=16,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=64,
        num_labels=5,
    )
    model = ViTForImageClassification(config).eval()
    x = torch.randn(2, 3, 16, 16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcome = _structured(copy.deepcopy(model), x)
    assert caught == []
    notes = [n for n in outcome.notes if n.startswith("warnings of the libraries")]
    assert len(notes) == 1
    assert "Torch-Pruning: Unwrapped parameters detected" in notes[0]
    assert outcome.model(x).logits.shape == (2, 5)
