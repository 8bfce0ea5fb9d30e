"""What-if model calibration: leave-one-out predictions at every tried configuration.

For each problem of ``_problems.py`` chosen, each algorithm and each seed, a search of
``--trials`` evaluations runs through ``nbopt.tune``. Then, for every usable trial in turn, the
what-if model (``TuneResult.model()``: the GP refitted from scratch) is fitted on all the
other trials and predicts the left-out configuration; ``z`` is the trial's value minus the
predicted mean, over the predicted standard deviation (of a new trial's value). Printed per
problem and algorithm, pooled over seeds: the share of trials within one standard deviation
(the band the explorer draws; a calibrated Gaussian holds 68% there), within 1.645 (90%) and
two (95%), the median |z|, and the median over trials of the absolute error relative to the
spread of the values (the error's size, whatever the band). Each line gives the share's range
over seeds.

    python benchmarks/bench_whatif.py                        # 5 problems, 3 algorithms, 3 seeds
    python benchmarks/bench_whatif.py --problems branin --seeds 1 --trials 20   # quick
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
from _problems import PROBLEMS

import nbopt
from nbopt.tuning import TuneResult

DEFAULT_PROBLEMS = ("branin", "hartmann6", "mixed", "logscale", "mixedint")
BANDS = (1.0, 1.645, 2.0)


def leave_one_out(name: str, algo: str, seed: int, trials: int) -> dict[str, Any]:
    """z-scores and relative errors of every usable trial of one search, left out in turn."""
    problem = PROBLEMS[name]
    result = nbopt.tune(
        problem.objective,
        problem.space,
        algo=algo,
        max_evals=trials,
        seed=seed,
        progress="none",
        logdir=None,
    )
    usable = [t for t in result.trials if t.usable]
    spread = float(np.std([t.value for t in usable]))
    zs, errors = [], []
    for i, trial in enumerate(usable):
        rest = usable[:i] + usable[i + 1 :]
        held = TuneResult(rest, result.metric, "min", "done", space=problem.space)
        mean, sd = held.model().predict_vals(trial.vals)
        zs.append((trial.value - mean) / sd)
        errors.append(abs(trial.value - mean) / spread)
    return {"z": zs, "error": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", choices=list(PROBLEMS), default=DEFAULT_PROBLEMS)
    parser.add_argument("--algos", nargs="+", default=["auto", "tpe", "rand"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=40)
    args = parser.parse_args()
    start = time.perf_counter()
    print(f"{args.trials} trials per search, {args.seeds} seeds, leave-one-out over the trials\n")
    header = " | ".join(f"within {b:g} sd [seeds]" for b in BANDS)
    print(f"| problem | algo | {header} | median abs z | median error / spread |")
    print("| --- " * (5 + len(BANDS) - 1) + "|")
    pooled: list[float] = []
    for name in args.problems:
        for algo in args.algos:
            runs = [leave_one_out(name, algo, seed, args.trials) for seed in range(args.seeds)]
            z = np.abs(np.concatenate([r["z"] for r in runs]))
            pooled.extend(z)
            cells = []
            for band in BANDS:
                shares = [float(np.mean(np.abs(r["z"]) <= band)) for r in runs]
                cells.append(f"{np.mean(z <= band):.0%} [{min(shares):.0%}, {max(shares):.0%}]")
            error = np.median(np.concatenate([r["error"] for r in runs]))
            print(
                f"| {name} | {algo} | " + " | ".join(cells) + f" | {np.median(z):.2f} | "
                f"{error:.3f} |"
            )
    pooled_z = np.asarray(pooled)
    print(
        "\nall trials: "
        + ", ".join(f"{np.mean(pooled_z <= b):.1%} within {b:g} sd" for b in BANDS)
        + f" ({len(pooled_z)} predictions, {time.perf_counter() - start:.0f} s)"
    )


if __name__ == "__main__":
    main()
