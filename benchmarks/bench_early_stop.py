"""Early stopping: epochs spent and best accuracy, with and without ``stop=``, side by side.

Tunes the digits MLP (learning rate, width, depth, weight decay) for a fixed number of trials
of a fixed number of epochs, each reporting its validation error after every epoch, with
``stop=none``, ``stop=median`` and ``stop=asha`` on the same seeds. Prints, per rule, the total
epochs trained as a ratio of ``stop=none``'s and the best validation accuracy (goal: at most
half the epochs for a best accuracy within 0.5 points).

With ``--several``, two objectives: validation error and parameter count, both minimised,
every epoch reporting both; ``median`` is then the dominance rule and ``asha`` halves by
fronts (see :mod:`nbopt.tuning._front_stopping`). Prints, per rule, the epochs as a ratio of
``stop=none``'s and the hypervolume of the front as a ratio of its (goal: at most 0.6 of the
epochs for at least 0.98 of the hypervolume), per seed and their median.

    python benchmarks/bench_early_stop.py [--trials 30] [--epochs 20] [--seeds 3] [--several]
"""

from __future__ import annotations

import argparse
import statistics
import time

from _digits import make_mlp, train_mlp

import nbopt
from nbopt.tuning._objectives import hypervolume

SPACE = {
    "lr": nbopt.loguniform(1e-4, 3e-1),
    "width": nbopt.choice(16, 32, 64, 128),
    "depth": nbopt.choice(1, 2),
    "weight_decay": nbopt.loguniform(1e-6, 1e-1),
}
# Each rule with nbopt's defaults (median: stop_warmup=0, stop_min_trials=5; asha: rung=1).
RULES = {"none": {}, "median": {"stop": "median"}, "asha": {"stop": "asha"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--algo", default="auto", help="the search algorithm (default: auto)")
    parser.add_argument(
        "--several", action="store_true", help="two objectives: error and parameter count"
    )
    args = parser.parse_args()
    if args.several:
        several_objectives(args)
        return

    def objective(lr, width, depth, weight_decay):
        return train_mlp(lr, width, depth, weight_decay, epochs=args.epochs)

    print(
        f"digits MLP, {args.trials} trials x {args.epochs} epochs, algo={args.algo}, "
        f"{args.seeds} seeds; settings: {RULES}"
    )
    epochs = {rule: [] for rule in RULES}
    best = {rule: [] for rule in RULES}
    seconds = {rule: [] for rule in RULES}
    for seed in range(args.seeds):
        for rule, options in RULES.items():
            start = time.perf_counter()
            result = nbopt.tune(
                objective,
                SPACE,
                max_evals=args.trials,
                seed=seed,
                algo=args.algo,
                progress="none",
                logdir=None,
                **options,
            )
            seconds[rule].append(time.perf_counter() - start)
            epochs[rule].append(sum(len(t.intermediate) for t in result.trials))
            best[rule].append(1.0 - result.best_value)
    base_epochs = sum(epochs["none"])
    base_seconds = sum(seconds["none"])
    print(
        f"{'rule':<8}{'epochs':>8}{'ratio':>8}{'time ratio':>12}{'best acc (mean)':>17}"
        f"{'diff (points)':>15}  per seed"
    )
    for rule in RULES:
        accuracy = statistics.mean(best[rule])
        diff = 100 * (accuracy - statistics.mean(best["none"]))
        print(
            f"{rule:<8}{sum(epochs[rule]):>8}{sum(epochs[rule]) / base_epochs:>8.2f}"
            f"{sum(seconds[rule]) / base_seconds:>12.2f}{100 * accuracy:>16.2f}%{diff:>+15.2f}"
            f"  {[round(100 * a, 2) for a in best[rule]]}"
        )


def parameter_count(width: int, depth: int) -> int:
    return sum(p.numel() for p in make_mlp(width, depth).parameters())


# The hypervolumes' reference points: one parameter more than the largest MLP, and an error
# of 1 (every model counts) or of 0.1 (only models that learnt the task count, so that the
# volume tells apart the accuracies that matter).
_LARGEST = parameter_count(128, 2) + 1.0
REFERENCES = {"error 1": (1.0, _LARGEST), "error 0.1": (0.1, _LARGEST)}


def several_objectives(args: argparse.Namespace) -> None:
    def objective(lr, width, depth, weight_decay):
        params = parameter_count(width, depth)
        metrics = {"params": float(params)}
        error = train_mlp(lr, width, depth, weight_decay, epochs=args.epochs, metrics=metrics)
        return {"val_error": error, "params": params}

    print(
        f"digits MLP, val_error and params (both min), {args.trials} trials x {args.epochs} "
        f"epochs, algo={args.algo}, {args.seeds} seeds; settings: {RULES}; hypervolume "
        f"references {REFERENCES}"
    )
    epochs: dict[str, list[int]] = {rule: [] for rule in RULES}
    volume: dict[tuple[str, str], list[float]] = {(r, ref): [] for r in RULES for ref in REFERENCES}
    for seed in range(args.seeds):
        for rule, options in RULES.items():
            result = nbopt.tune(
                objective,
                SPACE,
                metric=["val_error", "params"],
                mode="min",
                max_evals=args.trials,
                seed=seed,
                algo=args.algo,
                progress="none",
                logdir=None,
                **options,
            )
            epochs[rule].append(sum(len(t.intermediate) for t in result.trials))
            front = [(t.value, t.metrics["params"]) for t in result.front]
            for ref, point in REFERENCES.items():
                volume[rule, ref].append(hypervolume(front, point))
    print("median [range] over seeds of the ratio to stop=none")
    print("| rule | epochs | " + " | ".join(f"hypervolume ({r})" for r in REFERENCES) + " |")
    print("|---" * (2 + len(REFERENCES)) + "|")
    for rule in RULES:
        cells = [_ratios(epochs[rule], epochs["none"], 2)]
        cells += [_ratios(volume[rule, r], volume["none", r], 3) for r in REFERENCES]
        print(f"| {rule} | " + " | ".join(cells) + " |")


def _ratios(values: list[float], baseline: list[float], digits: int) -> str:
    """The median of the per-seed ratios, and their range."""
    ratios = [v / b if b else float("nan") for v, b in zip(values, baseline, strict=True)]
    return (
        f"{statistics.median(ratios):.{digits}f} "
        f"[{min(ratios):.{digits}f}, {max(ratios):.{digits}f}]"
    )


if __name__ == "__main__":
    main()
