"""What ``nbopt.compress.optimize`` gains on a small CNN and an embedding-heavy transformer block.

For each model and configuration it prints the ratios after/before of serialized size, MACs and
latency, and the metric before and after. Latency is the median of repeated calls on the same
batch, the original and the optimised model called in turn, round after round, in one process
and with one thread count, so that load from other processes hits both alike.

Models: a residual CNN (conv + BatchNorm + residual, 32 channels) trained on scikit-learn's
8x8 digits, metric test accuracy; a text classifier (a 20k x 128 embedding table, one
``nn.TransformerEncoderLayer``, a Linear head) trained on a generated keyword task, metric test
accuracy. Goals: int8 size ratio at most 0.30 even for the embedding-heavy model; structured
prune 0.5 latency ratio at most 0.5 on the CNN; accuracy drop after a short fine-tune at most
1 point on digits.

One torch thread by default: on a machine shared with other work, two OpenMP threads wait on
each other whenever another process takes a core, and latencies then vary tenfold.

    python benchmarks/bench_optimize.py [--threads 1] [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from nbopt.compress import optimize
from nbopt.compress._measure import measure_latency


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
    def __init__(self, channels: int = 32) -> None:
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
    def __init__(self, vocab: int = 20_000, dim: int = 128, classes: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.encoder = nn.TransformerEncoderLayer(dim, 4, 4 * dim, dropout=0.0, batch_first=True)
        self.head = nn.Linear(dim, classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(ids)).mean(1))


@dataclass
class Task:
    """A model's data: training and test inputs and labels, the example batch, calibration."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    batch_size: int

    @property
    def example(self) -> torch.Tensor:
        return self.x_test[:64]

    def accuracy(self, model: nn.Module) -> float:
        with torch.no_grad():
            return (model(self.x_test).argmax(1) == self.y_test).float().mean().item()

    def fit(self, model: nn.Module, epochs: int, lr: float) -> nn.Module:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        per_epoch = -(-len(self.x_train) // self.batch_size)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=epochs * per_epoch
        )
        shuffle = torch.Generator().manual_seed(1)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(self.x_train), generator=shuffle)
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                optimizer.zero_grad()
                F.cross_entropy(model(self.x_train[batch]), self.y_train[batch]).backward()
                optimizer.step()
                schedule.step()
        model.eval()
        return model


