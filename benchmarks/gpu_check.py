"""Every CUDA path of nbopt proven in one short run, one table row per path.

Run it on a machine with a GPU (a few minutes in all)::

    python benchmarks/gpu_check.py [--rows int8,fp16] [--json benchmarks/gpu_check.json]

Each row runs in a fresh Python process, so that CUDA is initialised where the row wants it
and nowhere else (``%%accelerate`` and ``parallel=`` workers need a kernel without CUDA), and
so that one row that crashes or hangs cannot take the others with it. The table is printed and
written as JSON (``--json``, beside this script by default); the exit status is 1 if any row
failed.

Without a CUDA device the check prints one line and exits 0 after importing everything the rows
use (CI runs it so, so that it never rots); the tests run each row on the CPU up to the point
where CUDA is required.

The rows (README's "On a GPU" says what each proves):

- ``batchsize-max``: ``%batchsize mode=max`` on convolutions at 256x256 meets a real CUDA OOM;
  the batch it finds against the largest a manual probe fits, and allocated memory afterwards
  back to its value before the search.
- ``int8``, ``int8-static``, ``fp16``, ``bf16``: ``%%optimize quant=...`` on the device: size
  and latency ratios (latency measured with ``torch.cuda.synchronize``), output cosine.
- ``auto-bert``, ``auto-resnet``: ``%%optimize auto target=latency`` on the zoo's BERT and
  ResNet-18, its plans run on the GPU (casts to fp16/bf16 among them).
- ``accelerate``: ``%%accelerate`` with one process per visible GPU: the world size, a DDP step,
  ``copy_back=`` variables arriving on the CPU; ``accelerate-refusal``: the one-line refusal
  once CUDA is initialised in the kernel.
- ``tune-parallel``: ``%tune parallel=2`` with a CUDA objective: every trial ran in a worker that
  sees the GPU, and the kernel never initialised CUDA.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import _gpu_rows
import torch

HERE = Path(__file__).resolve().parent
# A row that has not finished in this time has hung: the whole check must stay within minutes.
ROW_TIMEOUT_S = 150


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(_gpu_rows.ROWS), help="comma-separated")
    parser.add_argument("--json", default=str(HERE / "gpu_check.json"), help="table as JSON")
    # One row in a child process; the tests run the rows with --device cpu.
    parser.add_argument("--row", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.row:
        row = _gpu_rows.run_row(args.row, torch.device(args.device))
        print(json.dumps(dataclasses.asdict(row)))
        return 0
    keys = [key for key in args.rows.split(",") if key]
    unknown = [key for key in keys if key not in _gpu_rows.ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; rows are {', '.join(_gpu_rows.ROWS)}")
    # is_available() asks the driver without initialising CUDA in this process.
    if not torch.cuda.is_available():
        print(
            f"gpu_check: skipped, no CUDA device (torch {torch.__version__}, "
            f"CUDA build {torch.version.cuda or 'none'}); {len(keys)} rows need a GPU"
        )
        return 0
    started = time.perf_counter()
    rows = [run_in_child(key) for key in keys]
    total = time.perf_counter() - started
    print_table(rows, total)
    record = {
        "device": torch.cuda.get_device_name(0),
        "gpus": torch.cuda.device_count(),
        "torch": torch.__version__,
        "seconds": round(total, 1),
        "rows": [dataclasses.asdict(row) for row in rows],
    }
    Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    print(f"table written to {args.json}")
    return 1 if any(row.status != "pass" for row in rows) else 0


def run_in_child(key: str) -> _gpu_rows.Row:
    """Row ``key`` in a fresh process; a crash or a hang is the row's failure."""
    title = _gpu_rows.ROWS[key][0]
    command = [sys.executable, str(Path(__file__).resolve()), "--row", key]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=ROW_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return _gpu_rows.Row(title, "fail", "", f"no result after {ROW_TIMEOUT_S} s")
    lines = done.stdout.strip().splitlines()
    try:
        row = _gpu_rows.Row(**json.loads(lines[-1]))
    except (IndexError, json.JSONDecodeError, TypeError):
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return _gpu_rows.Row(title, "fail", "", f"exit {done.returncode}: {tail}")
    row.figure = f"{row.figure} [{time.perf_counter() - started:.0f} s]".strip()
    return row


def print_table(rows: list[_gpu_rows.Row], seconds: float) -> None:
    widths = [max(len(getattr(r, f)) for r in rows) for f in ("name", "status", "figure")]
    for row in rows:
        cells = (row.name, row.status, row.figure)
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)), "|", row.detail)
    passed = sum(row.status == "pass" for row in rows)
    print(f"{passed}/{len(rows)} rows passed in {seconds:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
