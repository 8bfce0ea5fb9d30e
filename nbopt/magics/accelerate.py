"""``%%accelerate``: run the cell as a data-parallel job on N processes or GPUs."""

from __future__ import annotations

import warnings
from typing import Any

from nbopt.magics.option_types import Bool, Duration, Enum, Identifier, Int, Text
from nbopt.magics.options import Option, Schema, tokenize
from nbopt.magics.runner import MagicCall, assigned_names, check_names_exist, common_options

INTRO = """Run the cell as a data-parallel job on N processes (CPU) or GPUs, with Accelerate.

    %%accelerate num_processes=2 mixed_precision=bf16 copy_back=model
    accelerator = Accelerator()
    model, opt, loader = accelerator.prepare(model, opt, loader)
    for x, y in loader: ...

Each process runs the cell with the notebook's variables (the processes are forked) and a
real distributed setup: Accelerator() gets world size N (gloo on CPU, one GPU per process
with GPUs) and mixed_precision=. copy_back=NAME[,NAME...] copies those variables from rank 0
back into the notebook after the job (a model with its trained weights, unwrapped from DDP);
nothing else the cell assigns comes back. The job's result (a LaunchResult: how each rank
ended) is kept in _nbopt, and in out=NAME if given. Rank 0's output is shown as it comes,
the others' with all_ranks; nbopt.report(step, loss=...) in the cell shows each rank's
progress.
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
        Option(
            "copy_back",
            Identifier(many=True),
            None,
            "variables copied back from rank 0 into the notebook",
            parameter="outputs",
        ),
        Option(
            "timeout", Duration(), None, "stop every rank after this long, showing where each was"
        ),
        Option("all_ranks", Bool(), False, "show every rank's output, prefixed", flag=True),
        Option("cpu", Bool(), False, "use CPU processes even where there are GPUs", flag=True),
        Option(
            "export",
            Text("path"),
            None,
            "write a script + accelerate config, do not run",
            parameter=None,
        ),
        Option("nodes", Int(1), 1, "machines, for export="),
        Option("machine_rank", Int(0), 0, "this machine's rank, for export="),
        Option("main_process_ip", Text("address"), None, "address of machine 0, for export="),
        Option("main_process_port", Int(1, 65535), 29500, "port on machine 0, for export="),
        *common_options("LaunchResult"),
    ],
)

HELP = INTRO + "\n" + SCHEMA.help()

_EXPORT_ONLY = ("nodes", "machine_rank", "main_process_ip", "main_process_port")
_RUN_ONLY = ("copy_back", "timeout", "all_ranks", "progress", "logdir", "out")


def run(magics: Any, line: str, cell: str) -> Any:
    """Parse ``%%accelerate``, run (or export) the cell; copy ``copy_back=`` variables back."""
    source = magics.shell.transform_cell(cell)
    call = MagicCall(magics, SCHEMA, _old_out_spelling(line, source), prefix="%%accelerate")
    if call["export"]:
        unused = [name for name in _RUN_ONLY if call.given(name)]
        if unused:
            raise call.fail(f"{'=, '.join(unused)}= do not apply to export=: nothing runs here")
        return _export(call, source)
    export_only = [name for name in _EXPORT_ONLY if call.given(name)]
    if export_only:
        raise call.fail(
            f"{'=, '.join(export_only)}= only apply with export=PATH; a job run from the "
            "notebook runs on this machine"
        )
    check_names_exist(call, ("copy_back",), source)
    from nbopt.launching import launch_cell

    arguments = call.arguments(outputs=call["copy_back"] or ())
    for name in _EXPORT_ONLY:
        arguments.pop(name)
    result = call.run(launch_cell, source, call.namespace, **arguments)
    call.namespace.update(result.variables)
    return result


def _old_out_spelling(line: str, source: str) -> str:
    """``line`` with the old ``out=model,history`` (variables to copy back) spelt
    ``copy_back=``, with a warning: ``out=`` now stores the job's result, as in every other
    magic. ``out=`` is read the old way when it names several variables, or one that the cell
    assigns (storing the result there would overwrite the cell's own variable)."""
    try:
        tokens = tokenize(line)
    except ValueError:
        return line  # the parser says what is wrong
    for index, token in enumerate(tokens):
        key, _, value = token.partition("=")
        names = [name.strip() for name in value.split(",")]
        if key != "out" or not (len(names) > 1 or names[0] in assigned_names(source)):
            continue
        warnings.warn(
            f"%%accelerate out={value} copies variables back from rank 0: that is now "
            f"copy_back={value} (out= stores the job's LaunchResult, as in the other magics); "
            "the old spelling will stop working in the next release",
            FutureWarning,
            stacklevel=2,
        )
        tokens[index] = f"copy_back={value}"
    return " ".join(tokens)


def _export(call: MagicCall, source: str) -> None:
    from nbopt.launching import export_cell

    with call.usage_errors():
        exported = export_cell(
            source,
            call["export"],
            **{
                name: call[name]
                for name in ("num_processes", "mixed_precision", "cpu", *_EXPORT_ONLY)
            },
        )
    print(exported)
