"""How a job's events are shown: the live state that the widget and the text view draw."""

from __future__ import annotations

import io

from nbopt.events import RunFinished, RunStarted
from nbopt.launching.events import RankFinished, RankStepReported
from nbopt.ui.state import ProgressState
from nbopt.ui.text import TextReporter
from nbopt.ui.views import present

START = RunStarted(kind="accelerate", title="accelerate · 2 CPU processes", total=2, unit="ranks")


def test_reports_show_each_rank_and_rank_zero_draws_the_curve() -> None:
    state = ProgressState()
    present(START, state)
    present(RankStepReported(None, 3, None, {"loss": 0.5}, rank=1), state)
    present(RankStepReported(None, 3, 0.7, {"loss": 0.4}, rank=0), state)
    assert state.live == {"rank 1": "step 3: loss=0.5", "rank 0": "step 3: value=0.7 loss=0.4"}
    assert state.curve == [(3, 0.7)]
    assert state.curve_label == "rank 0: value"

    present(RankFinished(1, "done", 2.0, "step 3: loss=0.5"), state)
    present(RankFinished(0, "failed", 2.5, "raised ValueError: x"), state)
    assert state.live == {}
    assert (state.done, state.failed) == (1, 1)
    assert [row.text for row in state.rows] == [
        "rank 1 done after 2.0 s  step 3: loss=0.5",
        "rank 0 failed after 2.5 s  raised ValueError: x",
    ]
    assert state.rows[0].cells == (1, "done", "2.0 s", "step 3: loss=0.5")


def test_a_long_curve_is_thinned_but_keeps_its_start_and_end() -> None:
    state = ProgressState()
    for step in range(2500):
        present(RankStepReported(None, step, None, {"loss": 1 / (step + 1)}, rank=0), state)
    assert len(state.curve) <= 1000
    assert state.curve[0] == (0, 1.0)
    assert state.curve[-1][0] == 2499
    assert state.curve_label == "rank 0: loss"


def test_the_text_view_prints_every_rank_even_when_they_end_together() -> None:
    stream = io.StringIO()
    view = TextReporter(stream=stream)
    view(START)
    view(RankFinished(0, "done", 1.0))
    view(RankFinished(1, "done", 1.0))
    view(RunFinished(kind="accelerate", status="done", message="2 ranks finished in 1.0 s"))
    lines = stream.getvalue().splitlines()
    assert lines[1:] == [
        "rank 0 done after 1.0 s",
        "rank 1 done after 1.0 s",
        "[nbopt] done: 2 ranks finished in 1.0 s",
    ]
