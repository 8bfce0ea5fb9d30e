"""Study files: a journal appended after every trial, resumed, restarted, refused when unusable,
converted from the first format, and kept as the user set it up (mode, symbolic link)."""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import stat
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nbopt
from nbopt import ConfigError, choice, randint, uniform
from nbopt.events import RunFinished
from nbopt.tuning import StudyWriteError
from nbopt.tuning._records import StudyHeader
from nbopt.tuning._study import read_study
from nbopt.tuning._trial import Trial

SPACE = {"x": uniform(-1, 1), "k": choice(1, 2, 3)}


def tune(objective, space=SPACE, **options):
    """``nbopt.tune`` without live view or TensorBoard."""
    options.setdefault("progress", "none")
    options.setdefault("logdir", None)
    return nbopt.tune(objective, space, **options)


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _saved(path: Path) -> list[dict]:
    """The finish records, in the order they were appended."""
    return [record for record in _records(path) if record.get("event") == "finish"]


def _objective(calls: list):
    def objective(x, k):
        calls.append({"x": x, "k": k})
        return x * k

    return objective


def legacy_study(path: Path, trials: list[dict], **header) -> None:
    """A study of nbopt's first format: one JSON document holding every trial."""
    document = {
        "format": "nbopt-study",
        "version": 1,
        "metric": "value",
        "mode": "min",
        "space": header.pop("space"),
        "created": 1.7e9,
        "backend": "local",
        **header,
        "trials": trials,
    }
    path.write_text(json.dumps(document, indent=1))


def _fingerprint(space=SPACE) -> str:
    from nbopt.events import EventBus
    from nbopt.tuning._search import Search

    return Search(space, bus=EventBus(), max_evals=1).header.space


# --- the journal ----------------------------------------------------------------------------


def test_each_trial_is_appended_as_soon_as_it_finishes(tmp_path: Path) -> None:
    """When trial n starts, the file holds trials 0..n-1 with their values, and its own claim;
    each save appends and never rewrites what was there."""
    path = tmp_path / "study.jsonl"
    observed, returned, contents = [], [], []

    def objective(x, k):
        contents.append(path.read_bytes())
        saved = _saved(path)
        observed.append([(t["number"], t["status"], t["value"]) for t in saved])
        assert _records(path)[-1] == {**_records(path)[-1], "event": "start", "number": len(saved)}
        returned.append(x * k)
        return x * k

    tune(objective, max_evals=5, study=path, seed=0)
    for n, saved in enumerate(observed):
        assert saved == [(i, "ok", returned[i]) for i in range(n)]
    for before, after in itertools.pairwise(contents):
        assert after.startswith(before)  # appended, not rewritten
    header, trials, running = read_study(path)
    assert (header.metric, header.mode) == ("value", "min")
    assert [t.value for t in trials] == returned
    assert running == []


