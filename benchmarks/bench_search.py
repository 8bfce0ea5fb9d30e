"""Search quality: nbopt's ``algo=auto`` against Hyperopt and Optuna, side by side.

Every algorithm minimises the same problems (``_problems.py``: Branin, Hartmann6, a mixed
discrete/continuous function with a conditional choice, a small discrete space, and the digits
MLP) on the same paired seeds. nbopt's algorithms run through ``nbopt.tune`` (progress off, no
logs) with their budget as ``max_evals``; Hyperopt's ``tpe``/``rand``/``anneal`` run through
Hyperopt's own ``fmin`` and Optuna's default ``TPESampler`` through ``study.optimize``, once at
the largest budget (their proposals do not depend on the budget, so a shorter budget is a
prefix of that run). Printed per problem and budget: the median and interquartile range of the
regret (best value found minus the optimum; for the MLP, the best validation error), the win
rate against Optuna's TPE on paired seeds (ties count half), the evaluations needed to reach a
threshold (median over seeds; ``>N`` when most seeds never reach it), and the share of
evaluations that tried a configuration not tried before. Seeds: 25 per problem, 20 for the
MLP; budgets 25, 50 and 100 evaluations, 30 for the MLP. Then the time nbopt's search spends
between two trials (suggestion and bookkeeping) over 200 trials, with ``auto`` and ``tpe``,
measured in this process after the searches.

    python benchmarks/bench_search.py --jobs 2                 # everything (long)
    python benchmarks/bench_search.py --quick                  # 5 seeds, Branin and mixed
    python benchmarks/bench_search.py --problems branin --seeds 25 --jobs 2 --save runs.json

Needs Optuna (``pip install "nbopt[bench]"``) and scikit-learn.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from _problems import PROBLEMS, Problem

import nbopt

ALGOS = ("rand", "hyperopt-tpe", "hyperopt-anneal", "optuna-tpe", "auto")
NBOPT_ALGOS = {"auto": "auto", "nbopt-tpe": "tpe"}  # run through nbopt.tune, at each budget
BASELINE = "optuna-tpe"
BUDGETS = {"mlp": (30,)}
DEFAULT_BUDGETS = (25, 50, 100)
SEEDS = {"mlp": 20}
DEFAULT_SEEDS = 25


class Recorder:
    """The objective as every framework calls it, keeping each configuration and its value."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.values: list[float] = []
        self.keys: list[str] = []

    def __call__(self, params: dict[str, Any]) -> float:
        value = float(self.problem.objective(params))
        self.values.append(value)
        self.keys.append(json.dumps(params, sort_keys=True, default=float))
        return value


def run(problem_name: str, algo: str, seed: int, budget: int) -> dict[str, Any]:
    """One search; returns the values and configurations it evaluated, in order."""
    problem = PROBLEMS[problem_name]
    recorder = Recorder(problem)
    if algo in NBOPT_ALGOS:
        nbopt.tune(
            recorder,
            problem.space,
            algo=NBOPT_ALGOS[algo],
            max_evals=budget,
            seed=seed,
            progress="none",
            logdir=None,
        )
    elif algo == "optuna-tpe":
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
        study.optimize(lambda trial: recorder(problem.optuna_params(trial)), n_trials=budget)
    else:
        from hyperopt import Trials, anneal, fmin, rand, tpe

        from nbopt.space import to_hyperopt

        suggest = {"rand": rand, "hyperopt-tpe": tpe, "hyperopt-anneal": anneal}[algo].suggest
        fmin(
            recorder,
            to_hyperopt(problem.space),
            algo=suggest,
            max_evals=budget,
            trials=Trials(),
            rstate=np.random.default_rng(seed),
            show_progressbar=False,
        )
    return {
        "problem": problem_name,
        "algo": algo,
        "seed": seed,
        "budget": budget,
        "values": recorder.values,
        "keys": recorder.keys,
    }


def tasks_for(problems: list[str], algos: list[str], seeds: dict[str, int]) -> list[tuple]:
    tasks = []
    for name in problems:
        budgets = BUDGETS.get(name, DEFAULT_BUDGETS)
        for algo in algos:
            runs = budgets if algo in NBOPT_ALGOS else (max(budgets),)
            for seed in range(seeds[name]):
                tasks.extend((name, algo, seed, budget) for budget in runs)
    return tasks


def run_all(tasks: list[tuple], jobs: int) -> list[dict[str, Any]]:
    # The MLP's and the longest runs first, so that parallel workers finish together.
    tasks = sorted(tasks, key=lambda t: (t[0] != "mlp", -t[3]))
    if jobs == 1:
        return [run(*task) for task in tasks]
    # Spawned, not forked: a fork of a process that ran torch can hang in its thread pools.
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as ex:
        return list(ex.map(run, *zip(*tasks, strict=True), chunksize=1))


def _regret(problem: Problem, values: list[float]) -> float:
    best = min(values)
    return best if problem.optimum is None else best - problem.optimum


def _runs_at(results: dict, name: str, algo: str, budget: int) -> dict[int, list[float]]:
    """seed -> values of the first ``budget`` evaluations of ``algo`` on ``name``."""
    runs: dict[int, list[float]] = {}
    for (problem, run_algo, seed, run_budget), values in results.items():
        if problem != name or run_algo != algo:
            continue
        exact = algo in NBOPT_ALGOS
        if (exact and run_budget == budget) or (not exact and run_budget >= budget):
            runs[seed] = values[:budget]
    return runs


def _cell(samples: list[float]) -> str:
    q25, q50, q75 = np.percentile(samples, [25, 50, 75])
    return f"{q50:.3g} [{q25:.3g}, {q75:.3g}]"


