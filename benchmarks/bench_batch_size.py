"""``find_batch_size(mode="throughput")`` against an exhaustive sweep, measured side by side.

For an MLP and a CNN (training steps on CPU), the sweep measures every power of two up to
``--max`` and every midpoint between two of them (3·2^k; 23 sizes from 2 to 4096) once, with the
search's own engine and measurement (the engine's search is swapped for a loop over the grid),
and takes the fastest. The search is one ``find_batch_size`` call. Sweep and search alternate
for ``--rounds`` rounds, so that the machine's load hits both alike. Then the sweep's fastest
batch and the search's two answers are measured again in turn, ``--remeasure`` times each, and
their median speeds compared: comparing each side's own first measurement would reward
whichever was luckier.

Printed per round (goal: throughput ratio at least 0.95, time ratio at most 1/3):

* time ratio: the search's wall time over the sweep's;
* throughput ratio of ``best_batch_size`` (the fastest the search found) and of
  ``batch_size`` (the smallest within ``tolerance``, 5%, of it: by design up to 5% slower)
  over the sweep's fastest.

Torch runs one thread by default (``--threads``): on a shared two-core machine, OpenMP's two
threads wait on each other whenever another process takes a core, which made the same step up
to ten times slower at random.

    python benchmarks/bench_batch_size.py [--rounds 3] [--max 4096] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from unittest import mock

import torch

from nbopt.batching import BatchSizeResult, _search, find_batch_size
from nbopt.batching._search import BatchSizeSearch


def mlp() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(64, 512),
        torch.nn.ReLU(),
        torch.nn.Linear(512, 512),
        torch.nn.ReLU(),
        torch.nn.Linear(512, 10),
    )


def cnn() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(32 * 4 * 4, 10),
    )


MODELS = {"mlp": (mlp, (64,)), "cnn": (cnn, (3, 16, 16))}


def grid(largest: int) -> list[int]:
    """Powers of two from 2 (where a training search starts) up to ``largest``, and the
    midpoints between consecutive ones."""
    sizes, power = [], 2
    while power <= largest:
        sizes.append(power)
        if 3 * power // 2 <= largest:
            sizes.append(3 * power // 2)
        power *= 2
    return sorted(set(sizes))


class Sweep(BatchSizeSearch):
    """Measures every batch size of the grid once, with the search's own measurement."""

    def _search_throughput(self) -> None:
        for size in grid(self.stop):
            if size >= self.start:
                self._probe(size, "sweep")


def measure(model: torch.nn.Module, example: torch.Tensor, size: int) -> float:
    """Samples per second of a training step at ``size``, as the search measures it."""
    result = find_batch_size(
        model,
        example,
        train=True,
        start=size,
        max_batch_size=size,
        progress="none",
        logdir=None,
    )
    rate = result.throughput(size)
    if rate is None:
        raise RuntimeError(f"batch size {size} did not run: {result.measurements}")
    return rate


def sweep(model: torch.nn.Module, example: torch.Tensor, largest: int) -> tuple[int, float]:
    """(fastest batch size, seconds the sweep took): one find_batch_size call whose engine
    measures the whole grid instead of searching it."""
    began = time.perf_counter()
    with mock.patch.object(_search, "BatchSizeSearch", Sweep):
        result = find_batch_size(
            model, example, train=True, max_batch_size=largest, progress="none", logdir=None
        )
    seconds = time.perf_counter() - began
    if result.best_batch_size is None:
        raise RuntimeError(f"the sweep measured nothing: {result.measurements}")
    return result.best_batch_size, seconds


def search(
    model: torch.nn.Module, example: torch.Tensor, largest: int
) -> tuple[BatchSizeResult, float]:
    began = time.perf_counter()
    result = find_batch_size(
        model, example, train=True, max_batch_size=largest, progress="none", logdir=None
    )
    return result, time.perf_counter() - began


def remeasure(
    model: torch.nn.Module, example: torch.Tensor, sizes: set[int], times: int
) -> dict[int, float]:
    """Median samples/s of each size, measured in turn ``times`` times."""
    rates: dict[int, list[float]] = {size: [] for size in sizes}
    for _ in range(times):
        for size in sorted(sizes):
            rates[size].append(measure(model, example, size))
    return {size: statistics.median(values) for size, values in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--remeasure", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), max {args.max}")
    print(f"sweep grid: {len(grid(args.max))} batch sizes, 2 .. {args.max}")
    for name, (build, shape) in MODELS.items():
        model = build()
        example = torch.randn(64, *shape)
        ratios: list[tuple[float, float, float]] = []
        for round_number in range(1, args.rounds + 1):
            best, sweep_seconds = sweep(model, example, args.max)
            result, search_seconds = search(model, example, args.max)
            found, chosen = result.best_batch_size, result.batch_size
            rates = remeasure(model, example, {best, found, chosen}, args.remeasure)
            ratios.append(
                (
                    search_seconds / sweep_seconds,
                    rates[found] / rates[best],
                    rates[chosen] / rates[best],
                )
            )
            print(
                f"{name} round {round_number}: sweep fastest {best} ({sweep_seconds:.1f} s); "
                f"search tried {len(result.measurements)}, fastest {found}, chosen {chosen} "
                f"({search_seconds:.1f} s) | time ratio {ratios[-1][0]:.2f} | "
                f"throughput ratio fastest {ratios[-1][1]:.3f}, chosen {ratios[-1][2]:.3f}",
                flush=True,
            )
        time_ratio, fastest_ratio, chosen_ratio = (
            statistics.median(r) for r in zip(*ratios, strict=True)
        )
        print(
            f"{name} median of {args.rounds} rounds: time ratio {time_ratio:.2f} (goal <= 0.33); "
            f"throughput ratio fastest {fastest_ratio:.3f}, chosen {chosen_ratio:.3f} "
            "(goal >= 0.95)",
            flush=True,
        )


if __name__ == "__main__":
    main()
