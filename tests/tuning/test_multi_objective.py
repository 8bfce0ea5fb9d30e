"""Several objectives: every metric recorded, the front, pick(), the study, the proposers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import nbopt
from nbopt import ConfigError, uniform
from nbopt.tuning import TrialState

QUIET = {"progress": "none", "logdir": None}
ZDT1_SPACE = {f"x{i}": uniform(0, 1) for i in range(1, 4)}


def zdt1(x1: float, x2: float, x3: float) -> dict[str, float]:
    """ZDT1 in three variables: its front is x2 = x3 = 0, f2 = 1 - sqrt(f1)."""
    g = 1 + 9 * (x2 + x3) / 2
    return {"f1": x1, "f2": g * (1 - math.sqrt(x1 / g))}


def _losses(trial, modes):
    values = [trial.value, *(trial.metrics[name] for name in list(modes)[1:])]
    return [v if mode == "min" else -v for v, mode in zip(values, modes.values(), strict=True)]


def _dominated(a, b) -> bool:
    """True if losses ``a`` are dominated by losses ``b``."""
    return all(y <= x for x, y in zip(a, b, strict=True)) and any(
        y < x for x, y in zip(a, b, strict=True)
    )


def _brute_force_front(result):
    usable = [t for t in result.trials if t.usable]
    losses = {t.number: _losses(t, result.objectives) for t in usable}
    return [
        t.number
        for t in usable
        if not any(_dominated(losses[t.number], losses[o.number]) for o in usable)
    ]


def _tune_zdt1(algo: str, **options):
    return nbopt.tune(
        zdt1, ZDT1_SPACE, metric=["f1", "f2"], mode=["min", "min"], algo=algo, **QUIET, **options
    )


@pytest.mark.parametrize("algo", ["auto", "tpe", "rand"])
def test_zdt1_front_after_30_evaluations_is_the_non_dominated_set(algo: str) -> None:
    result = _tune_zdt1(algo, max_evals=30, seed=1)
    assert len(result.trials) == 30
    assert all(t.status == TrialState.OK for t in result.trials)
    assert all(set(t.metrics) == {"f2"} and t.value is not None for t in result.trials)
    front = result.front
    assert [t.number for t in front] == _brute_force_front(result)
    for member in front:
        for other in result.trials:
            assert not _dominated(
                _losses(member, result.objectives), _losses(other, result.objectives)
            )
    if algo == "auto":
        assert len(front) >= 5


def test_the_gp_search_reaches_the_zdt1_front_that_random_search_misses() -> None:
    """On ZDT1 the true front has x2 = x3 = 0: the scalarised GP gets near it, and its front is
    wider than random search's on the same budget (same seed)."""
    auto, rand = _tune_zdt1("auto", max_evals=30, seed=1), _tune_zdt1("rand", max_evals=30, seed=1)

    def distance(trial) -> float:  # g - 1: 0 on the true front
        return 9 * (trial.params["x2"] + trial.params["x3"]) / 2

    assert min(distance(t) for t in auto.front) < 0.05
    assert np.median([distance(t) for t in auto.front]) < np.median(
        [distance(t) for t in rand.front]
    )


def test_seed_makes_a_multi_objective_search_reproducible() -> None:
    first, second = (_tune_zdt1("auto", max_evals=12, seed=3) for _ in range(2))
    assert [t.params for t in first.trials] == [t.params for t in second.trials]


def test_modes_are_applied_per_metric() -> None:
    """mode=["max", "min"]: larger a and smaller b are better."""
    space = {"x": nbopt.choice(0.0, 0.25, 0.5, 0.75, 1.0)}
    result = nbopt.tune(
        lambda x: {"a": x, "b": x**2, "c": 1.0},
        space,
        metric=["a", "b"],
        mode=["max", "min"],
        algo="grid",
        **QUIET,
    )
    assert result.objectives == {"a": "max", "b": "min"}
    assert [t.params["x"] for t in result.front] == [0.0, 0.25, 0.5, 0.75, 1.0]
    same_direction = nbopt.tune(
        lambda x: {"a": x, "b": x**2}, space, metric=["a", "b"], mode="min", algo="grid", **QUIET
    )
    assert [t.params["x"] for t in same_direction.front] == [0.0]
    assert result.trials[0].metrics == {"b": 0.0, "c": 1.0}  # every number is kept


def test_a_trial_missing_a_metric_fails_with_a_clear_error() -> None:
    def objective(x):
        return {"a": x} if x > 0.5 else {"a": x, "b": 1 - x}

    result = nbopt.tune(
        objective, {"x": uniform(0, 1)}, metric=["a", "b"], max_evals=16, seed=0, **QUIET
    )
    failed = [t for t in result.trials if t.status == TrialState.FAILED]
    assert failed and all(t.params["x"] > 0.5 for t in failed)
    assert failed[0].error.startswith("KeyError: objective returned no 'b' (the metrics are")
    assert all(t.number not in {f.number for f in failed} for t in result.front)