def digits_task() -> Task:
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
    y = torch.tensor(data.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return Task(x[order[:1400]], y[order[:1400]], x[order[1400:]], y[order[1400:]], 128)


def keyword_task(vocab: int = 20_000, length: int = 32, classes: int = 4) -> Task:
    """Random token sequences; each class has 50 keywords, 4 of which its sequences contain."""
    generator = torch.Generator().manual_seed(0)
    keywords = torch.randperm(vocab, generator=generator)[: classes * 50].view(classes, 50)
    n = 4000
    ids = torch.randint(0, vocab, (n, length), generator=generator)
    labels = torch.randint(0, classes, (n,), generator=generator)
    slots = torch.rand(n, length, generator=generator).argsort(1)[:, :4]
    chosen = keywords[labels][
        torch.arange(n)[:, None], torch.randint(0, 50, (n, 4), generator=generator)
    ]
    ids.scatter_(1, slots, chosen)
    return Task(ids[:3000], labels[:3000], ids[3000:], labels[3000:], 64)


def side_by_side(original: nn.Module, optimised: nn.Module, example: Any, seconds: float) -> float:
    """Latency ratio optimised/original, the two called in turn for ``seconds``."""
    before, after = measure_latency([original, optimised], example, min_seconds=seconds)
    return after / before


def run(
    name: str,
    model: nn.Module,
    task: Task,
    seconds: float,
    **options: Any,
) -> dict[str, Any]:
    started = time.perf_counter()
    result = optimize(
        model,
        example=task.example,
        evaluate=task.accuracy,
        progress="none",
        logdir=None,
        **options,
    )
    report = result.report
    return {
        "config": name,
        "size": report["size_bytes"].ratio,
        "macs": report["macs"].ratio,
        "latency": side_by_side(model, result.model, task.example, seconds),
        "before": report["metric"].before,
        "after": report["metric"].after,
        "seconds": time.perf_counter() - started,
    }


def finetune_for(task: Task, epochs: int, lr: float) -> Callable[[nn.Module], None]:
    def finetune(model: nn.Module) -> None:
        task.fit(model, epochs, lr)

    return finetune


def print_rows(model: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{model}")
    print(f"  {'configuration':<34} {'size':>6} {'MACs':>6} {'latency':>8}   accuracy (points)")
    for row in rows:
        change = 100 * (row["after"] - row["before"])
        print(
            f"  {row['config']:<34} {row['size']:>6.3f} {row['macs']:>6.3f} {row['latency']:>8.3f}"
            f"   {row['before']:.4f} -> {row['after']:.4f} ({change:+.1f})"
            f"   [{row['seconds']:.0f} s]"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--seconds", type=float, default=1.0, help="latency measuring time per pair"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print("ratios are optimised/original; latency measured side by side on one batch")

    digits = digits_task()
    torch.manual_seed(0)
    cnn = digits.fit(CNN(32), epochs=10, lr=2e-2)
    calib = [digits.x_train[i : i + 64] for i in range(0, 512, 64)]
    short_finetune = finetune_for(digits, epochs=5, lr=1e-2)
    cnn_rows = [
        run("prune 0.5 structured", cnn, digits, args.seconds, prune=0.5),
        run(
            "prune 0.5 structured + finetune",
            cnn,
            digits,
            args.seconds,
            prune=0.5,
            finetune=short_finetune,
        ),
        run("int8 (dynamic: the Linear only)", cnn, digits, args.seconds, quant="int8"),
        run(
            "int8-static (PT2E, eager)", cnn, digits, args.seconds, quant="int8-static", calib=calib
        ),
        run(
            "prune 0.5 + finetune + int8-static",
            cnn,
            digits,
            args.seconds,
            prune=0.5,
            finetune=short_finetune,
            quant="int8-static",
            calib=calib,
        ),
    ]
    print_rows("CNN on digits (19k weights, batch 64 of 8x8 images)", cnn_rows)

    keywords = keyword_task()
    torch.manual_seed(0)
    text = keywords.fit(TextClassifier(), epochs=2, lr=3e-3)
    text_finetune = finetune_for(keywords, epochs=2, lr=3e-3)
    text_rows = [
        run(
            "prune 0.5 structured + finetune",
            text,
            keywords,
            args.seconds,
            prune=0.5,
            finetune=text_finetune,
        ),
        run("int8 (dynamic, embeddings 8-bit)", text, keywords, args.seconds, quant="int8"),
        run(
            "prune 0.5 + finetune + int8",
            text,
            keywords,
            args.seconds,
            prune=0.5,
            finetune=text_finetune,
            quant="int8",
        ),
    ]
    print_rows(
        "Transformer block (2.6M embedding + 0.2M other weights, batch 64 x 32 tokens)", text_rows
    )

    goals = [
        ("int8 size ratio <= 0.30, embedding-heavy transformer", text_rows[1]["size"], 0.30),
        ("int8-static size ratio <= 0.30, CNN", cnn_rows[3]["size"], 0.30),
        ("structured prune 0.5 latency ratio <= 0.5, CNN", cnn_rows[0]["latency"], 0.5),
        (
            "accuracy drop after a short fine-tune <= 1 point, digits",
            100 * (cnn_rows[1]["before"] - cnn_rows[1]["after"]),
            1.0,
        ),
    ]
    print("\ngoals")
    for goal, value, limit in goals:
        print(f"  {goal:<58} {value:6.3f}  {'met' if value <= limit else 'MISSED'}")
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