def test_the_study_is_json_lines_with_a_header_and_trial_records(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "mlp.jsonl"  # a missing directory is created
    result = tune(lambda x, k: x + k, max_evals=3, study=path, seed=0, mode="max")
    records = _records(path)
    assert records[0]["format"] == "nbopt-study" and records[0]["version"] == 2
    assert records[0]["mode"] == "max"
    assert [r["event"] for r in records[1:]] == ["start", "finish"] * 3
    assert [r["params"] for r in _saved(path)] == [t.params for t in result.trials]
    assert result.study == str(path)
    assert not list(path.parent.glob(".*.tmp"))


def test_failed_trials_are_saved_with_their_error(tmp_path: Path) -> None:
    path = tmp_path / "study.jsonl"
    outcomes = iter([float("nan"), "raise", 1.0])

    def objective(x, k):
        outcome = next(outcomes)
        if outcome == "raise":
            raise ZeroDivisionError("no")
        return outcome

    tune(objective, max_evals=3, study=path)
    saved = _saved(path)
    assert [t["status"] for t in saved] == ["failed", "failed", "ok"]
    assert "value" not in saved[0]  # null fields are left out
    assert saved[1]["error"] == "ZeroDivisionError: no"
    assert "Traceback" in saved[1]["traceback"]
    _, trials, _ = read_study(path)
    assert trials[1].error == "ZeroDivisionError: no"


def test_resume_continues_without_rerunning_and_counts_max_evals_in_total(tmp_path: Path) -> None:
    path = tmp_path / "study.jsonl"
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
    assert third_calls == []
    assert len(third.trials) == 10
    assert third.best_value == second.best_value


def test_resume_never_reruns_a_configuration_of_a_discrete_space(tmp_path: Path) -> None:
    path = tmp_path / "study.jsonl"
    space = {"a": randint(0, 4), "b": choice("x", "y")}  # 8 configurations
    calls = []
    tune(lambda a, b: calls.append((a, b)) or a, space, max_evals=5, study=path, seed=1)
    tune(lambda a, b: calls.append((a, b)) or a, space, max_evals=8, study=path, seed=1)
    assert len(calls) == len(set(calls)) == 8


def test_resumed_trials_keep_intermediate_values_and_metrics(tmp_path: Path) -> None:
    path = tmp_path / "study.jsonl"

    def objective(x, k):
        nbopt.report(0, 2.0, acc=0.5)
        nbopt.report(1, 1.0)
        return {"loss": x * k, "acc": 0.75}

    first = tune(objective, max_evals=2, study=path, seed=0)
    resumed = tune(objective, max_evals=2, study=path, seed=0)
    for old, new in zip(first.trials, resumed.trials, strict=True):
        assert new.params == old.params
        assert new.value == old.value
        assert new.intermediate == [(0, 2.0), (1, 1.0)]
        assert new.metrics == {"acc": 0.75}
        assert new.duration == pytest.approx(old.duration, abs=1e-5)


def test_restart_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "study.jsonl"
    tune(lambda x, k: x, max_evals=5, study=path, seed=0)
    calls = []
    result = tune(_objective(calls), max_evals=3, study=path, restart=True, seed=1)
    assert len(calls) == 3
    assert [t.number for t in result.trials] == [0, 1, 2]
    assert [t["params"] for t in _saved(path)] == calls


@pytest.mark.parametrize("k", [1, 3])
def test_interrupt_saves_finished_trials_and_marks_the_running_one(tmp_path: Path, k: int) -> None:
    path = tmp_path / "study.jsonl"
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
    assert len([t for t in result.trials if t.status == "ok"]) == 5
    assert len(resumed_calls) == 5 - (k - 1)
    assert [t.status for t in result.trials].count("interrupted") == 1
    assert [t.number for t in result.trials] == list(range(len(result.trials)))


def test_resuming_a_study_past_its_budget_runs_nothing(tmp_path: Path) -> None:
    study = tmp_path / "s.jsonl"
    tune(lambda x: x, {"x": uniform(0, 1)}, max_evals=6, study=study)
    calls = []
    result = tune(lambda x: calls.append(x) or x, {"x": uniform(0, 1)}, max_evals=4, study=study)
    assert calls == []
    assert len(result.trials) == 6


# --- the first format -----------------------------------------------------------------------


def test_a_study_of_the_first_format_is_resumed_and_converted_at_its_first_write(
    tmp_path: Path,
) -> None:
    """The old document is read (no rewrite until a trial runs), then becomes a journal with
    its trials first; the original is kept beside it, byte for byte."""
    path = tmp_path / "old.json"
    trials = [
        Trial(n, {}, value=float(n), vals={"x": 0.1 * n, "k": n % 3}, started=1.7e9 + n).to_json()
        for n in range(3)
    ]
    legacy_study(path, trials, space=_fingerprint())
    original = path.read_bytes()
    calls = []
    result = tune(_objective(calls), max_evals=5, study=path, seed=0)
    assert len(calls) == 2
    assert [t.number for t in result.trials] == [0, 1, 2, 3, 4]
    assert [t.params for t in result.trials[:3]] == [
        {"x": 0.0, "k": 1},
        {"x": 0.1, "k": 2},
        {"x": 0.2, "k": 3},
    ]
    assert (tmp_path / "old.json.v1.bak").read_bytes() == original
    assert _records(path)[0]["version"] == 2
    assert [t["number"] for t in _saved(path)] == [0, 1, 2, 3, 4]
    again = tune(_objective(calls), max_evals=5, study=path)
    assert [t.value for t in again.trials] == [t.value for t in result.trials]


def test_opening_a_first_format_study_changes_nothing_until_a_trial_runs(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    legacy_study(path, [], space="not this space")
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="different search space"):
        tune(lambda x, k: x, max_evals=2, study=path)
    assert path.read_bytes() == before
    assert not (tmp_path / "old.json.v1.bak").exists()


# --- files that are not valid studies -------------------------------------------------------

_HEADER = '{"format": "nbopt-study", "version": 2, "metric": "value", "mode": "min", '


def _journal_with(space: str, *lines: str) -> bytes:
    header = _HEADER + f'"space": "{space}", "created": 1.7e9, "id": "abc"}}'
    return ("\n".join([header, *lines]) + "\n").encode()


_VALS = {"x": 0.5, "k": 0}
_FINISH = json.dumps({"event": "finish", "number": 0, "status": "ok", "value": 1.0, "vals": _VALS})
_START = json.dumps(
    {"event": "start", "number": 0, "vals": _VALS, "started": 1.7e9, "worker": "h/b 1 - s"}
)


def _bad_files() -> list[tuple[bytes | str, str]]:
    deep = "[" * 5000 + "]" * 5000
    return [
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
        (
            b'{"format": "nbopt-study", "version": 1, "metric": "value", "mode": "min", '
            b'"space": "x", "trials": {}}',
            "'trials' must be a list",
        ),
        (
            b'{"format": "nbopt-study", "version": 1, "metric": "value", "mode": "min", '
            b'"space": "x", "created": 1e400, "trials": []}',
            "'created' is out of range",
        ),
        (
            b'{"format": "nbopt-study", "version": 1, "metric": "value", "mode": "min", '
            b'"space": "x", "trials": [{"number": 1, "status": "ok"}, '
            b'{"number": 1, "status": "ok"}]}',
            "trial 1 is recorded twice",
        ),
        (f'{{"format": "nbopt-study", "version": 1, "x": {deep}}}'.encode(), "nested more than"),
        ("SPACE", "{finish}", "{finish}", "trial 0 is finished twice"),
        ("SPACE", "{start}", "{start}", "trial 0 is started twice"),
        ("SPACE", '{"event": "delete", "number": 0}', "unknown record 'delete'"),
        ("SPACE", '{"event": "finish", "number": 0, "status": "ok", "value": NaN}', "NaN"),
        ("SPACE", '{"event": "finish", "number": 0, "status": "ok", "value": 1e400}', "finite"),
        ("SPACE", '{"event": "finish", "number": 0, "x": ' + deep + "}", "nested more than"),
        ("SPACE", '{"event": "start", "number": -1}', "non-negative integer"),
        ("SPACE", _START.replace("h/b 1 - s", "nobody"), "'worker' must be"),
        ("SPACE", "not json", "is corrupt at line 2"),
    ]


_BAD_FILES = _bad_files()


def _materialise(case: tuple, space: str) -> bytes:
    if isinstance(case[0], bytes):
        return case[0]
    named = {"{finish}": _FINISH, "{start}": _START}
    lines = [named.get(line, line) for line in case[1:-1]]
    return _journal_with(space, *lines)


@pytest.mark.parametrize("case", _BAD_FILES, ids=[case[-1] for case in _BAD_FILES])
@pytest.mark.parametrize("restart", [False, True])
def test_a_file_that_is_not_a_valid_study_is_refused_and_left_untouched(
    tmp_path: Path, case: tuple, restart: bool
) -> None:
    path = tmp_path / "study.jsonl"
    content = _materialise(case, _fingerprint())
    path.write_bytes(content)
    calls = []
    with pytest.raises(ConfigError) as info:
        tune(_objective(calls), max_evals=2, study=path, restart=restart)
    message = str(info.value)
    assert case[-1] in message
    assert str(path) in message and "left untouched" in message
    assert "\n" not in message
    assert path.read_bytes() == content
    assert calls == []


@pytest.mark.parametrize(
    ("vals", "fragment"),
    [
        ({"x": 999, "k": 0}, "x=999 is above 1"),
        ({"x": 0.5, "k": 7}, "k=7 is outside 0 .. 2"),
        ({"x": 0.5, "k": 0.5}, "k=0.5 is not an integer"),
        ({"x": "abc", "k": 0}, "x='abc' is not a number"),
        ({"x": 0.5}, "the value of 'k' is missing"),
        ({"x": 0.5, "k": 0, "lr": 0.1}, "'lr' is not a parameter of the search space"),
    ],
)
@pytest.mark.parametrize("form", ["journal", "first format", "running"])
def test_a_trial_that_does_not_fit_the_space_is_refused(
    tmp_path: Path, vals: dict, fragment: str, form: str
) -> None:
    path = tmp_path / "study.jsonl"
    space = _fingerprint()
    record = {"number": 0, "status": "ok", "value": 1.0, "vals": vals}
    if form == "first format":
        legacy_study(path, [record], space=space)
    elif form == "journal":
        path.write_bytes(_journal_with(space, json.dumps({"event": "finish", **record})))
    else:
        start = json.loads(_START) | {"vals": vals}
        path.write_bytes(_journal_with(space, json.dumps(start)))
    content = path.read_bytes()
    calls = []
    with pytest.raises(ConfigError) as info:
        tune(_objective(calls), max_evals=3, study=path)
    assert "trial 0 does not fit the search space" in str(info.value)
    assert fragment in str(info.value)
    assert path.read_bytes() == content and calls == []


def test_bounds_of_every_dimension_kind_are_checked(tmp_path: Path) -> None:
    space = {
        "a": nbopt.loguniform(1e-3, 1.0),
        "b": nbopt.quniform(16, 128, 16),
        "c": nbopt.randint(2, 5),
        "d": nbopt.qloguniform(1, 64, 1),
    }
    fingerprint = _fingerprint(space)
    good = {"a": 0.01, "b": 32.0, "c": 4, "d": 8.0}
    for bad, fragment in [
        ({"a": 2.0}, "a=2.0 is above 1"),
        ({"a": 1e-4}, "a=0.0001 is below 0.001"),
        ({"b": 40.0}, "b=40.0 is not a multiple of q=16"),
        ({"b": 144.0}, "b=144.0 is above 128"),
        ({"c": 5}, "c=5 is outside 2 .. 4"),
        ({"d": 65.0}, "d=65.0 is above 64"),
    ]:
        path = tmp_path / "study.jsonl"
        record = {"event": "finish", "number": 0, "status": "ok", "value": 1.0}
        path.write_bytes(_journal_with(fingerprint, json.dumps(record | {"vals": good | bad})))
        with pytest.raises(ConfigError, match="does not fit") as info:
            tune(lambda **p: 1.0, space, max_evals=2, study=path)
        assert fragment in str(info.value)
    path.write_bytes(_journal_with(fingerprint, json.dumps(record | {"vals": good})))
    result = tune(lambda **p: 1.0, space, max_evals=1, study=path)
    assert result.trials[0].params == {"a": 0.01, "b": 32, "c": 4, "d": 8}


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
    "event",
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
    "worker",
]


