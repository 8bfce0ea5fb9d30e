"""``%%optimize`` in an in-process IPython shell."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from IPython.core.error import UsageError

from nbopt.compress import OptimizeResult

SETUP = """
import torch
from torch import nn

def make_mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)).eval()

x = torch.randn(16, 64)
def score(model):
    with torch.no_grad():
        return float(model(x).std())
"""


@pytest.fixture
def ip(shell: Any, run_cell) -> Any:
    run_cell(shell, SETUP)
    return shell


def test_the_cell_runs_and_its_model_is_optimised(ip: Any, run_cell) -> None:
    result = run_cell(
        ip,
        "%%optimize prune=0.5 quant=int8 example=x eval=score out=small\nmodel = make_mlp()",
    )
    assert isinstance(result, OptimizeResult)
    assert ip.user_ns["small"] is result and ip.user_ns["_nbopt"] is result
    model = ip.user_ns["model"]
    assert isinstance(model[0], torch.nn.Linear) and model[0].out_features == 128  # untouched
    assert result.model[0].out_features == 64
    assert result.report["macs"].ratio == pytest.approx(0.5, abs=0.01)
    assert result.metric_name == "score"


def test_model_option_names_the_model(ip: Any, run_cell) -> None:
    run_cell(ip, "net = make_mlp()")
    result = run_cell(ip, "%%optimize model=net prune=0.25 example=x\nother = make_mlp()")
    assert result.model[0].out_features == 96


def test_a_loss_module_the_cell_builds_is_not_taken_for_the_model(ip: Any, run_cell) -> None:
    result = run_cell(
        ip, "%%optimize prune=0.5 example=x\nmodel = make_mlp()\nloss_fn = nn.CrossEntropyLoss()"
    )
    assert result.model[0].out_features == 64


def test_inplace_changes_the_notebook_model(ip: Any, run_cell) -> None:
    run_cell(ip, "%%optimize prune=0.5 example=x inplace\nmodel = make_mlp()")
    assert ip.user_ns["model"][0].out_features == 64


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("%%optimize prune=0.5 example=x\nm1 = make_mlp(); m2 = make_mlp()", "several models"),
        ("%%optimize prune=0.5 example=x\ny = 1", "assigned no nn.Module"),
        ("%%optimize model=x prune=0.5\nmodel = make_mlp()", "'x' is a Tensor, not an nn.Module"),
        (
            "%%optimize prune=2 example=x\nmodel = make_mlp()",
            r"prune=: expected a value in \(0, 1\)",
        ),
        ("%%optimize quant=int4\nmodel = make_mlp()", "expected one of int8|int8-static"),
        ("%%optimize prune=0.5 exampel=x\nmodel = make_mlp()", "did you mean example"),
        ("%%optimize eval=nothing\nmodel = make_mlp()", "'nothing' is not defined"),
        ("%%optimize eval=x\nmodel = make_mlp()", "eval=: 'x' is not callable"),
        (
            "%%optimize prune=0.5 example=bad\nmodel = make_mlp(); bad = torch.randn(2, 3)",
            "example= does not run through the model",
        ),
        (
            "%%optimize prune=0.5 prune_ignore=fc example=x\nmodel = make_mlp()",
            "no module named 'fc'",
        ),
        ("%%optimize quant=int8-static example=x\nmodel = make_mlp()", "needs calib="),
    ],
)
def test_bad_input_is_a_one_line_usage_error(
    ip: Any, run_cell, tmp_path, cell: str, message: str
) -> None:
    run_cell(ip, "%config NbOptMagics.logdir = 'tb'")
    with pytest.raises(UsageError, match=message) as raised:
        run_cell(ip, cell)
    assert "\n" not in str(raised.value)
    assert "_nbopt" not in ip.user_ns
    assert not (tmp_path / "tb").exists()


def test_an_error_in_the_cell_propagates(ip: Any, run_cell) -> None:
    with pytest.raises(ZeroDivisionError):
        run_cell(ip, "%%optimize prune=0.5 example=x\nmodel = make_mlp()\n1 / 0")


def test_an_error_in_finetune_propagates_and_the_model_is_unchanged(ip: Any, run_cell) -> None:
    run_cell(ip, "def boom(model):\n    raise RuntimeError('out of patience')")
    with pytest.raises(RuntimeError, match="out of patience"):
        run_cell(ip, "%%optimize prune=0.5 finetune=boom example=x inplace\nmodel = make_mlp()")
    assert ip.user_ns["model"][0].out_features == 128


def test_help_lists_every_option(ip: Any) -> None:
    doc = ip.find_cell_magic("optimize").__doc__
    for option in ("prune", "prune_mode", "prune_ignore", "lowrank", "finetune", "quant"):
        assert f"  {option} " in doc
    assert "int8|int8-static|fp16|bf16" in doc and "structured|soft|unstructured" in doc
    for option in ("prune_steps", "data", "distill", "student", "qat", "quant_backend", "export"):
        assert f"  {option} " in doc


def test_text_progress_and_tensorboard_logs(ip: Any, run_cell, tmp_path, capsys) -> None:
    run_cell(ip, "%%optimize prune=0.5 example=x progress=text logdir=tb\nmodel = make_mlp()")
    out = capsys.readouterr().out
    assert "[nbopt] optimize · prune structured 0.5: 1 planned" in out
    assert "[nbopt] done: size" in out
    (run,) = (tmp_path / "tb").iterdir()
    assert list(run.glob("events.out.tfevents.*"))


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ("quant=int8-static example=x", "needs calib="),
        ("prune_ignore=fc example=x", "prune_ignore= is given without prune="),
        ("quant=int8 calib=x example=x", "calib= is only used by quant=int8-static"),
        ("quant=int8-static calib=x inplace example=x", "inplace cannot be used"),
        ("quant=int8 batch=auto", "batch=auto needs example="),
    ],
)
def test_step_options_that_do_not_go_together_fail_before_the_cell_runs(
    ip: Any, run_cell, options: str, fragment: str
) -> None:
    run_cell(ip, "ran = []")
    with pytest.raises(UsageError, match=fragment) as info:
        run_cell(ip, f"%%optimize {options}\nran.append(1)\nmodel = make_mlp()")
    assert str(info.value).startswith("%%optimize")
    assert ip.user_ns["ran"] == []


def test_a_failing_cell_shows_its_own_source_in_the_traceback(ip: Any, run_cell) -> None:
    import traceback

    with pytest.raises(ZeroDivisionError) as info:
        run_cell(ip, "%%optimize quant=int8\nmodel = make_mlp()\nbroken = 1 / 0")
    text = "".join(traceback.format_exception(info.value))
    assert "<%%optimize cell" in text and "broken = 1 / 0" in text


def test_batch_auto_adds_the_optimised_models_batch_size_to_the_report(ip: Any, run_cell) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # steadier timings on a shared machine
    try:
        result = run_cell(
            ip,
            "%%optimize quant=int8 example=x batch=auto progress=none logdir=none\n"
            "model = make_mlp()",
        )
    finally:
        torch.set_num_threads(threads)
    found = result.batch
    assert found is not None and found.mode == "throughput" and not found.train
    assert found.batch_size <= found.best_batch_size
    assert {m.batch_size for m in found.measurements if m.ok} >= {1, found.batch_size}
    assert f"batch size {found.batch_size}" in result.summary()
    assert f"batch size {found.batch_size}" in result._repr_html_()


FINETUNE_DATA = """
train = (torch.randn(128, 64), torch.randint(0, 10, (128,)))
torch.manual_seed(1)
small = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


