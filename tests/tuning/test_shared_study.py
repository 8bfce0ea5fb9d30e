"""One study, many searches: unique trial numbers, no configuration run twice, the budget
shared, trials of dead processes released, and a journal that survives SIGKILL."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import nbopt
from nbopt import choice, uniform
from nbopt.events import EventBus
from nbopt.tuning import StudyWriteError
from nbopt.tuning._search import Search
from nbopt.tuning._study import read_study
from nbopt.tuning._trial import Trial

PACKAGE_ROOT = str(Path(nbopt.__file__).resolve().parent.parent)


def search(path: Path, space: dict, **options) -> Search:
    options.setdefault("algo", "rand")
    found = Search(space, bus=EventBus(), study=path, **options)
    found.start()
    return found


def finish(found: Search, claimed: tuple, value: float = 1.0) -> Trial:
    number, proposal = claimed
    trial = Trial(number, proposal.params, value=value, vals=proposal.vals, started=time.time())
    found.end_trial(proposal, trial)
    return trial


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_searches_on_one_study_share_numbers_configurations_and_budget(
    tmp_path: Path,
) -> None:
    """Claims interleave: numbers are unique, a configuration one search runs is not given to
    the other, running trials count against max_evals, and each sees the other's results."""
    path = tmp_path / "shared.jsonl"
    space = {"k": choice(1, 2, 3)}
    a = search(path, space, max_evals=3, seed=0)
    b = search(path, space, max_evals=3, seed=0)
    first = a.claim()
    second = b.claim()
    third = a.claim()
    assert [first[0], second[0], third[0]] == [0, 1, 2]
    assert len({c[1].params["k"] for c in (first, second, third)}) == 3
    assert b.claim() is None and a.claim() is None  # three claimed: the budget is spent
    finish(a, first, 0.5)
    finish(b, second, 0.25)
    finish(a, third, 0.75)
    a.finish("done")
    result = b.finish("done")
    assert [t.number for t in result.trials] == [0, 1, 2]
    assert result.best_value == 0.25
    assert a.result.best_value == 0.25  # each takes in the other's trials at the end


def test_a_configuration_claimed_while_this_search_proposed_is_proposed_again(
    tmp_path: Path,
) -> None:
    """The proposer runs outside the lock: when another search claims the same configuration
    in the meantime, this one sees it under the lock and proposes another."""
    path = tmp_path / "shared.jsonl"
    space = {"k": choice(1, 2, 3, 4)}
    a = search(path, space, max_evals=4, seed=0)
    b = search(path, space, max_evals=4, seed=0)  # same seed, same state: same first proposal
    ask = a.proposer.ask
    claimed_by_b = []

    def ask_while_b_claims():
        proposal = ask()
        if not claimed_by_b:  # the first proposal only: the second is made under the lock
            claimed_by_b.append(b.claim())
            assert claimed_by_b[0][1].vals == proposal.vals
        return proposal

    a.proposer.ask = ask_while_b_claims
    number, proposal = a.claim()
    assert number == 1 and claimed_by_b[0][0] == 0
    assert proposal.vals != claimed_by_b[0][1].vals


def test_a_trial_of_a_process_that_died_is_released(tmp_path: Path) -> None:
    """A claim left by a killed process on this machine is marked interrupted by the next
    search to read the study: it does not count, and its configuration may run again."""
    path = tmp_path / "shared.jsonl"
    space = {"k": choice(1, 2)}
    child = subprocess.Popen(
        [sys.executable, "-c", "pass"], env={**os.environ, "PYTHONPATH": PACKAGE_ROOT}
    )
    child.wait()
    first = search(path, space, max_evals=2, seed=0)
    claimed = first.claim()
    first.finish("done")
    lines = path.read_text().splitlines()
    start = json.loads(lines[1])
    host, _, ticks, token = start["worker"].split(" ")
    start["worker"] = f"{host} {child.pid} {ticks} {token}"  # as if the dead child claimed it
    path.write_text("\n".join([lines[0], json.dumps(start)]) + "\n")
    again = search(path, space, max_evals=2, seed=0)
    numbers = [again.claim()[0], again.claim()[0]]
    assert numbers == [1, 2]
    statuses = {r["number"]: r["status"] for r in _records(path) if r.get("event") == "finish"}
    assert statuses == {0: "interrupted"}
    assert claimed is not None


