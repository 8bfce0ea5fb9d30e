"""Live views: the text reporter, the ipywidgets reporter, picking one, and the event bus."""

from __future__ import annotations

import io
import re

import pytest

import nbopt
import nbopt.ui.widget as widget_module
from nbopt import ConfigError, choice, uniform
from nbopt.events import Event, EventBus, RunStarted
from nbopt.tuning.events import TrialFinished
from nbopt.ui import format as fmt
from nbopt.ui.interactive import in_widget_frontend
from nbopt.ui.progress import progress_reporter
from nbopt.ui.text import TextReporter
from nbopt.ui.widget import WidgetReporter


def _values_objective(values):
    """An objective returning ``values`` in turn; "fail" raises."""
    outcomes = iter(values)

    def objective(x):
        value = next(outcomes)
        if value == "fail":
            raise ValueError("bad trial")
        return value

    return objective


def _text_run(values, min_interval=0.0, **options) -> list[str]:
    stream = io.StringIO()
    reporter = TextReporter(stream=stream, min_interval=min_interval)
    nbopt.tune(
        _values_objective(values),
        {"x": uniform(0, 1)},
        max_evals=len(values),
        progress="none",
        logdir=None,
        callbacks=[reporter],
        **options,
    )
    return stream.getvalue().splitlines()


# --- text ------------------------------------------------------------------------------------


def test_text_reporter_prints_header_lines_and_summary() -> None:
    """A header with the plan, one line per trial, then the outcome and the best trial."""
    lines = _text_run([3.0, 1.0, 2.0])
    assert lines[0] == "[nbopt] tune · auto: 3 planned"
    trial_lines = [line for line in lines if line.startswith("trial")]
    assert len(trial_lines) == 3
    assert re.match(r"trial +0 \[1/3\] +3 +\* +x=", trial_lines[0])
    assert re.match(r"trial +1 \[2/3\] +1 +\* +x=", trial_lines[1])
    assert "*" not in trial_lines[2].split("x=")[0]  # not a new best
    assert lines[-2].startswith("[nbopt] done: 3 trials in")
    assert "best value 1 at trial 1" in lines[-2]
    assert lines[-1].startswith("[nbopt] best 1 at trial 1: x=")


def test_text_reporter_shows_failures_and_resumption(tmp_path) -> None:
    """Failed trials print their error; a resumed study says how many trials were done."""
    study = tmp_path / "s.json"
    lines = _text_run([1.0, "fail"], study=study)
    assert any("FAILED ValueError: bad trial" in line for line in lines)
    assert "(1 failed)" in lines[-2]
    stream = io.StringIO()
    nbopt.tune(
        lambda x: x,
        {"x": uniform(0, 1)},
        max_evals=3,
        study=study,
        progress="none",
        logdir=None,
        callbacks=[TextReporter(stream=stream, min_interval=0)],
    )
    assert "[nbopt] resuming: 2 trials done" in stream.getvalue().splitlines()[1]


def test_text_reporter_throttling_keeps_important_rows() -> None:
    """Drawing rarely still prints every new best, every failure and the last trial."""
    values = [5.0, 4.0, 6.0, 7.0, "fail", 8.0, 3.0, 9.0, 10.0, 11.0]
    lines = _text_run(values, min_interval=3600)
    printed = [int(line.split()[1]) for line in lines if line.startswith("trial")]
    assert printed == [0, 1, 4, 6, 9]
    assert lines[0].startswith("[nbopt] tune")
    assert lines[-2].startswith("[nbopt] done: 10 trials (1 failed)")


def test_progress_text_option_prints_to_stdout(capsys) -> None:
    """progress="text" prints the live lines to standard output."""
    nbopt.tune(lambda x: x, {"x": uniform(0, 1)}, max_evals=2, progress="text", logdir=None)
    out = capsys.readouterr().out
    assert "[nbopt] tune · auto: 2 planned" in out
    assert "[nbopt] done: 2 trials" in out


# --- widget ----------------------------------------------------------------------------------


@pytest.fixture
def widget_views(monkeypatch):
    """Every WidgetReporter that ``progress="widget"`` creates during the test."""
    created = []

    class RecordedWidgetReporter(WidgetReporter):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            created.append(self)

    monkeypatch.setattr(widget_module, "WidgetReporter", RecordedWidgetReporter)
    return created


def test_widget_reporter_after_a_run(widget_views) -> None:
    """The bar ends full (value = trials = max_evals) and green; the table lists trials."""
    result = nbopt.tune(
        lambda x: x, {"x": uniform(0, 1)}, max_evals=6, progress="widget", logdir=None
    )
    assert len(widget_views) == 1
    view = widget_views[0]
    assert view.bar.value == len(result.trials) == 6
    assert view.bar.max == 6
    assert view.bar.bar_style == "success"
    assert "trial" in view.table.value and "<table" in view.table.value
    assert "done" in view.counts.value
    assert fmt.number(result.best_value, 6) in view.headline.value
    assert "<svg" in view.curve.value


def test_widget_reporter_fills_the_bar_of_a_run_that_ends_before_its_budget(widget_views):
    """A search that ends early (here: a space of 3 configurations under a budget of 6) is
    complete: the bar is full and green, and its description says how much of the budget it
    used."""
    nbopt.tune(lambda x: x, {"x": choice(1, 2, 3)}, max_evals=6, progress="widget", logdir=None)
    view = widget_views[0]
    assert view.bar.value == view.bar.max
    assert view.bar.bar_style == "success"
    assert view.bar.description.endswith("/6")


