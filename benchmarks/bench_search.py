"""Search quality: nbopt's ``algo=auto`` against Hyperopt and Optuna, side by side.

Every algorithm minimises the same problems (``_problems.py``: Branin, Hartmann6, a mixed
discrete/continuous function with a conditional choice, a small discrete space, the digits MLP,
and problems nbopt was not tuned on: Ackley, Levy, Rastrigin, Styblinski-Tang, Hartmann6 among
14 inert parameters, a log-scaled and a mixed integer/categorical one) on the same paired seeds.
nbopt's algorithms run through ``nbopt.tune`` (progress off, no logs) with their budget as
``max_evals``; Hyperopt's ``tpe``/``rand``/``anneal`` run through Hyperopt's own ``fmin``, and
Optuna's default ``TPESampler`` and its ``GPSampler`` (the anchors) through ``study.optimize``,
once at the largest budget (their proposals do not depend on the budget, so a shorter budget is
a prefix of that run). Optuna's GPSampler models only the parameters every trial has: it samples
a conditional parameter (``mixed``'s momentum and beta) at random.

Printed per problem and budget: the median and interquartile range of the regret (best value
found minus the optimum; for the MLP, the best validation error), the win rate against each
anchor on paired seeds (ties count half), the evaluations needed to reach a threshold (median
over seeds; ``>N`` when most seeds never reach it), the share of evaluations that tried a
configuration not tried before, and the time per suggestion: the mean time from the end of one
evaluation to the start of the next (the suggestion and the framework's bookkeeping), in CPU
time of the search's process and on the wall clock, median over seeds, and the CPU time's ratio
to ``optuna-gp``'s. CPU time is what a shared machine's load disturbs least; runs loaded from
an earlier ``--save`` were timed under that run's load. A last table checks the goal:
``auto``'s median regret at most the anchors' at every budget. Then auto's and GPSampler's time
per suggestion measured side by side in this process: on a few problems, three times (seeds
0-2), each time both methods one after the other; the median ratio and its range. Each search
is one process on one core (BLAS and OpenMP limited to one thread). Seeds: 25; budgets 30, 50
and 100 evaluations.

    python benchmarks/bench_search.py --jobs 2 --save runs.json   # everything (hours)
    python benchmarks/bench_search.py --quick                     # 5 seeds, Branin and mixed
    python benchmarks/bench_search.py --load runs.json --algos auto optuna-gp optuna-tpe

``--load`` reuses the runs of an earlier ``--save`` and runs only what is missing; ``--rerun``
names algorithms whose loaded runs are dropped and run again (``auto`` after a change to it).
Needs Optuna and torch (``pip install "nbopt[bench]"``) and scikit-learn.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from _problems import PROBLEMS, Problem

import nbopt

ALGOS = ("rand", "hyperopt-tpe", "hyperopt-anneal", "optuna-tpe", "optuna-gp", "auto")
NBOPT_ALGOS = {"auto": "auto", "nbopt-tpe": "tpe"}  # run through nbopt.tune, at each budget
ANCHORS = ("optuna-gp", "optuna-tpe")
BUDGETS = (30, 50, 100)
SEEDS = 25
TIMING_PROBLEMS = ("branin", "hartmann6", "levy10", "mixedint")


class Recorder:
    """The objective as every framework calls it, keeping each configuration, its value, and
    when each evaluation started and ended (wall-clock and this process's CPU time)."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.values: list[float] = []
        self.keys: list[str] = []
        self.starts: list[tuple[float, float]] = []
        self.ends: list[tuple[float, float]] = []

    def __call__(self, params: dict[str, Any]) -> float:
        self.starts.append((time.perf_counter(), time.process_time()))
        value = float(self.problem.objective(params))
        self.values.append(value)
        self.keys.append(json.dumps(params, sort_keys=True, default=float))
        self.ends.append((time.perf_counter(), time.process_time()))
        return value

    def gaps(self, clock: int) -> list[float]:
        """Seconds between the end of each evaluation and the start of the next, on the wall
        clock (``clock=0``) or in CPU time (``clock=1``)."""
        return [
            start[clock] - end[clock]
            for start, end in zip(self.starts[1:], self.ends, strict=False)
        ]


@functools.cache
def _import_everything() -> None:
    """Import what the methods import lazily (torch for Optuna's GP, SciPy's QMC for auto), so
    that no run's time per suggestion includes the first import."""
    import optuna._gp.acqf  # noqa: F401
    import scipy.stats.qmc  # noqa: F401
    import torch  # noqa: F401


def run(problem_name: str, algo: str, seed: int, budget: int) -> dict[str, Any]:
    """One search; returns the values and configurations it evaluated, in order."""
    _import_everything()
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
    elif algo.startswith("optuna-"):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        sampler = (
            optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False)
            if algo == "optuna-gp"
            else optuna.samplers.TPESampler(seed=seed)
        )
        study = optuna.create_study(sampler=sampler)
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
        "gaps": recorder.gaps(0),
        "cpu_gaps": recorder.gaps(1),
    }


