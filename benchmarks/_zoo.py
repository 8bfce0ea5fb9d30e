"""A zoo of the architectures users bring, built from configurations with seeded random weights
(nothing is downloaded): Hugging Face BERT, GPT-2 and ViT, torchvision-style ResNet-18 and
MobileNetV3-small, LSTM, GRU and Conv1d sequence models, and an EmbeddingBag recommender.

Each entry (:class:`ZooModel`) holds the model in eval mode, an example input in the form the
model takes (a tensor, a tuple of inputs or a dict of keyword inputs), calibration batches, a
deterministic metric (agreement with the original model's outputs on a fixed generated batch,
1.0 for the original itself) and what a training step needs (targets and a loss).

``build(name, size="test")`` gives the tiny copy the tests use; ``size="bench"`` a larger one,
closer to the real model's width, for the benchmarks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from _zoo_vision import MobileNetV3, resnet18
from torch import nn

# Models are built from configs: the Hugging Face hub must never be asked for anything.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@dataclass
class ZooModel:
    """One model of the zoo and what it is run with.

    Attributes:
        name: The zoo's name for it.
        model: The model, in eval mode.
        example: An input in the form the model takes (tensor, tuple or dict).
        calib: Calibration batches in the same form.
        metric: ``metric(model) -> float``: agreement of ``model``'s outputs with the
            original's on a fixed batch (1.0 for the original).
        target: Targets for a training step on ``example``.
        loss: ``loss(output, target)``: a scalar loss of the model's output.
    """

    name: str
    model: nn.Module
    example: Any
    calib: list[Any]
    metric: Callable[[nn.Module], float]
    target: Any
    loss: Callable[[Any, Any], torch.Tensor]


def primary(output: Any) -> torch.Tensor:
    """The main tensor of a model's output: ``logits`` or ``last_hidden_state`` of a Hugging
    Face output, the first element of a tuple, or the tensor itself."""
    for key in ("logits", "last_hidden_state"):
        value = getattr(output, key, None)
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(output, (tuple, list)):
        return primary(output[0])
    return output


def call(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, tuple):
        return model(*inputs)
    return model(inputs)


def _top1_agreement(reference: torch.Tensor) -> Callable[[torch.Tensor], float]:
    labels = reference.argmax(-1)
    return lambda output: (output.argmax(-1) == labels).float().mean().item()


def _cosine_agreement(reference: torch.Tensor) -> Callable[[torch.Tensor], float]:
    # One score per sample (a recommender's) is compared as one vector over the batch.
    rows = reference.shape[0] if reference.dim() > 1 else 1
    flat = reference.reshape(rows, -1).double()
    return lambda output: F.cosine_similarity(output.reshape(rows, -1).double(), flat).mean().item()


def _metric(model: nn.Module, batch: Any, kind: str) -> Callable[[nn.Module], float]:
    """Agreement with ``model``'s current outputs on ``batch``: ``top1`` for classifiers and
    language models, ``cosine`` for embeddings and forecasts."""
    with torch.no_grad():
        reference = primary(call(model, batch)).float()
    compare = (_top1_agreement if kind == "top1" else _cosine_agreement)(reference)

    def metric(candidate: nn.Module) -> float:
        with torch.no_grad():
            return compare(primary(call(candidate, batch)).float())

    return metric


def _settle_batchnorm(model: nn.Module, batches: list[Any]) -> None:
    """Give BatchNorm layers the running statistics of real activations, as a trained model
    has (a fresh one holds mean 0 and variance 1, which random weights do not produce)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.momentum = None  # a cumulative average over the batches
    model.train()
    with torch.no_grad():
        for batch in batches:
            call(model, batch)
    model.eval()


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _classification(
    name: str, model: nn.Module, make: Callable[[int, int], Any], classes: int, batch: int
) -> ZooModel:
    """An image or sequence classifier: inputs from ``make(batch, seed)``."""
    calib = [make(batch, 100 + i) for i in range(4)]
    _settle_batchnorm(model, calib)
    target = torch.randint(0, classes, (batch,), generator=_generator(7))
    return ZooModel(
        name,
        model,
        make(batch, 1),
        calib,
        _metric(model, make(4 * batch, 2), "top1"),
        target,
        lambda output, target: F.cross_entropy(primary(output), target),
    )


# ----- Hugging Face transformers -----


