"""The what-if model of a finished search: predictions, settings, and one more trial."""

from __future__ import annotations

import math

import pytest

import nbopt
from nbopt.errors import ConfigError
from nbopt.tuning import Trial, TuneResult
from nbopt.tuning._study import read_study
from nbopt.tuning._whatif import WhatIfModel, params_to_vals

SPACE = {"x": nbopt.uniform(-3.0, 3.0), "y": nbopt.uniform(-3.0, 3.0)}


def bowl(x: float, y: float) -> float:
    return (x - 1.0) ** 2 + 0.5 * (y + 1.0) ** 2


def _search(algo: str = "auto", max_evals: int = 25, **kwargs) -> TuneResult:
    return nbopt.tune(
        bowl, SPACE, algo=algo, max_evals=max_evals, seed=0, progress="none", logdir=None, **kwargs
    )


@pytest.mark.parametrize("algo", ["auto", "tpe", "rand"])
def test_predictions_follow_the_function_for_any_algorithm(algo: str) -> None:
    """Fitted on the trials of any algorithm, the model predicts untried points of a smooth
    function within a few of its stated standard deviations, and is surer near the trials."""
    result = _search(algo)
    errors = []
    for x, y in [(1.0, -1.0), (0.0, 0.0), (2.0, -2.0), (-1.0, 1.0)]:
        mean, sd = result.predict({"x": x, "y": y})
        assert sd > 0
        errors.append(abs(mean - bowl(x, y)) / sd)
    assert max(errors) < 4.0, errors
    best = result.best_trial
    near = result.predict(best.params)
    assert near.mean == pytest.approx(best.value, abs=3 * near.sd)
    far = result.predict({"x": -3.0, "y": 3.0})  # a corner: the search stayed near the minimum
    assert far.sd > near.sd


def test_values_in_the_objective_form_match_the_recorded_encoding() -> None:
    """params_to_vals reads the objective's form of nested choices, integers and constants
    back into what each trial recorded."""
    space = {
        "lr": nbopt.loguniform(1e-4, 1e-1),
        "width": nbopt.quniform(16, 128, 16),
        "act": nbopt.choice("relu", "tanh", 1),
        "optim": nbopt.choice(
            {"name": "sgd", "momentum": nbopt.uniform(0.0, 0.99)}, {"name": "adam"}
        ),
        "fixed": 3,
    }

    def loss(lr, width, act, optim, fixed):
        return math.log10(lr) ** 2 + width / 100 + (act == "tanh") + optim.get("momentum", 0.5)

    result = nbopt.tune(loss, space, max_evals=16, seed=1, progress="none", logdir=None)
    for trial in result.trials:
        assert params_to_vals(space, trial.params) == pytest.approx(trial.vals)
    kinds = {p.label: p.kind for p in result.model().parameters}
    assert kinds == {
        "lr": "float",
        "width": "int",
        "act": "choice",
        "optim": "choice",
        "optim[0].momentum": "float",
    }
    adam = {"lr": 0.01, "width": 32, "act": "relu", "optim": {"name": "adam"}, "fixed": 3}
    assert result.model().active(params_to_vals(space, adam)) == {"lr", "width", "act", "optim"}
    assert math.isfinite(result.predict(adam).mean)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"x": 0.5}, "no value for parameter 'y'"),
        ({"x": "big", "y": 0.0}, "parameter 'x' must be a number"),
        ([0.5, 0.5], "must be a dict"),
    ],
)
def test_a_setting_that_does_not_fit_says_which_parameter(params, message) -> None:
    result = _search(max_evals=8)
    with pytest.raises(ConfigError, match=message):
        result.predict(params)


def test_an_option_that_is_not_in_the_choice_is_named() -> None:
    space = {"act": nbopt.choice("relu", "tanh"), "x": nbopt.uniform(0, 1)}
    result = nbopt.tune(
        lambda act, x: x + (act == "relu"),
        space,
        max_evals=6,
        seed=0,
        progress="none",
        logdir=None,
    )
    with pytest.raises(ConfigError, match=r"'act': 'gelu' is not one of its options"):
        result.predict({"act": "gelu", "x": 0.5})


