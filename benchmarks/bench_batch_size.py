"""``find_batch_size`` measured side by side: its throughput search against an exhaustive
sweep, and the time to a target accuracy of its ``efficient`` batch against other batches.

**Throughput** (``--part throughput``). For an MLP and a CNN (training steps on CPU), the sweep
measures every power of two up to ``--max`` and every midpoint between two of them (3·2^k; 23
sizes from 2 to 4096) once, with the search's own engine and measurement (the engine's search
is swapped for a loop over the grid), and takes the fastest. The search is one
``find_batch_size(mode="throughput")`` call. Sweep and search alternate for ``--rounds``
rounds, so that the machine's load hits both alike. Then the sweep's fastest batch and the
search's two answers are measured again in turn, ``--remeasure`` times each, and their fastest
speeds compared: comparing each side's own first measurement would reward whichever was
luckier, and load from other processes only slows a measurement down (on a loaded machine the
median of five rounds still moved threefold). Printed per round (goal: throughput ratio at
least 0.95, time ratio at most 1/3): the search's wall time over the sweep's, and the
throughput of ``best_batch_size`` (the fastest the search found) and of ``batch_size`` (the
smallest within 5% of it) over the sweep's fastest.

**Time to accuracy** (``--part time``). On scikit-learn's digits, an MLP (64-512-512-10) and
a CNN (two 3x3 convolutions) train with SGD (momentum 0.9) until the validation accuracy
reaches ``--target`` (checked every 64 samples, or every step). The time to the target is the
training steps it took, which do not depend on the machine's load (the runs are seeded), times
the seconds of one step at that batch size, measured side by side for all sizes (the fastest
of 20 steps, median of ``--rounds`` rounds): single training runs on this shared two-core
machine varied up to fivefold between identical runs. The base learning rate is ``find_lr``'s
suggestion at batch 32. For each seed, ``find_batch_size(mode="efficient", lr=<that result>)``
gives the efficient batch, its noise scale and the rule that scales the rate to any batch;
then every batch of a sweep (8 .. 1024 and the whole training set) trains at that rule's rate
and at half and twice it, and so do the efficient batch, the batch ``mode="throughput"``
chooses (most samples per second) and the largest batch that fits (``mode="max"``: here the
whole set). Printed: the median time over the seeds (and its range) of each, and each chosen
batch's time over the best of the sweep, all at the rule's rate, and each at the best of the
three rates (goal: the efficient batch reaches the target first of the three, or within 10% of
the best of the sweep).

Torch runs one thread by default (``--threads``): on a shared two-core machine, OpenMP's two
threads wait on each other whenever another process takes a core, which made the same step up
to ten times slower at random.

    python benchmarks/bench_batch_size.py [--part throughput,time] [--rounds 3] [--seeds 3]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable, Sequence
from unittest import mock

import torch
from _digits import X_TRAIN, X_VAL, Y_TRAIN, Y_VAL, make_cnn

from nbopt.batching import BatchSizeResult, _strategies, find_batch_size
from nbopt.batching._efficient import scaled_learning_rate
from nbopt.learning_rate import find_lr


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


def sweep_grid(search) -> None:
    """Measures every batch size of the grid once, with the search's own measurement."""
    for size in grid(search.stop):
        if size >= search.start:
            search.probe(size, "sweep")


def measure(model: torch.nn.Module, example: torch.Tensor, size: int) -> float:
    """Samples per second of a training step at ``size``, as the search measures it."""
    result = find_batch_size(
        model,
        example,
        mode="throughput",
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
    with mock.patch.object(_strategies, "search_throughput", sweep_grid):
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
        model,
        example,
        mode="throughput",
        train=True,
        max_batch_size=largest,
        progress="none",
        logdir=None,
    )
    return result, time.perf_counter() - began


def remeasure(
    model: torch.nn.Module, example: torch.Tensor, sizes: set[int], times: int
) -> dict[int, float]:
    """The fastest samples/s of each size, measured in turn ``times`` times."""
    rates: dict[int, list[float]] = {size: [] for size in sizes}
    for _ in range(times):
        for size in sorted(sizes):
            rates[size].append(measure(model, example, size))
    return {size: max(values) for size, values in rates.items()}


