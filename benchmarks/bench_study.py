"""Study files and parallel search, measured side by side in one run.

1. Saving and loading a study of 100, 1,000 and 20,000 trials: the journal (one JSON line
   appended per trial) against the first format (one JSON document rewritten after every
   trial; its save is kept below as it was, to measure it). Save: the time to record one
   more trial; the journal's saves at every size are timed in turn, one save per size round
   after round (a save is a fraction of a millisecond, most of it the ``fsync``, whose cost
   drifts with the file system's state: alternating lets the drift hit every size alike).
   Load: the time to open a search on the study (read, check every record against the
   space, teach the proposer), and for the journal also to its first proposal.
2. Four workers against one, at equal trials: ``parallel=4`` (worker processes forked by one
   search) on a sleep-bound objective and on the digits MLP (wall-time ratio, best validation
   error), and four separate Python processes sharing one study against one process alone
   (the sleep-bound objective; timed from when every process is ready).

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
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import nbopt
from nbopt.events import EventBus
from nbopt.tuning._records import StudyHeader
from nbopt.tuning._search import Search
from nbopt.tuning._study import read_study
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


def timed(action: Callable[[], object], clock: Callable[[], float] = time.perf_counter) -> float:
    start = clock()
    action()
    return clock() - start


def open_search(path: Path) -> Search:
    return Search(SPACE, bus=EventBus(), algo="tpe", max_evals=10**6, study=path)


def first_proposal(path: Path) -> None:
    search = open_search(path)
    search.start()
    assert search.claim() is not None


def save_one_more(search: Search, value: float) -> float:
    """Claim a trial (not timed), then time recording its outcome: the save itself."""
    claimed = search.claim()
    assert claimed is not None
    number, proposal = claimed
    finished = Trial(number, proposal.params, value=value, vals=proposal.vals)
    elapsed = timed(lambda: search.record(finished))
    search.proposer.tell(proposal, finished)
    return elapsed


# Journal saves timed per size and repeat, alternating between the sizes.
SAVES_PER_REPEAT = 20


def bench_size(size: int, repeats: int, directory: Path) -> tuple[dict[str, list[float]], Search]:
    """Save and load times of a study of ``size`` trials, in both formats, side by side; and
    the search open on its journal, for the alternating saves."""
    header, trials = synthetic_trials(size)
    legacy, journal = directory / f"legacy-{size}.json", directory / f"journal-{size}.jsonl"
    legacy_save(legacy, header, trials)
    write_journal(journal, header, trials)
    search = open_search(journal)
    search.start()
    times: dict[str, list[float]] = {key: [] for key in ("old save", "old load")}
    times.update({"new load": [], "new load cpu": [], "new first": []})
    for _ in range(repeats):
        times["old save"].append(timed(lambda: legacy_save(legacy, header, trials)))
        times["old load"].append(timed(lambda: open_search(legacy)))
        times["new load"].append(timed(lambda: open_search(journal)))
        times["new load cpu"].append(timed(lambda: open_search(journal), time.process_time))
        times["new first"].append(timed(lambda: first_proposal(journal)))
    return times, search


def alternating_saves(searches: dict[int, Search], repeats: int) -> dict[int, list[float]]:
    """Per size, the median journal save of each repeat, the sizes taking turns save by save."""
    medians: dict[int, list[float]] = {size: [] for size in searches}
    for _ in range(repeats):
        times: dict[int, list[float]] = {size: [] for size in searches}
        for _ in range(SAVES_PER_REPEAT):
            for size, search in searches.items():
                times[size].append(save_one_more(search, 0.5))
        for size, values in times.items():
            medians[size].append(statistics.median(values))
    return medians


HEADER = (
    ("trials", 6),
    ("save, 1st format, ms", 21),
    ("save, journal, ms", 18),
    ("open, 1st format, s", 20),
    ("open, journal, s", 20),
    ("open, journal, CPU s", 20),
    ("to 1st trial, s", 20),
)


def bench_files(sizes: list[int], repeats: int, directory: Path) -> None:
    print(" | ".join(f"{name:>{width}}" for name, width in HEADER))
    measured = {size: bench_size(size, repeats, directory) for size in sizes}
    saves = alternating_saves({size: search for size, (_, search) in measured.items()}, repeats)
    for size, (times, _) in measured.items():
        cells = [
            f"{size}",
            spread(times["old save"], 1e3),
            spread(saves[size], 1e3),
            spread(times["old load"], 1, 3),
            spread(times["new load"], 1, 3),
            spread(times["new load cpu"], 1, 3),
            spread(times["new first"], 1, 3),
        ]
        print(
            " | ".join(f"{cell:>{width}}" for cell, (_, width) in zip(cells, HEADER, strict=True))
        )
    ratios = [big / small for big, small in zip(saves[sizes[-1]], saves[sizes[0]], strict=True)]
    print(
        f"journal save at {sizes[-1]} / at {sizes[0]} trials: {spread(ratios)} (goal <= 2; "
        f"each repeat's median of {SAVES_PER_REPEAT} alternating saves)"
    )


# -- parallel workers -----------------------------------------------------------------------

SLEEP_SPACE = {"x": nbopt.uniform(-1, 1), "y": nbopt.uniform(-1, 1)}
MLP_SPACE = {
    "lr": nbopt.loguniform(1e-4, 3e-1),
    "width": nbopt.choice(16, 32, 64, 128),
    "weight_decay": nbopt.loguniform(1e-6, 1e-2),
}
SHARED = (
    "import sys; sys.path.insert(0, sys.argv[4]); import bench_study; "
    "bench_study.run_shared(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[5])"
)


def sleeper(x: float, y: float) -> float:
    """A trial that waits (for a GPU, a remote service ...) rather than computes."""
    time.sleep(0.2)
    return (x - 0.3) ** 2 + (y + 0.1) ** 2


def run_shared(study: str, trials: int, seed: int, gate: str) -> None:
    """One of the processes sharing a study (see ``processes_on_one_study``): once imported,
    it says so and waits for the others, so that the time measured is the search's alone."""
    Path(f"{gate}.{seed}").touch()
    while not Path(gate).exists():
        time.sleep(0.005)
    nbopt.tune(sleeper, SLEEP_SPACE, max_evals=trials, seed=seed, study=study, **QUIET)


