"""The live views and TensorBoard logs of an optimisation."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from nbopt.compress import optimize
from nbopt.ui.text import TextReporter


@pytest.mark.slow
def test_tensorboard_gets_each_stage_the_finetune_curve_and_the_report(
    mlp: nn.Module, tmp_path: Path, accuracy, digits
) -> None:
    def finetune(model: nn.Module) -> None:
        import nbopt

        for step in range(3):
            nbopt.report(step, 1.0 / (step + 1), lr=0.01)

    result = optimize(
        mlp,
        prune=0.5,
        finetune=finetune,
        quant="int8",
        example=torch.randn(8, 64),
        evaluate=accuracy,
        progress="none",
        logdir=tmp_path,
    )
    (run,) = list(tmp_path.iterdir())
    assert run.name.startswith("optimize-")
    events = EventAccumulator(str(run))
    events.Reload()
    sizes = [(e.step, e.value) for e in events.Scalars("optimize/size_bytes")]
    assert [step for step, _ in sizes] == [0, 1, 2, 3]
    assert sizes[0][1] == result.before.size_bytes
    assert sizes[-1][1] == result.steps[-1].after.size_bytes
    assert [e.step for e in events.Scalars("optimize/accuracy")] == [0, 1, 2, 3]
    assert [round(e.value, 3) for e in events.Scalars("finetune/value")] == [1.0, 0.5, 0.333]
    assert len(events.Scalars("finetune/lr")) == 3
    (ratio,) = events.Scalars("ratio/size")
    assert abs(ratio.value - result.report["size_bytes"].ratio) < 1e-6
    text = events.Tensors("optimize/report")[0].tensor_proto.string_val[0].decode()
    assert "| serialized size |" in text and "| accuracy |" in text


def test_text_progress_prints_a_line_per_stage_and_the_summary(mlp: nn.Module) -> None:
    stream = io.StringIO()
    optimize(
        mlp,
        prune=0.5,
        quant="int8",
        example=torch.randn(8, 64),
        progress="none",
        logdir=None,
        callbacks=[TextReporter(stream, min_interval=0)],
    )
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[nbopt] optimize · prune structured 0.5 -> quantize int8: 2 planned"
    assert lines[1].startswith("original ")
    assert lines[2].startswith("prune structured 0.5 ") and "params 8.97k (0.34x)" in lines[2]
    assert lines[3].startswith("quantize int8 ")
    assert lines[4].startswith("[nbopt] done: size 0.")
    assert "side by side on" in lines[5]


def test_widget_shows_the_stages_and_ends_green(mlp: nn.Module) -> None:
    from nbopt.ui.widget import WidgetReporter

    widget = WidgetReporter(min_interval=0)
    optimize(
        mlp,
        prune=0.5,
        example=torch.randn(8, 64),
        progress="none",
        logdir=None,
        callbacks=[widget],
    )
    assert widget.bar.bar_style == "success"
    assert (widget.bar.value, widget.bar.max) == (1, 1)
    assert "prune structured 0.5" in widget.table.value and "original" in widget.table.value
    assert "side by side" in widget.headline.value


def test_tensorboard_gets_the_new_methods_numbers(mlp: nn.Module, tmp_path: Path, digits) -> None:
    """Soft pruning's zeroings, distillation's terms, the int8 fidelity, the exported size."""
    x, y = digits[0][:256], digits[1][:256]
    result = optimize(
        mlp,
        prune=0.5,
        prune_mode="soft",
        data=(x, y),
        epochs=2,
        distill="self",
        quant="int8",
        export=tmp_path / "model.pt2",
        example=x[:8],
        progress="none",
        logdir=tmp_path / "tb",
    )
    (run,) = list((tmp_path / "tb").iterdir())
    events = EventAccumulator(str(run))
    events.Reload()
    zeroed = events.Scalars("soft_pruning/zeroed")
    assert [e.step for e in zeroed] == [1, 2, 3] and all(e.value == 128 for e in zeroed)
    assert len(events.Scalars("soft_pruning/grew_back")) == 3
    assert len(events.Scalars("finetune/distill")) == len(events.Scalars("finetune/task")) > 0
    (fidelity,) = events.Scalars("optimize/int8_fidelity")
    assert abs(fidelity.value - result.fidelity) < 1e-6
    (size,) = events.Scalars("optimize/exported_bytes")
    assert size.value == result.exported["file_bytes"]


def test_the_live_view_shows_soft_pruning() -> None:
    from nbopt.compress.events import SoftPruningApplied
    from nbopt.ui.state import ProgressState
    from nbopt.ui.views import present

    state = ProgressState()
    present(SoftPruningApplied(3, 128, 256, 5), state)
    assert state.live["soft pruning"] == (
        "soft pruning: 128 of 256 channels zero (zeroing 3); 5 grew back since the last"
    )
