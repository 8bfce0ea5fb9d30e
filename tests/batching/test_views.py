"""What a user sees: the live views, TensorBoard's charts and the result object."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nbopt.batching import BatchMeasurement, BatchSizeResult, find_batch_size
from nbopt.batching._result import chosen_size, fastest_rate, format_bytes, format_rate
from nbopt.ui.plots.batching import curves
from nbopt.ui.text import TextReporter
from nbopt.ui.views.batching import MEMORY_TAG, SAMPLES_TAG
from nbopt.ui.widget import WidgetReporter


@pytest.fixture(scope="module")
def oom_above_12() -> torch.nn.Module:
    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(16, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.shape[0] > 12:
                torch.empty(1 << 50, dtype=torch.uint8)
            return self.linear(x)

    return Model()


def test_text_progress_prints_one_line_per_batch_size(oom_above_12) -> None:
    stream = io.StringIO()
    result = find_batch_size(
        oom_above_12,
        torch.randn(4, 16),
        mode="max",
        progress="none",
        logdir=None,
        callbacks=[TextReporter(stream=stream, min_interval=0)],
    )
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[nbopt] batch size · max · inference on cpu"
    rows = [line for line in lines if line.startswith("batch ")]
    assert len(rows) == len(result.measurements)
    assert [int(row.split()[1]) for row in rows] == [m.batch_size for m in result.measurements]
    assert any("oom: DefaultCPUAllocator" in row for row in rows)
    assert lines[-2].startswith("[nbopt] done: ")
    assert "largest batch that fits: 12" in lines[-2]


def test_widget_shows_the_table_and_ends_green(oom_above_12, capsys) -> None:
    widget = WidgetReporter(min_interval=0)
    result = find_batch_size(
        oom_above_12,
        torch.randn(4, 16),
        mode="max",
        progress="none",
        logdir=None,
        callbacks=[widget],
    )
    state = widget.state
    assert state.kind == "batchsize" and state.status == "done"
    assert state.done == len(result.measurements)
    assert state.failed == sum(1 for m in result.measurements if not m.ok)
    assert [row.cells[0] for row in state.rows] == [m.batch_size for m in result.measurements]
    assert widget.bar.bar_style == "success"
    assert "<table" in widget.table.value and "oom" in widget.table.value
    assert "largest batch that fits: 12" in widget.note.value
    # The curve is samples/s against log2(batch size), one point per size that ran.
    assert [x for x, _ in state.curve] == sorted(
        math.log2(s) for s in {m.batch_size for m in result.measurements if m.ok}
    )
    assert "<svg" in widget.curve.value


def test_tensorboard_plots_speed_and_memory_against_the_batch_size(tmp_path: Path) -> None:
    result = find_batch_size(
        torch.nn.Linear(16, 4),
        torch.randn(4, 16),
        max_batch_size=32,
        progress="none",
        logdir=tmp_path,
    )
    runs = [path for path in tmp_path.iterdir() if path.is_dir()]
    assert len(runs) == 1 and runs[0].name.startswith("batchsize-")
    accumulator = EventAccumulator(str(runs[0]))
    accumulator.Reload()
    assert {SAMPLES_TAG, MEMORY_TAG} <= set(accumulator.Tags()["scalars"])
    logged = {event.step: event.value for event in accumulator.Scalars(SAMPLES_TAG)}
    measured = {m.batch_size for m in result.measurements if m.ok}
    assert set(logged) == measured
    for size, value in logged.items():
        # A size measured twice is logged twice; TensorBoard keeps the last. Both are close.
        rates = [m.samples_per_second for m in result.measurements if m.batch_size == size]
        assert any(value == pytest.approx(rate, rel=1e-6) for rate in rates)
    memory = accumulator.Scalars(MEMORY_TAG)
    assert {event.step for event in memory} == measured
    assert all(event.value >= 0 for event in memory)


def _result(**changes) -> BatchSizeResult:
    measurements = [
        BatchMeasurement(16, "ok", "doubling", 1000.0, 0.016, 0.1, 5, 2_000_000),
        BatchMeasurement(32, "ok", "doubling", 1960.0, 0.016, 0.1, 5, 3_000_000),
        BatchMeasurement(64, "ok", "doubling", 2000.0, 0.032, 0.1, 5, 5_000_000),
        BatchMeasurement(128, "oom", "doubling", error="CUDA out of memory"),
        BatchMeasurement(96, "over memory", "refine", peak_memory=9_000_000, error="peak > cap"),
    ]
    values = {
        "batch_size": 32,
        "best_batch_size": 64,
        "mode": "throughput",
        "train": True,
        "device": "cuda:0",
        "measurements": measurements,
        "memory_limit": 8_000_000,
        "stop_reason": "batch 128 ran out of memory",
    }
    values.update(changes)
    return BatchSizeResult(**values)


def test_result_summary_repr_and_html() -> None:
    result = _result()
    assert result.throughput(64) == 2000.0 and result.throughput(128) is None
    assert result.summary() == (
        "batch size 32 at 1,960 samples/s, within 5% of the fastest, 64 at 2,000 samples/s"
    )
    assert repr(result).startswith("<BatchSizeResult throughput, training on cuda:0: batch size")
    page = result._repr_html_()
    assert "<td style='text-align:left;padding:0 8px'>ok ← chosen</td>" in page
    assert "memory cap 8 MB" in page and "oom" in page
    assert "&lt;" not in page.split("<table")[0]  # the title is not double-escaped
    maximum = _result(mode="max", batch_size=64)
    assert maximum.summary() == "largest batch that fits: 64 at 2,000 samples/s"


def test_the_chosen_size_is_the_smallest_within_tolerance_of_the_fastest() -> None:
    measurements = _result().measurements
    assert chosen_size(measurements, "throughput", 0.05) == 32  # 1960 >= 0.95 * 2000
    assert chosen_size(measurements, "throughput", 0.01) == 64
    assert chosen_size(measurements, "throughput", 0.6) == 16
    assert chosen_size(measurements, "max", 0.05) == 64  # the largest that ran
    again = [*measurements, BatchMeasurement(16, "ok", "repeat", 2100.0, 0.008, 0.1, 5, 2_000_000)]
    assert fastest_rate(again, 16) == 2100.0  # a size measured twice keeps its faster speed
    assert chosen_size(again, "throughput", 0.05) == 16
    assert chosen_size([], "throughput", 0.05) is None


def test_result_dataframe_has_one_row_per_measurement() -> None:
    frame = _result().to_dataframe()
    assert list(frame["batch_size"]) == [16, 32, 64, 128, 96]
    assert list(frame["status"]) == ["ok", "ok", "ok", "oom", "over memory"]
    assert frame["samples_per_second"].isna().tolist() == [False, False, False, True, True]


def test_plot_shows_speed_and_memory() -> None:
    result = _result()
    data = curves(result)
    assert data.rates == [(16, 1000.0), (32, 1960.0), (64, 2000.0)]
    assert data.memory == [(16, 2.0), (32, 3.0), (64, 5.0), (96, 9.0)]
    assert data.failed == [(96, "over memory"), (128, "oom")]
    figure = result.plot()
    speed, memory = figure.axes
    assert speed.get_xscale() == "log" and speed.get_title() == "Throughput"
    assert memory.get_title() == "Peak memory of a step"
    assert len(memory.lines) == 2  # measured peaks and the cap
    far = _result(memory_limit=12_000_000_000).plot().axes[1]
    assert len(far.lines) == 1  # a cap 1000 times the peaks is named, not drawn
    assert far.get_title() == "Peak memory of a step (cap 12 GB, off the chart)"


@pytest.mark.parametrize(
    ("value", "text"),
    [(512, "512 B"), (12_345_678, "12.3 MB"), (1.5e9, "1.5 GB"), (250e6, "250 MB"), (None, "n/a")],
)
def test_format_bytes(value, text: str) -> None:
    assert format_bytes(value) == text


def test_format_rate() -> None:
    assert format_rate(31250.4) == "31,250"
    assert format_rate(0.5234) == "0.523"
    assert format_rate(None) == "n/a"


def _efficient_result() -> BatchSizeResult:
    from nbopt.batching import NoiseScale

    noise = NoiseScale(40.0, 30.0, 55.0, 0.5, 20.0, 0.4, 50, 1024, pooled=2)
    return _result(
        mode="efficient",
        batch_size=32,
        noise_scale=noise,
        noise_scales=[noise],
        predicted_time={16: 1.4, 32: 1.0, 64: 1.04},
        learning_rate=0.02,
        lr_rule="the rule",
        warnings=["the machine was too noisy to decide: batch 16 ran at 1 then 2 samples/s"],
    )


def test_an_efficient_result_shows_the_noise_scale_the_times_and_the_warnings() -> None:
    result = _efficient_result()
    assert result.summary() == (
        "batch size 32 at 1,960 samples/s, the shortest predicted time to a given loss; "
        "critical batch B_noise 40 (30 to 55); the fastest in samples/s, 64, would take "
        "1.04x as long; learning rate 0.02"
    )
    page = result._repr_html_()
    assert "predicted time" in page and "1.04x" in page and "⚠ the machine was too noisy" in page
    assert "learning rate 0.02 by the rule" in page
    frame = result.to_dataframe()
    assert list(frame["predicted_time"].fillna(-1)) == [1.4, 1.0, 1.04, -1, -1]
    data = curves(result)
    assert data.times == [(16, 1.4), (32, 1.0), (64, 1.04)]
    titles = [axes.get_title() for axes in result.plot().axes]
    assert titles[1] == "Predicted time to a given loss" and len(titles) == 3


def test_the_live_views_and_tensorboard_show_the_noise_scale(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    from nbopt.ui.views.batching import NOISE_TAG

    digits = load_digits()
    x = torch.tensor(digits.data[:512] / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target[:512])
    stream = io.StringIO()
    result = find_batch_size(
        torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10)),
        x, target=y, loss=torch.nn.functional.cross_entropy, train=True, noise_steps=8,
        max_batch_size=32, progress="none", logdir=tmp_path,
        callbacks=[TextReporter(stream=stream, min_interval=0)],
    )  # fmt: skip
    text = stream.getvalue()
    assert text.splitlines()[0] == "[nbopt] batch size · efficient · training on cpu"
    assert f"noise scale B_noise {result.noise_scale.text()}" in text
    assert "(3 measurements pooled, up to 8 steps; the choice uses it)" in text
    assert "the shortest predicted time to a given loss" in text
    (run,) = [path for path in tmp_path.iterdir() if path.is_dir()]
    accumulator = EventAccumulator(str(run))
    accumulator.Reload()
    logged = {e.step: e.value for e in accumulator.Scalars(NOISE_TAG)}
    each = {n.steps: n.value for n in result.noise_scales[:-1] if math.isfinite(n.value)}
    assert logged == pytest.approx(each) and set(logged) <= {0, 2, 4, 6, 8}
