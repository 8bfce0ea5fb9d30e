"""Study files and parallel search, measured side by side in one run.

1. Saving and loading a study of 100, 1,000 and 20,000 trials: the journal (one JSON line
   appended per trial) against the first format (one JSON document rewritten after every
   trial; its save is kept below as it was, to measure it). Save: the time to record one
   more trial. Load: the time to open a search on the study (read, check every record
   against the space, teach the proposer), and for the journal also to its first proposal.
2. ``parallel=4`` local workers on one study against one process, at equal trials: a
   sleep-bound objective (wall-time ratio) and the digits MLP (wall-time ratio and best
   validation error).

Medians of ``--repeats`` runs, with their spread (min-max).

    python benchmarks/bench_study.py [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import nbopt
from nbopt.events import EventBus
from nbopt.tuning._records import StudyHeader
from nbopt.tuning._search import Search
from nbopt.tuning._trial import Trial

SPACE = {
    "lr": nbopt.loguniform(1e-4, 1e-1),
    "width": nbopt.choice(32, 64, 128),
    "dropout": nbopt.uniform(0.0, 0.5),
}
QUIET = {"progress": "none", "logdir": None}


# -- the first study format, as nbopt wrote it before the journal --------------------------


def legacy_save(path: Path, header: StudyHeader, trials: list[Trial]) -> None:
    """The first format's save: the whole study as one JSON document, written to a temporary
    file, flushed and renamed over the study, after every trial."""
    document = {
        "format": "nbopt-study",
        "version": 1,
        "metric": header.metric,
        "mode": header.mode,
        "space": header.space,
        "created": header.created,
        "backend": header.backend,
        "trials": [trial.to_json() for trial in trials],
    }
    text = json.dumps(document, indent=1, allow_nan=False)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def synthetic_trials(count: int, seed: int = 0) -> tuple[StudyHeader, list[Trial]]:
    """``count`` finished trials of SPACE, each with a 10-step learning curve."""
    search = Search(SPACE, bus=EventBus(), algo="rand", max_evals=count + 1)
    rng = random.Random(seed)
    trials = []
    for number in range(count):
        vals = {
            "lr": 10 ** rng.uniform(-4, -1),
            "width": rng.randrange(3),
            "dropout": rng.uniform(0.0, 0.5),
        }
        trial = Trial(
            number,
            search.proposer.params(vals),
            value=rng.random(),
            vals=vals,
            duration=rng.uniform(1, 60),
            started=1.7e9 + number,
            intermediate=[(step, rng.random()) for step in range(10)],
        )
        trials.append(trial)
    return search.header, trials


def write_journal(path: Path, header: StudyHeader, trials: list[Trial]) -> None:
    """A journal holding ``trials``, as a search would have written it (start and finish)."""
    worker = "bench/0 1 - bench"
    lines = [json.dumps(header.to_json())]
    for trial in trials:
        start = {"event": "start", "number": trial.number, "vals": trial.vals}
        lines.append(json.dumps({**start, "started": trial.started, "worker": worker}))
        finish = {key: value for key, value in trial.to_json().items() if value or value == 0}
        lines.append(json.dumps({"event": "finish", **finish}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# -- measuring ------------------------------------------------------------------------------


def spread(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    """``median (min-max)`` of ``values`` times ``scale``."""
    m, lo, hi = (scale * v for v in (statistics.median(values), min(values), max(values)))
    return f"{m:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def open_search(path: Path) -> Search:
    return Search(SPACE, bus=EventBus(), algo="tpe", max_evals=10**6, study=path)


def first_proposal(path: Path) -> None:
    search = open_search(path)
    search.start()
    assert search.claim() is not None


def save_one_more(search: Search, trial: Trial) -> None:
    claimed = search.claim()
    assert claimed is not None
    number, proposal = claimed
    search.end_trial(
        proposal, Trial(number, proposal.params, value=trial.value, vals=proposal.vals)
    )


def bench_files(sizes: list[int], repeats: int, directory: Path) -> None:
    print(
        "study size   | save one trial, ms       | open a search, s            | to 1st proposal, s"
    )
    print("             | first format  | journal   | first format  | journal     | journal")
    for size in sizes:
        header, trials = synthetic_trials(size)
        legacy, journal = directory / f"legacy-{size}.json", directory / f"journal-{size}.jsonl"
        legacy_save(legacy, header, trials)
        write_journal(journal, header, trials)
        old_save, new_save, old_load, new_load, new_first = [], [], [], [], []
        search = open_search(journal)
        search.start()
        for _ in range(repeats):
            old_save.append(timed(lambda: legacy_save(legacy, header, trials)))
            new_save.append(timed(lambda: save_one_more(search, trials[0])))
            old_load.append(timed(lambda: open_search(legacy)))
            new_load.append(timed(lambda: open_search(journal)))
            new_first.append(timed(lambda: first_proposal(journal)))
        print(
            f"{size:>12,} | {spread(old_save, 1e3):>13} | {spread(new_save, 1e3):>9} | "
            f"{spread(old_load, 1, 3):>13} | {spread(new_load, 1, 3):>11} | "
            f"{spread(new_first, 1, 3)}"
        )


# -- parallel workers -----------------------------------------------------------------------


def sleeper(x: float, y: float) -> float:
    time.sleep(0.2)
    return (x - 0.3) ** 2 + (y + 0.1) ** 2


def bench_parallel(trials: int, repeats: int, directory: Path, mlp: bool) -> None:
    problems: list[tuple[str, Callable[..., float], dict]] = [
        ("sleep 0.2 s", sleeper, {"x": nbopt.uniform(-1, 1), "y": nbopt.uniform(-1, 1)}),
    ]
    if mlp:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _digits import train_mlp

        problems.append(
            (
                "digits MLP",
                train_mlp,
                {
                    "lr": nbopt.loguniform(1e-4, 3e-1),
                    "width": nbopt.choice(16, 32, 64, 128),
                    "weight_decay": nbopt.loguniform(1e-6, 1e-2),
                },
            )
        )
    print(f"\n{trials} trials, algo=auto; wall time (s) and best value, medians (min-max)")
    print("problem      | 1 process         | parallel=4        | speed-up | best 1 | best 4")
    for name, objective, space in problems:
        one, four, best_one, best_four, ratios = [], [], [], [], []
        for repeat in range(repeats):
            for workers, walls, bests in ((1, one, best_one), (4, four, best_four)):
                study = directory / f"{name.split()[0]}-{workers}-{repeat}.jsonl"
                start = time.perf_counter()
                result = nbopt.tune(
                    objective,
                    space,
                    max_evals=trials,
                    seed=repeat,
                    study=study,
                    parallel=workers,
                    **QUIET,
                )
                walls.append(time.perf_counter() - start)
                bests.append(result.best_value)
            ratios.append(one[-1] / four[-1])
        print(
            f"{name:<12} | {spread(one):>17} | {spread(four):>17} | {spread(ratios):>8} | "
            f"{spread(best_one, 1, 4)} | {spread(best_four, 1, 4)}"
        )


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="nbopt-bench-study-") as directory:
        yield Path(directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--quick", action="store_true", help="small sizes, no MLP")
    args = parser.parse_args()
    sizes = [100, 1000] if args.quick else [100, 1_000, 20_000]
    print(f"{os.cpu_count()} CPUs; {args.repeats} repeats")
    with scratch() as directory:
        bench_files(sizes, args.repeats, directory)
        bench_parallel(args.trials, args.repeats, directory, mlp=not args.quick)


if __name__ == "__main__":
    main()
