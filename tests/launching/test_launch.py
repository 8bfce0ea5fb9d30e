"""``nbopt.launching.launch``: a real two-rank job on CPU, with gloo, Accelerate and DDP."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import nbopt
from nbopt.errors import ConfigError
from nbopt.events import RunFinished, RunStarted, StepReported
from nbopt.launching import LaunchError, LaunchTimeout, launch
from nbopt.launching.events import RankFinished, RankStepReported

QUIET = {"progress": "none", "logdir": None}
# Never reached by a job that works; there so that a regression fails instead of hanging.
SAFETY_TIMEOUT = 120


def describe_rank() -> tuple:
    from accelerate import Accelerator
    from accelerate.utils import gather_object

    accelerator = Accelerator()
    with accelerator.autocast():
        product_dtype = torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype
    mine = (
        accelerator.process_index,
        accelerator.num_processes,
        accelerator.distributed_type.value,
        accelerator.mixed_precision,
        accelerator.device.type,
        str(product_dtype),
    )
    return tuple(gather_object([mine]))


@pytest.mark.parametrize(
    ("precision", "dtype"),
    [("no", "torch.float32"), ("bf16", "torch.bfloat16")],
)
def test_each_rank_is_in_a_world_of_two_with_the_requested_precision(
    precision: str, dtype: str, no_leftover_children: None
) -> None:
    """A plain Accelerator() sees MULTI_CPU with world size 2, and mixed_precision= reaches it
    (autocast computes in that dtype): the two traps of notebook_launcher on CPU."""
    ranks = launch(
        describe_rank,
        num_processes=2,
        mixed_precision=precision,
        timeout=SAFETY_TIMEOUT,
        **QUIET,
    )
    assert ranks == (
        (0, 2, "MULTI_CPU", precision, "cpu", dtype),
        (1, 2, "MULTI_CPU", precision, "cpu", dtype),
    )


def train_one_step(x: torch.Tensor, y: torch.Tensor, start: dict) -> tuple:
    from accelerate import Accelerator

    accelerator = Accelerator()
    model = torch.nn.Linear(4, 1)
    model.load_state_dict(start)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(TensorDataset(x, y), batch_size=len(x) // 2)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    (xb, yb) = next(iter(loader))
    loss = torch.nn.functional.mse_loss(model(xb), yb)
    accelerator.backward(loss)
    optimizer.step()
    weights = torch.cat([p.detach().flatten() for p in model.parameters()])
    return accelerator.gather(weights[None]), accelerator.gather(xb), model


def test_gradients_are_averaged_and_the_trained_model_comes_back(
    no_leftover_children: None,
) -> None:
    """After one step on different halves of a batch, both ranks hold the same weights, equal
    to one step on the whole batch in one process; rank 0's model comes back unwrapped."""
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 4, generator=generator), torch.randn(8, 1, generator=generator)
    torch.manual_seed(0)
    reference = torch.nn.Linear(4, 1)
    start = {k: v.clone() for k, v in reference.state_dict().items()}

    weights, shards, model = launch(
        train_one_step, x, y, start, num_processes=2, timeout=SAFETY_TIMEOUT, **QUIET
    )

    assert torch.equal(shards, x)  # rank 0 trained on the first half, rank 1 on the second
    assert torch.equal(weights[0], weights[1])
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
    torch.nn.functional.mse_loss(reference(x), y).backward()
    optimizer.step()
    expected = torch.cat([p.detach().flatten() for p in reference.parameters()])
    assert torch.allclose(weights[0], expected, atol=1e-6)
    assert not torch.equal(expected, torch.cat([v.flatten() for v in start.values()]))
    assert type(model) is torch.nn.Linear  # not DistributedDataParallel
    assert torch.equal(torch.cat([p.detach().flatten() for p in model.parameters()]), weights[0])


def train_bf16() -> torch.nn.Module:
    from accelerate import Accelerator

    accelerator = Accelerator()
    model = accelerator.prepare(torch.nn.Linear(3, 2))
    model(torch.ones(1, 3)).sum().backward()
    return model