def own(model):
    pass
"""


def test_soft_pruning_with_the_built_in_loop_and_distillation(ip: Any, run_cell) -> None:
    run_cell(ip, FINETUNE_DATA)
    result = run_cell(
        ip,
        "%%optimize prune=0.5 prune_mode=soft data=train epochs=2 distill=self temperature=2 "
        "alpha=0.7 example=x\nmodel = make_mlp()",
    )
    assert [step.kind for step in result.steps] == ["prune", "finetune", "prune"]
    assert "T=2, alpha=0.7" in result.steps[1].detail
    assert result.model[0].out_features == 64 and ip.user_ns["model"][0].out_features == 128


def test_iterative_pruning_qat_and_export(ip: Any, run_cell, tmp_path) -> None:
    run_cell(ip, FINETUNE_DATA)
    result = run_cell(
        ip,
        "%%optimize prune=0.5 prune_steps=2 data=train finetune_steps=4 lr=0.01 quant=int8 qat "
        "export=out/model.pt2 example=x\nmodel = make_mlp()",
    )
    kinds = [step.kind for step in result.steps]
    assert kinds == ["prune", "finetune", "prune", "finetune", "quant", "export"]
    assert result.quant_backend == "torchao" and (tmp_path / "out" / "model.pt2").exists()


def test_a_student_is_trained_from_the_cells_model(ip: Any, run_cell) -> None:
    run_cell(ip, FINETUNE_DATA)
    result = run_cell(
        ip, "%%optimize student=small data=train epochs=1 example=x\nmodel = make_mlp()"
    )
    assert [step.kind for step in result.steps] == ["transfer", "finetune"]
    assert result.model[0].out_features == 16 and result.model is not ip.user_ns["small"]


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("%%optimize prune=0.5 prune_mode=soft example=x", "prune_mode=soft needs a fine-tune"),
        ("%%optimize prune=0.5 prune_steps=3 example=x", "prune_steps= needs a fine-tune"),
        ("%%optimize quant=int8 qat example=x", "qat=True needs a fine-tune"),
        ("%%optimize quant=fp16 quant_backend=torchao", "quant_backend= only applies"),
        ("%%optimize epochs=2 example=x", "epochs= is for the built-in fine-tune loop"),
        ("%%optimize data=train finetune=own", "not both"),
        ("%%optimize data=train temperature=2", "temperature= only applies with distill="),
        ("%%optimize distill=self example=x", "distill= needs a fine-tune"),
        ("%%optimize student=small example=x", "student= needs a fine-tune"),
        ("%%optimize export=model.pt3 example=x", "unknown export format '.pt3'"),
        ("%%optimize quant=int8 quant_backend=tensorrt", "expected one of auto|torchao|torch.ao"),
    ],
)
def test_new_options_that_do_not_go_together_fail_before_the_cell_runs(
    ip: Any, run_cell, cell: str, message: str
) -> None:
    run_cell(ip, FINETUNE_DATA)
    with pytest.raises(UsageError, match=message) as raised:
        run_cell(ip, cell + "\nmodel = make_mlp(); ran = True")
    assert "\n" not in str(raised.value)
    assert "ran" not in ip.user_ns and "_nbopt" not in ip.user_ns


@pytest.mark.parametrize(
    ("setup", "cell", "message"),
    [
        ("small = 3", "student=small data=train", "student=: 'small' is a int, not an nn.Module"),
        (
            "wide = nn.Linear(64, 5)",
            "prune=0.5 data=train distill=wide",
            "teacher's outputs .* do not match",
        ),
    ],
)
def test_student_and_teacher_are_checked_once_the_cell_ran(
    ip: Any, run_cell, setup: str, cell: str, message: str
) -> None:
    run_cell(ip, FINETUNE_DATA + setup)
    with pytest.raises(UsageError, match=message):
        run_cell(ip, f"%%optimize {cell} example=x\nmodel = make_mlp()")
    assert "_nbopt" not in ip.user_ns