def _token_batch(vocab: int, batch: int, length: int, seed: int) -> dict[str, torch.Tensor]:
    """What a BERT tokenizer returns for ``batch`` sentences padded to ``length``."""
    generator = _generator(seed)
    ids = torch.randint(1, vocab, (batch, length), generator=generator)
    lengths = torch.randint(length // 2, length + 1, (batch,), generator=generator)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    return {
        "input_ids": ids * mask,
        "attention_mask": mask,
        "token_type_ids": torch.zeros_like(ids),
    }


def bert(size: str = "test") -> ZooModel:
    from transformers import BertConfig, BertModel

    hidden, layers, vocab = (64, 2, 1000) if size == "test" else (256, 4, 30522)
    config = BertConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=4 * hidden,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    model = BertModel(config).eval()
    length = 16 if size == "test" else 64
    calib = [_token_batch(vocab, 8, length, 100 + i) for i in range(4)]
    example = _token_batch(vocab, 8, length, 1)
    return ZooModel(
        "bert",
        model,
        example,
        calib,
        _metric(model, _token_batch(vocab, 32, length, 2), "cosine"),
        torch.randn(8, length, hidden, generator=_generator(7)),
        lambda output, target: F.mse_loss(primary(output), target),
    )


def gpt2(size: str = "test") -> ZooModel:
    """A GPT-2 language model: its output layer shares the token embedding table."""
    from transformers import GPT2Config, GPT2LMHeadModel

    hidden, layers, vocab = (64, 2, 500) if size == "test" else (256, 4, 8000)
    config = GPT2Config(vocab_size=vocab, n_embd=hidden, n_layer=layers, n_head=4, n_positions=128)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config).eval()
    length = 16 if size == "test" else 64

    def tokens(batch: int, seed: int) -> dict[str, torch.Tensor]:
        ids = torch.randint(0, vocab, (batch, length), generator=_generator(seed))
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    example = tokens(8, 1)
    return ZooModel(
        "gpt2",
        model,
        example,
        [tokens(8, 100 + i) for i in range(4)],
        _metric(model, tokens(16, 2), "top1"),
        example["input_ids"],
        lambda output, target: F.cross_entropy(
            primary(output)[:, :-1].flatten(0, 1), target[:, 1:].flatten()
        ),
    )


def vit(size: str = "test") -> ZooModel:
    from transformers import ViTConfig, ViTForImageClassification

    hidden, layers, image = (64, 2, 32) if size == "test" else (192, 4, 64)
    config = ViTConfig(
        image_size=image,
        patch_size=8,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=4 * hidden,
        num_labels=10,
    )
    torch.manual_seed(0)
    model = ViTForImageClassification(config).eval()
    return _classification(
        "vit",
        model,
        lambda n, seed: torch.randn(n, 3, image, image, generator=_generator(seed)),
        10,
        8,
    )


# ----- torchvision-style vision models -----


def resnet(size: str = "test") -> ZooModel:
    width, image = (16, 32) if size == "test" else (64, 64)
    torch.manual_seed(0)
    model = resnet18(num_classes=100, width=width)
    return _classification(
        "resnet18",
        model,
        lambda n, seed: torch.randn(n, 3, image, image, generator=_generator(seed)),
        100,
        8,
    )


def mobilenet(size: str = "test") -> ZooModel:
    width, image = (0.5, 32) if size == "test" else (1.0, 96)
    torch.manual_seed(0)
    model = MobileNetV3(num_classes=100, width_mult=width)
    return _classification(
        "mobilenet_v3",
        model,
        lambda n, seed: torch.randn(n, 3, image, image, generator=_generator(seed)),
        100,
        8,
    )


# ----- sequence models -----


