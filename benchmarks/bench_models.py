"""What ``nbopt.compress.optimize`` gains on the architectures users bring (the zoo in
``benchmarks/_zoo.py``, built from configurations with random weights, nothing downloaded).

For each model and recipe it prints the status (``ok``, or ``n/a`` with the reason: the one
error line ``optimize`` gave, or why the recipe does not apply) and the ratios optimised /
original of serialized size, MACs, latency and the metric (agreement with the original's
outputs on a fixed batch: top-1 for classifiers and language models, cosine for encoders,
forecasts and scores). Latency is the median, over ``--repeats`` side-by-side measurements in
this one run, of the ratio of the two models' median call times on the example (the two are
called in turn, round after round, so that load from other processes hits both alike); the
spread (lowest-highest of those ratios) follows it. The ``auto`` rows are
``optimize_auto``'s choice (``target=latency``, the metric within 1% of the original's, 20
trials), with the plan it chose.

Goals: no row aborts; BERT int8 size <= 0.30; BERT auto latency <= 0.8 within the tolerance;
ResNet-18 structured prune 0.5 latency <= 0.5; the LSTM forecaster shows no slowdown that its
notes do not explain.

One torch thread by default (two OpenMP threads on a shared machine wait on each other).

    python benchmarks/bench_models.py [--models bert,resnet18] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from _zoo import BUILDERS, ZooModel, build
from torch import nn

from nbopt.compress import optimize, optimize_auto
from nbopt.compress._measure import measure_latency
from nbopt.errors import ConfigError

RECIPES: dict[str, dict[str, Any]] = {
    "prune 0.5": {"prune": 0.5},
    "int8": {"quant": "int8"},
    "int8-static": {"quant": "int8-static"},
    "prune 0.5 + int8": {"prune": 0.5, "quant": "int8"},
    "auto": {"target": "latency", "tolerable_loss": 0.01, "max_trials": 20, "seed": 0},
}
# A note that says why a model got slower.
_EXPLAINS_SPEED = ("not faster", "slower", "no fast", "not the latency", "faster only")


@dataclass
class Row:
    model: str
    recipe: str
    status: str
    size: float | None = None
    macs: float | None = None
    latency: list[float] = field(default_factory=list)
    metric: float | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def latency_median(self) -> float | None:
        return statistics.median(self.latency) if self.latency else None


def applies(entry: ZooModel, recipe: str) -> str | None:
    """Why ``recipe`` does not apply to ``entry``'s model, or None."""
    if recipe == "int8-static" and not any(
        isinstance(m, nn.modules.conv._ConvNd) for m in entry.model.modules()
    ):
        return "no convolution: static int8 is for convolutional models; int8 covers the rest"
    return None


def run(entry: ZooModel, recipe: str, repeats: int, seconds: float) -> Row:
    reason = applies(entry, recipe)
    if reason is not None:
        return Row(entry.name, recipe, f"n/a: {reason}")
    options = dict(RECIPES[recipe])
    if options.get("quant") == "int8-static":
        options["calib"] = entry.calib
    started = time.perf_counter()
    engine = optimize_auto if recipe == "auto" else optimize
    try:
        result = engine(
            entry.model,
            example=entry.example,
            evaluate=entry.metric,
            progress="none",
            logdir=None,
            **options,
        )
    except ConfigError as error:
        return Row(entry.name, recipe, f"n/a: {error}", seconds=time.perf_counter() - started)
    if recipe == "auto":
        return _auto_row(entry, result, repeats, seconds, started)
    report = result.report
    ratios = []
    for _ in range(repeats):
        before, after = measure_latency(
            [entry.model, result.model], entry.example, min_seconds=seconds
        )
        ratios.append(after / before)
    return Row(
        entry.name,
        recipe,
        "ok",
        report["size_bytes"].ratio,
        report["macs"].ratio,
        ratios,
        report["metric"].ratio,
        time.perf_counter() - started,
        list(result.notes),
    )


