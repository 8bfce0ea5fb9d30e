"""The digits MLP task shared by the benchmarks: scikit-learn's bundled digits, a small MLP."""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import nbopt

torch.set_num_threads(1)  # one trial per core; steadier timings on a shared machine

_digits = load_digits()
_x_train, _x_val, _y_train, _y_val = train_test_split(
    _digits.data / 16.0, _digits.target, test_size=0.3, random_state=0, stratify=_digits.target
)
X_TRAIN = torch.tensor(_x_train, dtype=torch.float32)
X_VAL = torch.tensor(_x_val, dtype=torch.float32)
Y_TRAIN = torch.tensor(_y_train)
Y_VAL = torch.tensor(_y_val)


def make_mlp(width: int, depth: int, dropout: float = 0.0) -> torch.nn.Module:
    layers: list[torch.nn.Module] = []
    fan_in = X_TRAIN.shape[1]
    for _ in range(depth):
        layers += [torch.nn.Linear(fan_in, width), torch.nn.ReLU(), torch.nn.Dropout(dropout)]
        fan_in = width
    return torch.nn.Sequential(*layers, torch.nn.Linear(fan_in, 10))


def make_cnn() -> torch.nn.Module:
    """Two convolutions over the 8x8 image, pooled, and a linear head; fed rows of 64 pixels."""
    return torch.nn.Sequential(
        torch.nn.Unflatten(1, (1, 8, 8)),
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(32 * 4 * 4, 10),
    )


def val_error(model: torch.nn.Module) -> float:
    model.eval()
    with torch.no_grad():
        error = (model(X_VAL).argmax(1) != Y_VAL).float().mean().item()
    model.train()
    return error


def train_mlp(
    lr: float,
    width: int = 64,
    depth: int = 1,
    weight_decay: float = 0.0,
    batch_size: int = 64,
    dropout: float = 0.0,
    epochs: int = 10,
    seed: int = 0,
    metrics: dict[str, float] | None = None,
) -> float:
    """Train, report the validation error after each epoch (with ``metrics``, if given),
    return the final one."""
    torch.manual_seed(seed)
    model = make_mlp(width, depth, dropout)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    error = 1.0
    for epoch in range(1, epochs + 1):
        for batch in torch.randperm(len(X_TRAIN), generator=generator).split(batch_size):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(X_TRAIN[batch]), Y_TRAIN[batch])
            loss.backward()
            optimizer.step()
        error = val_error(model)
        nbopt.report(epoch, error, **(metrics or {}))
    return error
