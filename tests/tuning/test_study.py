"""Study files: saved after every trial, resumed, restarted, refused when unusable, crash-safe."""

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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nbopt
from nbopt import ConfigError, choice, randint, uniform
from nbopt.tuning._study import StudyFile

SPACE = {"x": uniform(-1, 1), "k": choice(1, 2, 3)}


def tune(objective, space=SPACE, **options):
    """``nbopt.tune`` without live view or TensorBoard."""
    options.setdefault("progress", "none")
    options.setdefault("logdir", None)
    return nbopt.tune(objective, space, **options)


def _saved(path: Path) -> list[dict]:
    return json.loads(path.read_text())["trials"]


def _objective(calls: list):
    def objective(x, k):
        calls.append({"x": x, "k": k})
        return x * k

    return objective


def test_each_trial_is_saved_as_soon_as_it_finishes(tmp_path: Path) -> None:
    """When trial n starts, the file already holds trials 0..n-1 with their values."""
    path = tmp_path / "study.json"
    observed = []
    returned = []

    def objective(x, k):
        saved = _saved(path) if path.exists() else []
        observed.append([(t["number"], t["status"], t["value"]) for t in saved])
        returned.append(x * k)
        return x * k

    tune(objective, max_evals=5, study=path, seed=0)
    for n, saved in enumerate(observed):
        assert saved == [(i, "ok", returned[i]) for i in range(n)]
    assert len(_saved(path)) == 5
    header, trials = StudyFile(path).load()
    assert (header.metric, header.mode) == ("value", "min")
    assert [t.value for t in trials] == returned


def test_study_is_plain_json_with_the_trial_records(tmp_path: Path) -> None:
    """The file is JSON: format tag, header and each trial's params, value and status."""
    path = tmp_path / "runs" / "mlp.json"  # parent directories are created
    result = tune(lambda x, k: x + k, max_evals=3, study=path, seed=0, metric=None, mode="max")
    data = json.loads(path.read_text())
    assert data["format"] == "nbopt-study"
    assert data["mode"] == "max"
    assert [t["params"] for t in data["trials"]] == [t.params for t in result.trials]
    assert result.study == str(path)
    assert not list(path.parent.glob(".*.tmp"))  # no temporary file left behind


def test_failed_trials_are_saved_with_their_error(tmp_path: Path) -> None:
    """A failed trial (exception or NaN) is stored with its error and a null value."""
    path = tmp_path / "study.json"
    outcomes = iter([float("nan"), "raise", 1.0])

    def objective(x, k):
        outcome = next(outcomes)
        if outcome == "raise":
            raise ZeroDivisionError("no")
        return outcome

    tune(objective, max_evals=3, study=path)
    saved = _saved(path)
    assert [t["status"] for t in saved] == ["failed", "failed", "ok"]
    assert saved[0]["value"] is None
    assert saved[1]["error"] == "ZeroDivisionError: no"
    assert "Traceback" in saved[1]["traceback"]
    _, trials = StudyFile(path).load()
    assert trials[1].error == "ZeroDivisionError: no"


def test_resume_continues_without_rerunning_and_counts_max_evals_in_total(tmp_path: Path) -> None:
    """A second run adds trials up to max_evals in all and keeps the first run's records."""
    path = tmp_path / "study.json"
    first_calls, second_calls = [], []
    first = tune(_objective(first_calls), max_evals=4, study=path, seed=0)
    second = tune(_objective(second_calls), max_evals=10, study=path, seed=0)
    assert len(first_calls) == 4
    assert len(second_calls) == 6
    assert [t.number for t in second.trials] == list(range(10))
    for old, kept in zip(first.trials, second.trials[:4], strict=True):
        assert (kept.params, kept.value, kept.status) == (old.params, old.value, old.status)
    assert second_calls == [t.params for t in second.trials[4:]]
    assert all(call not in first_calls for call in second_calls)
    assert len(_saved(path)) == 10

    third_calls = []
    third = tune(_objective(third_calls), max_evals=10, study=path)
    assert third_calls == []  # the budget is already spent
    assert len(third.trials) == 10
    assert third.best_value == second.best_value


def test_resume_never_reruns_a_configuration_of_a_discrete_space(tmp_path: Path) -> None:
    """Configurations evaluated in an earlier session are not proposed again."""
    path = tmp_path / "study.json"
    space = {"a": randint(0, 4), "b": choice("x", "y")}  # 8 configurations
    calls = []
    tune(lambda a, b: calls.append((a, b)) or a, space, max_evals=5, study=path, seed=1)
    tune(lambda a, b: calls.append((a, b)) or a, space, max_evals=8, study=path, seed=1)
    assert len(calls) == len(set(calls)) == 8