def _auto_row(entry: ZooModel, result: Any, repeats: int, seconds: float, started: float) -> Row:
    """The chosen plan's ratios: size and MACs as the search measured them, latency measured
    again here side by side, the metric against the original's."""
    chosen = result.chosen
    ratios = [
        after / before
        for before, after in (
            measure_latency([entry.model, result.model], entry.example, min_seconds=seconds)
            for _ in range(repeats)
        )
    ]
    baseline = result.tolerance.baseline
    within = "within" if chosen.within else "OUTSIDE"
    return Row(
        entry.name,
        "auto",
        f"ok: {chosen.plan.label()} ({within} the tolerance)",
        chosen.ratios.get("size"),
        chosen.ratios.get("macs"),
        ratios,
        None if chosen.metric is None or not baseline else chosen.metric / baseline,
        time.perf_counter() - started,
        list(result.notes),
    )


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


_HEADER = (
    f"{'model':<20} {'recipe':<17} {'size':>6} {'MACs':>6} {'latency (spread)':>20} "
    f"{'metric':>7}  status"
)


def print_row(row: Row) -> None:
    latency = "-"
    if row.latency:
        latency = f"{row.latency_median:.3f} ({min(row.latency):.2f}-{max(row.latency):.2f})"
    print(
        f"{row.model:<20} {row.recipe:<17} {_cell(row.size):>6} {_cell(row.macs):>6} "
        f"{latency:>20} {_cell(row.metric):>7}  {row.status}"
        + (f" [{row.seconds:.0f} s]" if row.status.startswith("ok") else ""),
        flush=True,
    )


def print_slowdowns(rows: list[Row]) -> None:
    slower = [r for r in rows if r.latency and r.latency_median > 1.05]
    if slower:
        print("\nslower than the original, and what the report says about it:")
        for row in slower:
            said = [n for n in row.notes if any(word in n for word in _EXPLAINS_SPEED)]
            print(f"  {row.model} / {row.recipe}: " + ("; ".join(said) or "NOT EXPLAINED"))


def goals(rows: list[Row]) -> None:
    def find(model: str, recipe: str) -> Row | None:
        return next((r for r in rows if r.model == model and r.recipe == recipe), None)

    print("\ngoals")
    aborted = [r for r in rows if not r.status.startswith(("ok", "n/a"))]
    print(f"  {'no row aborts':<55} {'met' if not aborted else 'MISSED'}")
    checks = [
        ("bert int8 size ratio <= 0.30", find("bert", "int8"), "size", 0.30),
        ("bert auto latency ratio <= 0.8 within tolerance", find("bert", "auto"), "latency", 0.8),
        ("resnet18 prune 0.5 latency ratio <= 0.5", find("resnet18", "prune 0.5"), "latency", 0.5),
    ]
    for label, row, quantity, limit in checks:
        if row is None or not row.status.startswith("ok"):
            continue
        if "OUTSIDE" in row.status:
            print(f"  {label:<55} MISSED: the chosen plan is outside the tolerance")
            continue
        value = row.latency_median if quantity == "latency" else getattr(row, quantity)
        print(f"  {label:<55} {value:6.3f}  {'met' if value <= limit else 'MISSED'}")
    lstm = [r for r in rows if r.model == "lstm" and r.latency]
    if lstm:
        unexplained = [
            r
            for r in lstm
            if r.latency_median > 1.05
            and not any(word in n for n in r.notes for word in _EXPLAINS_SPEED)
        ]
        print(
            f"  {'lstm: no unexplained slowdown':<55} "
            f"{'met' if not unexplained else 'MISSED: ' + ', '.join(r.recipe for r in unexplained)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(BUILDERS), help="comma-separated zoo names")
    parser.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated recipes")
    parser.add_argument("--repeats", type=int, default=3, help="latency measurements per row")
    parser.add_argument("--seconds", type=float, default=0.5, help="time per latency pair")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--size", default="bench", choices=("bench", "test"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print("ratios are optimised/original, measured side by side in this run\n")
    print(_HEADER)
    print("-" * len(_HEADER))
    rows = []
    for name in args.models.split(","):
        entry = build(name, args.size)
        for recipe in args.recipes.split(","):
            rows.append(run(entry, recipe, args.repeats, args.seconds))
            print_row(rows[-1])
    print_slowdowns(rows)
    goals(rows)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
