"""Constraints on metrics: ``constraint="cost >= 1"`` in tune(), %tune, the result and views."""

from __future__ import annotations

import math

import numpy as np
import pytest
from IPython.core.error import UsageError

import nbopt
from nbopt import ConfigError, TuneError, uniform
from nbopt.tuning import TrialState
from nbopt.tuning._constraints import Constraints, penalised

QUIET = {"progress": "none", "logdir": None}
SPACE = {"x": uniform(0, 1), "y": uniform(0, 1)}


def near_origin(x: float, y: float) -> dict[str, float]:
    """Best at (0.1, 0.1), where cost is 0.2: a constraint cost >= 1 moves the optimum to
    the line x + y = 1."""
    return {"loss": (x - 0.1) ** 2 + (y - 0.1) ** 2, "cost": x + y}


def _feasible_count(trials) -> int:
    return sum(1 for t in trials if t.usable and t.metrics["cost"] >= 1)


# --- reading constraints ----------------------------------------------------------------------


def test_constraints_are_read_from_a_string_with_commas_or_a_list() -> None:
    one = Constraints.parse("cost >= 1, latency<5", "loss")
    other = Constraints.parse(["cost >= 1", "latency < 5"], "loss")
    assert one == other
    assert one.texts == ("cost >= 1", "latency < 5")
    assert one.metrics == ("cost", "latency")
    assert Constraints.parse(None, "loss") is None
    assert Constraints.parse(" , ", "loss") is None


@pytest.mark.parametrize(
    ("given", "fragment"),
    [
        ("cost <== 3", "cannot read the constraint 'cost <== 3'"),
        ("cost <= fast", "write it as 'metric <= number'"),
        ("cost <= nan", "write it as 'metric <= number'"),
        ("cost >= 5, cost <= 2", "cost >= 5 and cost <= 2 cannot all hold"),
        ("cost > 1, cost < 1", "cannot all hold"),
        ("cost > 1, cost <= 1", "cannot all hold"),
        (["cost >= 1", "cost == 2", "cost <= 1.5"], "cannot all hold"),
        ("cost == 1, cost == 2", "cannot all hold"),
    ],
)
def test_bad_constraints_are_one_line_errors_before_any_trial(given, fragment) -> None:
    calls = []

    def objective(x: float, y: float) -> dict[str, float]:
        calls.append(x)
        return near_origin(x, y)

    with pytest.raises(ConfigError) as info:
        nbopt.tune(objective, SPACE, constraint=given, max_evals=3, **QUIET)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)
    assert calls == []


def test_constraints_that_meet_at_one_value_are_accepted() -> None:
    rules = Constraints.parse("cost >= 1, cost <= 1, cost == 1", "loss")
    assert rules is not None and rules.texts == ("cost >= 1", "cost <= 1", "cost == 1")


# --- the search learns them -------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auto_proposes_mostly_inside_a_constraint_it_is_told(seed: int) -> None:
    """Told cost >= 1, the GP search spends most of its later trials inside it; not told, it
    goes to the unconstrained optimum at cost 0.2."""
    told = nbopt.tune(near_origin, SPACE, constraint="cost >= 1", max_evals=30, seed=seed, **QUIET)
    blind = nbopt.tune(near_origin, SPACE, max_evals=30, seed=seed, **QUIET)
    assert _feasible_count(told.trials[10:]) >= 15
    assert _feasible_count(told.trials[10:]) > _feasible_count(blind.trials[10:]) + 5
    best = told.best_trial
    assert best.metrics["cost"] >= 1
    assert best.value < 0.5  # the constrained optimum is 0.32, at x = y = 0.5


def test_a_trial_that_breaks_a_constraint_is_never_best() -> None:
    result = nbopt.tune(near_origin, SPACE, constraint="cost >= 1", max_evals=15, seed=0, **QUIET)
    broken = [t for t in result.trials if t.metrics["cost"] < 1]
    assert broken, "the Sobol start covers the square, so some trials break the constraint"
    assert all(not result.feasible(t) for t in broken)
    assert all(t.status == TrialState.OK for t in broken)  # they ran and keep their values
    best = result.best_trial
    feasible = [t for t in result.trials if t.metrics["cost"] >= 1]
    assert best == min(feasible, key=lambda t: t.value)
    assert min(t.value for t in broken) < best.value  # the unconstrained best lost to it
    frame = result.to_dataframe()
    assert list(frame["feasible"]) == [t.metrics["cost"] >= 1 for t in result.trials]