@pytest.mark.parametrize(
    ("returned", "error"),
    [
        (0.5, "TypeError: objective returned float 0.5, expected a dict holding 'a', 'b'"),
        ({"a": 1.0, "b": "fast"}, "TypeError: objective's 'b' is not a number"),
        ({"a": 1.0, "b": math.nan}, "ValueError: objective returned b=nan"),
        ({"b": 1.0}, "KeyError: objective returned no 'a'"),
    ],
)
def test_what_fails_a_multi_objective_trial(returned, error) -> None:
    with pytest.raises(nbopt.TuneError, match="all 2 trials failed") as caught:
        nbopt.tune(
            lambda x: returned, {"x": uniform(0, 1)}, metric=["a", "b"], max_evals=2, **QUIET
        )
    assert error in str(caught.value)


@pytest.mark.parametrize(
    ("metric", "mode", "message"),
    [
        (["a", "b"], ["max"], r"^mode= gives 1 directions for 2 metrics \(a, b\)"),
        (["a", "b"], ["max", "min", "min"], r"^mode= gives 3 directions for 2 metrics"),
        (["a", "b"], ["max", "up"], r"^mode must be 'min' or 'max', got 'up'$"),
        (["a", "a"], "min", r"^metric names a metric twice: a, a$"),
        ("a", ["min", "max"], r"^mode= gives 2 directions for 1 metric \(a\)"),
        (None, ["min", "max"], r"^mode= gives 2 directions but metric= names no metric"),
    ],
)
def test_bad_metric_or_mode_is_one_line_before_any_trial(metric, mode, message) -> None:
    calls = []
    with pytest.raises(ConfigError, match=message) as caught:
        nbopt.tune(calls.append, {"x": uniform(0, 1)}, metric=metric, mode=mode, **QUIET)
    assert "\n" not in str(caught.value)
    assert calls == []


def test_ray_is_refused_with_several_objectives() -> None:
    with pytest.raises(ConfigError, match="several objectives"):
        nbopt.tune(zdt1, ZDT1_SPACE, metric=["f1", "f2"], backend="ray", **QUIET)


def test_best_is_not_defined_and_says_where_to_look() -> None:
    result = _tune_zdt1("rand", max_evals=5, seed=0)
    for name in ("best_params", "best_value", "best_trial"):
        with pytest.raises(ConfigError, match=r"result\.front .* result\.pick\(") as caught:
            getattr(result, name)
        assert str(caught.value).startswith(f"{name} is not defined for several objectives")
    assert "5 trials" in repr(result) and "on the front of f1 (min), f2 (min)" in repr(result)
    assert "f2" in result._repr_html_()
    frame = result.to_dataframe()
    assert frame["front"].sum() == len(result.front)
    # The what-if model has no best either: it predicts every metric.
    assert list(result.predict({"x1": 0.5, "x2": 0.5, "x3": 0.5})) == ["f1", "f2"]


def test_a_single_objective_result_has_no_front() -> None:
    result = nbopt.tune(lambda x: x, {"x": uniform(0, 1)}, max_evals=3, seed=0, **QUIET)
    assert result.objectives == {}
    with pytest.raises(ConfigError, match="this search optimised one"):
        _ = result.front
    with pytest.raises(ConfigError, match="use best_trial"):
        result.pick(weights={"value": 1})