def processes_on_one_study(count: int, study: Path, trials: int, seed: int) -> float:
    """Wall time of ``count`` Python processes running one study of ``trials`` in all, from the
    moment all of them are ready (interpreter start-up and imports are not counted)."""
    here = str(Path(__file__).resolve().parent)
    gate = study.with_suffix(".go")
    seeds = [seed * 10 + i for i in range(count)]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", SHARED, str(study), str(trials), str(s), here, str(gate)]
        )
        for s in seeds
    ]
    while not all(Path(f"{gate}.{s}").exists() for s in seeds):
        time.sleep(0.005)
    start = time.perf_counter()
    gate.touch()
    assert all(child.wait() == 0 for child in children)
    elapsed = time.perf_counter() - start
    _, finished, _ = read_study(study)
    assert len(finished) == trials, len(finished)
    return elapsed


def bench_workers(
    name: str,
    objective: Callable[..., float],
    space: dict,
    trials: int,
    repeats: int,
    directory: Path,
) -> None:
    """parallel=1 against parallel=4, same trials, seeds paired."""
    walls: dict[int, list[float]] = {1: [], 4: []}
    bests: dict[int, list[float]] = {1: [], 4: []}
    for repeat in range(repeats):
        for workers in (1, 4):
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
            walls[workers].append(time.perf_counter() - start)
            bests[workers].append(result.best_value)
    ratios = [one / four for one, four in zip(walls[1], walls[4], strict=True)]
    print(
        f"{name:<22} | {spread(walls[1]):>17} | {spread(walls[4]):>17} | {spread(ratios):>16} | "
        f"{spread(bests[1], 1, 4)} | {spread(bests[4], 1, 4)}"
    )


def bench_parallel(repeats: int, directory: Path, mlp: bool) -> None:
    print("\nwall time (s), speed-up and best value; medians (min-max); algo=auto")
    print(
        "problem, trials          | 1 process         | 4 workers         | speed-up (goal>=1.7)"
        " | best, 1         | best, 4"
    )
    bench_workers("sleep 0.2 s, 40, parallel=", sleeper, SLEEP_SPACE, 40, repeats, directory)
    one, four, ratios = [], [], []
    for repeat in range(repeats):
        one.append(processes_on_one_study(1, directory / f"alone-{repeat}.jsonl", 40, repeat))
        four.append(processes_on_one_study(4, directory / f"shared-{repeat}.jsonl", 40, repeat))
        ratios.append(one[-1] / four[-1])
    print(
        f"{'sleep 0.2 s, 40, 4 processes':<22} | {spread(one):>17} | {spread(four):>17} | "
        f"{spread(ratios):>16} | (4 Python processes on one study; start-up not counted)"
    )
    if mlp:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _digits import train_mlp

        bench_workers("digits MLP, 24, parallel=", train_mlp, MLP_SPACE, 24, repeats, directory)


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="nbopt-bench-study-") as directory:
        yield Path(directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes, no MLP")
    args = parser.parse_args()
    sizes = [100, 1000] if args.quick else [100, 1_000, 20_000]
    print(f"{os.cpu_count()} CPUs; {args.repeats} repeats")
    with scratch() as directory:
        bench_files(sizes, args.repeats, directory)
        bench_parallel(args.repeats, directory, mlp=not args.quick)


if __name__ == "__main__":
    main()