def test_too_few_trials_or_no_space_is_one_clear_error() -> None:
    trials = [Trial(i, {"x": 0.1 * i}, value=float(i), vals={"x": 0.1 * i}) for i in range(2)]
    with pytest.raises(ConfigError, match="at least 3 trials with a value; this search has 2"):
        WhatIfModel(SPACE, trials, "loss")
    bare = TuneResult(trials=trials, metric="loss", mode="min", status="done")
    with pytest.raises(ConfigError, match="does not hold its search space"):
        bare.predict({"x": 0.0, "y": 0.0})


def test_one_more_trial_is_recorded_in_the_study(tmp_path) -> None:
    """evaluate runs the setting through the objective as the next trial of the same study;
    the model then learns from it, and a resumed search counts it."""
    study = tmp_path / "bowl.json"
    result = _search(max_evals=10, study=study)
    before = result.model()
    trial = result.evaluate({"x": 1.0, "y": -1.0})
    assert (trial.number, trial.value, trial.status) == (10, 0.0, "ok")
    assert trial.params == {"x": 1.0, "y": -1.0}
    assert result.trials[-1] is trial
    _, saved, running = read_study(study)
    assert sorted(t.number for t in saved) == list(range(11)) and not running
    assert max(saved, key=lambda t: t.number).value == 0.0
    assert result.model() is not before
    assert len(result.model().trials) == 11
    resumed = _search(max_evals=11, study=study)
    assert len(resumed.trials) == 11  # nothing left to run


def test_a_failing_setting_is_a_failed_trial_and_the_model_stays() -> None:
    def picky(x: float, y: float) -> float:
        if x > 2.5:
            raise ValueError("x too large")
        return bowl(x, y)

    result = nbopt.tune(picky, SPACE, max_evals=8, seed=0, progress="none", logdir=None)
    model = result.model()
    trial = result.evaluate({"x": 2.9, "y": 0.0})
    assert trial.status == "failed" and "x too large" in trial.error
    assert result.model() is model


def test_without_the_objective_evaluate_says_why() -> None:
    result = _search(max_evals=6)
    copy = TuneResult(result.trials, result.metric, result.mode, result.status, space=SPACE)
    assert math.isfinite(copy.predict({"x": 0.0, "y": 0.0}).mean)
    assert not copy.can_evaluate
    for params in ({"x": 0.0, "y": 0.0}, {"x": "not even a number"}):
        with pytest.raises(ConfigError, match="objective of this search is not available"):
            copy.evaluate(params)


def test_one_more_trial_needs_no_model() -> None:
    """Two trials are too few for the model, not for running a third of one's choosing."""
    result = _search(max_evals=2)
    trial = result.evaluate({"x": 1.0, "y": -1.0})
    assert (trial.number, trial.value) == (2, 0.0)


def test_curves_average_over_the_tried_configurations() -> None:
    """A partial-dependence curve spans the parameter's range, is lowest near the
    function's minimum in that parameter, and lists every trial that set it."""
    result = _search("rand", max_evals=30)
    model = result.model()
    curve = model.curve("x")
    assert curve.xs[0] == -3.0 and curve.xs[-1] == 3.0
    lowest = curve.xs[min(range(len(curve.xs)), key=curve.means.__getitem__)]
    assert abs(lowest - 1.0) < 0.75
    assert len(curve.tried) == 30 and all(s > 0 for s in curve.sds)
    with pytest.raises(ConfigError, match="unknown parameter 'z'"):
        model.curve("z")


