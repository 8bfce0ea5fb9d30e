"""A notebook cell as a job: run it on every rank (:func:`launch_cell`), or write it out as a
script and an Accelerate config for ``accelerate launch`` (:func:`export_cell`)."""

from __future__ import annotations

import ast
import builtins
import json
import linecache
import os
import time
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbopt.errors import ConfigError
from nbopt.launching._result import LaunchResult

CELL_FILENAME = "<%%accelerate cell>"


def launch_cell(
    source: str,
    namespace: MutableMapping[str, Any],
    *,
    outputs: Iterable[str] = (),
    **options: Any,
) -> LaunchResult:
    """Run ``source`` in every rank of a job, in the rank's copy of ``namespace``.

    This is what ``%%accelerate`` does. Each rank executes the cell with the notebook's
    variables (the ranks are forks of this process); nothing the cell assigns reaches the
    notebook except the ``outputs``, copied from rank 0 after the job.

    Args:
        source: The cell's Python source (IPython syntax already transformed).
        namespace: The variables the cell sees, e.g. the notebook's ``user_ns``.
        outputs: Names of variables to copy back from rank 0; a model comes back unwrapped
            from DDP with its trained weights.
        **options: The options of :func:`nbopt.launching.launch` (``num_processes``,
            ``mixed_precision``, ``cpu``, ``timeout``, ``all_ranks``, ``progress``,
            ``logdir``, ``callbacks``).

    Returns:
        The job's :class:`LaunchResult`; ``.variables`` holds the ``outputs``, name to rank
        0's value.

    Example:
        >>> from nbopt.launching import launch_cell
        >>> cell = "from accelerate import Accelerator\\nworld = Accelerator().num_processes"
        >>> job = launch_cell(cell, {}, outputs=["world"], num_processes=2, progress="none",
        ...                   logdir=None)
        >>> job.variables
        {'world': 2}
    """
    from nbopt.launching import run_job

    names = tuple(outputs)
    code = compile(source, CELL_FILENAME, "exec")  # a SyntaxError shows here, before any fork

    def run_cell() -> dict[str, Any]:
        # Registered in the rank so that its traceback shows the cell's lines.
        lines = source.splitlines(keepends=True)
        linecache.cache[CELL_FILENAME] = (len(source), None, lines, CELL_FILENAME)
        exec(code, namespace)
        missing = [name for name in names if name not in namespace]
        if missing:
            raise NameError(f"copy_back=: the cell did not define {', '.join(missing)}")
        return {name: namespace[name] for name in names}

    result = run_job(run_cell, (), **options)
    result.variables, result.value = result.value, None
    return result


@dataclass(frozen=True)
class ExportedScript:
    """What :func:`export_cell` wrote, and how to run it."""

    script: Path
    config: Path
    command: str
    free_names: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = f"wrote {self.script} and {self.config}; run it with:\n    {self.command}"
        if self.free_names:
            text += (
                "\nthe script cannot see the notebook's variables; define or import these "
                f"at its top: {', '.join(self.free_names)}"
            )
        return text

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


def export_cell(
    source: str,
    path: str | os.PathLike[str],
    *,
    num_processes: int | None = None,
    mixed_precision: str = "no",
    cpu: bool = False,
    nodes: int = 1,
    machine_rank: int = 0,
    main_process_ip: str | None = None,
    main_process_port: int = 29500,
) -> ExportedScript:
    """Write a cell as a standalone script plus an Accelerate config, for ``accelerate launch``.

    For a job that outgrows one machine: copy both files to every machine and run
    ``accelerate launch --config_file CONFIG --machine_rank R SCRIPT`` on each, R from 0 (the
    machine at ``main_process_ip``) to ``nodes - 1``. The script cannot see the notebook's
    variables: the names the cell uses without defining them are listed in its header (and in
    :attr:`ExportedScript.free_names`), to be defined or imported there.

    Args:
        source: The cell's Python source.
        path: Where to write the script; the config goes next to it, as ``NAME.accelerate.yaml``.
        num_processes: Processes per machine. Defaults to this machine's GPU count, or 2 with
            ``cpu=True``; required when exporting for GPUs from a machine without one.
        mixed_precision: ``"no"``, ``"fp16"`` or ``"bf16"``.
        cpu: CPU processes (gloo) instead of one per GPU (NCCL).
        nodes: Number of machines.
        machine_rank: This machine's rank, written as the config's default.
        main_process_ip: Address of machine 0; required when ``nodes > 1``.
        main_process_port: Port on machine 0 that the others connect to.

    Example:
        >>> import tempfile
        >>> from nbopt.launching import export_cell
        >>> folder = tempfile.mkdtemp()
        >>> print(export_cell("print(data)", f"{folder}/job.py", cpu=True))  # doctest: +ELLIPSIS
        wrote .../job.py and .../job.accelerate.yaml; run it with:
            accelerate launch --config_file .../job.accelerate.yaml .../job.py
        the script cannot see the notebook's variables; define or import these at its top: data
    """
    from nbopt.launching._plan import FP16_ON_CPU, MIXED_PRECISIONS

    if mixed_precision not in MIXED_PRECISIONS:
        raise ConfigError(
            f"mixed_precision must be one of {', '.join(MIXED_PRECISIONS)}, got {mixed_precision!r}"
        )
    if cpu and mixed_precision == "fp16":
        raise ConfigError(FP16_ON_CPU)
    if nodes < 1 or not 0 <= machine_rank < nodes:
        raise ConfigError(f"machine_rank must be in [0, {nodes - 1}] for nodes={nodes}")
    if nodes > 1 and not main_process_ip:
        raise ConfigError(f"nodes={nodes} needs main_process_ip=, the address of machine 0")
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ConfigError(f"the cell is not valid Python: {exc}") from None
    per_machine = num_processes or _default_processes(cpu)
    script = Path(path)
    config = script.with_name(f"{script.stem}.accelerate.yaml")
    free = tuple(sorted(free_names(tree)))
    command = f"accelerate launch --config_file {config} --machine_rank {machine_rank} {script}"
    if nodes == 1:
        command = f"accelerate launch --config_file {config} {script}"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(_script_text(source, command, free, cpu, nodes))
    config.write_text(
        _config_text(
            per_machine * nodes,
            mixed_precision,
            cpu,
            nodes,
            machine_rank,
            main_process_ip,
            main_process_port,
            script.name,
        )
    )
    return ExportedScript(script, config, command, free)


