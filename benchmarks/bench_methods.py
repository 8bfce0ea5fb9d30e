"""The compression methods side by side: soft and iterative pruning, distillation and
transfer, quantization-aware training, and the int8 backends.

Every row of a table is measured in the same run, on scikit-learn's bundled 8x8 digits (1,257
training and 540 validation images), with the same fine-tune budget (``--epochs`` passes of
nbopt's built-in loop, Adam at 1e-3, batches of 64 in one fixed order), for three seeds (each
trains its own original model); the tables print the median and, in brackets, the range over
the seeds.

1. Prune 0.5 of a CNN's channels (an MLP's neurons), then fine-tune: one shot, in five
   increments (``prune_steps=5``), or soft (``prune_mode=soft``). Accuracy drop from the
   original, in points. Goal: soft or iterative below one-shot.
2. Distillation: prune 0.5 and fine-tune on the labels, or distill from the original
   (``distill=self``); a half-width student trained on the labels alone (``alpha=0``), or
   distilled (``student=``). Accuracy. Goal: distilled at least as accurate.
3. int8 after training, or with quantization-aware training (``qat=True``), on an MLP whose
   hidden layer has an outlier neuron (rescaled by 512, the next layer by 1/512: the same
   function), which per-token activation quantization rounds the other neurons against.
   Accuracy drop, on torchao's kernels (the ones QAT simulates). Goal: QAT at most PTQ's.
4. int8 latency and size per backend, ratios to float32 at one thread: torch.ao's eager
   dynamic quantization, torchao's ``quantize_`` in eager mode and compiled
   (``torch.compile``), and ``quant_backend=auto``, on a 768-3072-768 MLP (batch 32), the
   digits CNN (batch 64) and a transformer encoder block (256 wide, batch 8 x 64 tokens).
   Latencies are medians of alternating calls, all backends in one round robin, three rounds.
   Goal: auto within 5% of the fastest eager backend.

    python benchmarks/bench_methods.py [--epochs 3] [--seeds 3] [--skip-compile]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from _digits import X_TRAIN, X_VAL, Y_TRAIN, Y_VAL
from bench_optimize import CNN as ImageCNN
from torch import nn

from nbopt.compress import optimize
from nbopt.compress._measure import measure_latency, serialized_size
from nbopt.compress._train import DEFAULT_ALPHA, DEFAULT_TEMPERATURE

QUIET = {"progress": "none", "logdir": None}


class CNN(ImageCNN):
    """``bench_optimize``'s residual CNN, fed rows of 64 pixels as the digits data holds them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.view(-1, 1, 8, 8))


class MLP(nn.Module):
    def __init__(self, hidden: int = 256) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.fc2(F.relu(self.fc1(x.flatten(1))))))


