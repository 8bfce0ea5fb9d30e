"""``nbopt.tune`` as a plain function: calling conventions, algorithms, failures, budgets."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

import nbopt
from nbopt import ConfigError, TrialStopped, TuneError, choice, quniform, randint, uniform
from nbopt.events import RunFinished, RunStarted, StepReported
from nbopt.tuning.events import TrialFinished, TrialStarted

ALGOS = ["auto", "tpe", "rand", "anneal", "atpe", "grid"]
SAMPLING_ALGOS = ["auto", "tpe", "rand", "anneal", "atpe"]


def tune(objective, space, **options):
    """``nbopt.tune`` without live view or TensorBoard unless a test asks for them."""
    options.setdefault("progress", "none")
    options.setdefault("logdir", None)
    return nbopt.tune(objective, space, **options)


def _key(params: dict) -> str:
    return json.dumps(params, sort_keys=True)


# --- calling conventions ---------------------------------------------------------------------


def test_objective_taking_the_space_keys_is_called_with_kwargs() -> None:
    """``train(lr=..., layers=...)`` receives each parameter by name."""
    calls = []

    def train(lr, layers):
        calls.append({"lr": lr, "layers": layers})
        return lr * layers

    result = tune(train, {"lr": uniform(0, 1), "layers": choice(1, 2, 3)}, max_evals=5, seed=0)
    assert len(calls) == 5
    assert calls == [trial.params for trial in result.trials]
    assert all(call["layers"] in (1, 2, 3) and 0 <= call["lr"] <= 1 for call in calls)
    assert [t.value for t in result.trials] == [c["lr"] * c["layers"] for c in calls]


@pytest.mark.parametrize("signature", ["one", "with_default", "kwargs"])
def test_objective_taking_one_dict_or_kwargs(signature: str) -> None:
    """``train(params)`` gets the dict; ``train(**kw)`` gets keywords."""
    received = []

    def one(config):
        received.append(config)
        return config["x"]

    def with_default(config, verbose=False):
        received.append(config)
        return config["x"]

    def kwargs(**params):
        received.append(params)
        return params["x"]

    objective = {"one": one, "with_default": with_default, "kwargs": kwargs}[signature]
    result = tune(objective, {"x": uniform(0, 1), "k": choice("a", "b")}, max_evals=3, seed=0)
    assert len(received) == 3
    for params, trial in zip(received, result.trials, strict=True):
        assert set(params) == {"x", "k"}
        assert params == trial.params


def test_signature_mismatch_is_a_config_error_with_a_hint() -> None:
    """Parameters that match neither convention name the near miss; nothing runs."""
    calls = []

    def train(lr, layer):
        calls.append(lr)
        return lr

    with pytest.raises(ConfigError) as info:
        tune(train, {"lr": uniform(0, 1), "layers": choice(1, 2)}, max_evals=2)
    assert "takes no parameter 'layers' (did you mean layer?)" in str(info.value)
    assert "train(lr, layer)" in str(info.value)
    assert calls == []


@pytest.mark.parametrize(
    ("space", "fragment"),
    [
        ({"lr": uniform(0, 1), "epochs": 5}, "f(lr) takes no parameter 'epochs', which the"),
        (
            {"lr": uniform(0, 1), "epochs": 5, "width": choice(8, 16)},
            "f(lr) takes no parameters 'epochs', 'width'",
        ),
    ],
)
def test_a_key_the_function_does_not_take_is_named_before_any_trial(space, fragment) -> None:
    """f(lr) with the extra constant epochs=5 is not silently called as f(params)."""
    calls = []

    def f(lr):
        calls.append(lr)
        return lr

    with pytest.raises(ConfigError) as info:
        tune(f, space, max_evals=2)
    assert fragment in str(info.value)
    assert calls == []


def test_required_parameter_missing_from_the_space_is_a_config_error() -> None:
    """A required argument the space does not give is named before anything runs."""

    def train(lr, layers, epochs):
        raise AssertionError("must not run")

    with pytest.raises(ConfigError, match=r"train\(\) needs epochs"):
        tune(train, {"lr": uniform(0, 1), "layers": choice(1, 2)}, max_evals=2)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"mode": "maximum"}, "mode must be 'min' or 'max'"),
        ({"max_evals": 0}, "max_evals must be at least 1"),
        ({"timeout": 0}, "timeout must be a positive number"),
        ({"progress": "fancy"}, "progress must be one of"),
        ({"algo": "grid"}, "'x' is uniform(0, 1), which is continuous"),
    ],
)
def test_bad_arguments_are_config_errors(options: dict, fragment: str) -> None:
    """Invalid tune() arguments raise ConfigError naming the problem, running nothing."""
    calls = []
    with pytest.raises(ConfigError) as info:
        tune(lambda x: calls.append(x) or x, {"x": uniform(0, 1)}, **options)
    assert fragment in str(info.value)
    assert calls == []


def test_unknown_algo_lists_every_registered_algorithm() -> None:
    """An unknown algo names itself, the closest name, and every algorithm offered to users;
    another engine's own search (optimize_auto's) is an object, never a registered name."""
    import nbopt.compress.auto._search as plan_search
    from nbopt.tuning import ALGORITHMS

    assert set(ALGOS) <= set(ALGORITHMS)
    with pytest.raises(ConfigError) as info:
        tune(lambda x: x, {"x": uniform(0, 1)}, algo="tpee")
    assert "unknown algo 'tpee' (did you mean tpe?); known algorithms: " in str(info.value)
    assert all(name in str(info.value) for name in ALGORITHMS)
    assert plan_search.PLAN_SEARCH.name not in ALGORITHMS


def test_an_algorithm_object_drives_the_search() -> None:
    """``tune(algo=Algorithm(...))`` runs a search with a suggest function of the caller's own,
    built once per search from the space and the budget, and names it in the result."""
    from hyperopt import rand

    from nbopt.tuning import Algorithm, SearchContext

    contexts: list[SearchContext] = []

    def build(context: SearchContext):
        contexts.append(context)
        return rand.suggest

    walk = Algorithm("walk", "random draws", build)
    result = tune(lambda x: x, {"x": uniform(0, 1)}, algo=walk, max_evals=4, seed=0)
    assert len(result.trials) == 4 and result.algo == "walk"
    assert len(contexts) == 1 and contexts[0].max_evals == 4


@pytest.mark.parametrize(
    ("space", "fragment"),
    [([uniform(0, 1)], "space must be a dict"), ({"a": 1, "b": "x"}, "no dimension to search")],
)
def test_bad_spaces_are_config_errors(space, fragment: str) -> None:
    """A space that is not a dict, or has nothing to search, is refused."""
    with pytest.raises(ConfigError, match=fragment):
        tune(lambda params: 0.0, space)
    with pytest.raises(ConfigError, match="must be callable"):
        tune(42, {"x": uniform(0, 1)})


def test_raw_hyperopt_space_calls_with_the_sampled_value() -> None:
    """A raw Hyperopt expression as the space is passed to the objective as is."""
    from hyperopt import hp

    seen = []
    space = hp.choice("model", [{"kind": "a", "x": hp.uniform("x", 0, 1)}, {"kind": "b"}])
    result = tune(lambda params: seen.append(params) or len(seen), space, max_evals=6, seed=1)
    assert len(result.trials) == 6
    assert all(p["kind"] in ("a", "b") for p in seen)
    assert all(0 <= p["x"] <= 1 for p in seen if p["kind"] == "a")


def test_nested_choices_reach_the_objective_as_values() -> None:
    """Dicts inside ``choice`` arrive as dicts with their own dimensions sampled."""
    seen = []
    space = {"opt": choice({"name": "sgd", "m": uniform(0, 1)}, {"name": "adam"}), "n": randint(3)}
    tune(lambda opt, n: seen.append((opt, n)) or n, space, max_evals=12, seed=3, algo="rand")
    assert {opt["name"] for opt, _ in seen} == {"sgd", "adam"}
    assert all(isinstance(n, int) for _, n in seen)


# --- algorithms ------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ALGOS)
def test_every_algorithm_runs_and_respects_max_evals(algo: str) -> None:
    """Each algorithm runs exactly max_evals trials on a space larger than that."""
    space = {"x": quniform(-5, 5, 1), "c": choice("a", "b")}  # 22 configurations
    calls = []
    result = tune(
        lambda x, c: calls.append((x, c)) or (x - 1) ** 2 + (c == "b"),
        space,
        max_evals=7,
        algo=algo,
        seed=0,
    )
    assert len(calls) == len(result.trials) == 7
    assert result.status == "done"
    assert result.algo == algo
    assert all(t.status == "ok" for t in result.trials)
    assert [t.number for t in result.trials] == list(range(7))
    assert result.best_value == min(t.value for t in result.trials)


@pytest.mark.parametrize("algo", SAMPLING_ALGOS)
def test_sampling_algorithms_on_a_continuous_space(algo: str) -> None:
    """tpe, rand, anneal and atpe run max_evals trials over continuous dimensions."""
    budget = 12 if algo == "atpe" else 25  # past TPE's 20 random start-up trials; ATPE is slow
    result = tune(
        lambda x, y: (x - 0.3) ** 2 + y,
        {"x": uniform(-1, 1), "y": uniform(0, 1)},
        max_evals=budget,
        algo=algo,
        seed=1,
    )
    assert len(result.trials) == budget
    assert len({_key(t.params) for t in result.trials}) == budget


def test_grid_runs_every_combination_exactly_once_then_stops() -> None:
    """algo=grid covers the space once and stops when it is exhausted, whatever max_evals."""
    space = {
        "a": choice(1, 2, 3),
        "b": randint(0, 2),
        "opt": choice({"name": "sgd", "m": choice(0.0, 0.9)}, "adam"),
    }
    optimisers = [{"name": "sgd", "m": 0.0}, {"name": "sgd", "m": 0.9}, "adam"]
    expected = sorted(
        _key({"a": a, "b": b, "opt": opt})
        for a, b, opt in itertools.product((1, 2, 3), (0, 1), optimisers)
    )
    for max_evals in (None, 100):
        calls: list[dict] = []

        def objective(a, b, opt, calls=calls):
            calls.append({"a": a, "b": b, "opt": opt})
            return a + b

        result = tune(
            objective,
            space,
            algo="grid",
            max_evals=max_evals,
        )
        assert sorted(_key(c) for c in calls) == expected
        assert len(result.trials) == 18


def test_grid_with_a_smaller_budget_takes_the_first_points_in_order() -> None:
    """A grid cut by max_evals runs that many distinct points, in enumeration order."""
    result = tune(
        lambda a, b: a * b, {"a": choice(1, 2), "b": choice(3, 4, 5)}, algo="grid", max_evals=4
    )
    assert [(t.params["a"], t.params["b"]) for t in result.trials] == [
        (1, 3),
        (1, 4),
        (1, 5),
        (2, 3),
    ]


# --- deduplication and seeds -----------------------------------------------------------------


@pytest.mark.parametrize("algo", SAMPLING_ALGOS)
def test_deterministic_search_never_repeats_a_configuration(algo: str) -> None:
    """deterministic=True evaluates each configuration of a small space once, then stops."""
    calls = []
    space = {"x": choice(1, 2, 3), "y": randint(0, 2)}
    result = tune(
        lambda x, y: calls.append((x, y)) or x + y, space, max_evals=20, algo=algo, seed=0
    )
    assert len(calls) == len(set(calls)) == 6
    assert len(result.trials) == 6


@pytest.mark.parametrize("algo", ["rand", "tpe", "anneal"])
@pytest.mark.parametrize("seed", range(4))
def test_deterministic_search_fills_max_evals_up_to_the_space_size(algo: str, seed: int) -> None:
    """With max_evals equal to the number of configurations, every configuration runs once."""
    calls = []
    space = {"a": randint(0, 6), "b": choice(1, 2, 3, 4, 5)}  # 30 configurations
    tune(lambda a, b: calls.append((a, b)) or a * b, space, max_evals=30, algo=algo, seed=seed)
    assert len(set(calls)) == len(calls)
    assert len(calls) == 30


def test_non_deterministic_search_may_repeat_configurations() -> None:
    """deterministic=False runs the full budget even on a two-point space."""
    calls = []
    result = tune(
        lambda x: calls.append(x) or x,
        {"x": choice(1, 2)},
        max_evals=10,
        deterministic=False,
        algo="rand",
        seed=0,
    )
    assert len(result.trials) == 10
    assert set(calls) == {1, 2}


@pytest.mark.parametrize("algo", SAMPLING_ALGOS)
def test_same_seed_same_sequence(algo: str) -> None:
    """A seed makes the sequence of proposed configurations reproducible."""
    space = {"x": uniform(-2, 2), "k": choice(1, 2, 3), "n": randint(10)}

    budget = 12 if algo == "atpe" else 30  # past TPE's 20 random start-up trials; ATPE is slow

    def run(seed):
        result = tune(
            lambda x, k, n: (x - 1) ** 2 + k + n, space, max_evals=budget, algo=algo, seed=seed
        )
        return [_key(t.params) for t in result.trials]

    first = run(7)
    assert run(7) == first
    assert run(8) != first


# --- modes and metrics -----------------------------------------------------------------------


def test_mode_max_finds_the_largest_value() -> None:
    """mode="max" maximises; best_value is the largest value as the user returned it."""
    result = tune(lambda x: -((x - 1) ** 2), {"x": choice(-1, 0, 1, 2, 3)}, algo="grid", mode="max")
    assert result.best_params == {"x": 1}
    assert result.best_value == 0
    assert result.mode == "max"
    low = tune(lambda x: -((x - 1) ** 2), {"x": choice(-1, 0, 1, 2, 3)}, algo="grid")
    assert low.best_value == -4


def test_tpe_in_max_mode_moves_towards_the_maximum() -> None:
    """The algorithm is told the sign: late TPE trials beat the random start when maximising."""
    result = tune(lambda x: -abs(x - 3), {"x": uniform(-10, 10)}, max_evals=60, seed=0, mode="max")
    values = [t.value for t in result.trials]
    assert np.mean(values[-20:]) > np.mean(values[:20])
    assert result.best_value > -0.5


@pytest.mark.parametrize(
    ("returned", "metric", "value", "extras"),
    [
        ({"acc": 0.75, "loss": 0.5}, "acc", 0.75, {"loss": 0.5}),
        ({"acc": 0.75, "loss": 0.5}, None, 0.5, {"acc": 0.75}),
        ({"score": 3, "note": "text"}, None, 3.0, {}),
        (np.float32(0.25), None, 0.25, {}),
        (np.array(1.5), None, 1.5, {}),
        (4, None, 4.0, {}),
    ],
)
def test_dict_and_number_results(returned, metric, value, extras) -> None:
    """The value is ``metric``, else "loss", else the only number; other numbers are kept."""
    result = tune(lambda x: returned, {"x": uniform(0, 1)}, max_evals=1, metric=metric)
    trial = result.trials[0]
    assert trial.status == "ok"
    assert trial.value == value
    assert trial.metrics == extras
    assert result.metric == (metric or "value")


@pytest.mark.parametrize(
    ("returned", "metric", "error"),
    [
        ({"loss": 1.0}, "acc", "KeyError"),
        ({"a": 1.0, "b": 2.0}, None, "ValueError: objective returned a dict with keys ['a', 'b']"),
        ({"acc": "high"}, "acc", "TypeError"),
        ("0.5", None, "TypeError: objective returned str '0.5', expected a number or a dict"),
        (None, None, "TypeError: objective returned None, expected a number or a dict"),
        (
            torch.tensor([1.0, 2.0]),
            None,
            "TypeError: objective returned Tensor of shape (2,) (a number has one element)",
        ),
        ({"status": "fail", "error": "diverged"}, None, "objective reported status 'fail'"),
    ],
)
def test_unusable_results_fail_the_trial(returned, metric, error: str) -> None:
    """A missing key, an ambiguous dict or a non-number fails the trial with a one-line error
    saying what came back, and no traceback (it would show only nbopt's own frames)."""
    outcomes = iter([returned, 1.0])
    result = tune(lambda x: next(outcomes), {"x": uniform(0, 1)}, max_evals=2, metric=metric)
    first = result.trials[0]
    assert first.status == "failed"
    assert first.value is None
    assert error in first.error
    assert "\n" not in first.error
    assert first.traceback is None


# --- failures --------------------------------------------------------------------------------


def test_failures_are_recorded_and_the_search_goes_on() -> None:
    """An exception, NaN and inf each fail one trial (error and traceback kept); others run."""
    outcomes = [1.0, "raise", math.nan, 2.0, math.inf, -math.inf, 0.5]
    calls = []

    def train_model(x):
        calls.append(x)
        outcome = outcomes[len(calls) - 1]
        if outcome == "raise":
            raise ValueError(f"diverged at x={x:.3f}")
        return outcome

    result = tune(train_model, {"x": uniform(0, 1)}, max_evals=7, seed=0)
    statuses = [t.status for t in result.trials]
    assert statuses == ["ok", "failed", "failed", "ok", "failed", "failed", "ok"]
    assert result.n_failed == 4
    raised = result.trials[1]
    assert raised.error == f"ValueError: diverged at x={calls[1]:.3f}"
    assert raised.traceback.startswith("Traceback (most recent call last)")
    assert "train_model" in raised.traceback
    assert 'raise ValueError(f"diverged' in raised.traceback
    assert "nbopt/tuning/_search.py" not in raised.traceback  # starts at the user's code
    assert result.trials[2].error == "ValueError: objective returned nan"
    assert result.trials[4].error == "ValueError: objective returned inf"
    assert result.trials[1].traceback is not None
    assert result.trials[2].traceback is None  # nothing of the user's raised
    assert result.best_value == 0.5


def test_all_trials_failing_raises_tune_error_with_the_first_traceback() -> None:
    """If no trial succeeds, TuneError says so and shows the first failure's traceback."""
    calls = []

    def broken(x):
        calls.append(x)
        raise RuntimeError(f"broken call {len(calls)}")

    with pytest.raises(TuneError) as info:
        tune(broken, {"x": uniform(0, 1)}, max_evals=3)
    message = str(info.value)
    assert "all 3 trials failed" in message
    assert "broken call 1" in message
    assert "broken call 2" not in message
    assert "Traceback (most recent call last)" in message
    assert "in broken" in message
    assert len(calls) == 3


@pytest.mark.parametrize(
    ("returned", "said"),
    [
        ("0.5", "objective returned str '0.5'"),
        (None, "objective returned None"),
        (torch.tensor([0.5, 0.25]), "objective returned Tensor of shape (2,)"),
    ],
)
def test_an_objective_returning_a_non_number_gets_a_one_line_tune_error(returned, said) -> None:
    """Every trial failing the same way is one line saying what came back, with none of
    nbopt's frames; IPython shows the same line."""
    with pytest.raises(TuneError) as info:
        tune(lambda x: returned, {"x": uniform(0, 1)}, max_evals=3)
    message = str(info.value)
    assert message.startswith("all 3 trials failed; the first one: TypeError: " + said)
    assert "\n" not in message
    assert info.value._render_traceback_() == [f"AllTrialsFailed: {message}"]


def test_user_raising_trial_stopped_records_a_stopped_trial() -> None:
    """TrialStopped from the objective counts as a finished trial with its last value."""
    outcomes = iter([TrialStopped(3, 0.25), 1.0])

    def train(x):
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    result = tune(train, {"x": uniform(0, 1)}, max_evals=2)
    assert [t.status for t in result.trials] == ["stopped", "ok"]
    assert result.trials[0].value == 0.25
    assert result.best_value == 0.25


# --- budgets ---------------------------------------------------------------------------------


def test_timeout_stops_starting_trials(monkeypatch) -> None:
    """With a timeout and no max_evals, trials start until the deadline, then the run ends.

    The search's clock is replaced by one that each trial moves on by 0.1 s, so the test
    checks the rule itself and not the speed of the machine.
    """
    from nbopt.tuning import _search

    class Clock:
        now = 0.0

        def perf_counter(self) -> float:
            return self.now

        def time(self) -> float:
            return 1_800_000_000.0 + self.now

    clock = Clock()
    monkeypatch.setattr(_search, "time", clock)
    starts = []

    def objective(x):
        starts.append(clock.now)
        clock.now += 0.1
        return x

    result = tune(objective, {"x": uniform(0, 1)}, timeout=0.35)
    assert starts == pytest.approx([0.0, 0.1, 0.2, 0.3])  # none starts at 0.4 >= 0.35
    assert result.status == "done"


def test_default_budget_is_twenty_trials() -> None:
    """Without max_evals or timeout a search runs 20 trials."""
    assert len(tune(lambda x: x, {"x": uniform(0, 1)}).trials) == 20


# --- nbopt.report ----------------------------------------------------------------------------


def test_report_inside_an_objective_records_intermediate_values() -> None:
    """``nbopt.report`` in a trial returns True and keeps (step, value) and named metrics."""
    returned = []

    def train(x):
        for epoch in range(3):
            returned.append(nbopt.report(epoch, x * (3 - epoch), acc=0.1 * epoch))
        nbopt.report(3, acc=0.9)
        return x

    steps = []
    result = tune(train, {"x": uniform(1, 2)}, max_evals=2, seed=0, callbacks=[steps.append])
    assert returned == [True] * 6
    for trial in result.trials:
        x = trial.params["x"]
        assert trial.intermediate == [(0, 3 * x), (1, 2 * x), (2, x)]
        assert trial.metrics == {"acc": 0.9}
    reported = [e for e in steps if isinstance(e, StepReported)]
    assert [(e.trial, e.step) for e in reported] == [(n, s) for n in (0, 1) for s in range(4)]


def test_report_outside_any_engine_does_nothing() -> None:
    """Outside a search, report returns False and raises nothing."""
    assert nbopt.report(0, 0.5) is False
    assert nbopt.report(1, loss=2.0) is False


def test_report_with_a_bad_step_fails_only_that_trial() -> None:
    """A negative step or a non-number metric is a TypeError inside the user's trial."""
    outcomes = iter([lambda: nbopt.report(-1, 0.5), lambda: nbopt.report(0, acc="x"), lambda: None])

    def train(x):
        next(outcomes)()
        return x

    result = tune(train, {"x": uniform(0, 1)}, max_evals=3)
    assert [t.status for t in result.trials] == ["failed", "failed", "ok"]
    assert "non-negative integer step, got -1" in result.trials[0].error
    assert "metric 'acc' must be a number" in result.trials[1].error


def test_report_takes_numpy_and_torch_integer_steps() -> None:
    """Epochs from ``np.arange`` or a torch tensor are steps; a bool or a float is not."""
    import numpy as np
    import torch

    def train(x):
        for epoch in np.arange(1, 3):
            nbopt.report(epoch, x)
        nbopt.report(torch.tensor(3), x)
        return x

    (trial,) = tune(train, {"x": uniform(0, 1)}, max_evals=1).trials
    assert trial.status == "ok"
    assert [step for step, _ in trial.intermediate] == [1, 2, 3]
    assert all(type(step) is int for step, _ in trial.intermediate)
    for bad in (True, 1.5):
        with pytest.raises(TypeError, match=f"got {bad!r}"):
            nbopt._context._step_number(bad)


# --- events ----------------------------------------------------------------------------------


def test_callbacks_receive_the_run_events_in_order() -> None:
    """RunStarted first, a TrialStarted/TrialFinished pair per trial, RunFinished last."""
    events = []
    result = tune(lambda x: x, {"x": uniform(0, 1)}, max_evals=3, callbacks=[events.append])
    kinds = [type(e) for e in events]
    assert kinds == [RunStarted] + [TrialStarted, TrialFinished] * 3 + [RunFinished]
    assert events[0].total == 3
    finished = [e for e in events if isinstance(e, TrialFinished)]
    assert [e.n_complete for e in finished] == [1, 2, 3]
    assert all(e.best is not None and e.best.value <= e.trial.value for e in finished)
    assert events[-1].status == "done"
    assert events[-1].result.best_value == result.best_value


def test_a_budget_above_a_finite_spaces_size_is_said_once(capsys) -> None:
    """``max_evals=5`` on four configurations runs four trials, and says so before the first."""
    result = tune(
        lambda a, b: a + b,
        {"a": choice(0, 1), "b": choice(0, 1)},
        max_evals=5,
        seed=0,
        progress="text",
    )
    out = capsys.readouterr().out
    assert len(result.trials) == 4
    assert out.count("the space has 4 configurations, so the search ends after 4 trials") == 1
    assert out.index("the space has 4") < out.index("trial   0")