def _default_processes(cpu: bool) -> int:
    from nbopt.launching._plan import DEFAULT_CPU_PROCESSES

    if cpu:
        return DEFAULT_CPU_PROCESSES
    import torch

    gpus = torch.cuda.device_count()
    if not gpus:
        raise ConfigError(
            "this machine has no GPU to count: give num_processes= (GPUs per machine), "
            "or cpu for CPU processes"
        )
    return gpus


def free_names(tree: ast.Module) -> set[str]:
    """Names the cell reads before binding them, and no builtin: what a script must define.

    Top-level statements are followed in order (``model = prepare(model)`` reads the notebook's
    ``model``); the bodies of functions and classes may use anything the cell binds anywhere.
    """
    bound: set[str] = set()
    free: set[str] = set()
    deferred: set[str] = set()
    for statement in tree.body:
        scoped = _scoped_stores(statement)
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            deferred |= _loads(statement) - scoped
        elif isinstance(statement, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            # The value is evaluated before the targets are bound; += also reads its target.
            free |= _loads(statement) - bound - scoped
            if isinstance(statement, ast.AugAssign) and isinstance(statement.target, ast.Name):
                free |= {statement.target.id} - bound
        else:
            free |= _loads(statement) - bound - _stores(statement)
        bound |= _stores(statement)
    return (free | (deferred - bound)) - set(dir(builtins))


def _loads(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _stores(node: ast.AST) -> set[str]:
    names: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load):
            names.add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(n.name)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in n.names)
        elif isinstance(n, ast.arg):
            names.add(n.arg)
        elif isinstance(n, ast.ExceptHandler) and n.name:
            names.add(n.name)
    return names


def _scoped_stores(statement: ast.AST) -> set[str]:
    """Names bound inside the statement's own scopes: comprehensions, lambdas, definitions."""
    scopes = (
        ast.ListComp,
        ast.SetComp,
        ast.DictComp,
        ast.GeneratorExp,
        ast.Lambda,
        ast.FunctionDef,
        ast.AsyncFunctionDef,
        ast.ClassDef,
    )
    names: set[str] = set()
    for node in ast.walk(statement):
        if isinstance(node, scopes):
            names |= _stores(node)
    return names


def _script_text(source: str, command: str, free: tuple[str, ...], cpu: bool, nodes: int) -> str:
    written = time.strftime("%Y-%m-%d")
    header = [
        f"# Written from a notebook cell by nbopt's %%accelerate export= on {written}.",
        "#",
        "# This script runs on its own: it cannot see the notebook's variables.",
    ]
    if free:
        header += [
            "# The cell uses these names without defining them; define or import them here:",
            f"#     {', '.join(free)}",
        ]
    if "get_ipython()" in source:
        header.append("# It also uses IPython magics (get_ipython()), which need IPython.")
    header += [
        "#",
        f"# Run it{' on each machine' if nodes > 1 else ''} with the config written next to it:",
        f"#     {command}",
    ]
    if nodes > 1:
        header.append(f"# with --machine_rank 0 on the main machine, up to {nodes - 1}.")
    lines = [*header, ""]
    if cpu:
        lines += [
            "import os",
            "",
            "# accelerate launch does not pass use_cpu on to the processes it starts; without",
            "# this, Accelerator() on a machine without GPU is a world of one in every process.",
            'os.environ.setdefault("ACCELERATE_USE_CPU", "true")',
            "",
        ]
    return "\n".join(lines) + "\n" + source.rstrip("\n") + "\n"


def _config_text(
    total: int,
    mixed_precision: str,
    cpu: bool,
    nodes: int,
    machine_rank: int,
    main_process_ip: str | None,
    main_process_port: int,
    script_name: str,
) -> str:
    # MULTI_GPU even for CPU processes: it is what makes accelerate launch start one process
    # per rank (torchrun); its MULTI_CPU starts a single process unless given an MPI hostfile.
    distributed_type = "MULTI_GPU" if total > 1 else "NO"
    entries: list[tuple[str, Any]] = [
        ("compute_environment", "LOCAL_MACHINE"),
        ("distributed_type", distributed_type),
        ("num_machines", nodes),
        ("machine_rank", machine_rank),
        ("main_process_ip", main_process_ip or "127.0.0.1"),
        ("main_process_port", main_process_port),
        ("num_processes", total),
        ("mixed_precision", mixed_precision),
        ("use_cpu", cpu),
        ("gpu_ids", "all"),
        ("rdzv_backend", "static"),
        ("same_network", True),
        ("downcast_bf16", "no"),
    ]
    lines = [
        f"# Accelerate config for {script_name}, written by nbopt; see the script's header.",
        f"# num_processes counts the processes of all {nodes} machine(s).",
    ]
    # JSON scalars are valid YAML; quoting keeps 'no' a string (YAML 1.1 reads it as false).
    lines += [f"{key}: {json.dumps(value)}" for key, value in entries]
    return "\n".join(lines) + "\n"