def tasks_for(problems: list[str], algos: list[str], seeds: int) -> list[tuple]:
    tasks = []
    for name in problems:
        for algo in algos:
            runs = BUDGETS if algo in NBOPT_ALGOS else (max(BUDGETS),)
            for seed in range(seeds):
                tasks.extend((name, algo, seed, budget) for budget in runs)
    return tasks


def searches(jobs: int) -> ProcessPoolExecutor:
    """Worker processes for the searches, each with one thread for BLAS, OpenMP and torch.

    One search per core: the methods' small matrix products gain nothing from threads that wait
    for each other (Optuna's GPSampler recommends the same), and a thread pool spinning beside
    the search would inflate its time. The variables must be set before a process loads those
    libraries, hence new processes (spawned, not forked: a fork of a process that ran torch can
    hang in its thread pools).
    """
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"
    return ProcessPoolExecutor(jobs, mp_context=get_context("spawn"))


def run_all(tasks: list[tuple], jobs: int, save: Callable[[list], None]) -> list[dict[str, Any]]:
    """Every task's run; ``save`` gets the runs done so far every minute and at the end."""
    # The MLP's, Optuna's GP and the longest runs first, so that workers finish together.
    tasks = sorted(tasks, key=lambda t: (t[0] != "mlp", t[1] != "optuna-gp", -t[3]))
    done: list[dict[str, Any]] = []
    saved = time.perf_counter()
    with searches(jobs) as pool:
        for record in pool.map(run, *zip(*tasks, strict=True), chunksize=1):
            done.append(record)
            if time.perf_counter() - saved > 60:
                save(done)
                saved = time.perf_counter()
    save(done)
    return done


def _regret(problem: Problem, values: list[float]) -> float:
    best = min(values)
    return best if problem.optimum is None else best - problem.optimum


def _runs_at(runs: dict, name: str, algo: str, budget: int) -> dict[int, dict[str, Any]]:
    """seed -> the run of ``algo`` on ``name`` that gives its first ``budget`` evaluations."""
    found: dict[int, dict[str, Any]] = {}
    for (problem, run_algo, seed, run_budget), record in runs.items():
        if problem != name or run_algo != algo:
            continue
        exact = algo in NBOPT_ALGOS
        if (exact and run_budget == budget) or (not exact and run_budget >= budget):
            found[seed] = record
    return found


def regrets_at(runs: dict, name: str, algo: str, budget: int) -> dict[int, float]:
    """seed -> regret of ``algo`` on ``name`` after ``budget`` evaluations."""
    problem = PROBLEMS[name]
    return {
        seed: _regret(problem, record["values"][:budget])
        for seed, record in _runs_at(runs, name, algo, budget).items()
    }


def _cell(samples: list[float]) -> str:
    q25, q50, q75 = np.percentile(samples, [25, 50, 75])
    return f"{q50:.3g} [{q25:.3g}, {q75:.3g}]"


def _win_rate(mine: dict[int, float], theirs: dict[int, float]) -> str:
    score = [
        1.0 if mine[s] < theirs[s] else 0.5 if mine[s] == theirs[s] else 0.0
        for s in mine
        if s in theirs
    ]
    return f"{np.mean(score):.2f}" if score else "-"