def test_a_mixed_precision_model_comes_back_without_its_autocast_wrapper() -> None:
    """accelerator.prepare() puts an autocast closure on the model, which pickle cannot save."""
    model = launch(
        train_bf16, num_processes=2, mixed_precision="bf16", timeout=SAFETY_TIMEOUT, **QUIET
    )
    assert type(model) is torch.nn.Linear
    assert "forward" not in model.__dict__
    assert model(torch.ones(1, 3)).dtype == torch.float32


def fail_in_rank_one(pid_dir: Path) -> None:
    from accelerate import Accelerator

    accelerator = Accelerator()
    (pid_dir / str(os.getpid())).touch()
    # A grandchild that would outlive its rank if the launcher ended only the rank.
    sleeper = subprocess.Popen(["sleep", "600"])
    (pid_dir / str(sleeper.pid)).touch()
    if accelerator.process_index == 1:
        raise ValueError("bad batch in rank one")
    accelerator.wait_for_everyone()  # rank 0 waits here for a rank that will never come


def test_an_error_in_rank_one_ends_the_job_and_names_the_rank(
    pid_dir: Path, gone, no_leftover_children: None
) -> None:
    """Rank 0, blocked in a collective, is stopped; the error is rank 1's own, with its
    traceback, and every process of the job (grandchildren too) is gone."""
    with pytest.raises(LaunchError) as caught:
        launch(fail_in_rank_one, pid_dir, num_processes=2, timeout=SAFETY_TIMEOUT, **QUIET)
    error = caught.value
    assert type(error) is LaunchError  # ended by the failure, not by the safety timeout
    assert error.rank == 1
    assert error.summary.startswith("rank 1 of 2 raised ValueError: bad batch in rank one")
    assert isinstance(error.exception, ValueError)
    tb = error.remote_traceback
    assert tb.startswith("Traceback of rank 1 (most recent call last)")
    assert 'raise ValueError("bad batch in rank one")' in tb
    assert "nbopt/launching" not in tb  # the launcher's own frames are not shown
    rendered = error._render_traceback_()
    assert rendered[-1] == f"LaunchError: {error.summary}"
    assert len(rendered) < 15
    pids = [int(path.name) for path in pid_dir.iterdir()]
    assert len(pids) == 4  # two ranks, two sleepers
    assert all(gone(pid) for pid in pids)


def crash_rank_one() -> None:
    from accelerate import Accelerator

    accelerator = Accelerator()
    if accelerator.process_index == 1:
        import ctypes

        ctypes.string_at(0)  # a segmentation fault: no Python exception
    accelerator.wait_for_everyone()


def test_a_crashed_rank_is_named_even_when_another_rank_reports_first() -> None:
    """Rank 0 raises gloo's "connection reset" as rank 1 dies; the cause is rank 1's crash,
    shown with faulthandler's stack of rank 1, not rank 0's consequent error."""
    with pytest.raises(LaunchError) as caught:
        launch(crash_rank_one, num_processes=2, timeout=SAFETY_TIMEOUT, **QUIET)
    error = caught.value
    assert error.rank == 1
    assert error.exitcode == -11
    assert "rank 1 of 2 was killed by SIGSEGV" in error.summary
    assert "Segmentation fault" in error.remote_traceback
    assert "in crash_rank_one" in error.remote_traceback
    assert "multiprocessing" not in error.remote_traceback  # the fork's inherited frames


def hang_in_rank_one(pid_dir: Path) -> None:
    from accelerate import Accelerator

    accelerator = Accelerator()
    (pid_dir / str(os.getpid())).touch()
    if accelerator.process_index == 1:
        time.sleep(600)
    accelerator.wait_for_everyone()


@pytest.mark.slow
def test_the_timeout_stops_a_hung_job_and_shows_where_each_rank_was(
    pid_dir: Path, gone, no_leftover_children: None
) -> None:
    with pytest.raises(LaunchTimeout) as caught:
        launch(hang_in_rank_one, pid_dir, num_processes=2, timeout=4, **QUIET)
    error = caught.value
    assert "ran past timeout=4.0 s" in error.summary
    assert "unfinished: ranks 0, 1" in error.summary
    where = error.remote_traceback
    assert "Rank 0 was here" in where and "Rank 1 was here" in where
    rank_1 = where.split("Rank 1 was here")[1]
    assert "in hang_in_rank_one" in rank_1
    assert "in wait_for_everyone" in where.split("Rank 1 was here")[0]
    pids = [int(path.name) for path in pid_dir.iterdir()]
    assert len(pids) == 2 and all(gone(pid) for pid in pids)