def test_widget_reporter_turns_red_on_interrupt(widget_views) -> None:
    """After a KeyboardInterrupt the bar is "danger" and counts the finished trials."""
    calls = []

    def objective(x):
        calls.append(x)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return x

    with pytest.raises(KeyboardInterrupt):
        nbopt.tune(objective, {"x": uniform(0, 1)}, max_evals=6, progress="widget", logdir=None)
    view = widget_views[0]
    assert view.bar.bar_style == "danger"
    assert view.bar.value == 2
    assert view.bar.max == 6
    assert "interrupted" in view.counts.value


def test_widget_reporter_counts_failures() -> None:
    """A WidgetReporter given as a callback shows failures in its counts."""
    view = WidgetReporter(min_interval=0)
    nbopt.tune(
        _values_objective([1.0, "fail", 2.0]),
        {"x": uniform(0, 1)},
        max_evals=3,
        progress="none",
        logdir=None,
        callbacks=[view],
    )
    assert "1 failed" in view.counts.value
    assert view.bar.value == 3
    assert "FAILED ValueError: bad trial" in view.table.value


# --- picking a view --------------------------------------------------------------------------


def test_auto_picks_text_outside_a_kernel() -> None:
    """Outside a Jupyter kernel "auto" is the text view; "none" is no view."""
    assert not in_widget_frontend()
    assert isinstance(progress_reporter("auto"), TextReporter)
    assert isinstance(progress_reporter("text"), TextReporter)
    assert isinstance(progress_reporter("widget"), WidgetReporter)
    assert progress_reporter("none") is None
    with pytest.raises(ConfigError, match="auto, widget, text, none"):
        progress_reporter("tqdm")


def test_auto_picks_text_in_a_terminal_ipython(ip) -> None:
    """A plain (terminal-like) IPython shell is not a widget front end either."""
    assert not in_widget_frontend()
    assert isinstance(progress_reporter("auto"), TextReporter)


# --- the event bus ---------------------------------------------------------------------------


def test_event_bus_drops_a_failing_reporter_and_the_search_completes() -> None:
    """A reporter that raises is warned about once, turned off, and the run goes on."""
    broken_calls = []
    healthy = []

    def broken(event):
        broken_calls.append(event)
        raise OSError("disk full")

    with pytest.warns(RuntimeWarning, match="disk full") as warned:
        result = nbopt.tune(
            lambda x: x,
            {"x": uniform(0, 1)},
            max_evals=4,
            progress="none",
            logdir=None,
            callbacks=[broken, healthy.append],
        )
    assert len(result.trials) == 4
    assert len(broken_calls) == 1
    assert len([w for w in warned if issubclass(w.category, RuntimeWarning)]) == 1
    assert len([e for e in healthy if isinstance(e, TrialFinished)]) == 4


def test_event_bus_lets_keyboard_interrupt_through() -> None:
    """An interrupt inside a reporter is never swallowed."""

    def interrupted(event):
        raise KeyboardInterrupt

    bus = EventBus([interrupted])
    with pytest.raises(KeyboardInterrupt):
        bus.emit(RunStarted(kind="tune", title="t", total=1))


def test_event_bus_delivers_in_order_and_closes_reporters() -> None:
    """Reporters get each event in subscription order; close() reaches those that can close."""
    seen = []

    class Closable:
        closed = False

        def __call__(self, event):
            seen.append(("closable", event))

        def close(self):
            self.closed = True

    closable = Closable()
    bus = EventBus([lambda e: seen.append(("first", e))])
    bus.subscribe(closable)
    event = Event()
    bus.emit(event)
    assert seen == [("first", event), ("closable", event)]
    bus.close()
    assert closable.closed


# --- formatting helpers ----------------------------------------------------------------------


def test_format_helpers() -> None:
    """Numbers, parameter lists and durations are shortened for display."""
    assert fmt.number(0.00123456) == "0.001235"
    assert fmt.number(42) == "42"
    assert fmt.number(True) == "True"
    assert fmt.number(float("nan")) == "nan"
    assert fmt.params({"lr": 0.001, "act": "relu"}) == "lr=0.001 act=relu"
    long = fmt.params({f"p{i}": i for i in range(50)}, limit=20)
    assert len(long) == 20 and long.endswith("…")
    assert fmt.duration(0.25) == "250 ms"
    assert fmt.duration(5) == "5.0 s"
    assert fmt.duration(150) == "2m30s"
    assert fmt.duration(7300) == "2h01m"
    assert "&lt;b&gt;" in fmt.html_table(["a"], [["<b>"]])


def test_choice_space_in_text_lines() -> None:
    """Trial lines show the chosen values, not indices."""
    stream = io.StringIO()
    nbopt.tune(
        lambda act: 1.0,
        {"act": choice("relu", "tanh")},
        max_evals=2,
        progress="none",
        logdir=None,
        callbacks=[TextReporter(stream=stream, min_interval=0)],
    )
    assert re.search(r"act=(relu|tanh)", stream.getvalue())


def test_widget_reporter_draws_the_front_of_several_objectives(widget_views) -> None:
    """With several objectives the headline counts the front, the table shows every metric and
    the picture is the trials in the plane of the two metrics with the front as a line."""
    result = nbopt.tune(
        lambda x: {"a": x, "b": (1 - x) ** 2},
        {"x": uniform(0, 1)},
        metric=["a", "b"],
        max_evals=6,
        seed=0,
        progress="widget",
        logdir=None,
    )
    view = widget_views[0]
    assert view.bar.value == 6 and view.bar.bar_style == "success"
    assert f"{len(result.front)} trials on the front of a, b" in view.headline.value
    assert "a=" in view.table.value and "b=" in view.table.value
    assert "front: b (up) against a (across)" in view.curve.value
    assert view.curve.value.count("<circle") == 6
    assert "<polyline" in view.curve.value
