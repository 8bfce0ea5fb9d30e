"""backend=ray on a local two-CPU Ray: parallel trials, faults, interrupts, resuming locally."""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
import threading
import time

import pytest

import nbopt
from nbopt.errors import ConfigError
from nbopt.tuning._study import read_study
from nbopt.tuning.events import TrialFinished

ray = pytest.importorskip("ray")

SPACE = {"x": nbopt.uniform(-1, 1), "k": nbopt.choice(0, 1, 2, 3)}


def crashing_objective(x, k):
    if k == 3:
        os._exit(3)  # the worker process dies: nothing is reported
    time.sleep(0.1)
    return (x - 0.2) ** 2 + k


@pytest.mark.slow
def test_nbopt_starts_a_local_ray_and_shuts_it_down_when_none_is_running():
    assert not ray.is_initialized()
    result = nbopt.tune(
        lambda x, k: x + k,
        SPACE,
        max_evals=2,
        seed=0,
        backend="ray",
        parallel=1,
        progress="none",
        logdir=None,
    )
    assert len(result.trials) == 2
    assert not ray.is_initialized()


@pytest.mark.slow
def test_a_local_ray_that_cannot_start_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    """A real failure: a Ray temp dir too deep for the Unix sockets Ray puts in it."""
    import psutil

    deep = tmp_path / ("d" * 120)
    deep.mkdir()
    monkeypatch.setenv("RAY_TMPDIR", str(deep))
    children = {p.pid for p in psutil.Process().children()}
    with pytest.raises(RuntimeError) as caught:
        nbopt.tune(lambda x, k: x, SPACE, max_evals=1, backend="ray", progress="none", logdir=None)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("could not start a local Ray for backend=ray (OSError: ")
    assert message.endswith(f"Ray's logs are in {deep}/ray/session_latest/logs")
    assert not ray.is_initialized()
    running = [p for p in psutil.Process().children() if p.status() != psutil.STATUS_ZOMBIE]
    assert {p.pid for p in running} <= children


