"""``find_lr``'s suggestion against the best rate of a sweep of full trainings, per model.

Three models, trained with Adam at a constant learning rate (so that the rate matters):

* ``mlp``: scikit-learn's digits, 64-128-128-10 MLP, 20 epochs of batch 64;
* ``cnn``: the same digits as 8x8 images, two 3x3 convolutions, 12 epochs of batch 64;
* ``transformer``: one pre-norm transformer block (d=32, 4 heads) with learned positions on a
  synthetic task, the most frequent of 12 tokens (vocabulary 8), 5 epochs of batch 64.

For each seed (the model's initialisation and the data's order), the sweep trains the model
at 8 log-spaced rates; ``find_lr`` (its defaults: three sweeps of 100 steps from 1e-7 to 10)
runs on the same initial model and data, and the model is trained at the rate of every rule
read off the same curve: nbopt's ``minimum_centered``, fastai's ``valley``, ``minimum`` and
``steep``, Lightning's ``steepest``, and variants of nbopt's rule (``/3``, ``/10`` and ``/30``
instead of a fifth of the minimum, fastai's valley and Lightning's steepest on the centered
smoothing). Printed per model: the median validation accuracy over the seeds (and its range)
of the sweep's best rate and of each rule's rate, and each rule's rates.

Goal: nbopt's suggestion within 1 point of the sweep's best accuracy on every model, and at
least as good as the steepest-descent rule (Lightning's) on each.

    python benchmarks/bench_lr_find.py [--seeds 3] [--models mlp,cnn,transformer]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from _digits import X_TRAIN, X_VAL, Y_TRAIN, Y_VAL, make_cnn

from nbopt.learning_rate import find_lr
from nbopt.learning_rate._rules import centered, longest_valley

SWEEP_RATES = [float(rate) for rate in np.geomspace(1e-4, 3e-1, 8)]
PACKAGE_RULES = ("minimum_centered", "valley", "minimum", "steep", "steepest")


def mlp() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(64, 128),
        torch.nn.ReLU(),
        torch.nn.Linear(128, 128),
        torch.nn.ReLU(),
        torch.nn.Linear(128, 10),
    )


class Block(torch.nn.Module):
    """Token and position embeddings, one pre-norm transformer block, mean pooling, a head."""

    def __init__(self, vocabulary: int = 8, length: int = 12, width: int = 32) -> None:
        super().__init__()
        self.tokens = torch.nn.Embedding(vocabulary, width)
        self.positions = torch.nn.Parameter(torch.randn(length, width) * 0.02)
        self.block = torch.nn.TransformerEncoderLayer(
            width, nhead=4, dim_feedforward=64, dropout=0.0, batch_first=True, norm_first=True
        )
        self.head = torch.nn.Linear(width, vocabulary)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden = self.block(self.tokens(tokens) + self.positions)
        return self.head(hidden.mean(dim=1))


def majority_task(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences of 12 tokens from 8, labelled with their most frequent token (the smallest
    on a tie)."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 8, (count, 12), generator=generator)
    counts = torch.nn.functional.one_hot(tokens, 8).sum(dim=1)
    return tokens, counts.argmax(dim=1)


SEQ_TRAIN = majority_task(4000, seed=100)
SEQ_VAL = majority_task(1000, seed=101)
MODELS: dict[str, tuple[Callable[[], torch.nn.Module], tuple, tuple, int]] = {
    "mlp": (mlp, (X_TRAIN, Y_TRAIN), (X_VAL, Y_VAL), 20),
    "cnn": (make_cnn, (X_TRAIN, Y_TRAIN), (X_VAL, Y_VAL), 12),
    "transformer": (Block, SEQ_TRAIN, SEQ_VAL, 5),
}


def build(name: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return MODELS[name][0]()


def train(name: str, seed: int, rate: float) -> float:
    """Validation accuracy after training the seed's model at ``rate``."""
    _, (x, y), (x_val, y_val), epochs = MODELS[name]
    model = build(name, seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=rate)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for rows in torch.randperm(len(x), generator=generator).split(64):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[rows]), y[rows])
            if not torch.isfinite(loss):
                return 0.0  # diverged
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return (model(x_val).argmax(1) == y_val).float().mean().item()


def variants(rates: np.ndarray, losses: np.ndarray) -> dict[str, float | None]:
    """Other ways to read the centered curve, measured against nbopt's rule."""
    smoothed = centered(rates, losses)
    lowest = float(rates[int(np.argmin(smoothed))])
    slope = np.gradient(smoothed[: int(np.argmin(smoothed)) + 1])
    return {
        "centered min/3": lowest / 3,
        "centered min/10": lowest / 10,
        "centered min/30": lowest / 30,
        "centered valley": longest_valley(rates, smoothed),
        "centered steepest": float(rates[int(np.argmin(slope))]) if len(slope) > 1 else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--models", default="mlp,cnn,transformer")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.seeds} seeds")
    print("sweep rates: " + ", ".join(f"{rate:.2g}" for rate in SWEEP_RATES))
    for name in args.models.split(","):
        began = time.perf_counter()
        _, data, _, epochs = MODELS[name]
        sweep = {
            rate: [train(name, seed, rate) for seed in range(args.seeds)] for rate in SWEEP_RATES
        }
        accuracy: dict[str, list[float]] = {}
        rates: dict[str, list[float]] = {}
        for seed in range(args.seeds):
            result = find_lr(
                build(name, seed),
                data,
                loss=torch.nn.functional.cross_entropy,
                optimizer=torch.optim.Adam,
                # Three sweeps, as the default runs them when a sweep is quick: fixed, so that
                # how busy the machine is cannot change the curve the rules read.
                repeats=3,
                seed=seed,
                progress="none",
                logdir=None,
            )
            curve = result.curve()
            rules = {**result.suggestions, **variants(curve.learning_rates, curve.loss)}
            for rule, rate in rules.items():
                rates.setdefault(rule, []).append(rate)
                accuracy.setdefault(rule, []).append(
                    train(name, seed, rate) if rate is not None else 0.0
                )
        medians = {rate: statistics.median(values) for rate, values in sweep.items()}
        best_rate = max(medians, key=medians.get)
        best = medians[best_rate]
        print(f"\n{name} ({epochs} epochs, {time.perf_counter() - began:.0f} s)")
        print("  sweep: " + ", ".join(f"{rate:.2g}: {medians[rate]:.3f}" for rate in SWEEP_RATES))
        print(f"  {'best of the sweep':<20} {best:.3f} at {best_rate:.2g} "
              f"[{min(sweep[best_rate]):.3f}, {max(sweep[best_rate]):.3f}]")  # fmt: skip
        for rule, values in accuracy.items():
            median = statistics.median(values)
            shown = ", ".join("none" if r is None else f"{r:.2g}" for r in rates[rule])
            marker = " (nbopt)" if rule == PACKAGE_RULES[0] else ""
            print(
                f"  {rule:<20} {median:.3f} [{min(values):.3f}, {max(values):.3f}]  "
                f"gap {100 * (best - median):+.1f} pts  rates {shown}{marker}"
            )
        ours = statistics.median(accuracy[PACKAGE_RULES[0]])
        steepest = statistics.median(accuracy["steepest"])
        print(
            f"  goal: within 1 point of the sweep's best: {'yes' if best - ours <= 0.01 else 'NO'}"
            f"; at least as good as steepest: {'yes' if ours >= steepest else 'NO'}",
            flush=True,
        )


if __name__ == "__main__":
    main()