def test_pick_by_weights_and_by_constraint() -> None:
    result = nbopt.tune(
        lambda x: {"acc": x, "latency": 10 * x**2},
        {"x": nbopt.choice(*[i / 10 for i in range(11)])},
        metric=["acc", "latency"],
        mode=["max", "min"],
        algo="grid",
        **QUIET,
    )
    weights = {"acc": 1.0, "latency": -0.1}
    expected = max(result.trials, key=lambda t: t.value - 0.1 * t.metrics["latency"])
    assert result.pick(weights=weights) is expected
    assert result.pick(weights={"acc": 1}).params == {"x": 1.0}
    chosen = result.pick(constraint="latency <= 5")
    assert chosen.params == {"x": 0.7}  # the highest accuracy with 10 x^2 <= 5
    assert result.pick(constraint="acc>=0.5").params == {"x": 1.0}
    plateau = nbopt.tune(
        lambda x: {"acc": min(x, 0.5), "latency": x},
        {"x": nbopt.choice(*[i / 10 for i in range(11)])},
        metric=["acc", "latency"],
        mode=["max", "min"],
        algo="grid",
        **QUIET,
    )
    # Accuracy ties at 0.5 from x = 0.5 on: the tie goes to the lower latency.
    assert plateau.pick(constraint="latency <= 0.8").params == {"x": 0.5}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"weights": {"acc": 1, "latncy": -1}},
            r"^unknown metric 'latncy' \(did you mean latency\?\); the metrics are acc, latency$",
        ),
        ({"constraint": "size <= 5"}, r"^unknown metric 'size'; the metrics are acc, latency$"),
        ({"constraint": "latency <= -1"}, r"^no trial meets 'latency <= -1': latency ranged "),
        ({"constraint": "latency is small"}, r"^cannot read the constraint 'latency is small'"),
        ({}, r"^pick\(\) needs weights="),
        ({"weights": {"acc": 1}, "constraint": "acc > 0"}, r"^pick\(\) needs weights="),
    ],
)
def test_pick_errors_are_one_line(options, message) -> None:
    result = nbopt.tune(
        lambda x: {"acc": x, "latency": x},
        {"x": uniform(0, 1)},
        metric=["acc", "latency"],
        mode=["max", "min"],
        max_evals=4,
        seed=0,
        **QUIET,
    )
    with pytest.raises(ConfigError, match=message) as caught:
        result.pick(**options)
    assert "\n" not in str(caught.value)


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_study_holds_every_metric_and_resumes(tmp_path: Path) -> None:
    study = tmp_path / "front.json"
    first = _tune_zdt1("auto", max_evals=6, seed=0, study=study)
    header, *records = _records(study)
    assert header["metrics"] == ["f1", "f2"] and header["modes"] == ["min", "min"]
    assert header["metric"] == "f1"
    finished = [r for r in records if r["event"] == "finish"]
    assert len(finished) == 6 and all("f2" in r["metrics"] for r in finished)
    resumed = _tune_zdt1("auto", max_evals=10, seed=0, study=study)
    assert len(resumed.trials) == 10
    assert [t.number for t in resumed.trials[:6]] == [t.number for t in first.trials]
    assert [t.metrics for t in resumed.trials[:6]] == [t.metrics for t in first.trials]
    assert {t.number for t in resumed.front} >= {
        t.number for t in first.front if t.number in {f.number for f in resumed.front}
    }
    assert [t.number for t in resumed.front] == _brute_force_front(resumed)


@pytest.mark.parametrize(
    ("metric", "mode"),
    [(["f1", "f2"], ["min", "max"]), (["f2", "f1"], ["min", "min"]), ("f1", "min")],
)
def test_a_multi_objective_study_resumed_with_other_metrics_is_refused(
    tmp_path: Path, metric, mode
) -> None:
    study = tmp_path / "front.json"
    _tune_zdt1("rand", max_evals=3, seed=0, study=study)
    before = study.read_bytes()
    with pytest.raises(ConfigError, match=r"was made with the metrics f1 \(min\), f2 \(min\)") as e:
        nbopt.tune(zdt1, ZDT1_SPACE, metric=metric, mode=mode, study=study, **QUIET)
    assert "\n" not in str(e.value) and "restart=True" in str(e.value)
    assert study.read_bytes() == before


def test_a_single_objective_study_is_written_as_before_and_refuses_several(tmp_path: Path) -> None:
    study = tmp_path / "one.json"
    nbopt.tune(lambda x: x, {"x": uniform(0, 1)}, max_evals=2, seed=0, study=study, **QUIET)
    header = _records(study)[0]
    assert "metrics" not in header and "modes" not in header
    with pytest.raises(ConfigError, match=r"made with the metrics one metric, value \(min\)"):
        nbopt.tune(
            lambda x: {"value": x, "b": x},
            {"x": uniform(0, 1)},
            metric=["value", "b"],
            study=study,
            **QUIET,
        )
    again = nbopt.tune(lambda x: x, {"x": uniform(0, 1)}, max_evals=3, study=study, **QUIET)
    assert len(again.trials) == 3 and again.best_value is not None


def test_parallel_workers_record_every_metric() -> None:
    result = _tune_zdt1("auto", max_evals=8, seed=0, parallel=2)
    assert len(result.trials) == 8
    assert all(t.status == TrialState.OK and "f2" in t.metrics for t in result.trials)
    assert [t.number for t in result.front] == _brute_force_front(result)


def test_text_progress_shows_every_metric_and_the_front(capsys) -> None:
    nbopt.tune(
        zdt1,
        ZDT1_SPACE,
        metric=["f1", "f2"],
        max_evals=4,
        seed=0,
        progress="text",
        logdir=None,
    )
    out = capsys.readouterr().out
    assert "f1=" in out and "f2=" in out
    assert "trials on the front" in out


