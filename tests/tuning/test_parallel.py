"""``parallel=N`` on the local backend: trials in forked worker processes, the search here."""

from __future__ import annotations

import io
import os
import signal
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import torch

import nbopt
from nbopt import TuneError, choice, uniform
from nbopt.events import RunFinished, RunStarted, StepReported
from nbopt.tuning import Stopper
from nbopt.tuning._study import read_study
from nbopt.tuning.events import TrialFinished, TrialStarted
from nbopt.ui.text import TextReporter

SPACE = {"x": uniform(-1, 1), "k": choice(1, 2, 3)}


def tune(objective, space=SPACE, **options):
    options.setdefault("progress", "none")
    options.setdefault("logdir", None)
    options.setdefault("parallel", 3)
    return nbopt.tune(objective, space, **options)


def _children() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


@pytest.fixture
def no_leftover_processes():
    before = _children()
    yield
    deadline = time.monotonic() + 10
    while (left := _children() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"processes left running: {left}"


def test_trials_run_in_worker_processes_and_everything_is_reported_here(
    tmp_path: Path, no_leftover_processes
) -> None:
    """A closure of this process runs in forked workers; events, the text view, TensorBoard
    and the study are those of a search run here."""
    offset = 0.25  # a local variable the objective closes over: nothing is pickled

    def objective(x, k):
        nbopt.report(0, x + offset, pid=os.getpid())
        print(f"trial with x={x:.3f}")
        return (x - offset) ** 2 * k

    events, stream = [], io.StringIO()
    result = tune(
        objective,
        max_evals=9,
        seed=0,
        study=tmp_path / "s.jsonl",
        logdir=tmp_path / "tb",
        callbacks=[events.append, TextReporter(stream=stream)],
    )
    assert [t.number for t in result.trials] == list(range(9))
    assert all(t.status == "ok" for t in result.trials)
    assert len({(t.params["x"], t.params["k"]) for t in result.trials}) == 9
    pids = {t.metrics["pid"] for t in result.trials}
    assert os.getpid() not in pids and 1 < len(pids) <= 3
    kinds = [type(e) for e in events]
    assert kinds[0] is RunStarted and kinds[-1] is RunFinished
    assert kinds.count(TrialStarted) == kinds.count(TrialFinished) == 9
    assert kinds.count(StepReported) == 9
    assert all(t.intermediate == [(0, t.params["x"] + offset)] for t in result.trials)
    assert "best" in stream.getvalue()
    assert any(path.name.startswith("events") for path in (tmp_path / "tb").rglob("*"))
    resumed = tune(objective, max_evals=9, study=tmp_path / "s.jsonl")
    assert [t.value for t in resumed.trials] == [t.value for t in result.trials]


def test_the_output_of_a_trial_reaches_this_process(capsys) -> None:
    def objective(x, k):
        print(f"hello {k}")
        return x

    tune(objective, {"x": uniform(0, 1), "k": choice(7)}, max_evals=2)
    out = capsys.readouterr().out
    assert "[trial 0] hello 7\n" in out and "[trial 1] hello 7\n" in out


def test_a_trial_that_kills_its_worker_fails_alone(no_leftover_processes) -> None:
    def objective(x, k):
        if k == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return x

    space = {"x": uniform(0, 1), "k": choice(1, 2, 3)}
    result = tune(objective, space, max_evals=12, seed=1, parallel=2, deterministic=False)
    crashed = [t for t in result.trials if t.params["k"] == 2]
    assert crashed and all(t.status == "failed" for t in crashed)
    assert all("was killed by SIGKILL" in t.error for t in crashed)
    assert all(t.status == "ok" for t in result.trials if t.params["k"] != 2)
    assert len(result.trials) == 12


def test_an_interrupt_stops_every_worker_and_keeps_what_finished(
    tmp_path: Path, no_leftover_processes
) -> None:
    def objective(x, k):
        if x > 0.5:
            time.sleep(60)
        return x

    interrupted = []

    def interrupt(event) -> None:  # as Ctrl-C would, once, while workers run
        if isinstance(event, TrialFinished) and event.n_complete == 2 and not interrupted:
            interrupted.append(True)
            raise KeyboardInterrupt

    events = []
    with pytest.raises(KeyboardInterrupt):
        tune(
            objective,
            {"x": uniform(0, 1), "k": choice(1)},
            max_evals=50,
            seed=3,
            study=tmp_path / "s.jsonl",
            callbacks=[events.append, interrupt],
        )
    end = events[-1]
    assert isinstance(end, RunFinished) and end.status == "interrupted"
    statuses = [t.status for t in end.result.trials]
    assert statuses.count("ok") >= 2
    assert set(statuses) <= {"ok", "interrupted"}
    _, saved, running = read_study(tmp_path / "s.jsonl")
    assert sorted(t.status for t in saved) == sorted(statuses) and running == []


class StopAboveHalf(Stopper):
    def should_stop(self, trial, history) -> bool:
        return trial.intermediate[-1][1] > 0.5


def test_stopping_rules_are_applied_here_to_what_workers_report() -> None:
    def objective(x, k):
        for step in range(3):
            nbopt.report(step, x)
        return x

    result = tune(objective, max_evals=10, seed=0, stop=StopAboveHalf())
    for trial in result.trials:
        expected = "stopped" if trial.params["x"] > 0.5 else "ok"
        assert trial.status == expected, trial
        assert len(trial.intermediate) == (1 if expected == "stopped" else 3)


def test_workers_do_not_hang_after_this_process_used_threads(no_leftover_processes) -> None:
    """PyTorch's OpenMP pool was used here before the fork; workers run on one thread."""
    torch.set_num_threads(2)
    torch.mm(torch.randn(256, 256), torch.randn(256, 256))

    def objective(x, k):
        model = torch.nn.Linear(64, k)
        return float(model(torch.randn(128, 64)).pow(2).mean()) + x

    result = tune(objective, max_evals=4, seed=0, parallel=2)
    assert all(t.status == "ok" for t in result.trials)


def test_a_trial_may_start_processes_of_its_own(no_leftover_processes) -> None:
    """As a DataLoader with workers does: the trial's worker process is no daemon."""
    from torch.utils.data import DataLoader, TensorDataset

    def objective(x, k):
        data = DataLoader(TensorDataset(torch.arange(8.0)), batch_size=4, num_workers=1)
        return float(sum(batch[0].sum() for batch in data)) + x

    result = tune(objective, max_evals=2, seed=0, parallel=2)
    assert [t.status for t in result.trials] == ["ok", "ok"], result.trials[0].error


def test_every_trial_failing_is_one_tune_error() -> None:
    with pytest.raises(TuneError, match="all 4 trials failed; the first one: ValueError: no"):
        tune(lambda x, k: (_ for _ in ()).throw(ValueError("no")), max_evals=4)


CELL_SETUP = """
import torch
def make(width):
    torch.manual_seed(width)
    return torch.nn.Linear(3, width)
"""


def test_a_tune_cell_in_workers_brings_back_the_best_trials_variables(ip, run_cell) -> None:
    run_cell(ip, CELL_SETUP)
    result = run_cell(
        ip,
        textwrap.dedent(
            """
            %%tune max_evals=6 parallel=3 metric=score mode=max progress=none logdir=none
            width = choice(2, 3, 4, 5, 6, 7)
            model = make(width)
            score = float(model.weight.sum())
            """
        ).strip("\n"),
    )
    best = result.best_trial
    assert ip.user_ns["width"] == best.params["width"]
    assert ip.user_ns["score"] == best.value
    assert isinstance(ip.user_ns["model"], torch.nn.Linear)
    assert ip.user_ns["model"].out_features == best.params["width"]


def test_a_tune_cell_without_its_metric_stops_at_the_first_trials(ip, run_cell) -> None:
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match=r"metric=scor: the cell ran but did not assign scor"):
        run_cell(
            ip,
            "%%tune max_evals=20 parallel=2 metric=scor progress=none logdir=none\n"
            "x = uniform(0, 1)\nscore = x",
        )
    assert len(ip.user_ns["_nbopt"].trials) <= 2


