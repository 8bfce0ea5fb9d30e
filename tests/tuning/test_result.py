"""TuneResult and the analysis behind its plots."""

from __future__ import annotations

import itertools

import pytest
from IPython.lib.pretty import pretty
from matplotlib.figure import Figure

import nbopt
from nbopt.tuning import Trial, TuneResult
from nbopt.tuning.analysis import history, importance


def _trials(values, statuses=None, params=None) -> list[Trial]:
    statuses = statuses or ["ok"] * len(values)
    params = params or [
        {"lr": 0.1 * (i + 1), "act": "relu" if i % 2 else "tanh"} for i in range(len(values))
    ]
    trials = []
    for number, (value, status, p) in enumerate(zip(values, statuses, params, strict=True)):
        trial = Trial(number=number, params=p, value=value, status=status, duration=0.01 * number)
        if status == "failed":
            trial.value, trial.error = None, "ValueError: bad"
        trials.append(trial)
    return trials


def _result(values, mode="min", statuses=None, params=None, metric="loss") -> TuneResult:
    return TuneResult(
        trials=_trials(values, statuses, params),
        metric=metric,
        mode=mode,
        status="done",
        algo="tpe",
    )


def test_best_for_min_and_max() -> None:
    """best_* is the lowest value for mode=min and the highest for mode=max."""
    values = [0.5, 0.2, 0.9, 0.2, 0.7]
    low = _result(values, "min")
    assert low.best_value == 0.2
    assert low.best_trial.number == 1  # ties go to the earlier trial
    assert low.best_params == low.trials[1].params
    high = _result(values, "max")
    assert high.best_value == 0.9
    assert high.best_trial.number == 2
    assert high.best_params == high.trials[2].params


def test_best_ignores_failed_and_interrupted_but_counts_stopped() -> None:
    """Only trials with a usable value compete; a stopped trial has one."""
    result = _result([0.1, 0.5, 0.05, 0.3], statuses=["failed", "ok", "interrupted", "stopped"])
    assert result.best_trial.number == 3
    assert result.best_value == 0.3
    assert result.n_failed == 1


def test_no_successful_trial() -> None:
    """Without a usable trial the best is None and the summaries say so."""
    result = _result([None, None], statuses=["failed", "failed"])
    assert result.best_trial is None
    assert result.best_params is None
    assert result.best_value is None
    assert "no successful trial" in repr(result)
    assert "no successful trial" in result._repr_html_()


def test_to_dataframe_has_one_row_per_trial() -> None:
    """Columns: number, status, value, duration, params_<flattened name>, metrics_, error."""
    params = [{"lr": 0.1, "opt": {"name": "sgd", "m": 0.9}}, {"lr": 0.2, "opt": {"name": "adam"}}]
    trials = _trials([0.5, None], ["ok", "failed"], params)
    trials[0].metrics = {"acc": 0.8}
    frame = TuneResult(trials, "loss", "min", "done").to_dataframe()
    assert list(frame.columns[:4]) == ["number", "status", "value", "duration"]
    assert frame.columns[-1] == "error"
    assert set(frame.columns) == {
        "number",
        "status",
        "value",
        "duration",
        "params_lr",
        "params_opt.name",
        "params_opt.m",
        "metrics_acc",
        "error",
    }
    assert len(frame) == 2
    assert frame["number"].tolist() == [0, 1]
    assert frame["status"].tolist() == ["ok", "failed"]
    assert frame.loc[0, "params_opt.name"] == "sgd"
    assert frame.loc[1, "error"] == "ValueError: bad"
    assert frame["value"].isna().tolist() == [False, True]


def test_to_dataframe_of_a_real_search() -> None:
    """A real result's table has the space's parameters as columns."""
    result = nbopt.tune(
        lambda x, k: x * k,
        {"x": nbopt.uniform(0, 1), "k": nbopt.choice(1, 2)},
        max_evals=4,
        seed=0,
        progress="none",
        logdir=None,
    )
    frame = result.to_dataframe()
    assert {"params_x", "params_k"} <= set(frame.columns)
    assert frame["value"].tolist() == [t.value for t in result.trials]


