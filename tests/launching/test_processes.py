"""Every process of a job ends with it, even one a rank started in a session of its own and
even when the kernel dies; a SIGKILL is explained as far as memory tells; an early exit is
blamed for what it made the other ranks raise."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nbopt.launching import LaunchError, _memory, launch

QUIET = {"progress": "none", "logdir": None}
SAFETY_TIMEOUT = 120


def start_escapees(pid_dir: Path) -> None:
    """Start, from the rank, two processes that leave its process group: an executed program
    in a new session (no inherited descriptors, as subprocess does by default), and a fork
    that makes itself a session leader; each leaves its pid in ``pid_dir``."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True
    )
    (pid_dir / str(child.pid)).touch()
    pid = os.fork()
    if pid == 0:
        os.setsid()
        (pid_dir / str(os.getpid())).touch()
        time.sleep(600)
        os._exit(0)
    (pid_dir / str(os.getpid())).touch()


def escape_then_return(pid_dir: Path) -> int:
    from accelerate import Accelerator

    accelerator = Accelerator()
    start_escapees(pid_dir)
    deadline = time.monotonic() + 30
    while len(list(pid_dir.iterdir())) < 2 * 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    accelerator.wait_for_everyone()
    return accelerator.process_index


def _wait_gone(pids: list[int], gone, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not all(gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)


def _kill_left(pids: list[int], gone) -> None:
    for pid in pids:  # only if a test failed: leave nothing behind
        if not gone(pid):
            os.kill(pid, signal.SIGKILL)


def test_processes_a_rank_started_in_new_sessions_end_with_the_job(pid_dir: Path, gone) -> None:
    pids: list[int] = []
    try:
        assert (
            launch(escape_then_return, pid_dir, num_processes=2, timeout=SAFETY_TIMEOUT, **QUIET)
            == 0
        )
        pids = [int(path.name) for path in pid_dir.iterdir()]
        assert len(pids) == 6  # two ranks, each with two escapees
        _wait_gone(pids, gone, seconds=5)
        assert all(gone(pid) for pid in pids)
    finally:
        _kill_left(pids, gone)


KERNEL = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from test_processes import start_escapees
from nbopt.launching import launch

def escape_and_wait(pid_dir):
    start_escapees(pid_dir)
    time.sleep(600)

launch(escape_and_wait, Path(sys.argv[1]), num_processes=2, progress="none", logdir=None)
"""


@pytest.mark.slow
def test_no_process_of_the_job_survives_the_kernel(pid_dir: Path, gone) -> None:
    """The kernel is SIGKILLed (no chance to clean up): the ranks die with it, and the watchdog
    ends what they started in sessions of their own."""
    kernel = subprocess.Popen(
        [sys.executable, "-c", KERNEL, str(pid_dir), str(Path(__file__).parent)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(list(pid_dir.iterdir())) < 6 and time.monotonic() < deadline:
            assert kernel.poll() is None
            time.sleep(0.1)
        pids = [int(path.name) for path in pid_dir.iterdir()]
        assert len(pids) == 6
        time.sleep(0.5)
        kernel.send_signal(signal.SIGKILL)
        kernel.wait()
        _wait_gone(pids, gone)
        assert all(gone(pid) for pid in pids)
    finally:
        kernel.kill()
        _kill_left(pids, gone)


def killed_holding_memory(megabytes: int) -> None:
    from accelerate import Accelerator

    accelerator = Accelerator()
    if accelerator.process_index == 1:
        block = bytearray(megabytes * 2**20)
        block[::4096] = b"x" * len(block[::4096])  # touched, so resident
        time.sleep(2.5)  # sampled by the launcher meanwhile
        os.kill(os.getpid(), signal.SIGKILL)
    accelerator.wait_for_everyone()


def test_a_sigkill_counted_by_the_oom_killer_is_named_out_of_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Faked: the memory cgroup's OOM-kill count rises while the job runs."""
    counts = iter([3, 4, 4, 4])
    monkeypatch.setattr(_memory, "oom_kills", lambda: next(counts))
    with pytest.raises(LaunchError) as caught:
        launch(killed_holding_memory, 1, num_processes=2, timeout=SAFETY_TIMEOUT, **QUIET)
    assert caught.value.rank == 1
    assert caught.value.summary.startswith(
        "rank 1 of 2 was killed by SIGKILL, out of memory: the kernel's OOM killer ended it "
        "(this memory cgroup's OOM-kill count went from 3 to 4)"
    )


@pytest.mark.parametrize(
    ("allowed", "said"),
    [
        (64 * 2**20, "likely out of memory: it held "),  # less than the ranks hold
        (2**50, "not by nbopt, and not clearly for memory: it held "),
    ],
)
def test_a_sigkill_is_judged_by_the_memory_the_ranks_held(
    monkeypatch: pytest.MonkeyPatch, allowed: int, said: str
) -> None:
    """Faked: how much memory is allowed (the ranks' memory is sampled for real)."""
    monkeypatch.setattr(_memory, "oom_kills", lambda: None)
    monkeypatch.setattr(_memory, "memory_limit", lambda: allowed)
    with pytest.raises(LaunchError) as caught:
        launch(killed_holding_memory, 100, num_processes=2, timeout=SAFETY_TIMEOUT, **QUIET)
    summary = caught.value.summary
    assert summary.startswith(f"rank 1 of 2 was killed by SIGKILL, {said}")
    assert "allowed, shortly before" in summary


def exit_early_in_rank_one() -> None:
    from accelerate import Accelerator

    accelerator = Accelerator()
    if accelerator.process_index == 1:
        sys.exit(0)
    accelerator.wait_for_everyone()


def test_a_rank_that_exits_while_the_others_wait_is_blamed() -> None:
    """sys.exit(0) in rank 1 while rank 0 waits at a barrier: rank 0 raises, but rank 1 left
    first and is named."""
    with pytest.raises(LaunchError) as caught:
        launch(exit_early_in_rank_one, num_processes=2, timeout=SAFETY_TIMEOUT, **QUIET)
    error = caught.value
    assert error.rank == 1
    assert error.summary.startswith(
        "rank 1 of 2 ended with sys.exit(0) while the other ranks still ran; then rank 0 raised"
    )
    assert "Traceback of rank 0" in error.remote_traceback