class Forecaster(nn.Module):
    """A recurrent forecaster: a window of ``features`` series in, the next ``horizon`` steps
    of each out, from the last time step's state."""

    def __init__(
        self,
        cell: type[nn.RNNBase],
        features: int = 8,
        hidden: int = 32,
        num_layers: int = 1,
        bidirectional: bool = False,
        horizon: int = 4,
    ) -> None:
        super().__init__()
        self.rnn = cell(features, hidden, num_layers, batch_first=True, bidirectional=bidirectional)
        directions = 2 if bidirectional else 1
        self.head = nn.Linear(hidden * directions, features * horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, _ = self.rnn(x)
        return self.head(output[:, -1])


def _series(batch: int, steps: int, features: int, seed: int) -> torch.Tensor:
    """Noisy sines of random frequency and phase: ``(batch, steps, features)``."""
    generator = _generator(seed)
    time = torch.arange(steps, dtype=torch.float32)[None, :, None]
    frequency = 0.05 + 0.3 * torch.rand(batch, 1, features, generator=generator)
    phase = 6.28 * torch.rand(batch, 1, features, generator=generator)
    noise = 0.1 * torch.randn(batch, steps, features, generator=generator)
    return torch.sin(frequency * time + phase) + noise


def _forecaster(
    name: str, cell: type[nn.RNNBase], size: str, num_layers: int, bidirectional: bool
) -> ZooModel:
    hidden, steps = (32, 24) if size == "test" else (256, 64)
    torch.manual_seed(0)
    model = Forecaster(cell, 8, hidden, num_layers, bidirectional).eval()
    return ZooModel(
        name,
        model,
        _series(16, steps, 8, 1),
        [_series(16, steps, 8, 100 + i) for i in range(4)],
        _metric(model, _series(64, steps, 8, 2), "cosine"),
        torch.randn(16, 32, generator=_generator(7)),
        lambda output, target: F.mse_loss(output, target),
    )


def lstm(size: str = "test") -> ZooModel:
    return _forecaster("lstm", nn.LSTM, size, 1, False)


def lstm2_bidirectional(size: str = "test") -> ZooModel:
    return _forecaster("lstm2_bidirectional", nn.LSTM, size, 2, True)


def gru(size: str = "test") -> ZooModel:
    return _forecaster("gru", nn.GRU, size, 2, False)


class Conv1dClassifier(nn.Module):
    """A 1-d convolutional network over time series, as for sensor or audio classification."""

    def __init__(self, features: int = 8, channels: int = 32, classes: int = 6) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(features, channels, 5, padding=2),
            nn.BatchNorm1d(channels),
            nn.ReLU(),
            nn.Conv1d(channels, 2 * channels, 5, padding=2, stride=2),
            nn.BatchNorm1d(2 * channels),
            nn.ReLU(),
            nn.Conv1d(2 * channels, 2 * channels, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool1d(1),
        )
        self.classifier = nn.Linear(2 * channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def conv1d(size: str = "test") -> ZooModel:
    channels, steps = (32, 64) if size == "test" else (128, 256)
    torch.manual_seed(0)
    model = Conv1dClassifier(8, channels, 6)
    return _classification(
        "conv1d",
        model,
        lambda n, seed: _series(n, steps, 8, seed).transpose(1, 2).contiguous(),
        6,
        16,
    )


class Recommender(nn.Module):
    """Scores a candidate item for a user from the bag of items the user interacted with."""

    def __init__(self, items: int = 2000, dim: int = 32) -> None:
        super().__init__()
        self.history = nn.EmbeddingBag(items, dim, mode="mean")
        self.item = nn.Embedding(items, dim)
        self.mlp = nn.Sequential(nn.Linear(2 * dim, 64), nn.ReLU(), nn.Linear(64, 1))

    def forward(self, history: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
        features = torch.cat([self.history(history), self.item(candidate)], dim=1)
        return self.mlp(features).squeeze(1)


def recommender(size: str = "test") -> ZooModel:
    items, dim = (2000, 32) if size == "test" else (100_000, 64)

    def interactions(batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        generator = _generator(seed)
        return (
            torch.randint(0, items, (batch, 20), generator=generator),
            torch.randint(0, items, (batch,), generator=generator),
        )

    torch.manual_seed(0)
    model = Recommender(items, dim).eval()
    return ZooModel(
        "recommender",
        model,
        interactions(32, 1),
        [interactions(32, 100 + i) for i in range(4)],
        _metric(model, interactions(256, 2), "cosine"),
        torch.rand(32, generator=_generator(7)),
        lambda output, target: F.binary_cross_entropy_with_logits(output, target),
    )


BUILDERS: dict[str, Callable[[str], ZooModel]] = {
    "bert": bert,
    "gpt2": gpt2,
    "vit": vit,
    "resnet18": resnet,
    "mobilenet_v3": mobilenet,
    "lstm": lstm,
    "lstm2_bidirectional": lstm2_bidirectional,
    "gru": gru,
    "conv1d": conv1d,
    "recommender": recommender,
}


def build(name: str, size: str = "test") -> ZooModel:
    """The zoo's model ``name`` (one of :data:`BUILDERS`), ``"test"`` or ``"bench"`` sized."""
    return BUILDERS[name](size)
