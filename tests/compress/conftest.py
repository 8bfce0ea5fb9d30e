"""Models for the compression tests, trained briefly on scikit-learn's digits, and an
in-process IPython shell with nbopt loaded."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.fc2(F.relu(self.fc1(x.flatten(1))))))


class Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class CNN(nn.Module):
    """Conv + BatchNorm + a residual block + a Linear classifier, for 8x8 digit images."""

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU()
        )
        self.block = Residual(channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.block(self.stem(x))).flatten(1))


class TextClassifier(nn.Module):
    """An embedding table, a transformer encoder block and a Linear head: mostly embeddings."""

    def __init__(self, vocab: int = 4000, dim: int = 64, classes: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.encoder = nn.TransformerEncoderLayer(dim, 4, 4 * dim, dropout=0.0, batch_first=True)
        self.head = nn.Linear(dim, classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(ids)).mean(1))


def _digits() -> tuple[torch.Tensor, ...]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
    y = torch.tensor(data.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, test = order[:1400], order[1400:]
    return x[train], y[train], x[test], y[test]


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float = 3e-3) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for start in range(0, len(x), 64):
            optimizer.zero_grad()
            F.cross_entropy(model(x[start : start + 64]), y[start : start + 64]).backward()
            optimizer.step()
    model.eval()


def accuracy_on(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.fixture(scope="session")
def digits() -> tuple[torch.Tensor, ...]:
    """``(x_train, y_train, x_test, y_test)``: 8x8 images in [0, 1], 1400 for training."""
    return _digits()


@pytest.fixture(scope="session")
def _trained_mlp(digits: tuple[torch.Tensor, ...]) -> nn.Module:
    torch.manual_seed(0)
    model = MLP()
    fit(model, digits[0], digits[1], epochs=4)
    return model


@pytest.fixture(scope="session")
def _trained_cnn(digits: tuple[torch.Tensor, ...]) -> nn.Module:
    torch.manual_seed(0)
    model = CNN()
    fit(model, digits[0], digits[1], epochs=3, lr=1e-2)
    return model


@pytest.fixture
def mlp(_trained_mlp: nn.Module) -> nn.Module:
    """A fresh copy of an MLP trained briefly on digits (eval mode)."""
    return copy.deepcopy(_trained_mlp)


@pytest.fixture
def cnn(_trained_cnn: nn.Module) -> nn.Module:
    """A fresh copy of a small residual CNN trained briefly on digits (eval mode)."""
    return copy.deepcopy(_trained_cnn)


@pytest.fixture
def text_model() -> nn.Module:
    torch.manual_seed(0)
    return TextClassifier().eval()


@pytest.fixture
def token_ids() -> torch.Tensor:
    return torch.randint(0, 4000, (8, 16), generator=torch.Generator().manual_seed(1))


@pytest.fixture
def accuracy(digits: tuple[torch.Tensor, ...]) -> Callable[[nn.Module], float]:
    """The metric: test-set accuracy of a model."""

    def accuracy(model: nn.Module) -> float:
        return accuracy_on(model, digits[2], digits[3])

    return accuracy


@pytest.fixture
def finetuner(digits: tuple[torch.Tensor, ...]) -> Callable[[nn.Module], None]:
    """A fine-tune function: one epoch on the training set, reporting each 10 batches."""
    import nbopt

    def finetune(model: nn.Module) -> None:
        optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
        x, y = digits[0], digits[1]
        for step, start in enumerate(range(0, len(x), 64)):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x[start : start + 64]), y[start : start + 64])
            loss.backward()
            optimizer.step()
            if step % 10 == 0:
                nbopt.report(step, loss.item())

    return finetune


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the state dict, to compare bit for bit later."""
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def same_state(model: nn.Module, saved: dict[str, torch.Tensor]) -> bool:
    state = model.state_dict()
    return state.keys() == saved.keys() and all(
        state[key].dtype == saved[key].dtype and torch.equal(state[key], saved[key])
        for key in saved
    )


@pytest.fixture(name="state_of")
def state_of_fixture() -> Callable[..., Any]:
    return state_of


@pytest.fixture(name="same_state")
def same_state_fixture() -> Callable[..., Any]:
    return same_state


@pytest.fixture(name="models")
def models_fixture() -> SimpleNamespace:
    """The model classes and training helpers, for tests that build their own models."""
    return SimpleNamespace(
        MLP=MLP, CNN=CNN, TextClassifier=TextClassifier, fit=fit, accuracy_on=accuracy_on
    )


def run_cell(shell: Any, source: str) -> Any:
    """Run ``source`` as a notebook cell; re-raise its error, else return its value."""
    result = shell.run_cell(source)
    result.raise_error()
    return result.result


@pytest.fixture
def shell(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An in-process IPython shell with nbopt loaded, a clean namespace, working in tmp_path,
    with progress off and no TensorBoard logs unless a test asks for them."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    monkeypatch.chdir(tmp_path)
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    ip = InteractiveShell.instance(config=config)
    if "optimize" not in ip.magics_manager.magics["cell"]:
        run_cell(ip, "%load_ext nbopt")
    ip.reset(new_session=False)
    run_cell(ip, "%config NbOptMagics.progress = 'none'")
    run_cell(ip, "%config NbOptMagics.logdir = 'none'")
    yield ip
    ip.reset(new_session=False)
    run_cell(ip, "%config NbOptMagics.progress = 'auto'")
    run_cell(ip, "%config NbOptMagics.logdir = 'runs/nbopt'")


@pytest.fixture(name="run_cell")
def run_cell_fixture() -> Callable[[Any, str], Any]:
    return run_cell


def quantized(module: nn.Module) -> bool:
    """Whether a layer holds int8 weights: torch.ao swaps the module for its own quantized
    one, torchao keeps the module and swaps its weight for a quantized tensor subclass."""
    if type(module).__module__.startswith("torch.ao.nn.quantized"):
        return True
    weight = getattr(module, "weight", None)
    return isinstance(weight, torch.Tensor) and type(weight) not in (torch.Tensor, nn.Parameter)


@pytest.fixture(name="quantized")
def quantized_fixture() -> Callable[[nn.Module], bool]:
    return quantized
