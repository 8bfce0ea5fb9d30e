"""Overhead of ``nbopt.tune`` over bare ``hyperopt.fmin``, measured side by side.

200 trials of a 5 ms objective (a busy loop: it holds the CPU and the GIL for exactly that long,
so the objective itself adds no noise), same algorithm and seed, with nbopt's text progress and
TensorBoard logging on. Runs alternate between the two so that machine noise hits both; the
printed figure is the ratio of median wall times (goal: at most 1.10).

    python benchmarks/bench_tune_overhead.py [--trials 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time

import numpy as np
from hyperopt import anneal, fmin, hp, rand, tpe

import nbopt

OBJECTIVE_SECONDS = 0.005


def objective(params):
    end = time.perf_counter() + OBJECTIVE_SECONDS
    while time.perf_counter() < end:
        pass
    return (params["x"] - 0.3) ** 2 + 0.1 * params["layers"] + params["lr"]


def run_fmin(objective, algo, trials: int, seed: int) -> float:
    space = {
        "x": hp.uniform("x", -2, 2),
        "layers": hp.choice("layers", [1, 2, 3]),
        "lr": hp.loguniform("lr", np.log(1e-4), np.log(1e-1)),
    }
    start = time.perf_counter()
    fmin(
        objective,
        space,
        algo=algo.suggest,
        max_evals=trials,
        rstate=np.random.default_rng(seed),
        show_progressbar=False,
    )
    return time.perf_counter() - start


def run_nbopt(objective, algo: str, trials: int, seed: int, logdir: str) -> float:
    space = {
        "x": nbopt.uniform(-2, 2),
        "layers": nbopt.choice(1, 2, 3),
        "lr": nbopt.loguniform(1e-4, 1e-1),
    }
    sink = io.StringIO()  # the text progress is formatted and written, just not to the terminal
    from nbopt.ui.text import TextReporter

    start = time.perf_counter()
    nbopt.tune(
        objective,
        space,
        algo=algo,
        max_evals=trials,
        seed=seed,
        progress="none",
        logdir=logdir,
        callbacks=[TextReporter(stream=sink)],
    )
    elapsed = time.perf_counter() - start
    assert sink.getvalue().count("\n") > 2
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(
        f"objective: {1000 * OBJECTIVE_SECONDS:.0f} ms per call; "
        f"{args.trials} trials x {args.repeats} repeats, alternating"
    )
    print(f"{'algo':<8}{'fmin s':>9}{'nbopt s':>9}{'ratio':>8}")
    with tempfile.TemporaryDirectory() as logdir:
        run_nbopt(objective, "tpe", 5, 0, logdir)  # warm-up: imports, first file writes
        run_fmin(objective, tpe, 5, 0)
        for name, algo in (("tpe", tpe), ("rand", rand), ("anneal", anneal)):
            bare, ours = [], []
            for repeat in range(args.repeats):
                bare.append(run_fmin(objective, algo, args.trials, repeat))
                ours.append(run_nbopt(objective, name, args.trials, repeat, logdir))
            ratio = statistics.median(ours) / statistics.median(bare)
            print(
                f"{name:<8}{statistics.median(bare):>9.2f}{statistics.median(ours):>9.2f}"
                f"{ratio:>8.3f}"
            )


if __name__ == "__main__":
    main()