def test_a_claim_from_another_machine_counts_as_running(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    space = {"x": uniform(0, 1)}
    first = search(path, space, max_evals=2)
    first.claim()
    first.finish("done")
    lines = path.read_text().splitlines()
    start = json.loads(lines[1])
    start["worker"] = "elsewhere/0 1 - remote"
    path.write_text("\n".join([lines[0], json.dumps(start)]) + "\n")
    again = search(path, space, max_evals=2)
    assert again.claim()[0] == 1
    assert again.claim() is None  # one running elsewhere and one here: two of two


def test_a_study_started_over_elsewhere_stops_this_search(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    space = {"x": uniform(0, 1)}
    running = search(path, space, max_evals=10)
    finish(running, running.claim())
    nbopt.tune(
        lambda x: x, space, max_evals=1, study=path, restart=True, progress="none", logdir=None
    )
    with pytest.raises(StudyWriteError, match="started over or replaced by another search"):
        running.claim()


WORKER = r"""
import sys, time, nbopt
def objective(x, k):
    time.sleep(0.02)
    return x * k
nbopt.tune(objective, {"x": nbopt.uniform(0, 1), "k": nbopt.choice(1, 2, 3)}, max_evals=100,
           algo=sys.argv[2], study=sys.argv[1], progress="none", logdir=None)
"""


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["auto", "tpe"])
def test_four_processes_on_one_study_run_each_trial_once(tmp_path: Path, algo: str) -> None:
    """4 processes, each asked for 100 trials in all, on one study: 100 trials, numbered 0-99
    once each, no configuration twice, and each process ran some of them."""
    path = tmp_path / "shared.jsonl"
    env = {**os.environ, "PYTHONPATH": PACKAGE_ROOT}
    children = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(path), algo], env=env) for _ in range(4)
    ]
    for child in children:
        assert child.wait(timeout=600) == 0
    _, trials, running = read_study(path)
    assert sorted(t.number for t in trials) == list(range(100))
    assert all(t.status == "ok" for t in trials) and running == []
    configurations = [json.dumps(t.vals, sort_keys=True) for t in trials]
    assert len(set(configurations)) == 100
    workers = {r["worker"].split(" ")[1] for r in _records(path) if r.get("event") == "start"}
    assert len(workers) == 4


CRASHING = r"""
import os, sys, time
import nbopt
from nbopt.tuning.events import TrialFinished

study, side = sys.argv[1], sys.argv[2]
fd = os.open(side, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

def record(event):
    # TrialFinished comes after the trial is saved: what is written here must be in the file.
    if isinstance(event, TrialFinished) and event.trial.finished:
        os.write(fd, b"%d\n" % event.trial.number)
        os.fsync(fd)

def objective(x, y):
    time.sleep(0.002)
    return x * y

nbopt.tune(objective, {"x": nbopt.uniform(0, 1), "y": nbopt.uniform(0, 1)}, max_evals=1_000_000,
           algo="rand", study=study, progress="none", logdir=None, callbacks=[record])
"""


def _reported(side: Path) -> set[int]:
    if not side.exists():
        return set()
    return {int(line) for line in side.read_text().split() if line.strip()}


@pytest.mark.slow
def test_the_study_survives_sigkill_at_random_moments(tmp_path: Path) -> None:
    """Killing the searching process at any moment, 20 times, resuming the same study each
    time: the file always loads, holds every trial reported finished, numbers stay unique, and
    the killed run's claim is released by the next run."""
    study, side = tmp_path / "crash.jsonl", tmp_path / "finished.txt"
    rng = random.Random(12345)
    env = {**os.environ, "PYTHONPATH": PACKAGE_ROOT}
    kills_mid_run = 0
    for attempt in range(20):
        before = len(_reported(side))
        child = subprocess.Popen(
            [sys.executable, "-c", CRASHING, str(study), str(side)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            if attempt % 5 == 0:
                time.sleep(rng.uniform(0.0, 1.5))  # any moment, start-up and loading included
            else:
                deadline = time.monotonic() + 120
                while len(_reported(side)) == before:
                    assert child.poll() is None, child.stderr.read().decode()
                    assert time.monotonic() < deadline, "the child never finished a trial"
                    time.sleep(0.002)
                time.sleep(rng.uniform(0.0, 0.25))
            assert child.poll() is None, child.stderr.read().decode()
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait()
            child.stderr.close()
        reported = _reported(side)
        kills_mid_run += len(reported) > before
        if not study.exists():
            assert reported == set()
            continue
        _, trials, running = read_study(study)
        numbers = [t.number for t in trials] + [r.number for r in running]
        assert len(numbers) == len(set(numbers)), "trial numbers are unique"
        finished = {t.number for t in trials if t.finished}
        assert reported <= finished, f"kill {attempt}: lost {sorted(reported - finished)}"
        assert len(running) <= 1 + attempt  # at most the claims of killed runs
    assert kills_mid_run >= 12
    nbopt.tune(
        lambda x, y: x,
        {"x": uniform(0, 1), "y": uniform(0, 1)},
        max_evals=1,
        study=study,
        algo="rand",
        progress="none",
        logdir=None,
    )
    _, trials, running = read_study(study)
    assert running == []  # every killed run's claim was released