def throughput_part(args: argparse.Namespace) -> None:
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
            warned = f" | {len(result.warnings)} warning(s)" if result.warnings else ""
            print(
                f"{name} round {round_number}: sweep fastest {best} ({sweep_seconds:.1f} s); "
                f"search tried {len(result.measurements)}, fastest {found}, chosen {chosen} "
                f"({search_seconds:.1f} s) | time ratio {ratios[-1][0]:.2f} | "
                f"throughput ratio fastest {ratios[-1][1]:.3f}, chosen {ratios[-1][2]:.3f}"
                f"{warned}",
                flush=True,
            )
        columns = list(zip(*ratios, strict=True))
        print(
            f"{name} median of {args.rounds} rounds: time ratio {_spread(columns[0])} "
            f"(goal <= 0.33); throughput ratio fastest {_spread(columns[1], 3)}, chosen "
            f"{_spread(columns[2], 3)} (goal >= 0.95)",
            flush=True,
        )


def _spread(values: Sequence[float], digits: int = 2) -> str:
    """``median [lowest, highest]``."""
    return (
        f"{statistics.median(values):.{digits}f} "
        f"[{min(values):.{digits}f}, {max(values):.{digits}f}]"
    )


# -- time to accuracy --------------------------------------------------------------------------


def digits_mlp() -> torch.nn.Module:
    return mlp()


DIGITS_MODELS = {"mlp": digits_mlp, "cnn": make_cnn}
BASE_BATCH = 32
LR_FACTORS = (0.5, 1.0, 2.0)