@pytest.fixture(scope="module")
def local_ray():
    """One Ray for the tests below; nbopt joins it and leaves it running."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.mark.slow
def test_parallel_trials_overlap_and_the_study_resumes_on_the_local_backend(local_ray, tmp_path):
    study = tmp_path / "study.json"
    started = tmp_path / "started"
    started.mkdir()

    def together(x, k):
        # The first two trials each wait for the other: they overlap if Ray runs them at
        # once, however long the machine takes to start a trial.
        (started / str(x)).touch()
        deadline = time.time() + 120
        while len(list(started.iterdir())) < 2 and time.time() < deadline:
            time.sleep(0.05)
        return (x - 0.2) ** 2 + k

    result = nbopt.tune(
        together,
        SPACE,
        max_evals=4,
        seed=0,
        backend="ray",
        parallel=2,
        study=study,
        progress="none",
        logdir=None,
    )
    assert [t.status for t in result.trials] == ["ok"] * 4
    intervals = sorted((t.started, t.started + t.duration) for t in result.trials)
    overlapping = any(b[0] < a[1] for a, b in itertools.pairwise(intervals))
    assert overlapping, f"no two trials ran at once: {intervals}"
    header, saved, _ = read_study(study)
    assert header.backend == "ray" and len(saved) == 4

    seen = {json.dumps(t.params, sort_keys=True) for t in result.trials}
    calls = []

    def counting(x, k):
        calls.append(json.dumps({"k": k, "x": x}, sort_keys=True))
        return (x - 0.2) ** 2 + k

    resumed = nbopt.tune(
        counting, SPACE, max_evals=7, seed=0, study=study, progress="none", logdir=None
    )
    assert len(resumed.trials) == 7 and len(calls) == 3
    assert not seen & set(calls)  # no configuration run twice across the two backends
    assert [t.value for t in resumed.trials[:4]] == [t.value for t in result.trials[:4]]


@pytest.mark.slow
def test_a_trial_that_kills_its_worker_is_recorded_and_the_search_goes_on(local_ray):
    space = {"x": nbopt.uniform(-1, 1), "k": nbopt.choice(0, 3)}
    result = nbopt.tune(
        crashing_objective,
        space,
        max_evals=6,
        seed=1,
        backend="ray",
        parallel=2,
        progress="none",
        logdir=None,
    )
    assert len(result.trials) == 6
    crashed = [t for t in result.trials if t.params["k"] == 3]
    assert crashed and all(t.status == "failed" and t.error for t in crashed)
    assert all(t.status == "ok" for t in result.trials if t.params["k"] == 0)
    assert result.best_params["k"] == 0


@pytest.mark.slow
def test_errors_in_the_objective_come_back_with_their_traceback(local_ray):
    def objective(x, k):
        if k == 1:
            raise ValueError(f"bad k {k}")
        return x

    space = {"x": nbopt.uniform(0, 1), "k": nbopt.choice(0, 1)}
    result = nbopt.tune(
        objective,
        space,
        max_evals=5,
        seed=0,
        backend="ray",
        parallel=2,
        progress="none",
        logdir=None,
    )
    failed = [t for t in result.trials if t.status == "failed"]
    assert failed
    assert failed[0].error == "ValueError: bad k 1"
    assert "raise ValueError" in failed[0].traceback


@pytest.mark.slow
def test_asha_on_ray_stops_bad_trials_from_their_reports(local_ray):
    def objective(x, k):
        value = 0.0
        for epoch in range(1, 10):
            value = (x - 0.2) ** 2 + k + 1.0 / epoch
            nbopt.report(epoch, value)
            time.sleep(0.02)
        return value

    result = nbopt.tune(
        objective,
        SPACE,
        max_evals=10,
        seed=0,
        backend="ray",
        parallel=2,
        stop="asha",
        progress="none",
        logdir=None,
    )
    stopped = [t for t in result.trials if t.status == "stopped"]
    assert stopped
    assert all(t.value == t.intermediate[-1][1] for t in stopped)
    assert all(len(t.intermediate) == 9 for t in result.trials if t.status == "ok")


@pytest.mark.slow
def test_an_interrupt_stops_ray_trials_and_keeps_what_finished(local_ray, tmp_path):
    study = tmp_path / "study.json"

    def objective(x, k):
        time.sleep(1.0)
        return x + k

    handler_before = signal.getsignal(signal.SIGINT)
    interrupted = []

    def interrupt_after_the_first_trial(event):
        # What a kernel interrupt does: SIGINT to this process, while Ray runs trials.
        if isinstance(event, TrialFinished) and not interrupted:
            interrupted.append(event.trial.number)
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        nbopt.tune(
            objective,
            SPACE,
            max_evals=200,
            seed=0,
            backend="ray",
            parallel=2,
            study=study,
            progress="none",
            logdir=None,
            callbacks=[interrupt_after_the_first_trial],
        )
    _, saved, _ = read_study(study)
    finished = [t for t in saved if t.status == "ok"]
    assert finished, "trials that finished before the interrupt are saved"
    assert len(finished) < 20
    assert all(t.status in ("ok", "interrupted") for t in saved)
    assert signal.getsignal(signal.SIGINT) is handler_before


@pytest.mark.slow
def test_a_tune_cell_runs_on_ray_and_its_best_parameters_come_back(local_ray, ip, run_cell):
    """The cell objective travels to the workers with only the variables it uses."""
    run_cell(ip, "import threading\nlock = threading.Lock()\noffset = 0.25")  # lock: unpicklable
    result = run_cell(
        ip,
        "%%tune max_evals=4 seed=0 backend=ray parallel=2 progress=none logdir=none\n"
        "x = uniform(-1, 1)\n"
        "k = choice(0, 1)\n"
        "(x - offset) ** 2 + k",
    )
    assert len(result.trials) == 4 and all(t.status == "ok" for t in result.trials)
    assert ip.user_ns["x"] == result.best_params["x"]
    assert ip.user_ns["k"] == result.best_params["k"]


def test_an_objective_too_large_to_send_names_the_variable():
    from nbopt.tuning._ray_send import check_sendable

    weights = list(range(200_000))

    def objective(x):
        return x + len(weights)

    check_sendable(objective)  # fine under Ray's real limit
    with pytest.raises(ConfigError, match="most of it is the variable 'weights'"):
        check_sendable(objective, limit=100_000)


def test_an_objective_that_cannot_be_pickled_names_the_variable():
    from nbopt.tuning._ray_send import check_sendable

    lock = threading.Lock()

    def objective(x):
        with lock:
            return x

    with pytest.raises(ConfigError, match="because of the variable 'lock'"):
        check_sendable(objective)


def test_backend_ray_without_ray_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r'pip install "nbopt\[ray\]"'):
        nbopt.tune(lambda x, k: x, SPACE, max_evals=2, backend="ray", progress="none", logdir=None)


def test_unknown_backend_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown backend 'spark'; known backends: local, ray"):
        nbopt.tune(lambda x, k: x, SPACE, backend="spark", progress="none", logdir=None)
