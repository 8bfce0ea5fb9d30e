"""Early stopping with several objectives: the rules on hand-made trials, then real searches."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import nbopt
from nbopt.tuning import TrialState
from nbopt.tuning._front_stopping import (
    DominatedStopper,
    FrontAshaStopper,
    front_ranks,
    values_at,
)
from nbopt.tuning._objectives import Objectives, dominates
from nbopt.tuning._study import read_study
from nbopt.tuning._trial import Trial

ACC_PARAMS = Objectives(("val_acc", "params"), ("max", "min"))
QUIET = {"progress": "none", "logdir": None}


def trial(number: int, accs: list[float], params: float, status: str = "ok") -> Trial:
    """A trial that reported ``accs[s]`` at each step s and its parameter count once, at 0."""
    made = Trial(number, {}, value=accs[-1], status=TrialState(status))
    made.intermediate = list(enumerate(accs))
    made.intermediate_metrics = {"params": [(0, params)]}
    made.metrics = {"params": params}
    return made


def running(accs: list[float], params: float) -> Trial:
    return trial(99, accs, params)


# --- the rules --------------------------------------------------------------------------------


def test_values_at_takes_each_metrics_last_report_up_to_the_step() -> None:
    made = trial(0, [0.5, 0.6, 0.7], 1000.0)
    assert values_at(made, 1, ACC_PARAMS) == (-0.6, 1000.0)
    assert values_at(made, 7, ACC_PARAMS) == (-0.7, 1000.0)
    made.intermediate_metrics = {"params": [(2, 10.0)]}
    assert values_at(made, 1, ACC_PARAMS) is None  # params not reported by step 1


def test_dominated_rule_stops_a_trial_an_earlier_one_beats_in_both() -> None:
    history = [trial(i, [0.5 + 0.1 * i, 0.6 + 0.1 * i], 1000.0 * (i + 1)) for i in range(3)]
    stopper = DominatedStopper(ACC_PARAMS, warmup=0, min_trials=3)
    # Lower accuracy at step 1 than trial 0, and more parameters: dominated.
    assert stopper.should_stop(running([0.4, 0.5], 5000.0), history)
    # Lower accuracy than all, but the fewest parameters: on the front, goes on.
    assert not stopper.should_stop(running([0.4, 0.5], 500.0), history)
    # More accurate than all: goes on whatever its size.
    assert not stopper.should_stop(running([0.9, 0.95], 9e9), history)


def test_dominated_rule_waits_for_warmup_and_enough_trials() -> None:
    history = [trial(i, [0.9, 0.9, 0.9], 10.0) for i in range(3)]
    dominated = running([0.1, 0.1], 1e6)
    assert not DominatedStopper(ACC_PARAMS, warmup=2, min_trials=3).should_stop(dominated, history)
    assert not DominatedStopper(ACC_PARAMS, min_trials=4).should_stop(dominated, history)
    assert DominatedStopper(ACC_PARAMS, warmup=1, min_trials=3).should_stop(dominated, history)
    stopped = [trial(i, [0.9, 0.9], 10.0, status="stopped") for i in range(3)]
    assert not DominatedStopper(ACC_PARAMS, min_trials=1).should_stop(dominated, stopped)


def test_front_ranks_match_a_brute_force_sorting() -> None:
    rng = np.random.default_rng(0)
    points = [tuple(p) for p in rng.random((30, 2)).round(1)]  # ties included
    ranks = front_ranks(points)
    for rank in range(max(ranks) + 1):
        members = [p for p, r in zip(points, ranks, strict=True) if r == rank]
        earlier = [p for p, r in zip(points, ranks, strict=True) if r < rank]
        rest = [p for p, r in zip(points, ranks, strict=True) if r >= rank]
        assert all(not dominates(q, p) for p, q in itertools.product(members, rest))
        if rank:
            assert all(any(dominates(q, p) for q in earlier) for p in members)


def test_front_asha_keeps_a_trial_on_the_first_front_and_stops_one_on_the_last() -> None:
    # Nine earlier trials at rung 1, each dominated by the one before: nine fronts.
    history = [trial(k, [0.0, 0.9 - 0.03 * k], 100.0 + 30 * k) for k in range(9)]
    stopper = FrontAshaStopper(ACC_PARAMS, rung=1, factor=3)
    assert not stopper.should_stop(running([0.0, 0.95], 50.0), history)
    assert stopper.should_stop(running([0.0, 0.6], 400.0), history)
    assert not stopper.should_stop(running([0.0], 400.0), history)  # no rung reached yet


# --- real searches ----------------------------------------------------------------------------


def width_and_rate(width: float, lr: float) -> dict[str, float]:
    """A learning curve per configuration: accuracy rises over 9 epochs to a ceiling set by
    the width and the rate; the parameter count is reported once, at epoch 0."""
    ceiling = 1 - 0.5 * math.exp(-width / 40) - 0.15 * abs(math.log10(lr) + 2)
    params = width * 100
    nbopt.report(0, val_acc=0.0, params=params)
    accuracy = 0.0
    for epoch in range(1, 9):
        accuracy = ceiling * (1 - math.exp(-epoch / 3))
        nbopt.report(epoch, val_acc=accuracy)
    return {"val_acc": accuracy, "params": params}


SPACE = {"width": nbopt.quniform(4, 256, 4), "lr": nbopt.loguniform(1e-4, 1)}


@pytest.mark.parametrize("parallel", [1, 2])
def test_a_search_stops_only_dominated_trials_and_keeps_them_off_the_front(
    parallel: int, tmp_path
) -> None:
    study = tmp_path / "s.jsonl"
    result = nbopt.tune(
        width_and_rate,
        SPACE,
        metric=["val_acc", "params"],
        mode=["max", "min"],
        stop="median",
        stop_min_trials=3,
        max_evals=16,
        seed=0,
        parallel=parallel,
        study=study,
        **QUIET,
    )
    stopped = [t for t in result.trials if t.status == TrialState.STOPPED]
    assert stopped
    for t in stopped:
        step = t.intermediate[-1][0]
        mine = values_at(t, step, ACC_PARAMS)
        earlier = [
            values_at(o, step, ACC_PARAMS)
            for o in result.trials
            if o.status == TrialState.OK and o.number != t.number
        ]
        assert any(other is not None and dominates(other, mine) for other in earlier)
        assert t.value == t.intermediate[-1][1]
        assert t.metrics["params"] == t.intermediate_metrics["params"][0][1]
    assert all(t.status == TrialState.OK for t in result.front)
    # The study keeps every metric's curve, so a resumed search judges as this one did.
    _, saved, _ = read_study(study)
    assert {t.number: t.intermediate_metrics for t in saved} == {
        t.number: t.intermediate_metrics for t in result.trials
    }


def test_asha_with_several_objectives_runs_and_trains_fewer_epochs() -> None:
    options = {"metric": ["val_acc", "params"], "mode": ["max", "min"], "max_evals": 18, "seed": 1}
    full = nbopt.tune(width_and_rate, SPACE, **options, **QUIET)
    halved = nbopt.tune(width_and_rate, SPACE, stop="asha", rung=1, **options, **QUIET)
    epochs = sum(len(t.intermediate) for t in halved.trials)
    assert epochs < sum(len(t.intermediate) for t in full.trials)
    assert any(t.status == TrialState.STOPPED for t in halved.trials)
    assert halved.front


def test_a_single_objective_trial_record_is_unchanged() -> None:
    plain = Trial(0, {"x": 1}, value=0.5, intermediate=[(0, 0.7)])
    assert "intermediate_metrics" not in plain.to_json()
    multi = trial(1, [0.5, 0.6], 100.0)
    assert Trial.from_json(multi.to_json()).intermediate_metrics == {"params": [(0, 100.0)]}