@pytest.mark.parametrize("algo", ["auto", "tpe"])
def test_the_front_holds_only_feasible_trials_and_is_their_front(algo: str) -> None:
    def two(x: float, y: float) -> dict[str, float]:
        return {"f1": x, "f2": (1 + y) * (1 - math.sqrt(x / (1 + y))), "y": y}

    result = nbopt.tune(
        two,
        SPACE,
        metric=["f1", "f2"],
        constraint="f1 >= 0.3",
        algo=algo,
        max_evals=25,
        seed=3,
        **QUIET,
    )
    feasible = [t for t in result.trials if t.usable and t.value >= 0.3]
    expected = [
        t.number
        for t in feasible
        if not any(
            o.value <= t.value
            and o.metrics["f2"] <= t.metrics["f2"]
            and (o.value < t.value or o.metrics["f2"] < t.metrics["f2"])
            for o in feasible
        )
    ]
    assert [t.number for t in result.front] == expected
    assert all(t.value >= 0.3 for t in result.front)
    assert result.pick(weights={"f1": -1, "f2": -1}).value >= 0.3


def test_penalised_losses_rank_broken_trials_after_every_feasible_one() -> None:
    losses = np.array([[1.0, 5.0], [0.0, 9.0], [3.0, 1.0], [2.0, 2.0]])
    violations = np.array([0.0, 0.5, 0.0, 2.0])
    out = penalised(losses, violations)
    assert np.array_equal(out[[0, 2]], losses[[0, 2]])  # feasible rows are left alone
    worst_feasible = losses[[0, 2]].max(axis=0)
    assert np.all(out[[1, 3]] > worst_feasible)  # in every objective
    assert np.all(out[3] > out[1])  # the larger violation is worse
    assert np.array_equal(penalised(losses, np.zeros(4)), losses)


# --- what a trial must report -----------------------------------------------------------------


def test_a_trial_without_the_constrained_metric_fails_with_one_line() -> None:
    def no_cost(x: float, y: float) -> float:
        return x + y

    with pytest.raises(TuneError) as info:
        nbopt.tune(no_cost, SPACE, constraint="cost >= 1", max_evals=3, seed=0, **QUIET)
    message = str(info.value)
    assert "objective returned no 'cost', which the constraint cost >= 1 reads" in message


def test_a_metric_reported_during_the_trial_is_enough() -> None:
    def reports_cost(x: float, y: float) -> float:
        nbopt.report(0, x + y, cost=x + y)
        return (x - 0.1) ** 2

    result = nbopt.tune(reports_cost, SPACE, constraint="cost <= 0.5", max_evals=8, seed=0, **QUIET)
    assert all(t.status == TrialState.OK for t in result.trials)
    assert result.best_trial.metrics["cost"] <= 0.5


def test_no_feasible_trial_says_so_with_the_range_seen() -> None:
    result = nbopt.tune(near_origin, SPACE, constraint="cost >= 5", max_evals=4, seed=0, **QUIET)
    assert result.best_trial is None and result.best_params is None
    text = repr(result)
    assert "no trial of this search met cost >= 5: cost ranged from" in text
    assert "no trial of this search met cost &gt;= 5" in result._repr_html_()

    multi = nbopt.tune(
        near_origin, SPACE, metric=["loss", "cost"], constraint="cost >= 5", max_evals=4, **QUIET
    )
    assert multi.front == []
    with pytest.raises(ConfigError, match="no trial of this search met cost >= 5"):
        multi.pick(weights={"loss": -1})


def test_the_text_view_marks_a_trial_that_breaks_a_constraint(capsys) -> None:
    nbopt.tune(
        near_origin,
        SPACE,
        constraint="cost >= 1",
        max_evals=6,
        seed=0,
        progress="text",
        logdir=None,
    )
    out = capsys.readouterr().out
    assert "(breaks cost >= 1)" in out
    assert "no trial met" not in out


# --- the magic --------------------------------------------------------------------------------


def test_magic_constraint_option(ip, run_cell) -> None:
    run_cell(
        ip,
        "def near(x, y):\n    return {'loss': (x - 0.1) ** 2 + (y - 0.1) ** 2, 'cost': x + y}",
    )
    result = run_cell(
        ip,
        "%tune near x=uniform(0, 1) y=uniform(0, 1) constraint=cost>=1 max_evals=8 seed=0 "
        "progress=none logdir=none",
    )
    assert result.constraints == ("cost >= 1",)
    assert result.best_trial.metrics["cost"] >= 1
    with pytest.raises(UsageError) as info:
        run_cell(ip, "%tune near x=uniform(0, 1) y=uniform(0, 1) constraint=cost>=2,cost<=1")
    assert "cannot all hold" in str(info.value) and "\n" not in str(info.value)