def report_steps() -> int:
    from accelerate import Accelerator

    accelerator = Accelerator()
    for step in range(4):
        nbopt.report(step, loss=1.0 / (step + 1 + accelerator.process_index))
    return accelerator.process_index


def test_reports_become_rank_events_and_tensorboard_runs(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = []
    value = launch(
        report_steps,
        num_processes=2,
        progress="none",
        logdir=tmp_path,
        callbacks=[events.append],
        timeout=SAFETY_TIMEOUT,
    )
    assert value == 0  # rank 0's return value
    assert isinstance(events[0], RunStarted) and events[0].total == 2
    steps = [e for e in events if isinstance(e, RankStepReported)]
    assert all(isinstance(e, StepReported) and e.trial is None for e in steps)
    assert sorted((e.rank, e.step) for e in steps) == [(r, s) for r in (0, 1) for s in range(4)]
    assert {e.rank: e.metrics["loss"] for e in steps if e.step == 3} == {0: 0.25, 1: 0.2}
    finished = [e for e in events if isinstance(e, RankFinished)]
    assert sorted((e.rank, e.status) for e in finished) == [(0, "done"), (1, "done")]
    assert isinstance(events[-1], RunFinished) and events[-1].status == "done"

    (run_dir,) = tmp_path.glob("accelerate-*")
    for rank, last in ((0, 0.25), (1, 0.2)):
        accumulator = EventAccumulator(str(run_dir / f"rank-{rank}"))
        accumulator.Reload()
        scalars = accumulator.Scalars("loss")
        assert [s.step for s in scalars] == [0, 1, 2, 3]
        assert scalars[-1].value == pytest.approx(last)


def chatty() -> None:
    from accelerate import Accelerator

    rank = Accelerator().process_index
    print(f"hello from rank {rank}", flush=True)
    os.write(1, f"raw bytes from rank {rank}\n".encode())  # C-level output is relayed too
    import sys

    sys.stderr.write(f"50%\r100% done in rank {rank}\n")


@pytest.mark.parametrize("all_ranks", [False, True])
def test_rank_zero_output_is_shown_and_other_ranks_only_with_all_ranks(
    all_ranks: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    launch(chatty, num_processes=2, all_ranks=all_ranks, timeout=SAFETY_TIMEOUT, **QUIET)
    out, err = capsys.readouterr()
    assert "hello from rank 0\n" in out
    assert "raw bytes from rank 0\n" in out
    assert "50%\r100% done in rank 0\n" in err  # rank 0's bar as it was drawn
    if all_ranks:
        assert "[rank 1] hello from rank 1\n" in out
        assert "[rank 1] raw bytes from rank 1\n" in out
        assert "[rank 1] 100% done in rank 1\n" in err  # a bar's final state, prefixed
    else:
        assert "rank 1" not in out + err


def parallel_work() -> int:
    a = torch.randn(300, 300)
    for _ in range(20):
        a = torch.tanh(a @ a)
    return torch.get_num_threads()


def test_the_ranks_do_not_hang_after_the_notebook_used_threads(tmp_path: Path) -> None:
    """GNU OpenMP hangs a forked child once the parent ran a parallel region; a TensorBoard
    writer and a thread holding a lock in the parent must not matter either."""
    from torch.utils.tensorboard import SummaryWriter

    big = torch.randn(500, 500)
    for _ in range(5):
        big @ big
    writer = SummaryWriter(str(tmp_path))
    writer.add_scalar("x", 1.0, 0)
    lock = threading.Lock()
    holder = threading.Thread(target=lambda: lock.acquire() and time.sleep(30), daemon=True)
    holder.start()
    try:
        threads = launch(parallel_work, num_processes=2, timeout=SAFETY_TIMEOUT, **QUIET)
    finally:
        writer.close()
    assert threads == 1


def test_an_accelerator_made_in_the_notebook_first_does_not_shrink_the_world() -> None:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    try:
        assert Accelerator().num_processes == 1  # in this process: no distributed setup
        ranks = launch(describe_rank, num_processes=2, timeout=SAFETY_TIMEOUT, **QUIET)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    assert [rank[1] for rank in ranks] == [2, 2]


def report_then_sleep(pid_dir: Path) -> None:
    (pid_dir / str(os.getpid())).touch()
    nbopt.report(0, loss=1.0)
    time.sleep(600)


def test_an_interrupt_stops_every_rank_and_is_reraised(pid_dir: Path, gone) -> None:
    events = []

    def interrupt(event) -> None:  # as Ctrl-C would, while the ranks run
        if isinstance(event, RankStepReported) and events[-1:] != ["interrupted"]:
            events.append("interrupted")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        launch(
            report_then_sleep,
            pid_dir,
            num_processes=2,
            progress="none",
            logdir=None,
            callbacks=[events.append, interrupt],
        )
    assert "interrupted" in events
    assert isinstance(events[-1], RunFinished) and events[-1].status == "interrupted"
    pids = [int(path.name) for path in pid_dir.iterdir()]
    assert pids and all(gone(pid) for pid in pids)


def test_a_cuda_context_made_before_the_launch_is_refused_up_front(
    monkeypatch: pytest.MonkeyPatch, no_leftover_children: None
) -> None:
    """Faked: this machine has no GPU. Nothing is forked; cpu=True still works."""
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with pytest.raises(ConfigError, match=r"CUDA is already initialised.*restart the kernel"):
        launch(describe_rank, num_processes=2, **QUIET)
    ranks = launch(describe_rank, num_processes=1, cpu=True, timeout=SAFETY_TIMEOUT, **QUIET)
    assert ranks == ((0, 1, "MULTI_CPU", "no", "cpu", "torch.float32"),)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mixed_precision": "fp8"}, "mixed_precision must be one of no, fp16, bf16"),
        # Accelerate would report fp16 and silently compute in fp32 on CPU.
        ({"mixed_precision": "fp16"}, "fp16 needs GPUs.*use bf16 on CPU"),
        ({"num_processes": 0}, "num_processes must be a positive integer"),
        ({"timeout": -1}, "timeout must be a positive number"),
        ({"progress": "fancy"}, "progress must be one of"),
    ],
)
def test_bad_options_raise_config_error_before_anything_runs(
    options: dict, message: str, no_leftover_children: None
) -> None:
    with pytest.raises(ConfigError, match=message):
        launch(describe_rank, **{**QUIET, **options})