def test_hand_edited_records_are_loaded_or_refused_cleanly(tmp_path: Path) -> None:
    """A journal whose records were edited by hand either loads and resumes, or gives
    ConfigError with the file left as it was; never another exception."""
    valid = tmp_path / "valid.jsonl"
    tune(lambda x, k: x * k, max_evals=2, study=valid, seed=0)
    lines = valid.read_text().splitlines()
    path = tmp_path / "edited.jsonl"

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        index=st.integers(1, len(lines) - 1),
        field=st.sampled_from(_TRIAL_FIELDS),
        value=_JSON_VALUES,
        drop=st.booleans(),
    )
    def check(index: int, field: str, value: object, drop: bool) -> None:
        record = json.loads(lines[index])
        if drop:
            record.pop(field, None)
        else:
            record[field] = value
        edited = [*lines[:index], json.dumps(record), *lines[index + 1 :]]
        content = ("\n".join(edited) + "\n").encode()
        path.write_bytes(content)
        try:
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
    path = tmp_path / "study.jsonl"
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


def test_a_torn_last_line_is_ignored_with_a_warning_and_cut_at_the_next_write(
    tmp_path: Path,
) -> None:
    """A crash in the middle of an append: the partial line is ignored (with a warning), every
    record before it is kept, and the next append starts on a clean line."""
    path = tmp_path / "study.jsonl"
    tune(lambda x, k: x, max_evals=3, study=path, seed=0)
    complete = path.read_bytes()
    path.write_bytes(complete + b'{"event": "finish", "number": 3, "sta')
    with pytest.warns(RuntimeWarning, match="was cut short"):
        result = tune(lambda x, k: x, max_evals=4, study=path, seed=0)
    assert len(result.trials) == 4
    assert path.read_bytes().startswith(complete)
    assert [r["number"] for r in _saved(path)] == [0, 1, 2, 3]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(tune(lambda x, k: x, max_evals=4, study=path).trials) == 4