def train(model: nn.Module, epochs: int, seed: int, lr: float = 3e-3) -> nn.Module:
    """The original model: trained from scratch on the digits, in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for rows in torch.randperm(len(X_TRAIN), generator=generator).split(64):
            optimizer.zero_grad()
            F.cross_entropy(model(X_TRAIN[rows]), Y_TRAIN[rows]).backward()
            optimizer.step()
    return model.eval()


def accuracy(model: nn.Module) -> float:
    with torch.no_grad():
        return (model(X_VAL).argmax(1) == Y_VAL).float().mean().item()


def median_range(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    shown = [v * scale for v in values]
    return (
        f"{statistics.median(shown):.{digits}f} [{min(shown):.{digits}f}, {max(shown):.{digits}f}]"
    )


def table(title: str, headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    print(f"\n{title}")
    for row in [headers, ["-" * w for w in widths], *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)))


# -- 1. pruning ----------------------------------------------------------------------------


def pruning(seeds: list[int], epochs: int) -> None:
    data = {"data": (X_TRAIN, Y_TRAIN), "epochs": epochs, "example": X_VAL[:64]}
    methods: dict[str, dict[str, Any]] = {
        "one-shot + fine-tune": {},
        "prune_steps=5": {"prune_steps": 5},
        "prune_mode=soft": {"prune_mode": "soft"},
    }
    rows = []
    for name, make in (("CNN", CNN), ("MLP", MLP)):
        drops: dict[str, list[float]] = {method: [] for method in methods}
        macs: dict[str, list[float]] = {method: [] for method in methods}
        base = []
        for seed in seeds:
            torch.manual_seed(seed)
            original = train(make(), 20, seed)
            base.append(accuracy(original))
            for method, options in methods.items():
                result = optimize(
                    original, prune=0.5, evaluate=accuracy, **data, **options, **QUIET
                )
                drops[method].append(result.before.metric - result.after.metric)
                macs[method].append(result.report["macs"].ratio)
        for method in methods:
            rows.append(
                [
                    name,
                    median_range(base),
                    method,
                    median_range(drops[method]),
                    f"{statistics.median(macs[method]):.2f}",
                ]
            )
    table(
        f"1. prune 0.5, then {epochs} epochs of fine-tuning: accuracy drop (points)",
        ["model", "original %", "method", "drop", "MACs ratio"],
        rows,
    )


# -- 2. distillation -----------------------------------------------------------------------


def distillation(seeds: list[int], epochs: int) -> None:
    data = {"data": (X_TRAIN, Y_TRAIN), "epochs": epochs, "example": X_VAL[:64]}
    rows = []
    for name, make, half in (("CNN", CNN, lambda: CNN(16)), ("MLP", MLP, lambda: MLP(128))):
        found: dict[str, list[float]] = {}
        base = []
        for seed in seeds:
            torch.manual_seed(seed)
            original = train(make(), 20, seed)
            base.append(accuracy(original))
            torch.manual_seed(100 + seed)
            student = half()
            runs = {
                "prune 0.5 + fine-tune": {"prune": 0.5},
                "prune 0.5 + distill=self": {"prune": 0.5, "distill": "self"},
                "half-width student alone": {"student": student, "alpha": 0.0},
                "half-width student distilled": {"student": student},
            }
            for label, options in runs.items():
                result = optimize(original, evaluate=accuracy, **data, **options, **QUIET)
                found.setdefault(label, []).append(result.after.metric)
        for label, values in found.items():
            rows.append([name, median_range(base), label, median_range(values)])
    table(
        f"2. distillation ({epochs} epochs, T={DEFAULT_TEMPERATURE:g}, "
        f"alpha={DEFAULT_ALPHA:g}): accuracy %",
        ["model", "original %", "run", "accuracy"],
        rows,
    )


# -- 3. quantization-aware training --------------------------------------------------------


def with_outlier_neuron(model: MLP, factor: float = 512.0) -> MLP:
    """The same function, with hidden neuron 0 of fc1 ``factor`` times larger (and the next
    layer reading it ``factor`` times smaller): an activation outlier."""
    with torch.no_grad():
        model.fc1.weight[0] *= factor
        model.fc1.bias[0] *= factor
        model.fc2.weight[:, 0] /= factor
    return model


def qat(seeds: list[int], epochs: int) -> None:
    data = {"data": (X_TRAIN, Y_TRAIN), "epochs": epochs}
    int8 = {"quant": "int8", "quant_backend": "torchao", "example": X_VAL[:64]}
    runs: dict[str, dict[str, Any]] = {
        "int8 alone (no fine-tune)": {},
        "fine-tune, then int8 (PTQ)": data,
        "qat=True (QAT)": {**data, "qat": True},
    }
    drops: dict[str, list[float]] = {label: [] for label in runs}
    base, float_drop, chosen = [], [], set()
    for seed in seeds:
        torch.manual_seed(seed)
        original = with_outlier_neuron(train(MLP(), 20, seed))
        base.append(accuracy(original))
        for label, options in runs.items():
            result = optimize(original, evaluate=accuracy, **int8, **options, **QUIET)
            drops[label].append(result.before.metric - result.after.metric)
            if label.startswith("fine-tune"):
                float_drop.append(result.before.metric - result.steps[0].after.metric)
        auto = optimize(original, quant="int8", example=X_VAL[:64], **QUIET)
        chosen.add(f"{auto.quant_backend} (fidelity {auto.fidelity:.3f})")
    rows = [["float, after the same fine-tune", median_range(float_drop)]]
    rows += [[label, median_range(values)] for label, values in drops.items()]
    table(
        f"3. int8 (torchao) of an MLP with an activation outlier, original "
        f"{median_range(base)} %: accuracy drop (points); quant_backend=auto chose "
        f"{', '.join(sorted(chosen))}",
        ["run", "drop"],
        rows,
    )


# -- 4. int8 backends ----------------------------------------------------------------------


def _backend_models(model: nn.Module, example: Any, compile_too: bool) -> dict[str, Any]:
    """The float model and its int8 versions, each quantized by ``optimize``."""
    models: dict[str, Any] = {"float32": model}
    chosen = {}
    for backend in ("torch.ao", "torchao", "auto"):
        result = optimize(model, quant="int8", quant_backend=backend, example=example, **QUIET)
        models[backend if backend != "auto" else "auto"] = result.model
        chosen[backend] = result.quant_backend
    if compile_too:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compiled = torch.compile(models["torchao"])
            started = time.perf_counter()
            with torch.no_grad():
                compiled(example)
            chosen["compile seconds"] = time.perf_counter() - started
        models["torchao compiled"] = compiled
    models["__chosen__"] = chosen
    return models


def backends(compile_too: bool) -> None:
    torch.manual_seed(0)
    cases: list[tuple[str, Callable[[], nn.Module], Any]] = [
        (
            "MLP 768-3072-768, batch 32",
            lambda: nn.Sequential(nn.Linear(768, 3072), nn.GELU(), nn.Linear(3072, 768)),
            torch.randn(32, 768),
        ),
        ("digits CNN, batch 64", lambda: train(CNN(), 3, 0), X_VAL[:64]),
        (
            "transformer block 256, batch 8x64",
            lambda: nn.TransformerEncoderLayer(256, 4, 1024, dropout=0.0, batch_first=True),
            torch.randn(8, 64, 256),
        ),
    ]
    rows = []
    for name, make, example in cases:
        model = make().eval()
        models = _backend_models(model, example, compile_too)
        chosen = models.pop("__chosen__")
        names = list(models)
        rounds = []
        for _ in range(3):
            seconds = measure_latency([models[n] for n in names], example, min_seconds=1.0)
            rounds.append({n: s / seconds[0] for n, s in zip(names, seconds, strict=True)})
        sizes = {n: serialized_size(models[n]) for n in names if n != "torchao compiled"}
        eager = ("torch.ao", "torchao")
        fastest = min(eager, key=lambda n: statistics.median(r[n] for r in rounds))
        for n in names[1:]:
            ratios = [r[n] for r in rounds]
            label = f"{n} (chose {chosen['auto']})" if n == "auto" else n
            if n == "torchao compiled":
                label += f" ({chosen['compile seconds']:.0f} s to compile)"
            size = sizes.get(n, sizes["torchao"]) / sizes["float32"]
            rows.append([name, label, median_range(ratios, 1.0, 2), f"{size:.2f}"])
        auto = statistics.median(r["auto"] for r in rounds)
        best = statistics.median(r[fastest] for r in rounds)
        rows.append([name, f"auto / fastest eager ({fastest})", f"{auto / best:.2f}", ""])
    table(
        f"4. int8 backends at {torch.get_num_threads()} thread(s): latency and size ratios to "
        "float32",
        ["model", "backend", "latency", "size"],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3, help="fine-tune budget of every row")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-compile", action="store_true", help="no torchao compiled row")
    parser.add_argument(
        "--only", choices=["pruning", "distillation", "qat", "backends"], action="append"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = list(range(args.seeds))
    sections = args.only or ["pruning", "distillation", "qat", "backends"]
    started = time.perf_counter()
    if "pruning" in sections:
        pruning(seeds, args.epochs)
    if "distillation" in sections:
        distillation(seeds, args.epochs)
    if "qat" in sections:
        qat(seeds, args.epochs)
    if "backends" in sections:
        backends(not args.skip_compile)
    print(f"\n{time.perf_counter() - started:.0f} s; torch {torch.__version__}")


if __name__ == "__main__":
    main()