def test_resumed_trials_keep_intermediate_values_and_metrics(tmp_path: Path) -> None:
    """Everything recorded about a trial survives the round trip through the file."""
    path = tmp_path / "study.json"

    def objective(x, k):
        nbopt.report(0, 2.0, acc=0.5)
        nbopt.report(1, 1.0)
        return {"loss": x * k, "acc": 0.75}

    first = tune(objective, max_evals=2, study=path, seed=0)
    _, loaded = StudyFile(path).load()
    for old, new in zip(first.trials, loaded, strict=True):
        assert new.params == old.params
        assert new.value == old.value
        assert new.intermediate == [(0, 2.0), (1, 1.0)]
        assert new.metrics == {"acc": 0.75}
        assert new.duration == pytest.approx(old.duration, abs=1e-5)


def test_restart_starts_over(tmp_path: Path) -> None:
    """restart=True ignores the saved trials and replaces the file."""
    path = tmp_path / "study.json"
    tune(lambda x, k: x, max_evals=5, study=path, seed=0)
    calls = []
    result = tune(_objective(calls), max_evals=3, study=path, restart=True, seed=1)
    assert len(calls) == 3
    assert [t.number for t in result.trials] == [0, 1, 2]
    assert [t["params"] for t in _saved(path)] == calls


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"{not json", "cannot be read as JSON"),
        (b'{"hello": 1}', "is not an nbopt study file"),
        (b"[1, 2]", "is not an nbopt study file"),
        (b"\xff\xfe\x00binary", "cannot be read as JSON"),
        (b'{"format": "nbopt-study", "version": 99, "trials": []}', "unsupported version 99"),
        (
            b'{"format": "nbopt-study", "version": 1, "metric": "value", "mode": "min", '
            b'"space": "x", "trials": [{"number": 0, "status": "weird"}]}',
            "is corrupt",
        ),
        (b'{"format": "nbopt-study", "version": 1, "trials": []}', "is corrupt"),
    ],
)
@pytest.mark.parametrize("restart", [False, True])
def test_unusable_file_is_refused_and_left_untouched(
    tmp_path: Path, content: bytes, fragment: str, restart: bool
) -> None:
    """A file that is not a valid study gives ConfigError; it is byte-identical afterwards."""
    path = tmp_path / "study.json"
    path.write_bytes(content)
    calls = []
    with pytest.raises(ConfigError) as info:
        tune(_objective(calls), max_evals=2, study=path, restart=restart)
    assert fragment in str(info.value)
    assert str(path) in str(info.value)
    assert "left untouched" in str(info.value)
    assert path.read_bytes() == content
    assert calls == []


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 9)
    | st.floats(allow_nan=False)
    | st.text(max_size=4),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["x", "k", "a", "0"]), children, max_size=3)
    ),
    max_leaves=6,
)
_TRIAL_FIELDS = [
    "number",
    "status",
    "value",
    "params",
    "vals",
    "error",
    "traceback",
    "duration",
    "started",
    "intermediate",
    "metrics",
]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("metrics", "not a dict"),
        ("vals", {"x": "abc", "k": 0}),
        ("vals", {}),
        ("vals", {"x": 0.5, "k": 7}),
    ],
)
def test_trial_record_that_does_not_fit_is_a_config_error(
    tmp_path: Path, field: str, value: object
) -> None:
    """A trial record of the wrong shape, or whose values do not fit the space, is refused."""
    path = tmp_path / "study.json"
    tune(lambda x, k: x, max_evals=2, study=path, seed=0)
    document = json.loads(path.read_text())
    document["trials"][0][field] = value
    content = json.dumps(document).encode()
    path.write_bytes(content)
    calls = []
    with pytest.raises(ConfigError, match="study file"):
        tune(_objective(calls), max_evals=3, study=path)
    assert path.read_bytes() == content
    assert calls == []


def test_hand_edited_trial_records_are_loaded_or_refused_cleanly(tmp_path: Path) -> None:
    """A study whose trial records were edited by hand either loads and resumes, or gives
    ConfigError with the file left as it was; never another exception."""
    valid = tmp_path / "valid.json"
    tune(lambda x, k: x * k, max_evals=2, study=valid, seed=0)
    document = json.loads(valid.read_text())
    path = tmp_path / "edited.json"

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        index=st.integers(0, 1),
        field=st.sampled_from(_TRIAL_FIELDS),
        value=_JSON_VALUES,
        drop=st.booleans(),
    )
    def check(index: int, field: str, value: object, drop: bool) -> None:
        edited = json.loads(json.dumps(document))
        if drop:
            edited["trials"][index].pop(field)
        else:
            edited["trials"][index][field] = value
        content = json.dumps(edited).encode()
        path.write_bytes(content)
        try:
            StudyFile(path).load()
            tune(lambda x, k: x * k, max_evals=3, study=path, seed=0)
        except ConfigError:
            assert path.read_bytes() == content

    check()