# --- the file as the user set it up ---------------------------------------------------------


def test_mode_and_symbolic_link_are_kept_and_temporary_files_cleaned(tmp_path: Path) -> None:
    """Appending, restarting and converting keep the study's mode, write through a symbolic
    link to its target, and remove temporary files that crashed writers left."""
    target = tmp_path / "real.jsonl"
    link = tmp_path / "link.jsonl"
    tune(lambda x, k: x, max_evals=2, study=target, seed=0)
    os.chmod(target, 0o600)
    link.symlink_to(target)
    stale = tmp_path / f".{target.name}.99999.tmp"
    stale.write_text("left by a crash")
    tune(lambda x, k: x, max_evals=3, study=link, seed=0)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and link.is_symlink()
    assert not stale.exists()
    stale.write_text("left by a crash")
    tune(lambda x, k: x, max_evals=1, study=link, restart=True)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and link.is_symlink()
    assert len(_saved(target)) == 1
    assert not stale.exists()

    old = tmp_path / "old.json"
    legacy_study(old, [], space=_fingerprint())
    os.chmod(old, 0o640)
    tune(lambda x, k: x, max_evals=1, study=old)
    assert stat.S_IMODE(old.stat().st_mode) == 0o640


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda d: (d / "afile").touch() or d / "afile" / "s.jsonl", "is a file"),
        (lambda d: d / "no" / "such" / "s.jsonl", "does not exist"),
        (lambda d: (d / "adir").mkdir() or d / "adir", "is a directory"),
    ],
    ids=["parent is a file", "grandparent missing", "a directory"],
)
def test_a_path_that_cannot_hold_a_study_fails_before_any_trial(
    tmp_path: Path, make, fragment: str
) -> None:
    path = make(tmp_path)
    calls = []
    with pytest.raises(ConfigError, match=fragment) as info:
        tune(_objective(calls), max_evals=2, study=path)
    assert "\n" not in str(info.value)
    assert calls == []


