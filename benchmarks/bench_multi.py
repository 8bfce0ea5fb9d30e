"""Several objectives: the hypervolume of nbopt's front against Optuna's multi-objective
samplers, on the same problems and paired seeds.

Problems, two objectives each, both minimised:

- ``zdt1-2d``, ``zdt1-6d``, ``zdt2-2d``, ``zdt2-6d``: Zitzler, Deb and Thiele's ZDT1 (a convex
  front, f2 = 1 - sqrt(f1)) and ZDT2 (a concave one, f2 = 1 - f1²) over 2 and 6 parameters in
  [0, 1]. Reference point (1.1, 11); the best possible hypervolume is 11.767 (ZDT1) and 11.433
  (ZDT2).
- ``digits-mlp``: the digits MLP of ``_digits.py`` (learning rate, width, depth, weight
  decay; 5 epochs, fixed training seed): validation error, and the parameter count as a
  fraction of the largest model's. Reference point (0.2, 1): a model counts when its error is
  below 20%.

Algorithms: nbopt's ``algo=auto`` (a GP per objective, expected hypervolume improvement for
two objectives) and ``algo=rand`` through ``nbopt.tune`` with the budget as ``max_evals``, once
per budget; Optuna's ``NSGAIISampler``, multi-objective ``TPESampler`` and ``GPSampler``
through ``study.optimize``, once at the largest budget (their proposals do not depend on the
budget, so a smaller one is a prefix of that run).

Printed per problem and budget (50 and 100 evaluations): the median hypervolume over seeds and
its range, auto's win rate against each Optuna sampler on paired seeds (ties count half), and
a last table with the goal: auto's median at least the best Optuna sampler's. Then the mean
time per suggestion (CPU time of the search's process between one evaluation and the next).
Each search is one process on one core.

    python benchmarks/bench_multi.py --seeds 15 --jobs 2 --save multi.json
    python benchmarks/bench_multi.py --quick        # 3 seeds of zdt1-2d, 30 evaluations
    python benchmarks/bench_multi.py --load multi.json --seeds 15 --jobs 2 --save multi.json

``--load`` reuses the runs of an earlier ``--save`` and runs only what is missing (more seeds,
another problem); ``--rerun`` names algorithms whose loaded runs are dropped and run again
(``auto`` after a change to it). Needs Optuna and torch (``pip install "nbopt[bench]"``) and
scikit-learn.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from bench_search import _win_rate as win_rate
from bench_search import searches

import nbopt
from nbopt.tuning._objectives import hypervolume

NBOPT_ALGOS = ("auto", "rand")
OPTUNA_ALGOS = ("optuna-nsga2", "optuna-tpe", "optuna-gp")
ALGOS = (*NBOPT_ALGOS, *OPTUNA_ALGOS)
BUDGETS = (50, 100)
SEEDS = 15


@dataclass(frozen=True)
class Problem:
    space: dict[str, Any]
    objectives: Callable[[dict[str, Any]], tuple[float, float]]
    optuna_params: Callable[[Any], dict[str, Any]]
    reference: tuple[float, float]


def _zdt(front: Callable[[float], float], dims: int) -> Problem:
    def objectives(params: dict[str, Any]) -> tuple[float, float]:
        x = [params[f"x{i}"] for i in range(dims)]
        g = 1 + 9 * sum(x[1:]) / (dims - 1)
        return x[0], g * front(x[0] / g)

    def optuna_params(trial: Any) -> dict[str, Any]:
        return {f"x{i}": trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(dims)}

    space = {f"x{i}": nbopt.uniform(0.0, 1.0) for i in range(dims)}
    return Problem(space, objectives, optuna_params, (1.1, 11.0))


_WIDTHS = (8, 16, 32, 64, 128)
_DEPTHS = (1, 2)


def _parameter_count(width: int, depth: int) -> int:
    from _digits import make_mlp

    return sum(p.numel() for p in make_mlp(width, depth).parameters())


def _mlp(params: dict[str, Any]) -> tuple[float, float]:
    from _digits import train_mlp

    error = train_mlp(
        params["lr"], params["width"], params["depth"], params["weight_decay"], epochs=5, seed=0
    )
    share = _parameter_count(params["width"], params["depth"]) / _parameter_count(
        max(_WIDTHS), max(_DEPTHS)
    )
    return error, share


def _mlp_optuna(trial: Any) -> dict[str, Any]:
    return {
        "lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True),
        "width": trial.suggest_categorical("width", list(_WIDTHS)),
        "depth": trial.suggest_categorical("depth", list(_DEPTHS)),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True),
    }


PROBLEMS = {
    "zdt1-2d": _zdt(lambda r: 1 - math.sqrt(r), 2),
    "zdt1-6d": _zdt(lambda r: 1 - math.sqrt(r), 6),
    "zdt2-2d": _zdt(lambda r: 1 - r**2, 2),
    "zdt2-6d": _zdt(lambda r: 1 - r**2, 6),
    "digits-mlp": Problem(
        {
            "lr": nbopt.loguniform(1e-4, 1e-1),
            "width": nbopt.choice(*_WIDTHS),
            "depth": nbopt.choice(*_DEPTHS),
            "weight_decay": nbopt.loguniform(1e-6, 1e-1),
        },
        _mlp,
        _mlp_optuna,
        (0.2, 1.0),
    ),
}


def run(problem_name: str, algo: str, seed: int, budget: int) -> dict[str, Any]:
    """One search; returns its evaluations' objective pairs in order, and the CPU time
    between the end of each evaluation and the start of the next."""
    problem = PROBLEMS[problem_name]
    points: list[tuple[float, float]] = []
    marks: list[tuple[float, float]] = []  # (start, end) of each evaluation, CPU time

    def evaluate(params: dict[str, Any]) -> tuple[float, float]:
        start = time.process_time()
        point = problem.objectives(params)
        points.append(point)
        marks.append((start, time.process_time()))
        return point

    if algo in NBOPT_ALGOS:
        nbopt.tune(
            lambda **params: dict(zip(("f1", "f2"), evaluate(params), strict=True)),
            problem.space,
            metric=["f1", "f2"],
            mode="min",
            algo=algo,
            max_evals=budget,
            seed=seed,
            progress="none",
            logdir=None,
        )
    else:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        sampler = {
            "optuna-nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed),
            "optuna-tpe": lambda: optuna.samplers.TPESampler(seed=seed),
            "optuna-gp": lambda: optuna.samplers.GPSampler(seed=seed),
        }[algo]()
        study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
        study.optimize(lambda trial: evaluate(problem.optuna_params(trial)), n_trials=budget)
    gaps = [start - end for (start, _), (_, end) in zip(marks[1:], marks, strict=False)]
    return {
        "problem": problem_name,
        "algo": algo,
        "seed": seed,
        "budget": budget,
        "points": points,
        "cpu_gaps": gaps,
    }


def tasks_for(problems: list[str], algos: list[str], seeds: int) -> list[tuple]:
    return [
        (name, algo, seed, budget)
        for name in problems
        for algo in algos
        for seed in range(seeds)
        for budget in (BUDGETS if algo in NBOPT_ALGOS else (max(BUDGETS),))
    ]


def hypervolumes_at(runs: dict, name: str, algo: str, budget: int) -> dict[int, float]:
    """seed -> the hypervolume of ``algo``'s first ``budget`` evaluations on ``name``."""
    found = {}
    for (problem, run_algo, seed, run_budget), record in runs.items():
        # nbopt's runs at exactly this budget; Optuna's at any budget as large (a prefix).
        same_run = run_budget == budget or (algo not in NBOPT_ALGOS and run_budget > budget)
        if problem == name and run_algo == algo and same_run:
            found[seed] = hypervolume(record["points"][:budget], PROBLEMS[name].reference)
    return found