def _evals_to(problem: Problem, values: list[float]) -> float:
    for index, best in enumerate(np.minimum.accumulate(values)):
        regret = best if problem.optimum is None else best - problem.optimum
        if regret <= problem.threshold:
            return index + 1
    return math.inf


def _suggestion_ms(records: list[dict[str, Any]], key: str) -> float:
    """The median over runs of each run's mean time per suggestion (``key``: ``gaps`` for the
    wall clock, ``cpu_gaps`` for CPU time), in milliseconds."""
    means = [1000 * float(np.mean(r[key])) for r in records if r.get(key)]
    return float(np.median(means)) if means else math.nan


def report(runs: dict, problems: list[str], algos: list[str]) -> None:
    top = max(BUDGETS)
    for name in problems:
        problem = PROBLEMS[name]
        what = "best validation error" if problem.optimum is None else "regret"
        print(f"\n### {name}: median [IQR] {what}; win rates on paired seeds\n")
        print("| evals | " + " | ".join(algos) + " |")
        print("| --- " * (len(algos) + 1) + "|")
        for budget in BUDGETS:
            regrets = {algo: regrets_at(runs, name, algo, budget) for algo in algos}
            cells = [_cell(list(r.values())) if r else "-" for r in regrets.values()]
            print(f"| {budget} | " + " | ".join(cells) + " |")
            for anchor in ANCHORS:
                if anchor in algos:
                    wins = [
                        _win_rate(regrets[algo], regrets[anchor]) if algo != anchor else "-"
                        for algo in algos
                    ]
                    print(f"| {budget}: wins vs {anchor} | " + " | ".join(wins) + " |")
        reach, unique, cpu, wall = [], [], [], []
        for algo in algos:
            records = list(_runs_at(runs, name, algo, top).values())
            counts = [_evals_to(problem, r["values"][:top]) for r in records]
            median = float(np.median(counts)) if counts else math.nan
            hits = sum(math.isfinite(c) for c in counts)
            shown = f">{top}" if math.isinf(median) else f"{median:.0f}"
            reach.append(f"{shown} ({hits}/{len(counts)})")
            keys = [r["keys"][:top] for r in records]
            unique.append(f"{np.mean([len(set(k)) / len(k) for k in keys]):.0%}" if keys else "-")
            cpu.append(_suggestion_ms(records, "cpu_gaps"))
            wall.append(_suggestion_ms(records, "gaps"))
        base = cpu[algos.index("optuna-gp")] if "optuna-gp" in algos else math.nan
        kind = "validation error" if problem.optimum is None else "regret"
        print(f"| evals to {kind} <= {problem.threshold:g} (seeds) | " + " | ".join(reach) + " |")
        print(f"| unique configurations at {top} | " + " | ".join(unique) + " |")
        print(
            f"| ms per suggestion, CPU, {top} evals | " + " | ".join(f"{m:.1f}" for m in cpu) + " |"
        )
        print("| ... / optuna-gp's | " + " | ".join(f"{m / base:.3f}" for m in cpu) + " |")
        print(
            f"| ms per suggestion, wall, {top} evals | "
            + " | ".join(f"{m:.1f}" for m in wall)
            + " |"
        )


