"""What a user sees of a range test: the live views, TensorBoard's charts, the result and its
plot."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nbopt.learning_rate import LRFindResult, LRSweep, find_lr
from nbopt.ui.plots.learning_rate import curves
from nbopt.ui.text import TextReporter
from nbopt.ui.views.learning_rate import LOSS_TAG, RATE_TAG, SMOOTHED_TAG, SUGGESTION_TAG
from nbopt.ui.widget import WidgetReporter

cross_entropy = torch.nn.functional.cross_entropy


def test_text_progress_prints_a_line_per_sweep_and_the_suggestion(digits, make_mlp) -> None:
    stream = io.StringIO()
    result = find_lr(
        make_mlp(), digits, loss=cross_entropy, steps=30, repeats=2, progress="none",
        logdir=None, callbacks=[TextReporter(stream=stream, min_interval=0)],
    )  # fmt: skip
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[nbopt] learning rate · Adam · batch 64 · 1e-07 to 10: 2 planned"
    sweeps = [line for line in lines if line.startswith("sweep ")]
    assert len(sweeps) == 2
    for line, sweep in zip(sweeps, result.sweeps, strict=True):
        assert f"{len(sweep.losses)} steps" in line and f"{sweep.suggestion:.3g}" in line
    assert lines[-2] == f"[nbopt] done: 2 sweep(s) in {result.duration:.1f} s; {result.summary()}"


def test_widget_shows_each_sweep_and_ends_green(digits, make_mlp) -> None:
    widget = WidgetReporter(min_interval=0)
    result = find_lr(
        make_mlp(), digits, loss=cross_entropy, steps=25, repeats=3, progress="none",
        logdir=None, callbacks=[widget],
    )  # fmt: skip
    state = widget.state
    assert state.kind == "lr_find" and state.status == "done"
    assert state.done == state.total == 3
    assert widget.bar.value == widget.bar.max == 3 and widget.bar.bar_style == "success"
    assert [row.cells[0] for row in state.rows] == [1, 2, 3]
    # The curve is the last sweep's moving average against log10(rate).
    last = result.sweeps[-1]
    assert [x for x, _ in state.curve] == pytest.approx(
        [math.log10(r) for r in last.learning_rates]
    )
    assert "<svg" in widget.curve.value and "<table" in widget.table.value
    assert result.summary() in widget.note.value


def test_tensorboard_has_a_run_per_sweep(digits, make_mlp, tmp_path: Path) -> None:
    result = find_lr(
        make_mlp(), digits, loss=cross_entropy, steps=20, repeats=2, end=1.0, progress="none",
        logdir=tmp_path,
    )  # fmt: skip
    runs = [path for path in tmp_path.iterdir() if path.is_dir()]
    assert len(runs) == 1 and runs[0].name.startswith("lr_find-")
    root = EventAccumulator(str(runs[0]))
    root.Reload()
    logged = {e.step: e.value for e in root.Scalars(SUGGESTION_TAG)}
    assert logged == pytest.approx({s.index: s.suggestion for s in result.sweeps})
    for sweep in result.sweeps:
        accumulator = EventAccumulator(str(runs[0] / f"sweep-{sweep.index}"))
        accumulator.Reload()
        assert {LOSS_TAG, SMOOTHED_TAG, RATE_TAG} <= set(accumulator.Tags()["scalars"])
        losses = [e.value for e in accumulator.Scalars(LOSS_TAG)]
        assert losses == pytest.approx(sweep.losses, rel=1e-6)
        rates = [e.value for e in accumulator.Scalars(RATE_TAG)]
        assert rates == pytest.approx(sweep.learning_rates, rel=1e-6)


def _result(**changes) -> LRFindResult:
    rates = tuple(np.logspace(-4, 0, 20))
    falling = tuple(2 - np.exp(-(((np.log10(rates) + 1.5) / 0.6) ** 2)))
    sweeps = [
        LRSweep(0, rates, falling, "all 20 steps", 0.5, 0.0030),
        LRSweep(
            1, rates[:18], tuple(v + 0.1 for v in falling[:18]), "diverged at 0.5", 0.4, 0.0025
        ),
    ]
    values = {
        "suggestion": 0.003,
        "rule": "minimum_centered",
        "suggestions": {"minimum_centered": 0.003, "valley": 0.001, "minimum": None},
        "band": (0.0025, 0.003),
        "sweeps": sweeps,
        "optimizer": "Adam",
        "batch_size": 64,
        "start": 1e-4,
        "end": 1.0,
        "steps": 20,
    }
    values.update(changes)
    return LRFindResult(**values)


def test_result_summary_repr_html_and_dataframe() -> None:
    result = _result()
    assert (
        result.summary() == "learning rate 0.003 (minimum_centered), 0.0025 to 0.003 over 2 sweeps"
    )
    assert repr(result).startswith("<LRFindResult Adam, batch 64: learning rate 0.003")
    page = result._repr_html_()
    assert "minimum_centered ← used" in page and "diverged at 0.5" in page
    frame = result.to_dataframe()
    assert list(frame.columns) == ["sweep", "step", "learning_rate", "loss"]
    assert len(frame) == 38 and list(frame["sweep"].unique()) == [0, 1]
    nothing = _result(suggestion=None, band=None)
    assert nothing.summary().startswith("no suggestion (done): the loss did not fall")


def test_the_curve_is_the_median_and_the_band_spans_the_sweeps() -> None:
    result = _result()
    curve = result.curve()
    assert len(curve.learning_rates) == 18  # where one of two sweeps stopped, the median stops
    assert curve.loss == pytest.approx(np.array(result.sweeps[0].losses[:18]) + 0.05)
    assert np.all(curve.low <= curve.smoothed + 1e-12) and np.all(
        curve.smoothed <= curve.high + 1e-12
    )
    assert np.all(curve.high - curve.low == pytest.approx(0.1))


def test_plot_shows_curve_band_and_suggestions() -> None:
    result = _result()
    data = curves(result)
    assert data.suggestion == 0.003 and data.band == (0.0025, 0.003)
    assert data.others == {"valley": 0.001}  # a rule that suggested nothing is not drawn
    figure = result.plot()
    (axes,) = figure.axes
    assert axes.get_xscale() == "log"
    labels = {text.get_text() for text in axes.get_legend().get_texts()}
    assert labels == {
        "loss (median)",
        "smoothed",
        "minimum_centered: 0.003",
        "valley: 0.001",
        "2 sweeps, lowest to highest",
        "suggestion per sweep",
    }


def test_the_curve_follows_the_longest_sweep_when_the_first_stopped_early() -> None:
    result = _result()
    short, long = result.sweeps[1], result.sweeps[0]
    shorter = LRSweep(0, short.learning_rates[:5], short.losses[:5], "diverged", 0.1, None)
    third = LRSweep(2, long.learning_rates, long.losses, "all 20 steps", 0.1, 0.003)
    result = _result(sweeps=[shorter, long, third])
    curve = result.curve()
    assert len(curve.learning_rates) == 20 and curve.loss == pytest.approx(long.losses)


def test_every_rule_reads_the_median_curve_when_the_first_sweep_stopped_early() -> None:
    from nbopt.learning_rate._sweep import summarise

    rates = tuple(np.logspace(-5, 0, 40))
    dip = tuple(2 - np.exp(-(((np.log10(rates) + 2) / 0.7) ** 2)))
    sweeps = [
        LRSweep(0, rates[:12], dip[:12], "diverged", 0.1, None),
        LRSweep(1, rates, dip, "all 40 steps", 0.1, None),
        LRSweep(2, rates, dip, "all 40 steps", 0.1, None),
    ]
    result = summarise(
        sweeps, rule="minimum_centered", optimizer="Adam", batch_size=8, start=1e-5, end=1.0,
        steps=40,
    )  # fmt: skip
    assert result.suggestion == pytest.approx(2e-3, rel=0.5)  # a fifth of the dip at 1e-2
    assert all(rate is not None for rate in result.suggestions.values())
