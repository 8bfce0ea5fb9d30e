"""benchmarks/gpu_check.py: skips in one line without CUDA, and every row's code runs on CPU up to
the point where CUDA is required (each in a fresh process, as the check itself runs them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _gpu_rows import ROWS

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
# Rows whose every check can run on a CPU; the others stop where CUDA is required.
NEEDS_CUDA_FIRST = {"accelerate-refusal"}

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU runs the real check")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600
    )


def test_without_cuda_the_check_skips_in_one_line_and_writes_nothing(tmp_path):
    table = tmp_path / "table.json"
    done = run("--json", str(table))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [done.stdout.strip()]
    assert done.stdout.startswith("gpu_check: skipped, no CUDA device")
    assert f"{len(ROWS)} rows need a GPU" in done.stdout
    assert not table.exists()


def test_an_unknown_row_is_refused_in_one_line():
    done = run("--rows", "int8,int4")
    assert done.returncode == 2
    assert "unknown rows ['int4']" in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("key", list(ROWS))
def test_each_row_runs_on_cpu_up_to_cuda(key):
    done = run("--row", key, "--device", "cpu")
    assert done.returncode == 0, done.stderr[-3000:]
    row = json.loads(done.stdout.strip().splitlines()[-1])
    assert row["name"] == ROWS[key][0]
    if key in NEEDS_CUDA_FIRST:
        assert row["status"] == "needs CUDA", row
    else:
        assert row["status"] == "pass", row
        assert row["figure"]