@contextlib.contextmanager
def _mounted(directory: Path, options: str) -> Iterator[None]:
    """A tmpfs at ``directory`` (as root only), unmounted afterwards."""
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(directory)], check=True)


@pytest.mark.parametrize("exists", [False, True])
def test_a_read_only_directory_fails_before_any_trial(tmp_path: Path, exists: bool) -> None:
    """A directory the process cannot write: a read-only filesystem as root (who may write
    anywhere else), a directory without write permission otherwise."""
    directory = tmp_path / "ro"
    directory.mkdir()
    study = directory / "s.jsonl"
    calls = []
    if os.geteuid() == 0:
        context = _mounted(directory, "ro,size=1m")
        if exists:  # a study already there, on a filesystem mounted read-only
            with _mounted(directory, "size=1m"):
                tune(_objective([]), max_evals=1, study=study)
                saved = study.read_bytes()
            context = _mounted_with(directory, {study.name: saved})
    else:
        if exists:
            tune(_objective([]), max_evals=1, study=study)
        os.chmod(directory, 0o555)
        context = contextlib.nullcontext()
    with context, pytest.raises(ConfigError) as info:
        tune(_objective(calls), max_evals=2, study=study)
    message = str(info.value)
    assert message.startswith(f"study path {study} cannot be written: ")
    assert "read-only file system" in message or "permission denied" in message
    assert calls == []


