"""What every magic does the same way, through the shared runner: an interrupt keeps and stores
what finished, an option that a form does not use is an error, errors name the options as the
user wrote them, and the options' defaults are the engines' own."""

from __future__ import annotations

import inspect
import os
import signal
import threading
from typing import Any

import pytest
from IPython.core.error import UsageError

SETUP = """
import torch
from torch import nn
import nbopt

torch.manual_seed(0)
x = torch.randn(32, 16)
def make_mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4)).eval()
labels = make_mlp()(x).argmax(1)
def agreement(model):
    with torch.no_grad():
        return float((model(x).argmax(1) == labels).float().mean())
"""


def _interrupted(ip: Any, run_cell, source: str) -> Any:
    """Run ``source``; it must end with the interrupt re-raised; return what ``_nbopt`` holds."""
    with pytest.raises(KeyboardInterrupt):
        run_cell(ip, source)
    return ip.user_ns.get("_nbopt")


def test_tune_keeps_the_finished_trials_on_an_interrupt(ip: Any, run_cell) -> None:
    run_cell(
        ip,
        "calls = []\n"
        "def f(x):\n"
        "    calls.append(x)\n"
        "    if len(calls) == 4:\n"
        "        raise KeyboardInterrupt\n"
        "    return x",
    )
    result = _interrupted(
        ip, run_cell, "%tune f x=uniform(0, 1) max_evals=10 progress=none logdir=none out=r"
    )
    assert result.status == "interrupted" and ip.user_ns["r"] is result
    assert [t.status for t in result.trials] == ["ok", "ok", "ok", "interrupted"]


def test_tune_cell_keeps_the_finished_trials_and_their_best_on_an_interrupt(
    ip: Any, run_cell
) -> None:
    run_cell(ip, "calls = []")
    result = _interrupted(
        ip,
        run_cell,
        "%%tune max_evals=10 progress=none logdir=none\n"
        "x = uniform(0, 1)\n"
        "calls.append(x)\n"
        "if len(calls) == 3:\n"
        "    raise KeyboardInterrupt\n"
        "x",
    )
    assert len([t for t in result.trials if t.status == "ok"]) == 2
    assert ip.user_ns["x"] == result.best_params["x"]  # the best trial's values came back


def test_optimize_keeps_the_finished_steps_on_an_interrupt(ip: Any, run_cell) -> None:
    run_cell(ip, SETUP + "def finetune(model):\n    raise KeyboardInterrupt")
    result = _interrupted(
        ip,
        run_cell,
        "%%optimize prune=0.5 finetune=finetune quant=int8 example=x progress=none "
        "logdir=none out=r\nmodel = make_mlp()",
    )
    assert ip.user_ns["r"] is result
    assert [step.kind for step in result.steps] == ["prune"]
    assert "stopped after 1 of 3 steps" in result.notes[0]
    assert result.model[0].out_features == 32  # the pruned copy, fine-tuned as far as it went
    assert ip.user_ns["model"][0].out_features == 64  # the notebook's model is untouched


def test_optimize_auto_keeps_the_plans_evaluated_on_an_interrupt(ip: Any, run_cell) -> None:
    run_cell(
        ip,
        SETUP + "calls = []\n"
        "def counting(model):\n"
        "    calls.append(1)\n"
        "    if len(calls) == 12:\n"
        "        raise KeyboardInterrupt\n"
        "    return agreement(model)",
    )
    result = _interrupted(
        ip,
        run_cell,
        "%%optimize auto eval=counting target=size example=x max_trials=20 seed=0 "
        "progress=none logdir=none\nmodel = make_mlp()",
    )
    assert result is not None and result.search.status == "interrupted"
    assert 0 < len([t for t in result.trials if t.status == "ok"]) < 20
    assert result.front and result.chosen in [result.original, *result.trials]
    assert any("cut short" in note for note in result.notes)


def test_batchsize_keeps_the_sizes_measured_on_an_interrupt(ip: Any, run_cell) -> None:
    # The interrupt comes with the third size the search asks for, not at a fixed size: on a
    # busy machine the throughput search may stop on a plateau before any given size.
    run_cell(
        ip,
        SETUP + "sizes = []\n"
        "def make_batch(size):\n"
        "    if size not in sizes:\n"
        "        sizes.append(size)\n"
        "    if len(sizes) == 3:\n"
        "        raise KeyboardInterrupt\n"
        "    return torch.randn(size, 16)\n"
        "net = make_mlp()",
    )
    result = _interrupted(
        ip, run_cell, "%batchsize net make_batch=make_batch progress=none logdir=none set=bs"
    )
    assert result.status == "interrupted"
    measured = {m.batch_size for m in result.measurements}
    assert measured == set(ip.user_ns["sizes"][:2])  # both sizes that finished before it
    assert "bs" not in ip.user_ns  # set= is for a finished search