def test_every_proposal_learns_a_new_random_chebyshev_scalarisation() -> None:
    """What the algorithm is given as losses: ParEGO's scalarisation of the normalised metrics,
    in [0, 1.05], under a weight vector drawn anew for each proposal, in which a dominated
    trial always scores worse than the trial dominating it."""
    from hyperopt import rand

    from nbopt.tuning import Algorithm

    seen: list[dict[int, float]] = []

    def build(context):
        def suggest(new_ids, domain, trials, seed):
            seen.append({doc["tid"]: doc["result"]["loss"] for doc in trials.trials})
            return rand.suggest(new_ids, domain, trials, seed)

        return suggest

    result = nbopt.tune(
        zdt1,
        ZDT1_SPACE,
        metric=["f1", "f2"],
        algo=Algorithm("recording", "records the losses", build),
        max_evals=12,
        seed=0,
        **QUIET,
    )
    calls = [losses for losses in seen if len(losses) >= 4]
    assert len(calls) >= 6
    assert all(0 <= loss <= 1.05 + 1e-12 for losses in calls for loss in losses.values())
    orderings = {tuple(sorted(losses, key=losses.get)[:4]) for losses in calls}
    assert len(orderings) > 1  # the weights change from one proposal to the next
    tid = {t.number: i for i, t in enumerate(result.trials)}  # trials are told in order
    objectives, compared = result.objectives, 0
    for a in result.trials:
        for b in result.trials:
            if _dominated(_losses(a, objectives), _losses(b, objectives)):
                for losses in calls:
                    if tid[a.number] in losses and tid[b.number] in losses:
                        assert losses[tid[a.number]] > losses[tid[b.number]]
                        compared += 1
    assert compared > 0


def test_scalarisation_of_known_points() -> None:
    from nbopt.tuning._objectives import scalarised

    losses = np.array([[0.0, 10.0], [1.0, 0.0], [0.5, 5.0]])
    # Normalised: (0, 1), (1, 0), (0.5, 0.5); weights (0.5, 0.5).
    expected = [0.5 + 0.05 * 0.5, 0.5 + 0.05 * 0.5, 0.25 + 0.05 * 0.5]
    assert scalarised(losses, np.array([0.5, 0.5])) == pytest.approx(expected)
    assert scalarised(losses, np.array([1.0, 0.0])) == pytest.approx([0.0, 1.05, 0.525])


def test_plot_shows_every_trial_and_the_front_in_the_plane_of_the_metrics() -> None:
    result = _tune_zdt1("auto", max_evals=12, seed=0)
    figure = result.plot()
    (ax,) = figure.axes
    assert ax.get_xlabel() == "f1 (min)" and ax.get_ylabel() == "f2 (min)"
    trials, front = (collection.get_offsets() for collection in ax.collections)
    assert len(trials) == 12
    expected = sorted((t.value, t.metrics["f2"]) for t in result.front)
    assert np.allclose(sorted(map(tuple, front.tolist())), expected)


@pytest.mark.parametrize("dimensions", [2, 3])
def test_hypervolume_matches_a_monte_carlo_count(dimensions: int) -> None:
    from nbopt.tuning._objectives import hypervolume

    rng = np.random.default_rng(dimensions)
    points = rng.random((10, dimensions))
    reference = np.array([1.1, 1.2, 1.0][:dimensions])
    samples = rng.random((200_000, dimensions)) * reference
    dominated = np.zeros(len(samples), dtype=bool)
    for point in points:
        dominated |= np.all(samples >= point, axis=1)
    expected = dominated.mean() * np.prod(reference)
    assert hypervolume(points, reference) == pytest.approx(expected, rel=0.02)


def test_hypervolume_of_known_points_and_of_points_beyond_the_reference() -> None:
    from nbopt.tuning._objectives import hypervolume

    assert hypervolume([[0, 1], [1, 0], [0.5, 0.5]], [2, 2]) == pytest.approx(3.25)
    assert hypervolume([[3, 0], [0, 2]], [2, 2]) == 0.0
    assert hypervolume([], [1, 1]) == 0.0


def test_result_hypervolume_reads_the_modes_and_checks_the_reference() -> None:
    from nbopt.tuning._objectives import hypervolume

    result = nbopt.tune(
        lambda x: {"acc": x, "cost": x**2},
        {"x": uniform(0, 1)},
        metric=["acc", "cost"],
        mode=["max", "min"],
        max_evals=8,
        seed=0,
        **QUIET,
    )
    expected = hypervolume([(-t.value, t.metrics["cost"]) for t in result.front], (0.0, 1.0))
    assert result.hypervolume({"acc": 0.0, "cost": 1.0}) == pytest.approx(expected)
    assert expected > 0
    with pytest.raises(ConfigError, match="lacks cost"):
        result.hypervolume({"acc": 0.0})
    with pytest.raises(ConfigError, match="unknown metric 'cots'"):
        result.hypervolume({"acc": 0.0, "cots": 1.0})
