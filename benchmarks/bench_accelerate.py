"""Training throughput of ``nbopt.launching.launch`` on 1 vs N processes, measured side by side.

The same data-parallel training step (an MLP, SGD, DDP through Accelerate) on the same global
batch, split across the ranks: samples per second of 1 process and of N processes (N = the
visible GPUs, else 2 CPU processes); on CPU also of plain training in this process with all of
PyTorch's threads (what a notebook does without a launcher) and with one thread (the same work
as one single-threaded rank: the launcher's own cost). Each rank runs single-threaded on CPU
(see ``nbopt.launching.launch``). The configurations alternate over the repeats so that machine
noise hits all of them; the figures are medians.

    python benchmarks/bench_accelerate.py [--steps 30] [--batch 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from nbopt.launching import launch

WARMUP_STEPS = 3


def make_model(hidden: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(784, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, 10),
    )


def train_in_rank(x: torch.Tensor, y: torch.Tensor, hidden: int, steps: int) -> float:
    """Samples per second of the whole job, timed in rank 0 between two barriers."""
    from accelerate import Accelerator

    accelerator = Accelerator()
    share = len(x) // accelerator.num_processes
    start = accelerator.process_index * share
    xb = x[start : start + share].to(accelerator.device)
    yb = y[start : start + share].to(accelerator.device)
    model = make_model(hidden)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    model, optimizer = accelerator.prepare(model, optimizer)

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()

    for _ in range(WARMUP_STEPS):
        step()
    accelerator.wait_for_everyone()
    clock = time.perf_counter()
    for _ in range(steps):
        step()
    accelerator.wait_for_everyone()
    return steps * len(x) / (time.perf_counter() - clock)


def train_here(x: torch.Tensor, y: torch.Tensor, hidden: int, steps: int, threads: int) -> float:
    """The same steps in this process, on the whole batch, with ``threads`` intra-op threads."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _train_here(x, y, hidden, steps)
    finally:
        torch.set_num_threads(saved)


def _train_here(x: torch.Tensor, y: torch.Tensor, hidden: int, steps: int) -> float:
    model = make_model(hidden)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    for _ in range(WARMUP_STEPS):
        step()
    clock = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * len(x) / (time.perf_counter() - clock)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=256, help="global batch, split over ranks")
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 784, generator=generator)
    y = torch.randint(0, 10, (args.batch,), generator=generator)
    gpus = torch.cuda.device_count()  # NVML: does not initialise CUDA, so forking stays safe
    many = gpus if gpus else 2
    device = f"{many} GPUs" if gpus else f"{many} CPU processes"
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"MLP 784-{args.hidden}-{args.hidden}-10, global batch {args.batch}, "
        f"{args.steps} timed steps, {args.repeats} repeats (medians); {device}; "
        f"{os.cpu_count()} cores, load average {load} before the run"
    )

    runs: dict[str, list[float]] = {}
    threads = torch.get_num_threads()
    # (name, processes launched, threads in this process when none is launched)
    configurations = [("launch, 1 process", 1, 0), (f"launch, {many} processes", many, 0)]
    if not gpus:
        configurations += [
            (f"this process, {threads} threads", 0, threads),
            ("this process, 1 thread", 0, 1),
        ]
    for _ in range(args.repeats):
        for name, processes, here_threads in configurations:
            if processes:
                rate = launch(
                    train_in_rank,
                    x,
                    y,
                    args.hidden,
                    args.steps,
                    num_processes=processes,
                    progress="none",
                    logdir=None,
                )
            else:
                rate = train_here(x, y, args.hidden, args.steps, here_threads)
            runs.setdefault(name, []).append(rate)

    medians = {name: statistics.median(rates) for name, rates in runs.items()}
    print(f"{'configuration':<32}{'samples/s':>12}")
    for name, rate in medians.items():
        print(f"{name:<32}{rate:>12.0f}")
    names = list(medians)
    pairs = [(1, 0)] if gpus else [(1, 0), (1, 2), (0, 3)]
    for top, bottom in pairs:
        ratio = medians[names[top]] / medians[names[bottom]]
        print(f"ratio {names[top]} / {names[bottom]}: {ratio:.2f}")


if __name__ == "__main__":
    main()