def goal_table(runs: dict, problems: list[str]) -> None:
    """auto's median regret against the anchors' at every budget, and its time ratio."""
    print("\n### goal: auto's median regret <= each anchor's\n")
    print("| problem | evals | auto | optuna-gp | optuna-tpe | <= gp | <= tpe | wins vs gp |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    met = total = 0
    for name in problems:
        for budget in BUDGETS:
            regrets = {a: regrets_at(runs, name, a, budget) for a in ("auto", *ANCHORS)}
            if not all(regrets.values()):
                continue
            medians = {a: float(np.median(list(r.values()))) for a, r in regrets.items()}
            ok = [medians["auto"] <= medians[a] for a in ANCHORS]
            met += all(ok)
            total += 1
            print(
                f"| {name} | {budget} | "
                + " | ".join(f"{medians[a]:.3g}" for a in ("auto", *ANCHORS))
                + " | "
                + " | ".join("yes" if o else "**no**" for o in ok)
                + f" | {_win_rate(regrets['auto'], regrets['optuna-gp'])} |"
            )
    print(f"\nmet at {met} of {total} (problem, budget) pairs")


def timing(trials: int, repeats: int) -> None:
    """auto's time per suggestion against GPSampler's, measured side by side in one worker
    process: each repeat (one seed) runs both on the same problem one after the other."""
    print(f"\n### time per suggestion, auto / optuna-gp, {trials} evals, {repeats} repeats\n")
    print("| problem | auto ms, CPU | optuna-gp ms, CPU | CPU ratio | wall-clock ratio |")
    print("| --- | --- | --- | --- | --- |")
    for name in TIMING_PROBLEMS:
        ms: dict[str, list[float]] = {"auto": [], "optuna-gp": [], "auto wall": [], "gp wall": []}
        pairs = [(algo, seed) for seed in range(repeats) for algo in ("auto", "optuna-gp")]
        with searches(1) as pool:
            records = pool.map(run, *zip(*[(name, a, s, trials) for a, s in pairs], strict=True))
            for (algo, _), record in zip(pairs, records, strict=True):
                wall = "auto wall" if algo == "auto" else "gp wall"
                ms[algo].append(1000 * float(np.mean(record["cpu_gaps"])))
                ms[wall].append(1000 * float(np.mean(record["gaps"])))
        cpu = np.divide(ms["auto"], ms["optuna-gp"])
        wall = np.divide(ms["auto wall"], ms["gp wall"])
        print(
            f"| {name} | {np.median(ms['auto']):.1f} | {np.median(ms['optuna-gp']):.1f} | "
            f"{np.median(cpu):.3f} [{cpu.min():.3f}, {cpu.max():.3f}] | "
            f"{np.median(wall):.3f} [{wall.min():.3f}, {wall.max():.3f}] |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", choices=list(PROBLEMS), default=list(PROBLEMS))
    parser.add_argument("--algos", nargs="+", choices=[*ALGOS, "nbopt-tpe"], default=list(ALGOS))
    parser.add_argument("--seeds", type=int, default=SEEDS, help="paired seeds per problem")
    parser.add_argument("--jobs", type=int, default=1, help="parallel worker processes")
    parser.add_argument("--quick", action="store_true", help="5 seeds of Branin and mixed")
    parser.add_argument("--save", type=Path, help="write every run's evaluations as JSON")
    parser.add_argument("--load", type=Path, help="reuse the runs of an earlier --save")
    parser.add_argument("--rerun", nargs="+", default=[], help="algorithms to run again")
    parser.add_argument("--timing-repeats", type=int, default=3)
    parser.add_argument("--no-timing", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.problems = [p for p in args.problems if p in ("branin", "mixed")]
        args.seeds = 5
    algos = args.algos

    raw: list[dict[str, Any]] = json.loads(args.load.read_text()) if args.load else []
    raw = [r for r in raw if r["algo"] not in args.rerun]
    done = {(r["problem"], r["algo"], r["seed"], r["budget"]) for r in raw}
    tasks = [task for task in tasks_for(args.problems, algos, args.seeds) if task not in done]
    print(f"{len(tasks)} searches ({len(done)} loaded), {args.jobs} processes", file=sys.stderr)
    start = time.perf_counter()

    def save(new: list[dict[str, Any]]) -> None:
        if args.save:
            args.save.write_text(json.dumps(raw + new))

    raw += run_all(tasks, args.jobs, save)
    print(f"searched in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    runs = {
        (r["problem"], r["algo"], r["seed"], r["budget"]): r
        for r in raw
        if r["problem"] in args.problems and r["seed"] < args.seeds and r["algo"] in algos
    }
    print(f"{args.seeds} seeds per problem; budgets {BUDGETS}")
    report(runs, args.problems, algos)
    goal_table(runs, args.problems)
    if not args.no_timing:
        timing(max(BUDGETS), args.timing_repeats)


if __name__ == "__main__":
    main()