@pytest.mark.slow
def test_accelerate_keeps_how_each_rank_ended_on_an_interrupt(ip: Any, run_cell) -> None:
    """A kernel interrupt (SIGINT to this process) while the ranks run stops every rank and
    stores the job's result, each rank marked stopped."""
    timer = threading.Timer(4.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        result = _interrupted(
            ip,
            run_cell,
            "%%accelerate num_processes=2 progress=none logdir=none out=job\n"
            "import time\ntime.sleep(60)",
        )
    finally:
        timer.cancel()
    assert result is ip.user_ns["job"] and result.status == "interrupted"
    assert [rank.status for rank in result.ranks] == ["stopped", "stopped"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("%%optimize auto eval=agreement prune=0.5\nmodel = make_mlp()", "auto chooses prune="),
        ("%%optimize auto eval=agreement inplace\nmodel = make_mlp()", "cannot work inplace"),
        ("%%optimize prune=0.5 example=x study=s.json\nmodel = make_mlp()", "only applies with"),
        ("%%optimize auto eval=agreement batch=auto\nmodel = make_mlp()", "batch=auto needs"),
        ("%tune f x=uniform(0, 1) rung=3", "rung= only applies with stop=asha"),
        ("%tune f x=uniform(0, 1) address=localhost:6379", "address= only applies with backend"),
        ("%%accelerate nodes=2\nx = 1", "only apply with export=PATH"),
        ("%%accelerate export=job.py timeout=5\nx = 1", "do not apply to export="),
        ("%batchsize net example=x loss=f", "loss= is for training steps"),
    ],
)
def test_an_option_a_form_does_not_use_is_an_error(
    ip: Any, run_cell, line: str, message: str
) -> None:
    run_cell(ip, SETUP + "net = make_mlp()\ndef f(x):\n    return x")
    with pytest.raises(UsageError, match=message) as raised:
        run_cell(ip, line)
    assert "\n" not in str(raised.value)
    assert "_nbopt" not in ip.user_ns and "model" not in ip.user_ns


def test_optimize_auto_batch_auto_finds_the_chosen_models_batch_size(ip: Any, run_cell) -> None:
    run_cell(ip, SETUP)
    result = run_cell(
        ip,
        "%%optimize auto eval=agreement target=size example=x max_trials=2 seed=0 batch=auto "
        "progress=none logdir=none\nmodel = make_mlp()",
    )
    assert result.batch is not None and result.batch.batch_size >= 1
    assert result.batch.mode == "throughput"


def test_errors_name_the_options_as_the_magic_user_wrote_them(ip: Any, run_cell) -> None:
    """The engine says ``evaluate=``; a ``%%optimize`` user reads ``eval=``."""
    run_cell(ip, SETUP + "def wordy(model):\n    return 'high'")
    with pytest.raises(UsageError, match=r"^%%optimize: eval= must return a number"):
        run_cell(ip, "%%optimize prune=0.5 example=x eval=wordy\nmodel = make_mlp()")


def _engine_defaults() -> list[Any]:
    from nbopt import batching, compress, launching, tuning
    from nbopt.magics import accelerate, batchsize, optimize, optimize_auto, tune

    pairs = [
        (tune.SCHEMA, tuning.tune),
        (optimize.SCHEMA, compress.optimize),
        (optimize_auto.SCHEMA, compress.optimize_auto),
        (batchsize.SCHEMA, batching.find_batch_size),
        (accelerate.SCHEMA, launching.launch),
    ]
    return [pytest.param(schema, engine, id=schema.magic) for schema, engine in pairs]


# Options whose parameter belongs to another function than the engine's main one:
# %%accelerate's variables go to launch_cell, its machine layout to export_cell.
ELSEWHERE = {"copy_back", "nodes", "machine_rank", "main_process_ip", "main_process_port"}


@pytest.mark.parametrize(("schema", "engine"), _engine_defaults())
def test_every_option_sets_an_engine_parameter_with_the_same_default(schema, engine) -> None:
    """An option's default (what ``%magic?`` shows) is the engine's own, and every option that
    sets a parameter names one the engine has."""
    parameters = inspect.signature(engine).parameters
    for option in schema.options.values():
        if option.parameter is None or option.name in ELSEWHERE:
            continue
        assert option.parameter in parameters, option.name
        if option.default is not None:
            assert option.default == parameters[option.parameter].default, option.name


def test_a_missing_optional_package_is_one_line_naming_the_extra(
    ip: Any, run_cell, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The import of LightGBM fails as on a base install (a None entry in ``sys.modules``
    makes ``import lightgbm`` raise ImportError): the magic says which extra to install."""
    import sys

    monkeypatch.setitem(sys.modules, "lightgbm", None)
    run_cell(ip, "def f(x):\n    return x")
    expected = (
        r"^%tune: algo=atpe needs lightgbm, which is not installed; install it with: "
        r'pip install "nbopt\[atpe\]"$'
    )
    with pytest.raises(UsageError, match=expected):
        run_cell(ip, "%tune f x=uniform(0, 1) algo=atpe max_evals=2 progress=none logdir=none")
    assert "_nbopt" not in ip.user_ns
