"""What ``optimize_auto`` gives back and logs: the result's forms, its dropdown of the front,
its plot, and TensorBoard's view of the search."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from IPython.lib.pretty import pretty
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata
from torch import nn

from nbopt.compress import AutoOptimizeResult, optimize_auto


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: where other processes share the cores, OpenMP threads wait on each
    other and every model call gets many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def search(mlp: nn.Module, accuracy, **options) -> AutoOptimizeResult:
    settings = {"target": "size", "example": torch.randn(8, 64), "max_trials": 6, "seed": 0}
    return optimize_auto(mlp, evaluate=accuracy, **{"progress": "none", **settings, **options})


def test_the_result_reads_as_a_table_a_summary_and_html(mlp: nn.Module, accuracy) -> None:
    result = search(mlp, accuracy, logdir=None)
    frame = result.to_dataframe()
    assert len(frame) == len(result.trials) + 1 and frame["trial"].isna().sum() == 1
    assert frame["on_front"].sum() == len(result.front) and frame["chosen"].sum() == 1
    chosen = frame[frame["chosen"]].iloc[0]
    assert chosen["plan"] == result.plan.label() and chosen["accuracy"] == result.chosen.metric
    assert {"size_ratio", "macs_ratio", "prune", "quant", "quant_keep", "within"} <= set(frame)
    assert repr(result).startswith(f"<AutoOptimizeResult {result.chosen.name}: size ")
    text = pretty(result)
    assert "Pareto front" in text and "each layer compressed alone" in text
    page = result._repr_html_()
    assert "<b>AutoOptimizeResult</b>" in page and page.count("<tr>") >= len(result.front) + 1
    # Outside a kernel with widgets, IPython shows the HTML and text forms.
    assert result._repr_mimebundle_() == {}


def test_the_plot_shows_every_trial_the_front_and_the_bound(mlp: nn.Module, accuracy) -> None:
    result = search(mlp, accuracy, logdir=None)
    figure = result.plot()
    (axes,) = figure.axes
    labels = axes.get_legend_handles_labels()[1]
    assert {"Pareto front", "original", "tolerance bound"} <= set(labels)
    (front_line,) = [line for line in axes.get_lines() if line.get_label() == "Pareto front"]
    assert list(front_line.get_xdata()) == [p.ratio for p in result.front]
    assert axes.get_xlabel().startswith("size ratio")


def test_the_dropdown_puts_the_picked_point_of_the_front_into_the_result(
    mlp: nn.Module, accuracy
) -> None:
    result = search(mlp, accuracy, logdir=None, tolerable_loss=0.3)
    assert len(result.front) >= 2
    box = result.picker()
    dropdown, summary = box.children
    assert dropdown.value == result.front.index(result.chosen)
    other = next(i for i, point in enumerate(result.front) if point is not result.chosen)
    dropdown.value = other
    picked = result.front[other]
    assert result.chosen is picked and result.plan == picked.plan
    assert result.model is result.models.get(picked.plan, result.model)
    assert picked.name in summary.value
    if picked.number is not None:
        assert accuracy(result.model) == pytest.approx(picked.metric)


def test_select_rebuilds_a_model_that_was_not_kept(mlp: nn.Module, accuracy) -> None:
    result = search(mlp, accuracy, logdir=None)
    off_front = [t for t in result.trials if t not in result.front and t.status == "ok"]
    assert off_front and not any(t.plan in result.models for t in off_front)
    model = result.select(off_front[0].number)
    assert accuracy(model) == pytest.approx(off_front[0].metric)
    with pytest.raises(ValueError, match="no successful trial 99"):
        result.select(99)
    original = result.select("original")
    assert result.chosen is result.original and original is not mlp
    assert accuracy(original) == accuracy(mlp)


def test_tensorboard_gets_a_run_per_trial_the_sensitivity_and_the_front(
    mlp: nn.Module, accuracy, tmp_path: Path
) -> None:
    result = search(mlp, accuracy, logdir=tmp_path, study=tmp_path / "mlp-auto.json")
    run = tmp_path / "mlp-auto"
    trials = sorted(path.name for path in run.iterdir() if path.is_dir())
    assert trials == [f"trial-{n:04d}" for n in range(len(result.trials))]
    events = EventAccumulator(str(run))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"sensitivity/quant/fc1", "sensitivity/prune/fc1", "score"} <= set(tags)
    ratios = [(e.step, round(e.value, 6)) for e in events.Scalars("auto/size_ratio")]
    assert ratios == [(t.number, round(t.ratio, 6)) for t in result.trials]
    front = events.Tensors("auto/front")[0].tensor_proto.string_val[0].decode()
    assert f"chosen: {result.chosen.name}" in front
    per_trial = EventAccumulator(str(run / "trial-0000"))
    per_trial.Reload()
    content = per_trial.PluginTagToContent("hparams")[metadata.SESSION_START_INFO_TAG]
    hparams = metadata.parse_session_start_info_plugin_data(content).hparams
    assert hparams["quant.mode"].string_value == result.trials[0].plan.quant
