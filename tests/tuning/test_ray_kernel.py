"""A kernel killed during a backend=ray search leaves none of the Ray processes it started:
a real ipykernel, started with jupyter_client, killed with SIGKILL as the OOM killer does."""

from __future__ import annotations

import os
import time

import psutil
import pytest

pytest.importorskip("ray")

STARTUP_TIMEOUT_S = 240
GONE_WITHIN_S = 30  # Ray alone leaves its raylet's agents for a minute or more

SETUP = """\
%load_ext nbopt
import os, time

def forever(x):
    open(os.path.join({started!r}, str(os.getpid())), "w").close()
    time.sleep(600)
    return x
"""
SEARCH = (
    "%tune forever x=uniform(0, 1) max_evals=8 backend=ray parallel=2 progress=none logdir=none"
)


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _describe(processes: list[psutil.Process]) -> list[str]:
    described = []
    for process in processes:
        try:
            described.append(f"{process.pid} {process.name()} {' '.join(process.cmdline())[:80]}")
        except psutil.Error:
            described.append(f"{process.pid} (gone)")
    return described


@pytest.mark.slow
def test_a_killed_kernel_leaves_no_ray_process_it_started(tmp_path):
    from jupyter_client.manager import KernelManager

    started = tmp_path / "started"
    started.mkdir()
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(cwd=str(tmp_path))
    client = manager.client()
    client.start_channels()
    processes: list[psutil.Process] = []
    try:
        client.wait_for_ready(timeout=120)
        kernel = psutil.Process(manager.provisioner.pid)
        reply = client.execute_interactive(SETUP.format(started=str(started)), timeout=120)
        assert reply["content"]["status"] == "ok", reply["content"]
        client.execute(SEARCH)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not os.listdir(started):
            assert time.monotonic() < deadline, "no trial started"
            assert _running(kernel), "the kernel died before the search ran"
            time.sleep(0.5)

        processes = kernel.children(recursive=True)
        names = " ".join(_describe(processes))
        assert "raylet" in names and "gcs_server" in names, names
        assert "nbopt.tuning._ray_watchdog" in names, names
        trial_workers = {int(name) for name in os.listdir(started)}
        assert trial_workers <= {p.pid for p in processes}

        kernel.kill()
        deadline = time.monotonic() + GONE_WITHIN_S
        while (alive := [p for p in processes if _running(p)]) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not alive, f"still running after the kernel died: {_describe(alive)}"
    finally:
        for process in processes:
            if _running(process):
                process.kill()
        client.stop_channels()
        if manager.has_kernel:
            manager.shutdown_kernel(now=True)
        manager.cleanup_resources()