def _evals_to(problem: Problem, values: list[float]) -> float:
    for index, best in enumerate(np.minimum.accumulate(values)):
        regret = best if problem.optimum is None else best - problem.optimum
        if regret <= problem.threshold:
            return index + 1
    return math.inf


def report(results: dict, raw: list[dict[str, Any]], problems: list[str], algos: list[str]):
    for name in problems:
        problem = PROBLEMS[name]
        budgets = BUDGETS.get(name, DEFAULT_BUDGETS)
        what = "best validation error" if problem.optimum is None else "regret"
        print(f"\n### {name}: median [IQR] {what}; win rate vs {BASELINE}\n")
        print("| evals | " + " | ".join(algos) + " |")
        print("| --- " * (len(algos) + 1) + "|")
        for budget in budgets:
            base = _runs_at(results, name, BASELINE, budget)
            cells, wins = [], []
            for algo in algos:
                runs = _runs_at(results, name, algo, budget)
                regrets = {seed: _regret(problem, v) for seed, v in runs.items()}
                cells.append(_cell(list(regrets.values())) if regrets else "-")
                paired = [(regrets[s], _regret(problem, base[s])) for s in regrets if s in base]
                score = [1.0 if a < b else 0.5 if a == b else 0.0 for a, b in paired]
                wins.append(f"{np.mean(score):.2f}" if score and algo != BASELINE else "-")
            print(f"| {budget} | " + " | ".join(cells) + " |")
            print(f"| {budget}: wins | " + " | ".join(wins) + " |")
        top = max(budgets)
        reach, unique = [], []
        for algo in algos:
            runs = _runs_at(results, name, algo, top)
            counts = [_evals_to(problem, v) for v in runs.values()]
            median = float(np.median(counts)) if counts else math.nan
            hits = sum(math.isfinite(c) for c in counts)
            shown = f">{top}" if math.isinf(median) else f"{median:.0f}"
            reach.append(f"{shown} ({hits}/{len(counts)})")
            keys = [
                r["keys"]
                for r in raw
                if (r["problem"], r["algo"], r["budget"]) == (name, algo, top)
            ]
            unique.append(f"{np.mean([len(set(k)) / len(k) for k in keys]):.0%}" if keys else "-")
        kind = "validation error" if problem.optimum is None else "regret"
        print(
            f"| evals to {kind} <= {problem.threshold:g} (seeds reaching) | "
            + " | ".join(reach)
            + " |"
        )
        print(f"| unique configurations at {top} | " + " | ".join(unique) + " |")


def suggestion_times(trials: int) -> None:
    """Seconds between one trial's end and the next one's start, inside nbopt.tune."""
    from nbopt.tuning.events import TrialFinished, TrialStarted

    print(f"\n### time between trials (suggestion + bookkeeping), {trials} trials, ms\n")
    print("| problem | algo | mean | last 50 trials | max |")
    print("| --- | --- | --- | --- | --- |")
    for name in ("hartmann6", "mixed"):
        problem = PROBLEMS[name]
        for algo in ("auto", "tpe"):
            gaps: list[float] = []
            clock = [time.perf_counter()]

            def on_event(event: Any, gaps=gaps, clock=clock) -> None:
                if isinstance(event, TrialStarted):
                    gaps.append(time.perf_counter() - clock[0])
                elif isinstance(event, TrialFinished):
                    clock[0] = time.perf_counter()

            nbopt.tune(
                problem.objective,
                problem.space,
                algo=algo,
                max_evals=trials,
                seed=0,
                progress="none",
                logdir=None,
                callbacks=[on_event],
            )
            ms = 1000 * np.asarray(gaps[1:])
            print(f"| {name} | {algo} | {ms.mean():.1f} | {ms[-50:].mean():.1f} | {ms.max():.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", choices=list(PROBLEMS), default=list(PROBLEMS))
    parser.add_argument("--algos", nargs="+", choices=[*ALGOS, "nbopt-tpe"], default=list(ALGOS))
    parser.add_argument("--seeds", type=int, help="seeds per problem (default 25; MLP 20)")
    parser.add_argument("--jobs", type=int, default=1, help="parallel worker processes")
    parser.add_argument("--quick", action="store_true", help="5 seeds of Branin and mixed")
    parser.add_argument("--save", type=Path, help="write every run's evaluations as JSON")
    parser.add_argument("--load", type=Path, help="reuse the runs of an earlier --save")
    parser.add_argument("--timing-trials", type=int, default=200)
    parser.add_argument("--no-timing", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.problems = [p for p in args.problems if p in ("branin", "mixed")]
        args.seeds = args.seeds or 5
    seeds = {name: args.seeds or SEEDS.get(name, DEFAULT_SEEDS) for name in args.problems}
    algos = args.algos if BASELINE in args.algos else [*args.algos, BASELINE]

    raw: list[dict[str, Any]] = json.loads(args.load.read_text()) if args.load else []
    done = {(r["problem"], r["algo"], r["seed"], r["budget"]) for r in raw}
    tasks = [task for task in tasks_for(args.problems, algos, seeds) if task not in done]
    print(f"{len(tasks)} searches ({len(done)} loaded), {args.jobs} processes", file=sys.stderr)
    start = time.perf_counter()
    raw += run_all(tasks, args.jobs)
    print(f"searched in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    if args.save:
        args.save.write_text(json.dumps(raw))
    wanted = {(name, seed) for name in args.problems for seed in range(seeds[name])}
    raw = [r for r in raw if (r["problem"], r["seed"]) in wanted and r["algo"] in algos]
    results = {(r["problem"], r["algo"], r["seed"], r["budget"]): r["values"] for r in raw}
    print(f"seeds: {seeds}")
    report(results, raw, args.problems, algos)
    if not args.no_timing:
        suggestion_times(args.timing_trials)


if __name__ == "__main__":
    main()