def sgd(rate: float) -> Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]:
    def make(parameters: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.SGD(parameters, lr=rate, momentum=0.9)

    return make


def steps_to_target(
    build: Callable[[], torch.nn.Module],
    batch: int,
    rate: float,
    seed: int,
    target: float,
    max_epochs: int,
) -> float:
    """Training steps until the validation accuracy reaches ``target``, checked every 64
    samples (or every step); inf if it does not within ``max_epochs`` or the loss is no longer
    finite. Deterministic for a seed: it does not depend on the machine's load."""
    torch.manual_seed(seed)
    model = build()
    optimizer = sgd(rate)(list(model.parameters()))
    generator = torch.Generator().manual_seed(seed)
    every = max(1, 64 // batch)
    step = 0
    for _ in range(max_epochs):
        for rows in torch.randperm(len(X_TRAIN), generator=generator).split(batch):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(X_TRAIN[rows]), Y_TRAIN[rows])
            loss.backward()
            optimizer.step()
            step += 1
            if not torch.isfinite(loss):
                return math.inf
            if step % every == 0:
                with torch.no_grad():
                    accuracy = (model(X_VAL).argmax(1) == Y_VAL).float().mean().item()
                if accuracy >= target:
                    return step
    return math.inf


def step_seconds(
    build: Callable[[], torch.nn.Module], sizes: set[int], rounds: int
) -> dict[int, float]:
    """Seconds of one SGD training step at each batch size: the fastest of 20 steps after 3
    of warm-up, in ``rounds`` rounds that take the sizes in turn (so that the machine's load
    hits them alike), and the median over the rounds."""
    torch.manual_seed(0)
    model = build()
    optimizer = sgd(0.01)(list(model.parameters()))
    found: dict[int, list[float]] = {size: [] for size in sizes}
    for _ in range(rounds):
        for size in sorted(sizes):
            rows = torch.arange(size) % len(X_TRAIN)
            x, y = X_TRAIN[rows], Y_TRAIN[rows]
            times = []
            for repeat in range(23):
                began = time.perf_counter()
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                optimizer.step()
                if repeat >= 3:
                    times.append(time.perf_counter() - began)
            found[size].append(min(times))
    return {size: statistics.median(values) for size, values in found.items()}


def time_part(args: argparse.Namespace) -> None:
    loss = torch.nn.functional.cross_entropy
    full = len(X_TRAIN)
    sweep_sizes = [8, 16, 32, 64, 128, 256, 512, 1024, full]
    for name, build in DIGITS_MODELS.items():
        began = time.perf_counter()
        torch.manual_seed(0)
        # Three sweeps, fixed: how busy the machine is must not change the base rate.
        base = find_lr(
            build(), (X_TRAIN, Y_TRAIN), loss=loss, optimizer=sgd(0.01), batch_size=BASE_BATCH,
            repeats=3, progress="none", logdir=None,
        )  # fmt: skip
        print(f"\n{name}: base learning rate {base.suggestion:.3g} at batch {BASE_BATCH} (find_lr)")
        steps: dict[tuple[str, int, float], list[tuple[int, float]]] = {}
        chosen: dict[str, list[int]] = {"efficient": [], "throughput": [], "max": []}
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            model = build()
            common = {"target": Y_TRAIN, "loss": loss, "train": True, "progress": "none"}
            efficient = find_batch_size(
                model, X_TRAIN, mode="efficient", lr=base, optimizer=sgd(base.suggestion),
                seed=seed, logdir=None, **common,
            )  # fmt: skip
            fastest = find_batch_size(model, X_TRAIN, mode="throughput", logdir=None, **common)
            largest = find_batch_size(
                model, X_TRAIN, mode="max", max_batch_size=full, logdir=None, **common
            )
            noise = efficient.noise_scale.value
            picks = {
                "efficient": efficient.batch_size,
                "throughput": fastest.batch_size,
                "max": largest.batch_size,
            }
            for key, size in picks.items():
                chosen[key].append(size)
            print(
                f"  seed {seed}: B_noise {efficient.noise_scale.text()}; efficient "
                f"{picks['efficient']} (lr {efficient.learning_rate:.3g}), throughput "
                f"{picks['throughput']}, max {picks['max']}; warnings: "
                f"{len(efficient.warnings)}, {len(fastest.warnings)}",
                flush=True,
            )
            runs = [("sweep", size) for size in sweep_sizes] + list(picks.items())
            for label, size in runs:
                for factor in LR_FACTORS:
                    rate = factor * scaled_learning_rate(base.suggestion, BASE_BATCH, size, noise)
                    needed = steps_to_target(build, size, rate, seed, args.target, args.max_epochs)
                    key = (label, size if label == "sweep" else 0, factor)
                    steps.setdefault(key, []).append((size, needed))
        sizes = {size for values in steps.values() for size, _ in values}
        seconds = step_seconds(build, sizes, args.rounds)
        times = {
            key: [needed * seconds[size] for size, needed in values]
            for key, values in steps.items()
        }
        _report_times(name, times, chosen, sweep_sizes, time.perf_counter() - began)
        counts = {
            size: statistics.median(n for _, n in steps[("sweep", size, 1.0)])
            for size in sweep_sizes
        }
        print(
            "  steps to the target at the rule's rate (median): "
            + ", ".join(f"{size}: {count:g}" for size, count in counts.items())
        )
        print(
            "  step seconds: " + ", ".join(f"{size}: {seconds[size]:.2e}" for size in sweep_sizes)
        )


def _report_times(
    name: str,
    times: dict[tuple[str, int, float], list[float]],
    chosen: dict[str, list[int]],
    sweep_sizes: list[int],
    seconds: float,
) -> None:
    """The table of one model, and the goal at the rule's rate and at the best of three."""
    medians = {key: statistics.median(values) for key, values in times.items()}
    print(f"{name}: median seconds to the target over the seeds [range] ({seconds:.0f} s)")
    for size in sweep_sizes:
        cells = [f"x{f:g}: {_spread(times[('sweep', size, f)], 3)}" for f in LR_FACTORS]
        print(f"  sweep {size:>5}  " + "  ".join(cells))
    for key in ("efficient", "throughput", "max"):
        cells = [f"x{f:g}: {_spread(times[(key, 0, f)], 3)}" for f in LR_FACTORS]
        print(f"  {key:<10} batches {chosen[key]}  " + "  ".join(cells))
    for label, factors in (("the rule's rate", (1.0,)), ("the best of three rates", LR_FACTORS)):
        sweep = {k: v for k, v in medians.items() if k[0] == "sweep" and k[2] in factors}
        best_key = min(sweep, key=sweep.get)
        best = sweep[best_key]
        own = {key: min(medians[(key, 0, f)] for f in factors) for key in chosen}
        ratios = ", ".join(f"{key} {value / best:.2f}x" for key, value in own.items())
        ratio = own["efficient"] / best
        first = "first of the three" if own["efficient"] <= min(own.values()) else "not first"
        print(
            f"  at {label}: best of the sweep {best:.3f} s (batch {best_key[1]}, "
            f"x{best_key[2]:g}); {ratios}; efficient {first}; goal (within 10% of the best "
            f"of the sweep): {'yes' if ratio <= 1.10 else 'NO'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="throughput,time")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--remeasure", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--max-epochs", type=int, default=60)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), max {args.max}")
    parts = args.part.split(",")
    if "throughput" in parts:
        throughput_part(args)
    if "time" in parts:
        time_part(args)


if __name__ == "__main__":
    main()