@pytest.mark.slow
def test_parallel_trials_in_a_jupyter_kernel_run_notebook_functions(tmp_path: Path) -> None:
    """In a real kernel: a function defined in the notebook runs in forked workers, what it
    prints reaches the cell, and the study holds every trial."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "%load_ext nbopt\nimport os, time\n"
                "def train(lr, width):\n"
                "    time.sleep(0.1)\n"
                "    print(f'pid {os.getpid()} lr {lr:.4f}')\n"
                "    return (lr - 0.01) ** 2 + width / 1000"
            ),
            nbformat.v4.new_code_cell(
                "%tune train lr=loguniform(1e-4, 1e-1) width=choice(16, 32) max_evals=8 "
                "parallel=2 study=runs/s.jsonl progress=text logdir=none out=search"
            ),
            nbformat.v4.new_code_cell(
                "assert len(search.trials) == 8\n"
                "assert all(t.status == 'ok' for t in search.trials)\n"
                "print('kernel', os.getpid())"
            ),
        ]
    )
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    ).execute()
    stdout = "".join(
        o.get("text", "") for o in notebook.cells[1].outputs if o.get("name") == "stdout"
    )
    kernel = "".join(o.get("text", "") for o in notebook.cells[2].outputs).split()[-1]
    pids = {line.split()[3] for line in stdout.splitlines() if line.startswith("[trial")}
    assert len(pids) == 2 and kernel not in pids
    assert stdout.count("] pid ") == 8
    _, saved, running = read_study(tmp_path / "runs" / "s.jsonl")
    assert len(saved) == 8 and running == []