@pytest.mark.parametrize("n_ok", [0, 2, 8])
def test_plot_returns_a_figure_with_history_and_importance(n_ok: int) -> None:
    """plot() gives a matplotlib Figure with two axes, also with too few trials to rank."""
    values = [float(v) for v in range(n_ok)] + [None]
    result = _result(values, statuses=["ok"] * n_ok + ["failed"])
    figure = result.plot()
    assert isinstance(figure, Figure)
    assert len(figure.axes) == 2
    history_axes, importance_axes = figure.axes
    assert history_axes.get_title() == "Optimisation history"
    assert importance_axes.get_title() == "Parameter importance"
    if n_ok:
        points = history_axes.collections[0].get_offsets()
        assert len(points) == n_ok


def test_repr_html_shows_the_best_value_and_escapes_text() -> None:
    """The HTML summary holds the best value, trial and params, escaped."""
    params = [{"act": "<relu>", "lr": 0.001234}, {"act": "tanh", "lr": 0.5}]
    result = _result([0.123456789, 0.9], params=params, metric="val<loss>")
    text = result._repr_html_()
    assert "0.123457" in text
    assert "at trial 0" in text
    assert "&lt;relu&gt;" in text and "<relu>" not in text
    assert "val&lt;loss&gt;" in text
    assert "algo=tpe" in text


def test_repr_names_count_best_value_and_params() -> None:
    """repr() is a one-line summary; IPython's pretty printer shows the same."""
    result = _result([0.5, 0.25, None], statuses=["ok", "ok", "failed"])
    text = repr(result)
    assert text.startswith("<TuneResult 3 trials (1 failed); best loss=0.25 at trial 1")
    assert "lr=0.2" in text and "act=relu" in text
    assert pretty(result) == text
    interrupted = TuneResult(result.trials, "loss", "min", "interrupted")
    assert repr(interrupted).startswith("<TuneResult interrupted after 3 trials (1 failed)")


def test_history_tracks_the_best_so_far() -> None:
    """history() lists usable trials with the running best, for min and max."""
    trials = _trials([3.0, None, 1.0, 2.0, 0.5], ["ok", "failed", "ok", "ok", "ok"])
    low = history(trials, "min")
    assert [(p.number, p.value, p.best) for p in low] == [
        (0, 3.0, 3.0),
        (2, 1.0, 1.0),
        (3, 2.0, 1.0),
        (4, 0.5, 0.5),
    ]
    high = history(trials, "max")
    assert [p.best for p in high] == [3.0, 3.0, 3.0, 3.0]
    assert history([], "min") == []


def test_importance_favours_the_parameter_that_determines_the_value() -> None:
    """A parameter that fully decides the value gets (nearly) all the importance."""
    grid = list(itertools.product(range(5), range(5), ["a", "b"]))
    params = [{"decides": d, "noise": n, "flag": f} for d, n, f in grid]
    values = [float(d) ** 2 for d, _, _ in grid]
    ranked = importance(_trials(values, params=params))
    assert ranked[0].param == "decides"
    assert ranked[0].importance > 0.95
    assert sum(item.importance for item in ranked) == pytest.approx(1.0)
    assert {item.param for item in ranked} == {"decides", "noise", "flag"}


def test_importance_bins_continuous_parameters() -> None:
    """A continuous parameter driving the value ranks above an unrelated one."""
    params = [{"lr": 0.01 * i, "seed": (i * 7) % 10} for i in range(40)]
    values = [p["lr"] * 10 for p in params]
    ranked = importance(_trials(values, params=params))
    assert ranked[0].param == "lr"
    assert ranked[0].importance > 0.8


def test_importance_needs_three_usable_trials() -> None:
    """With fewer than three usable trials there is nothing to rank."""
    assert importance(_trials([1.0, 2.0])) == []
    assert importance(_trials([1.0, 2.0, None], ["ok", "ok", "failed"])) == []