def test_launches_cannot_be_nested(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBOPT_LAUNCH_RANK", "1")
    with pytest.raises(ConfigError, match="cannot be nested: this code already runs as rank 1"):
        launch(describe_rank, **QUIET)


def test_an_existing_process_group_is_refused(tmp_path: Path) -> None:
    store = torch.distributed.FileStore(str(tmp_path / "store"), 1)
    torch.distributed.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        with pytest.raises(ConfigError, match="destroy_process_group"):
            launch(describe_rank, **QUIET)
    finally:
        torch.distributed.destroy_process_group()


def test_a_result_that_cannot_be_sent_fails_rank_zero_clearly() -> None:
    with pytest.raises(LaunchError, match="rank 0's result could not be sent to the notebook"):
        launch(threading.Lock, num_processes=1, timeout=SAFETY_TIMEOUT, **QUIET)


PARENT = """
import os, sys, time
from pathlib import Path
from nbopt.launching import launch

def sleep_forever(pid_dir):
    (Path(pid_dir) / str(os.getpid())).touch()
    time.sleep(600)

launch(sleep_forever, sys.argv[1], num_processes=2, progress="none", logdir=None)
"""


@pytest.mark.slow
def test_the_ranks_die_with_the_notebook_process(pid_dir: Path, gone) -> None:
    """A killed (or restarted) kernel leaves no rank behind: each rank dies with its parent."""
    import signal
    import sys

    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(pid_dir)])
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(list(pid_dir.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        pids = [int(path.name) for path in pid_dir.iterdir()]
        assert len(pids) == 2
        parent.send_signal(signal.SIGKILL)  # no chance to clean up
        parent.wait()
        deadline = time.monotonic() + 10
        while not all(gone(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(gone(pid) for pid in pids)
    finally:
        parent.kill()
        for pid in pids:  # only if the test failed: leave nothing behind
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
