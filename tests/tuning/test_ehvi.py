"""Expected hypervolume improvement: the box decomposition, the closed form, the search."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nbopt
from nbopt import uniform
from nbopt.tuning._objectives import hypervolume
from nbopt.tuning.gp import _search
from nbopt.tuning.gp._hypervolume import Boxes, log_expected_improvement, nondominated

QUIET = {"progress": "none", "logdir": None}


def _front(rng: np.random.Generator, count: int, objectives: int) -> np.ndarray:
    points = rng.random((count, objectives))
    return points[nondominated(points)]


def _zdt1(n: int):
    def objective(**x: float) -> dict[str, float]:
        v = [x[f"x{i}"] for i in range(n)]
        g = 1 + 9 * sum(v[1:]) / (n - 1)
        return {"f1": v[0], "f2": g * (1 - math.sqrt(v[0] / g))}

    return objective, {f"x{i}": uniform(0, 1) for i in range(n)}


def _front_hypervolume(result, reference=(1.1, 11.0)) -> float:
    return hypervolume([(t.value, t.metrics["f2"]) for t in result.front], reference)


def test_nondominated_keeps_exactly_the_rows_no_other_row_dominates() -> None:
    points = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [0.6, 0.6], [0.5, 0.5], [1.0, 1.0]])
    assert nondominated(points).tolist() == [True, True, True, False, True, False]
    assert nondominated(np.zeros((0, 2))).tolist() == []


@pytest.mark.parametrize("objectives", [2, 3])
def test_improvement_is_the_brute_force_difference_of_hypervolumes(objectives: int) -> None:
    rng = np.random.default_rng(objectives)
    front = _front(rng, 15, objectives)
    reference = np.full(objectives, 1.1)
    boxes = Boxes(front, reference)
    # Inside, beyond the reference, dominated, dominating, on a member: all kinds of points.
    points = np.vstack([rng.random((40, objectives)) * 1.4 - 0.2, front[:2], front[:2] - 0.01])
    before = hypervolume(front, reference)
    expected = [hypervolume(np.vstack([front, p]), reference) - before for p in points]
    assert boxes.improvement(points) == pytest.approx(expected, abs=1e-12)
    # The boxes tile what the front leaves inside the reference box down to the origin.
    lower = np.maximum(boxes.lower, 0.0)
    tiled = np.prod(np.maximum(boxes.upper - lower, 0.0), axis=1).sum()
    assert tiled == pytest.approx(np.prod(reference) - before)


def test_improvement_of_known_points_in_two_objectives() -> None:
    boxes = Boxes(np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([2.0, 2.0]))
    # A point at (0.5, 0.5) adds the square between it and the staircase's corner (1, 1).
    assert boxes.improvement(np.array([[0.5, 0.5], [1.0, 1.0], [3.0, -1.0], [-1.0, 1.0]])) == (
        pytest.approx([0.25, 0.0, 0.0, 1.0])
    )
    # With no member inside the reference, a point gains its whole box up to it.
    empty = Boxes(np.array([[2.0, 0.0]]), np.array([1.0, 1.0]))
    assert empty.improvement(np.array([[0.0, 0.0], [0.5, 2.0]])) == pytest.approx([1.0, 0.0])


@pytest.mark.parametrize("objectives", [2, 3])
def test_closed_form_ehvi_matches_a_monte_carlo_average_of_improvements(objectives: int) -> None:
    rng = np.random.default_rng(10 + objectives)
    front = _front(rng, 12, objectives)
    reference = np.full(objectives, 1.1)
    mean = rng.random((6, objectives))
    sd = rng.uniform(0.02, 0.3, size=(6, objectives))
    samples = rng.standard_normal((40_000, objectives))
    boxes = Boxes(front, reference)
    gains = [boxes.improvement(m + s * samples) for m, s in zip(mean, sd, strict=True)]
    exact = np.exp(log_expected_improvement(mean, sd, front, reference))
    for value, gain in zip(exact, gains, strict=True):
        # Within four standard errors of the Monte Carlo mean.
        assert abs(value - gain.mean()) < 4 * gain.std() / math.sqrt(len(gain)) + 1e-9
    assert exact.max() > 1e-3


def test_ehvi_is_nil_for_a_certain_dominated_point_and_the_gain_for_a_certain_better_one() -> None:
    front = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    reference = np.array([1.5, 1.5])
    certain = np.full((3, 2), 1e-6)
    mean = np.array([[0.8, 0.8], [0.25, 0.25], [0.5, 0.5]])
    ehvi = np.exp(log_expected_improvement(mean, certain, front, reference))
    assert ehvi[0] < 1e-12  # dominated by (0.5, 0.5)
    # Between (0.25, 0.25) and the staircase: 0.25 x 0.75 left of x = 0.5, 0.5 x 0.25 right.
    assert ehvi[1] == pytest.approx(0.25 * 0.75 + 0.5 * 0.25)
    assert ehvi[2] < 1e-5  # on the front: at most the sliver its noise may add
    # Uncertainty is worth something even at a dominated mean.
    assert log_expected_improvement(mean[:1], np.full((1, 2), 0.3), front, reference)[0] > -10


def test_log_ehvi_orders_candidates_far_from_the_front() -> None:
    """Far beyond the front, where EHVI underflows, its logarithm still prefers the nearer."""
    front = np.array([[0.0, 1.0], [1.0, 0.0]])
    mean = np.array([[30.0, 30.0], [40.0, 40.0]])
    scores = log_expected_improvement(mean, np.full((2, 2), 0.1), front, np.array([2.0, 2.0]))
    assert np.all(np.isfinite(scores)) and scores[0] > scores[1]


def test_a_large_front_in_four_objectives_is_thinned_to_a_bounded_decomposition() -> None:
    rng = np.random.default_rng(4)
    front = _front(rng, 400, 4)
    assert len(front) > 20
    boxes = Boxes(front, np.full(4, 1.1))
    assert len(boxes.lower) <= 16384 and len(boxes.front) < len(front)
    scores = boxes.log_expected_improvement(rng.random((5, 4)), np.full((5, 4), 0.1))
    assert np.all(np.isfinite(scores))


def test_the_module_constant_selects_the_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both rules start from the same Sobol trials, then propose differently."""
    objective, space = _zdt1(2)
    runs = {}
    for rule in ("ehvi", "parego"):
        monkeypatch.setattr(_search, "MULTI_OBJECTIVE_ACQUISITION", rule)
        result = nbopt.tune(objective, space, metric=["f1", "f2"], max_evals=10, seed=0, **QUIET)
        runs[rule] = [t.params for t in result.trials]
    start = _search.initial_trials(2, 10)
    assert runs["ehvi"][:start] == runs["parego"][:start]
    assert runs["ehvi"][start:] != runs["parego"][start:]


