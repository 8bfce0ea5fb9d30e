"""Early stopping rules on synthetic learning curves, and stop= through nbopt.tune."""

from __future__ import annotations

import pytest

import nbopt
from nbopt.errors import ConfigError
from nbopt.tuning._stopping import AshaStopper, MedianStopper, StopSettings, new_milestone
from nbopt.tuning._trial import Trial


def finished(number: int, curve: list[float], status: str = "ok") -> Trial:
    """A finished trial whose value at step s (from 1) is curve[s - 1]."""
    return Trial(
        number,
        {},
        value=curve[-1],
        status=status,
        intermediate=[(step, value) for step, value in enumerate(curve, start=1)],
    )


def first_stop(stopper, curve: list[float], history: list[Trial]) -> int | None:
    """Replay ``curve`` report by report; the step at which the stopper stops it, or None."""
    trial = Trial(len(history), {})
    for step, value in enumerate(curve, start=1):
        trial.intermediate.append((step, value))
        if stopper.should_stop(trial, history):
            return step
    return None


HISTORY = [finished(i, [1.0 - 0.1 * i - 0.01 * s for s in range(1, 6)]) for i in range(5)]
# values at step 1: 0.99, 0.89, 0.79, 0.69, 0.59 -> median 0.79


def test_median_stops_a_trial_worse_than_the_median_at_the_first_step_it_can():
    assert first_stop(MedianStopper("min"), [0.95, 0.94, 0.93], HISTORY) == 1


def test_median_keeps_a_trial_better_than_the_median():
    assert first_stop(MedianStopper("min"), [0.7, 0.6, 0.5, 0.4, 0.3], HISTORY) is None


def test_median_judges_the_trials_best_value_so_far_not_its_last():
    # Worse than the median at step 3 (0.77), but its best so far (0.5 at step 1) is better.
    assert first_stop(MedianStopper("min"), [0.5, 0.9, 0.9], HISTORY) is None


def test_median_waits_for_warmup_steps():
    assert first_stop(MedianStopper("min", warmup=3), [0.95, 0.94, 0.93, 0.92], HISTORY) == 3


def test_median_waits_for_enough_trials_at_that_step():
    assert first_stop(MedianStopper("min", min_trials=6), [0.95, 0.94], HISTORY) is None
    assert first_stop(MedianStopper("min", min_trials=5), [0.95, 0.94], HISTORY) == 1


def test_median_ignores_failed_and_stopped_trials():
    bad = [finished(9, [5.0, 5.0], status="stopped"), finished(10, [5.0, 5.0], status="failed")]
    # With only failed/stopped trials at 5.0, a trial at 0.95 would be "better than the median".
    assert first_stop(MedianStopper("min", min_trials=1), [0.95], bad) is None
    assert first_stop(MedianStopper("min", min_trials=1), [0.95], HISTORY[:1] + bad) is None
    assert first_stop(MedianStopper("min", min_trials=1), [1.5], HISTORY[:1] + bad) == 1


def test_median_in_max_mode_stops_the_lower_values():
    history = [finished(i, [0.1 * i] * 3) for i in range(1, 6)]  # median 0.3
    assert first_stop(MedianStopper("max"), [0.2, 0.2], history) == 1
    assert first_stop(MedianStopper("max"), [0.4, 0.4], history) is None


def test_asha_rungs_sit_at_rung_times_powers_of_the_factor():
    assert [new_milestone(step, step - 1, rung=2, factor=3) for step in range(1, 20)] == [
        None, 2, None, None, None, 6, None, None, None, None, None, None,
        None, None, None, None, None, 18, None,
    ]  # fmt: skip


def test_asha_keeps_only_the_best_third_at_a_rung():
    # Nine earlier trials had values 0.1 ... 0.9 at the first rung (step 1): cutoff is the
    # 33rd percentile, about 0.37.
    history = [finished(i, [0.1 * (i + 1)] * 3) for i in range(9)]
    stopper = AshaStopper("min", rung=1, factor=3)
    assert first_stop(stopper, [0.35, 0.3, 0.1], history) is None
    assert first_stop(stopper, [0.5, 0.1, 0.1], history) == 1


def test_asha_decides_only_when_a_rung_is_reached():
    history = [finished(i, [0.1 * (i + 1)] * 9) for i in range(9)]
    stopper = AshaStopper("min", rung=1, factor=3)
    # Good at rung 1 (step 1), bad from step 2 on: the next decision is at rung 3.
    assert first_stop(stopper, [0.1, 0.9, 0.9, 0.9], history) == 3


def test_asha_lets_the_first_trial_through():
    assert first_stop(AshaStopper("min"), [9.0] * 10, []) is None


def test_stop_settings_reject_bad_values():
    with pytest.raises(ConfigError, match="unknown stop rule 'hyperband'"):
        StopSettings("hyperband")
    with pytest.raises(ConfigError, match="rung must be >= 1"):
        StopSettings("asha", rung=0)
    with pytest.raises(ConfigError, match="stop_warmup must be >= 0"):
        StopSettings("median", warmup=-1)


def curve_objective(x, y):
    """A learning curve that flattens at a level set by the parameters (lower is better)."""
    level = (x - 0.3) ** 2 + 0.1 * y
    value = level
    for epoch in range(1, 13):
        value = level + 1.0 / epoch
        nbopt.report(epoch, value)
    return value


