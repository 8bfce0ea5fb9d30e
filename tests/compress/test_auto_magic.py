"""``%%optimize auto`` in an in-process IPython shell."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from IPython.core.error import UsageError

from nbopt.compress import AutoOptimizeResult

SETUP = """
import torch
from torch import nn

def make_mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)).eval()

x = torch.randn(64, 64)
reference = make_mlp()(x).argmax(1)
def agreement(model):
    with torch.no_grad():
        return (model(x).argmax(1) == reference).float().mean().item()

noise = torch.Generator().manual_seed(0)
def noisy(model):
    return torch.rand(1, generator=noise).item()
"""


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: where other processes share the cores, OpenMP threads wait on each
    other and every model call gets many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def ip(shell: Any, run_cell) -> Any:
    run_cell(shell, SETUP)
    return shell


def test_auto_searches_and_stores_the_result(ip: Any, run_cell) -> None:
    result = run_cell(
        ip,
        "%%optimize auto eval=agreement tolerable_loss=0.05 target=size example=x "
        "max_trials=3 seed=0 out=best\nmodel = make_mlp()",
    )
    assert isinstance(result, AutoOptimizeResult)
    assert ip.user_ns["best"] is result and ip.user_ns["_nbopt"] is result
    assert len(result.trials) == 3 and result.chosen.within
    agreement = ip.user_ns["agreement"]
    assert agreement(result.model) >= 0.95
    assert result.chosen.ratio < 0.6
    assert type(ip.user_ns["model"][0]).__name__ == "Linear"  # the notebook's model is untouched


def test_auto_options_reach_the_search(ip: Any, run_cell, tmp_path) -> None:
    result = run_cell(
        ip,
        "%%optimize auto eval=agreement tolerable_loss=0.1 loss_mode=absolute target=size "
        "stop_at=0.5 study=runs/auto.json max_trials=5 seed=1\nmodel = make_mlp()",
    )
    assert result.tolerance.loss_mode == "absolute" and result.tolerance.tolerable_loss == 0.1
    assert len(result.trials) == 1  # int8 alone reaches 0.5
    assert (tmp_path / "runs" / "auto.json").exists()


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("%%optimize auto target=size\nmodel = make_mlp(); ran = True", "auto needs eval="),
        (
            "%%optimize auto eval=agreement quant=int8\nmodel = make_mlp(); ran = True",
            "auto chooses quant= itself",
        ),
        (
            "%%optimize auto eval=agreement inplace\nmodel = make_mlp(); ran = True",
            "auto cannot work inplace",
        ),
        (
            "%%optimize prune=0.5 tolerable_loss=0.01 example=x\nmodel = make_mlp(); ran = True",
            "tolerable_loss= only applies with auto",
        ),
        (
            "%%optimize auto eval=agreement target=fast\nmodel = make_mlp(); ran = True",
            "expected one of latency|size|macs",
        ),
        (
            "%%optimize auto eval=agreement max_trials=0\nmodel = make_mlp(); ran = True",
            "max_trials=: expected a value >= 1",
        ),
    ],
)
def test_bad_options_are_usage_errors_before_the_cell_runs(
    ip: Any, run_cell, cell: str, message: str
) -> None:
    with pytest.raises(UsageError, match=message) as raised:
        run_cell(ip, cell)
    assert "\n" not in str(raised.value)
    assert "ran" not in ip.user_ns and "_nbopt" not in ip.user_ns


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("%%optimize auto eval=noisy example=x\nmodel = make_mlp()", "eval= is not deterministic"),
        ("%%optimize auto eval=agreement\nmodel = make_mlp()", "target=latency needs example="),
    ],
)
def test_inputs_known_after_the_cell_are_usage_errors_before_any_search(
    ip: Any, run_cell, tmp_path, cell: str, message: str
) -> None:
    run_cell(ip, "%config NbOptMagics.logdir = 'tb'")
    with pytest.raises(UsageError, match=message) as raised:
        run_cell(ip, cell)
    assert "\n" not in str(raised.value)
    assert "_nbopt" not in ip.user_ns and not (tmp_path / "tb").exists()


def test_help_lists_the_auto_options(ip: Any) -> None:
    doc = ip.find_cell_magic("optimize").__doc__
    for option in ("auto", "tolerable_loss", "loss_mode", "target", "max_trials", "stop_at"):
        assert f"  {option} " in doc
    assert "%%optimize auto eval=" in doc


def test_text_progress_shows_the_trials_and_the_choice(ip: Any, run_cell, capsys) -> None:
    run_cell(
        ip,
        "%%optimize auto eval=agreement target=size example=x max_trials=2 seed=0 "
        "progress=text\nmodel = make_mlp()",
    )
    out = capsys.readouterr().out
    assert "[nbopt] optimize auto · lowest size within tolerance: 2 planned" in out
    assert "[2/2]" in out
    assert "[nbopt] done: size" in out and "[nbopt] chosen: " in out


def test_auto_fine_tunes_with_the_built_in_loop_when_given_data(ip: Any, run_cell) -> None:
    run_cell(ip, "train = (x, reference)")
    result = run_cell(
        ip,
        "%%optimize auto eval=agreement target=size data=train epochs=1 example=x max_trials=4 "
        "seed=0 tolerable_loss=0.2\nmodel = make_mlp()",
    )
    assert any(t.plan.prune is not None and t.status == "ok" for t in result.trials)
    assert any("fine-tuned by the built-in loop" in note for note in result.notes)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("qat", "qat= is not searched by auto"),
        ("prune_steps=3", "prune_steps= is not searched by auto"),
        ("student=model", "student= is not searched by auto"),
        ("export=m.pt2", "export= is not taken by auto"),
        ("lr=0.1", "lr= is for the built-in fine-tune loop"),
    ],
)
def test_options_auto_does_not_take_are_refused(ip: Any, run_cell, options: str, message: str):
    with pytest.raises(UsageError, match=message):
        run_cell(ip, f"%%optimize auto eval=agreement example=x {options}\nmodel = make_mlp()")
    assert "_nbopt" not in ip.user_ns