def _win_rate(mine: dict[int, float], theirs: dict[int, float]) -> str:
    """bench_search's win rate (lower wins) on negated hypervolumes (higher wins)."""
    return win_rate({s: -v for s, v in mine.items()}, {s: -v for s, v in theirs.items()})


def _cell(volumes: list[float]) -> str:
    """The median and, in brackets, the range."""
    if not volumes:
        return "-"
    return f"{np.median(volumes):.5g} [{min(volumes):.5g}, {max(volumes):.5g}]"


def report(runs: dict, problems: list[str], algos: list[str]) -> None:
    for name in problems:
        print(f"\n### {name}: median [range] hypervolume, reference {PROBLEMS[name].reference}\n")
        print("| evals | " + " | ".join(algos) + " |")
        print("| --- " * (len(algos) + 1) + "|")
        for budget in BUDGETS:
            volumes = {algo: hypervolumes_at(runs, name, algo, budget) for algo in algos}
            cells = [_cell(list(v.values())) for v in volumes.values()]
            print(f"| {budget} | " + " | ".join(cells) + " |")
            if "auto" in algos:
                wins = [
                    _win_rate(volumes["auto"], volumes[algo]) if algo != "auto" else "-"
                    for algo in algos
                ]
                print(f"| {budget}: auto's wins | " + " | ".join(wins) + " |")
        ms = []
        for algo in algos:
            records = [
                r
                for (p, a, _, b), r in runs.items()
                if p == name and a == algo and b == max(BUDGETS) and r["cpu_gaps"]
            ]
            means = [1000 * float(np.mean(r["cpu_gaps"])) for r in records]
            ms.append(f"{np.median(means):.1f}" if means else "-")
        print(f"| ms per suggestion, CPU, {max(BUDGETS)} evals | " + " | ".join(ms) + " |")