SPACE = {"x": nbopt.uniform(-1, 1), "y": nbopt.choice(0, 1, 2)}


@pytest.mark.parametrize("rule", ["median", "asha"])
def test_stopped_trials_are_recorded_with_their_last_value(rule):
    result = nbopt.tune(
        curve_objective, SPACE, max_evals=25, seed=0, stop=rule, progress="none", logdir=None
    )
    stopped = [t for t in result.trials if t.status == "stopped"]
    assert stopped, "some trials should have been stopped"
    for trial in stopped:
        assert len(trial.intermediate) < 12
        assert trial.value == trial.intermediate[-1][1]
        assert trial.usable  # the search learns from it
    assert result.n_failed == 0
    assert len(result.trials) == 25


def test_stopping_saves_epochs_and_keeps_the_best_on_a_synthetic_search():
    common = dict(max_evals=30, seed=1, progress="none", logdir=None)
    full = nbopt.tune(curve_objective, SPACE, **common)
    stopped = nbopt.tune(curve_objective, SPACE, stop="asha", **common)
    epochs = lambda result: sum(len(t.intermediate) for t in result.trials)  # noqa: E731
    assert epochs(stopped) < 0.7 * epochs(full)
    assert stopped.best_value <= full.best_value + 0.05


def test_a_resumed_study_stops_trials_from_the_saved_curves(tmp_path):
    study = tmp_path / "s.json"
    common = dict(seed=2, stop="median", progress="none", logdir=None, study=study)
    nbopt.tune(curve_objective, SPACE, max_evals=8, **common)
    resumed = nbopt.tune(curve_objective, SPACE, max_evals=16, **common)
    assert len(resumed.trials) == 16
    later = resumed.trials[8:]
    # Earlier trials' curves came from the file, so the median rule can judge new trials.
    assert any(t.status == "stopped" for t in later)


def test_report_raises_trialstopped_that_the_search_catches():
    seen = []

    def objective(x):
        try:
            for epoch in range(1, 6):
                nbopt.report(epoch, 10.0 if x > 0 else 0.0)
        except nbopt.TrialStopped as stop:
            seen.append(stop.step)
            raise
        return 10.0 if x > 0 else 0.0

    space = {"x": nbopt.choice(-1, 1, -2, 2, -3, 3, -4, 4)}
    nbopt.tune(
        objective,
        space,
        algo="grid",
        stop="median",
        stop_min_trials=1,
        progress="none",
        logdir=None,
    )
    assert seen and all(step == 1 for step in seen)


@pytest.mark.slow
def test_median_rule_on_the_digits_mlp_trains_fewer_epochs_for_a_similar_best():
    torch = pytest.importorskip("torch")
    from sklearn.datasets import load_digits

    torch.set_num_threads(1)
    digits = load_digits()
    x = torch.tensor(digits.data[:1200] / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target[:1200])
    x_val = torch.tensor(digits.data[1200:] / 16.0, dtype=torch.float32)
    y_val = torch.tensor(digits.target[1200:])

    def train(lr, width):
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(64, width), torch.nn.ReLU(), torch.nn.Linear(width, 10)
        )
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        error = 1.0
        for epoch in range(1, 9):
            for batch in torch.arange(len(x)).split(100):
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
                optimizer.step()
            with torch.no_grad():
                error = (model(x_val).argmax(1) != y_val).float().mean().item()
            nbopt.report(epoch, error)
        return error

    space = {"lr": nbopt.loguniform(1e-4, 0.3), "width": nbopt.choice(16, 32, 64)}
    common = dict(max_evals=16, seed=0, progress="none", logdir=None)
    full = nbopt.tune(train, space, **common)
    early = nbopt.tune(train, space, stop="median", stop_min_trials=3, **common)
    epochs = lambda result: sum(len(t.intermediate) for t in result.trials)  # noqa: E731
    assert epochs(early) < epochs(full)
    assert early.best_value <= full.best_value + 0.02  # within two points of accuracy


def test_a_stopper_of_the_users_own_stops_trials_by_its_rule() -> None:
    """``Stopper`` is public: a subclass passed as ``stop=`` decides at every report, with the
    search's mode set on it before the first trial."""
    import nbopt
    from nbopt.tuning import Stopper

    class AboveHalf(Stopper):
        def should_stop(self, trial, history) -> bool:
            return self.sign * trial.intermediate[-1][1] < -0.5

    def train(x: float) -> float:
        for step in range(4):
            nbopt.report(step, x)
        return x

    rule = AboveHalf()
    result = nbopt.tune(
        train,
        {"x": nbopt.uniform(0, 1)},
        mode="max",
        stop=rule,
        max_evals=12,
        seed=0,
        progress="none",
        logdir=None,
    )
    assert rule.mode == "max"
    assert all((t.status == "stopped") == (t.value > 0.5) for t in result.trials)
    assert any(t.status == "stopped" for t in result.trials)
    assert all(t.intermediate == [(0, t.value)] for t in result.trials if t.status == "stopped")


def test_a_stopper_object_is_refused_on_ray_before_anything_runs() -> None:
    import nbopt
    from nbopt.tuning import MedianStopper

    with pytest.raises(nbopt.ConfigError, match="runs on the local backend"):
        nbopt.tune(lambda x: x, {"x": nbopt.uniform(0, 1)}, stop=MedianStopper(), backend="ray")