def test_a_cell_search_predicts_and_runs_one_more_trial(ip, run_cell) -> None:
    """%%tune's result knows its space and its cell: it predicts, and runs the cell again."""
    run_cell(ip, "from nbopt import uniform")
    result = run_cell(
        ip,
        "%%tune max_evals=6 seed=0 progress=none logdir=none\nx = uniform(-2, 2)\n(x - 1) ** 2",
    )
    assert math.isfinite(result.predict({"x": 1.0}).mean)
    trial = result.evaluate({"x": 1.0})
    assert (trial.number, trial.params, trial.value) == (6, {"x": 1.0}, 0.0)


def two_metrics(x: float, y: float) -> dict[str, float]:
    return {"loss": bowl(x, y), "size": 2.0 * x + y}


def _two_metric_search(max_evals: int = 20, **kwargs) -> TuneResult:
    return nbopt.tune(
        two_metrics,
        SPACE,
        metric=["loss", "size"],
        mode=["min", "max"],
        max_evals=max_evals,
        seed=0,
        progress="none",
        logdir=None,
        **kwargs,
    )


def test_several_objectives_get_one_model_per_metric() -> None:
    """With several objectives, predict gives every metric's prediction, by name and in the
    search's order, each from its own model, within a few standard deviations of the truth."""
    result = _two_metric_search()
    models = result.model()
    assert list(models) == ["loss", "size"]
    assert [model.metric for model in models.values()] == ["loss", "size"]
    assert result.model("size") is models["size"]
    for x, y in [(1.0, -1.0), (0.0, 0.0), (-1.0, 1.0)]:
        predicted = result.predict({"x": x, "y": y})
        assert list(predicted) == ["loss", "size"]
        truth = two_metrics(x, y)
        for name, (mean, sd) in predicted.items():
            assert sd > 0
            assert abs(mean - truth[name]) < 4 * sd + 0.05 * abs(truth[name]), (name, mean, sd)
    curve = models["size"].curve("x")
    assert curve.metric == "size"
    assert sorted(value for _, value in curve.tried) == sorted(
        t.metrics["size"] for t in result.trials
    )


def test_a_metric_model_learns_from_the_trials_that_report_it() -> None:
    """A trial without a metric is left out of that metric's model only; a metric reported
    by too few trials is one clear error, and the others still predict."""
    trials = [
        Trial(
            i,
            {"x": x, "y": 0.0},
            value=bowl(x, 0.0),
            metrics={"size": 2.0 * x} if i < 4 else {},
            vals={"x": x, "y": 0.0},
        )
        for i, x in enumerate([-2.0, -1.0, 0.0, 1.0, 2.0, 2.5])
    ]
    result = TuneResult(
        trials, "loss", "min", "done", space=SPACE, objectives={"loss": "min", "size": "max"}
    )
    assert len(result.model("loss").trials) == 6
    assert [t.number for t in result.model("size").trials] == [0, 1, 2, 3]
    for trial in trials[1:4]:
        trial.metrics.clear()
    assert math.isfinite(result.model("loss").predict({"x": 0.0, "y": 0.0}).mean)
    with pytest.raises(ConfigError, match="what-if model of size needs at least 3 trials"):
        result.predict({"x": 0.0, "y": 0.0})


def test_asking_for_a_metric_the_search_has_not_is_one_clear_error() -> None:
    result = _two_metric_search(max_evals=8)
    with pytest.raises(ConfigError, match=r"unknown metric 'sise' \(did you mean size\?\)"):
        result.model("sise")
    single = _search(max_evals=6)
    assert single.model(single.metric) is single.model()
    with pytest.raises(ConfigError, match="unknown metric 'size'; this search optimised value"):
        single.model("size")


def test_one_more_trial_of_several_objectives_refits_every_model(tmp_path) -> None:
    study = tmp_path / "two.json"
    result = _two_metric_search(max_evals=8, study=study)
    before = result.model()
    trial = result.evaluate({"x": 1.0, "y": -1.0})
    assert (trial.value, trial.metrics) == (0.0, {"size": 1.0})
    after = result.model()
    assert all(after[name] is not before[name] for name in before)
    assert all(len(model.trials) == 9 for model in after.values())
    _, saved, _ = read_study(study)
    assert len(saved) == 9