def goal_table(runs: dict, problems: list[str], algos: list[str]) -> None:
    anchors = [a for a in OPTUNA_ALGOS if a in algos]
    if "auto" not in algos or not anchors:
        return
    print("\n### goal: auto's median hypervolume >= the best Optuna sampler's\n")
    print("| problem | evals | auto | best Optuna | which | met | seeds |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    met = total = 0
    for name in problems:
        for budget in BUDGETS:
            volumes = {a: hypervolumes_at(runs, name, a, budget) for a in ("auto", *anchors)}
            if not all(volumes.values()):
                continue
            medians = {a: float(np.median(list(v.values()))) for a, v in volumes.items()}
            best = max(anchors, key=lambda a: medians[a])
            ok = medians["auto"] >= medians[best]
            met += ok
            total += 1
            print(
                f"| {name} | {budget} | {medians['auto']:.5g} | {medians[best]:.5g} | {best} | "
                f"{'yes' if ok else '**no**'} | {len(volumes['auto'])} |"
            )
    print(f"\nmet at {met} of {total} (problem, budget) pairs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", choices=list(PROBLEMS), default=list(PROBLEMS))
    parser.add_argument("--algos", nargs="+", choices=ALGOS, default=list(ALGOS))
    parser.add_argument("--seeds", type=int, default=SEEDS, help="paired seeds per problem")
    parser.add_argument("--jobs", type=int, default=1, help="parallel worker processes")
    parser.add_argument("--quick", action="store_true", help="3 seeds of zdt1-2d, 30 evals")
    parser.add_argument("--save", type=Path, help="write every run's evaluations as JSON")
    parser.add_argument("--load", type=Path, help="reuse the runs of an earlier --save")
    parser.add_argument("--rerun", nargs="+", default=[], help="algorithms to run again")
    args = parser.parse_args()
    if args.quick:
        global BUDGETS
        BUDGETS = (15, 30)
        args.problems, args.seeds = ["zdt1-2d"], 3

    raw: list[dict[str, Any]] = json.loads(args.load.read_text()) if args.load else []
    raw = [r for r in raw if r["algo"] not in args.rerun]
    done = {(r["problem"], r["algo"], r["seed"], r["budget"]) for r in raw}
    tasks = [t for t in tasks_for(args.problems, args.algos, args.seeds) if t not in done]
    # Optuna's GP and the MLP first: the longest runs, so that the workers finish together.
    tasks.sort(key=lambda t: (t[1] != "optuna-gp", t[0] != "digits-mlp"))
    print(f"{len(tasks)} searches ({len(done)} loaded), {args.jobs} processes", file=sys.stderr)
    start = time.perf_counter()
    with searches(args.jobs) as pool:
        for record in pool.map(run, *zip(*tasks, strict=True), chunksize=1) if tasks else []:
            raw.append(record)
            if args.save:
                args.save.write_text(json.dumps(raw))
    print(f"searched in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    runs = {
        (r["problem"], r["algo"], r["seed"], r["budget"]): r
        for r in raw
        if r["problem"] in args.problems and r["seed"] < args.seeds and r["algo"] in args.algos
    }
    report(runs, args.problems, args.algos)
    goal_table(runs, args.problems, args.algos)


if __name__ == "__main__":
    main()