@contextlib.contextmanager
def _mounted_with(directory: Path, files: dict[str, bytes]) -> Iterator[None]:
    """A read-only tmpfs at ``directory`` holding ``files``."""
    with _mounted(directory, "size=1m"):
        for name, content in files.items():
            (directory / name).write_bytes(content)
        subprocess.run(["mount", "-o", "remount,ro", str(directory)], check=True)
        yield


def test_a_full_disk_fails_before_any_trial(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root, to mount a small filesystem")
    directory = tmp_path / "full"
    directory.mkdir()
    calls = []
    with _mounted(directory, "size=64k"):
        with contextlib.suppress(OSError):
            (directory / "filler").write_bytes(b"x" * 1024 * 1024)
        with pytest.raises(ConfigError, match="no space left on device"):
            tune(_objective(calls), max_evals=2, study=directory / "s.jsonl")
    assert calls == []


def test_a_save_failing_mid_search_is_one_line_and_keeps_what_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk at the fourth trial's record: a one-line StudyWriteError; the result (what a
    magic stores in _nbopt) holds the four trials; the study the three saved before."""
    from nbopt.tuning import _journal

    path = tmp_path / "study.jsonl"
    writes = []
    real = _journal._write_all

    def write(fd: int, data: bytes) -> None:
        writes.append(data)
        if b'"event":"finish","number":3' in data:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, data)

    monkeypatch.setattr(_journal, "_write_all", write)
    events = []
    with pytest.raises(StudyWriteError) as info:
        tune(lambda x, k: x, max_evals=10, study=path, callbacks=[events.append])
    message = str(info.value)
    assert "\n" not in message
    assert "no space left on device" in message and "trial 3" in message
    finished = events[-1]
    assert isinstance(finished, RunFinished) and finished.status == "failed"
    assert [t.number for t in finished.result.trials] == [0, 1, 2, 3]
    monkeypatch.setattr(_journal, "_write_all", real)
    assert [t["number"] for t in _saved(path)] == [0, 1, 2]
    assert info.value._render_traceback_() == [f"StudyWriteError: {message}"]


def test_read_study_reports_what_a_study_holds(tmp_path: Path) -> None:
    path = tmp_path / "study.jsonl"
    tune(lambda x, k: x, max_evals=2, study=path)
    header, trials, running = read_study(path)
    assert isinstance(header, StudyHeader) and header.space == _fingerprint()
    assert [t.number for t in trials] == [0, 1] and running == []


def test_optimize_auto_checks_its_study_before_the_baseline(tmp_path: Path) -> None:
    """A study that cannot be used stops %%optimize auto before eval= runs even once."""
    import torch

    path = tmp_path / "auto.jsonl"
    path.write_text("{broken")
    evaluated = []

    def accuracy(model: torch.nn.Module) -> float:
        evaluated.append(1)
        return 1.0

    with pytest.raises(ConfigError, match="cannot be read as JSON"):
        nbopt.optimize_auto(
            torch.nn.Linear(4, 4),
            evaluate=accuracy,
            target="size",
            study=path,
            progress="none",
            logdir=None,
        )
    assert evaluated == []
    tune(lambda x, k: x, max_evals=1, study=tmp_path / "other.jsonl")
    with pytest.raises(ConfigError, match="different metric"):
        nbopt.optimize_auto(
            torch.nn.Linear(4, 4),
            evaluate=accuracy,
            target="size",
            study=tmp_path / "other.jsonl",
            progress="none",
            logdir=None,
        )
    assert evaluated == []
