"""Early stopping: epochs spent and best accuracy, with and without ``stop=``, side by side.

Tunes the digits MLP (learning rate, width, depth, weight decay) for a fixed number of trials
of a fixed number of epochs, each reporting its validation error after every epoch, with
``stop=none``, ``stop=median`` and ``stop=asha`` on the same seeds. Prints, per rule, the total
epochs trained as a ratio of ``stop=none``'s and the best validation accuracy (goal: at most
half the epochs for a best accuracy within 0.5 points).

    python benchmarks/bench_early_stop.py [--trials 30] [--epochs 20] [--seeds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

from _digits import train_mlp

import nbopt

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
    args = parser.parse_args()

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


if __name__ == "__main__":
    main()