@pytest.mark.slow
def test_ehvi_search_on_zdt1_beats_random_search_with_the_same_seed() -> None:
    objective, space = _zdt1(3)
    for seed in range(3):
        runs = {
            algo: nbopt.tune(
                objective, space, metric=["f1", "f2"], algo=algo, max_evals=30, seed=seed, **QUIET
            )
            for algo in ("auto", "rand")
        }
        assert _front_hypervolume(runs["auto"]) > _front_hypervolume(runs["rand"])


def test_ehvi_search_is_reproducible_and_proposes_no_repeat() -> None:
    objective, space = _zdt1(2)
    first, second = (
        nbopt.tune(objective, space, metric=["f1", "f2"], max_evals=15, seed=2, **QUIET)
        for _ in range(2)
    )
    assert [t.params for t in first.trials] == [t.params for t in second.trials]
    configurations = {tuple(sorted(t.params.items())) for t in first.trials}
    assert len(configurations) == 15


@pytest.mark.parametrize("ehvi_up_to", [2, 3])
def test_three_objectives_and_a_finite_space_are_searched(
    monkeypatch: pytest.MonkeyPatch, ehvi_up_to: int
) -> None:
    """Three objectives by default go to the scalarised GP; with the limit raised, to EHVI."""
    monkeypatch.setattr(_search, "EHVI_MAX_OBJECTIVES", ehvi_up_to)
    space = {"x": uniform(0, 1), "y": uniform(0, 1), "k": nbopt.choice(1, 2, 4)}

    def objective(x: float, y: float, k: int) -> dict[str, float]:
        return {"a": x, "b": (1 - x) ** 2 + y, "c": y + 0.1 * k}

    result = nbopt.tune(objective, space, metric=["a", "b", "c"], max_evals=16, seed=0, **QUIET)
    assert len(result.trials) == 16 and len(result.front) >= 3
    grid = {"x": nbopt.choice(*[i / 4 for i in range(5)]), "y": nbopt.choice(0.0, 0.5, 1.0)}
    finite = nbopt.tune(
        lambda x, y: {"a": x, "b": (1 - x) ** 2 + y},
        grid,
        metric=["a", "b"],
        max_evals=15,
        seed=0,
        **QUIET,
    )
    assert len({tuple(t.params.values()) for t in finite.trials}) == 15


def test_failed_trials_and_parallel_proposals_do_not_stop_the_search() -> None:
    objective, space = _zdt1(2)

    def sometimes_failing(**x: float) -> dict[str, float]:
        if 0.4 < x["x1"] < 0.6:
            raise ValueError("diverged")
        return objective(**x)

    result = nbopt.tune(
        sometimes_failing, space, metric=["f1", "f2"], max_evals=14, seed=1, **QUIET
    )
    assert len(result.trials) == 14 and result.front
    parallel = nbopt.tune(
        objective, space, metric=["f1", "f2"], max_evals=10, seed=0, parallel=2, **QUIET
    )
    assert len(parallel.trials) == 10 and parallel.front


@given(
    st.lists(
        st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.just(math.nan)),
        min_size=2,
        max_size=40,
    ).filter(lambda losses: any(not math.isnan(v) for v in losses))
)
def test_the_linear_scale_of_any_finite_losses_is_finite_and_keeps_their_order(losses) -> None:
    """No overflow, no NaN, order kept, failed trials (NaN) as the worst."""
    losses = np.array(losses)
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        y = _search._linear(losses)
    assert np.all(np.isfinite(y))
    usable = ~np.isnan(losses)
    order = np.argsort(losses[usable], kind="stable")
    assert np.all(np.diff(y[usable][order]) >= 0)
    assert np.all(y[~usable] >= y[usable].max())


def test_the_linear_scale_keeps_distances_and_clips_a_diverged_run() -> None:
    losses = np.array([0.02, 0.03, 0.05, 0.09, 0.2, 0.4, sys.float_info.max])
    y = _search._linear(losses)
    # Below the fence, distances keep their ratios (the hypervolume's geometry) ...
    assert (y[3] - y[0]) / (y[1] - y[0]) == pytest.approx(7.0)
    # ... and the huge loss is clipped at Q3 + 3 IQR instead of flattening the rest.
    assert (y[-1] - y[0]) / (y[5] - y[0]) < 10
    assert np.array_equal(_search._linear(np.r_[losses[:-1], 1e6]), y)
