"""``%%accelerate export=``: a script plus a config that ``accelerate launch`` really runs."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from IPython.core.error import UsageError

from nbopt.launching import export_cell

CELL = """
accelerator = Accelerator()
model, loader = accelerator.prepare(model, loader)
for batch in loader:
    pass
open("ran.txt", "w").close()
"""


def test_export_writes_a_script_and_a_config_instead_of_running(cell, capsys, tmp_path) -> None:
    cell(f"%%accelerate export=jobs/train.py cpu num_processes=3 mixed_precision=bf16\n{CELL}")
    assert not (tmp_path / "ran.txt").exists()  # the cell was not run
    script = (tmp_path / "jobs" / "train.py").read_text()
    assert "it cannot see the notebook's variables" in script
    assert "#     Accelerator, loader, model\n" in script  # what the script must define
    assert 'os.environ.setdefault("ACCELERATE_USE_CPU", "true")' in script
    assert script.rstrip().endswith('open("ran.txt", "w").close()')
    config = load_config_from_file(str(tmp_path / "jobs" / "train.accelerate.yaml"))
    assert config.distributed_type == "MULTI_GPU"  # what makes accelerate launch start 3
    assert (config.num_processes, config.num_machines, config.machine_rank) == (3, 1, 0)
    assert config.mixed_precision == "bf16"
    assert config.use_cpu is True
    printed = capsys.readouterr().out
    assert "accelerate launch --config_file jobs/train.accelerate.yaml jobs/train.py" in printed
    assert "define or import these at its top: Accelerator, loader, model" in printed


def test_a_multi_machine_export_counts_every_process(tmp_path: Path) -> None:
    exported = export_cell(
        "print('hi')",
        tmp_path / "train.py",
        num_processes=4,
        mixed_precision="fp16",
        nodes=2,
        machine_rank=1,
        main_process_ip="10.0.0.5",
        main_process_port=29600,
    )
    config = load_config_from_file(str(exported.config))
    assert (config.num_processes, config.num_machines, config.machine_rank) == (8, 2, 1)
    assert (config.main_process_ip, config.main_process_port) == ("10.0.0.5", 29600)
    assert config.mixed_precision == "fp16" and config.use_cpu is False
    assert "--machine_rank 1" in exported.command
    assert exported.free_names == ()
    assert "ACCELERATE_USE_CPU" not in exported.script.read_text()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("nodes=2 num_processes=2", "nodes=2 needs main_process_ip="),
        ("nodes=2 machine_rank=2 main_process_ip=h", "machine_rank must be in [0, 1]"),
        ("cpu mixed_precision=fp16", "mixed_precision=fp16 needs GPUs"),
        ("", "this machine has no GPU to count: give num_processes="),
    ],
)
def test_bad_export_options_are_usage_errors(cell, tmp_path, line, message) -> None:
    with pytest.raises(UsageError, match=message.replace("[", r"\[")):
        cell(f"%%accelerate export=train.py {line}\nx = 1")
    assert not (tmp_path / "train.py").exists()


@pytest.mark.slow
def test_the_exported_cpu_job_runs_under_accelerate_launch_as_a_world_of_two(
    tmp_path: Path,
) -> None:
    """The config and the script's preamble avoid accelerate launch's own trap on CPU: two
    processes that each believe they are alone."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = (
        "from accelerate import Accelerator\n"
        "accelerator = Accelerator()\n"
        "with open(f'rank-{accelerator.process_index}.txt', 'w') as out:\n"
        "    out.write(f'{accelerator.num_processes} {accelerator.mixed_precision}')\n"
    )
    exported = export_cell(
        source,
        tmp_path / "train.py",
        num_processes=2,
        mixed_precision="bf16",
        cpu=True,
        main_process_port=port,
    )
    command = [sys.executable, "-m", "accelerate.commands.launch"]
    command += ["--config_file", str(exported.config), str(exported.script)]
    completed = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    for rank in (0, 1):
        assert (tmp_path / f"rank-{rank}.txt").read_text() == "2 bf16"


def test_free_names_follow_the_order_of_the_cell() -> None:
    import ast

    from nbopt.launching._cell import free_names

    source = """
import torch
accelerator = Accelerator()
model, loader = accelerator.prepare(model, loader)
total = 0
for batch in loader:
    total += batch
    squares = [b * b for b in batch]
count += 1
def scaled(b):
    return b * scale + total
print(sum(s for s in squares), len(data), (lambda v: v * k)(1))
"""
    assert free_names(ast.parse(source)) == {
        "Accelerator",  # used, never imported by the cell
        "model",  # read before the cell rebinds it
        "loader",
        "count",  # += reads it
        "scale",  # read by a function body
        "data",
        "k",
    }
