"""``%%accelerate``: options, and the glue between the notebook and the launcher."""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError

from nbopt._magic_support import check_names_exist, usage_errors, view_settings
from nbopt.options import Bool, Duration, Enum, Identifier, Int, Option, Schema, Text
from nbopt.ui.progress import PROGRESS_MODES

INTRO = """Run the cell as a data-parallel job on N processes (CPU) or GPUs, with Accelerate.

    %%accelerate num_processes=2 mixed_precision=bf16 out=model
    accelerator = Accelerator()
    model, opt, loader = accelerator.prepare(model, opt, loader)
    for x, y in loader: ...

Each process runs the cell with the notebook's variables (the processes are forked) and a
real distributed setup: Accelerator() gets world size N (gloo on CPU, one GPU per process
with GPUs) and mixed_precision=. out=NAME[,NAME...] copies those variables from rank 0 back
into the notebook after the job (a model with its trained weights, unwrapped from DDP);
nothing else the cell assigns comes back. Rank 0's output is shown as it comes, the others'
with all_ranks; nbopt.report(step, loss=...) in the cell shows each rank's progress.
An error in any rank stops every rank and is raised here with that rank's own traceback.
On CPU each process runs PyTorch single-threaded (use about one per core), and fp16 needs
GPUs (use bf16). export=PATH writes the cell as a script plus an accelerate config for
`accelerate launch` on one or several machines, instead of running it.
"""

SCHEMA = Schema(
    "accelerate",
    [
        Option("num_processes", Int(1), None, "processes (default: the GPU count, else 2)"),
        Option(
            "mixed_precision",
            Enum("no", "fp16", "bf16"),
            "no",
            "what Accelerator() uses (fp16: GPUs only)",
        ),
        Option("out", Identifier(many=True), None, "variables copied back from rank 0"),
        Option(
            "timeout", Duration(), None, "stop every rank after this long, showing where each was"
        ),
        Option("all_ranks", Bool(), False, "show every rank's output, prefixed", flag=True),
        Option("cpu", Bool(), False, "use CPU processes even where there are GPUs", flag=True),
        Option("export", Text("path"), None, "write a script + accelerate config, do not run"),
        Option("nodes", Int(1), 1, "machines, for export="),
        Option("machine_rank", Int(0), 0, "this machine's rank, for export="),
        Option("main_process_ip", Text("address"), None, "address of machine 0, for export="),
        Option("main_process_port", Int(1, 65535), 29500, "port on machine 0, for export="),
        Option("progress", Enum(*PROGRESS_MODES), None, "live per-rank view (nbopt.report)"),
        Option("logdir", Text("path|none"), None, "TensorBoard log directory, or none"),
    ],
)

HELP = INTRO + "\n" + SCHEMA.help()

_EXPORT_OPTIONS = ("nodes", "machine_rank", "main_process_ip", "main_process_port")


def run_accelerate_magic(magics: Any, line: str, cell: str) -> None:
    """Parse ``%%accelerate``, run (or export) the cell, copy ``out=`` variables back."""
    shell = magics.shell
    namespace = shell.user_ns
    parsed = SCHEMA.parse(line, namespace)
    source = shell.transform_cell(cell)
    export_only = [name for name in _EXPORT_OPTIONS if name in parsed.given]
    if export_only and not parsed["export"]:
        raise UsageError(
            f"%%accelerate: {'=, '.join(export_only)}= only apply with export=PATH; "
            "a job run from the notebook runs on this machine"
        )
    outputs = parsed["out"] or ()
    for name in outputs:
        check_names_exist("accelerate", {"out": name}, namespace, source)
    progress, logdir = view_settings(magics, parsed)
    from nbopt import launching

    with usage_errors("accelerate"):
        if parsed["export"]:
            exported = launching.export_cell(
                source,
                parsed["export"],
                num_processes=parsed["num_processes"],
                mixed_precision=parsed["mixed_precision"],
                cpu=parsed["cpu"],
                nodes=parsed["nodes"],
                machine_rank=parsed["machine_rank"],
                main_process_ip=parsed["main_process_ip"],
                main_process_port=parsed["main_process_port"],
            )
            print(exported)
            return
        values = launching.launch_cell(
            source,
            namespace,
            outputs=outputs,
            num_processes=parsed["num_processes"],
            mixed_precision=parsed["mixed_precision"],
            cpu=parsed["cpu"],
            timeout=parsed["timeout"],
            all_ranks=parsed["all_ranks"],
            progress=progress,
            logdir=logdir,
        )
    namespace.update(values)