@pytest.mark.parametrize(
    ("options", "what"),
    [
        ({"space": {"x": uniform(-2, 1), "k": choice(1, 2, 3)}}, "different search space"),
        ({"space": {"x": uniform(-1, 1)}}, "different search space"),
        ({"mode": "max"}, "different mode ('min', now 'max')"),
        ({"metric": "acc"}, "different metric ('value', now 'acc')"),
    ],
)
def test_study_made_differently_is_refused(tmp_path: Path, options: dict, what: str) -> None:
    """Resuming with another space, mode or metric is a ConfigError; the file is kept."""
    path = tmp_path / "study.json"
    tune(lambda x, k: x, max_evals=2, study=path)
    before = path.read_bytes()
    space = options.pop("space", SPACE)
    calls = []
    with pytest.raises(ConfigError) as info:
        tune(lambda **p: calls.append(p) or {"acc": 1.0}, space, max_evals=4, study=path, **options)
    assert what in str(info.value)
    assert "restart=True" in str(info.value)
    assert path.read_bytes() == before
    assert calls == []


@pytest.mark.parametrize("k", [1, 3])
def test_interrupt_saves_finished_trials_and_marks_the_running_one(tmp_path: Path, k: int) -> None:
    """KeyboardInterrupt in trial k propagates; k-1 trials are saved, the k-th as interrupted,
    and it does not count: a resume runs max_evals finished trials in all."""
    path = tmp_path / "study.json"
    calls = []

    def objective(x, k_):
        calls.append(x)
        if len(calls) == k:
            raise KeyboardInterrupt
        return x

    with pytest.raises(KeyboardInterrupt):
        tune(lambda x, k: objective(x, k), max_evals=5, study=path, seed=0)
    saved = _saved(path)
    assert [t["status"] for t in saved] == ["ok"] * (k - 1) + ["interrupted"]
    assert [t["number"] for t in saved] == list(range(k))

    resumed_calls = []
    result = tune(_objective(resumed_calls), max_evals=5, study=path, seed=0)
    finished = [t for t in result.trials if t.status == "ok"]
    assert len(finished) == 5
    assert len(resumed_calls) == 5 - (k - 1)
    assert [t.status for t in result.trials].count("interrupted") == 1
    assert [t.number for t in result.trials] == list(range(len(result.trials)))


# --- crash safety ----------------------------------------------------------------------------

_CHILD = r"""
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
def test_study_survives_sigkill_at_random_moments(tmp_path: Path) -> None:
    """Killing the searching process at any moment leaves a loadable study holding every trial
    it had reported finished (30 kills, resuming the same study each time)."""
    study, side = tmp_path / "crash.json", tmp_path / "finished.txt"
    rng = random.Random(12345)
    env = {**os.environ, "PYTHONPATH": str(Path(nbopt.__file__).resolve().parent.parent)}
    kills_mid_run = 0
    for attempt in range(30):
        before = len(_reported(side))
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(study), str(side)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            if attempt % 5 == 0:
                time.sleep(rng.uniform(0.0, 1.5))  # any moment, start-up and loading included
            else:
                deadline = time.monotonic() + 60
                while len(_reported(side)) == before:  # wait until it is running trials
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
        _, trials = StudyFile(study).load()
        numbers = [t.number for t in trials]
        assert numbers == list(range(len(trials))), "trial numbers are unique and in order"
        finished = {t.number for t in trials if t.finished}
        assert reported <= finished, f"kill {attempt}: lost {sorted(reported - finished)}"
    assert kills_mid_run >= 20
    assert len(_reported(side)) > 30


def test_resuming_a_study_past_its_budget_runs_nothing(tmp_path) -> None:
    """A study already holding more trials than max_evals returns at once, running none."""
    study = tmp_path / "s.json"
    tune(lambda x: x, {"x": uniform(0, 1)}, max_evals=6, study=study)
    calls = []
    result = tune(lambda x: calls.append(x) or x, {"x": uniform(0, 1)}, max_evals=4, study=study)
    assert calls == []
    assert len(result.trials) == 6
