"""Search-space functions, their Hyperopt form, grids and fingerprints."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from hyperopt import hp, space_eval
from hyperopt.base import Domain
from hyperopt.pyll import stochastic

from nbopt import ConfigError, choice, loguniform, normal, qloguniform, quniform, randint, uniform
from nbopt.space import (
    Dimension,
    contains_dimension,
    fingerprint,
    grid_points,
    grid_size,
    to_hyperopt,
)


def _samples(space: dict, n: int = 200, seed: int = 0) -> list[dict]:
    """Draw ``n`` configurations through Hyperopt's own sampler."""
    expression = to_hyperopt(space)
    rng = np.random.default_rng(seed)
    return [stochastic.sample(expression, rng=rng) for _ in range(n)]


def _labels(space: dict) -> set[str]:
    return set(Domain(lambda params: 0.0, to_hyperopt(space)).params)


# --- argument validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: uniform(1, 0), "low < high"),
        (lambda: uniform(1, 1), "low < high"),
        (lambda: uniform("a", 1), "uniform() low must be a number"),
        (lambda: uniform(0, math.nan), "uniform() high must be a number"),
        (lambda: uniform(True, 2), "must be a number"),
        (lambda: loguniform(0, 1), "0 < low"),
        (lambda: loguniform(-1, 1), "0 < low"),
        (lambda: loguniform(1e-1, 1e-4), "low < high"),
        (lambda: quniform(0, 10, 0), "q must be positive"),
        (lambda: quniform(0, 10, -2), "q must be positive"),
        (lambda: quniform(0, 10, None), "q must be a number"),
        (lambda: qloguniform(0, 10, 1), "0 < low"),
        (lambda: qloguniform(1, 10, 0), "q must be positive"),
        (lambda: randint(1.5, 3), "randint() low must be an int"),
        (lambda: randint(0, 2.0), "randint() high must be an int"),
        (lambda: randint(True, 3), "must be an int"),
        (lambda: randint(3, 3), "low < high"),
        (lambda: randint(0), "low < high"),
        (lambda: choice(), "at least one option"),
        (lambda: choice([]), "at least one option"),
        (lambda: normal(0, 0), "sigma must be positive"),
        (lambda: normal(0, -1), "sigma must be positive"),
        (lambda: normal("x", 1), "mu must be a number"),
        (lambda: uniform(0, math.inf), "uniform() high must be a finite number within ±1e+300"),
        (lambda: uniform(-1e308, 1e308), "uniform() low must be a finite number within"),
        (lambda: loguniform(1, math.inf), "loguniform() high must be a finite number"),
        (lambda: loguniform(1e-4, 1e308), "loguniform() high must be a finite number"),
        (lambda: loguniform(5e-324, 1), "needs 0 < low (at least 1e-300)"),
        (lambda: quniform(-math.inf, 0, 1), "quniform() low must be a finite number"),
        (lambda: quniform(0, 1e300, 1e-300), "q=1e-300 is too small for the range"),
        (lambda: qloguniform(1, 10, math.inf), "qloguniform() q must be a finite number"),
        (lambda: normal(0, math.inf), "normal() sigma must be a finite number"),
        (lambda: normal(-math.inf, 1), "normal() mu must be a finite number"),
    ],
)
def test_space_functions_validate_their_arguments(build, fragment: str) -> None:
    """Bad bounds, steps or options are a ConfigError saying what is wrong."""
    with pytest.raises(ConfigError) as info:
        build()
    assert fragment in str(info.value)


@pytest.mark.parametrize("bounds", [(0.0, 1e300), (-1e300, 1e300), (1e-300, 1e300)])
def test_the_widest_bounds_accepted_search_without_error(bounds: tuple[float, float]) -> None:
    """Bounds at the limit still work end to end in every algorithm's sampling."""
    import nbopt

    for algo in ("rand", "tpe", "auto"):
        space = {"x": loguniform(*bounds) if bounds[0] > 0 else uniform(*bounds)}
        result = nbopt.tune(
            lambda x: float(x > 0),
            space,
            max_evals=8,
            algo=algo,
            seed=0,
            progress="none",
            logdir=None,
        )
        assert all(t.status == "ok" for t in result.trials)
        assert all(bounds[0] <= t.params["x"] <= bounds[1] for t in result.trials)


def test_grid_size_of_a_fine_step_is_counted_not_listed() -> None:
    assert grid_size({"x": quniform(0, 1e12, 1)}) == 10**12 + 1


def test_space_functions_build_dimensions() -> None:
    """Each function records its kind and arguments; ``randint(n)`` means ``randint(0, n)``."""
    assert (randint(5).kind, randint(5).args) == ("randint", (0, 5))
    assert randint(np.int64(1), np.int64(4)).args == (1, 4)
    assert choice(["a", "b"]).args == choice("a", "b").args == ("a", "b")
    assert repr(quniform(16, 128, 16)) == "quniform(16, 128, 16)"
    assert repr(choice("relu", "tanh")) == "choice('relu', 'tanh')"
    assert uniform(0, 1).is_discrete is False
    assert randint(3).is_discrete and choice(1).is_discrete and quniform(0, 1, 0.5).is_discrete


# --- sampling through Hyperopt ---------------------------------------------------------------


def test_integer_dimensions_sample_python_ints() -> None:
    """randint and integer quniform/qloguniform give Python ints, on their grid, in bounds."""
    draws = _samples(
        {
            "r": randint(1, 4),
            "q": quniform(16, 128, 16),
            "l": qloguniform(16, 256, 16),
            "r0": randint(3),
        }
    )
    for draw in draws:
        assert all(type(draw[key]) is int for key in ("r", "q", "l", "r0")), draw
        assert 1 <= draw["r"] < 4
        assert 0 <= draw["r0"] < 3
        assert 16 <= draw["q"] <= 128 and draw["q"] % 16 == 0
        assert 16 <= draw["l"] <= 256 and draw["l"] % 16 == 0
    assert {d["r"] for d in draws} == {1, 2, 3}
    assert {d["r0"] for d in draws} == {0, 1, 2}


def test_fractional_steps_and_continuous_dimensions_sample_floats() -> None:
    """A fractional quniform stays a float on its grid; continuous ones stay in bounds."""
    draws = _samples({"f": quniform(0, 1, 0.25), "u": uniform(-1, 1), "lg": loguniform(1e-4, 1e-1)})
    for draw in draws:
        assert isinstance(draw["f"], float)
        assert draw["f"] in {0.0, 0.25, 0.5, 0.75, 1.0}
        assert -1 <= draw["u"] <= 1
        assert 1e-4 <= draw["lg"] <= 1e-1
    logs = np.log10([d["lg"] for d in draws])
    assert logs.min() < -3.5 and logs.max() > -1.5  # log-uniform, not squeezed at one end


def test_choice_yields_values_not_indices() -> None:
    """``choice`` gives the option itself, including dicts whose dimensions are sampled."""
    space = {
        "act": choice("relu", "tanh"),
        "width": choice(32, 64),
        "opt": choice({"name": "sgd", "momentum": uniform(0.5, 0.99)}, {"name": "adam"}),
    }
    draws = _samples(space)
    assert {d["act"] for d in draws} == {"relu", "tanh"}
    assert {d["width"] for d in draws} == {32, 64}
    names = set()
    for draw in draws:
        names.add(draw["opt"]["name"])
        if draw["opt"]["name"] == "sgd":
            assert 0.5 <= draw["opt"]["momentum"] <= 0.99
        else:
            assert draw["opt"] == {"name": "adam"}
    assert names == {"sgd", "adam"}


def test_labels_are_parameter_paths() -> None:
    """Hyperopt labels name each parameter by its path in the space."""
    space = {
        "lr": loguniform(1e-4, 1e-1),
        "opt": choice({"momentum": uniform(0, 1)}, "adam"),
        "layers": [{"width": choice(8, 16)}, randint(2)],
        "fixed": 3,
    }
    assert _labels(space) == {"lr", "opt", "opt[0].momentum", "layers[0].width", "layers[1]"}


def test_to_hyperopt_accepts_raw_hyperopt_nodes() -> None:
    """Raw ``hp.*`` nodes pass through, alone or mixed with nbopt dimensions."""
    raw = hp.choice("model", [{"kind": "a", "x": hp.uniform("x", 0, 1)}, {"kind": "b"}])
    assert to_hyperopt(raw) is raw
    mixed = {"y": hp.uniform("y", -1, 0), "z": randint(3), "k": "const"}
    for draw in _samples(mixed, n=50):
        assert -1 <= draw["y"] <= 0
        assert draw["z"] in (0, 1, 2)
        assert draw["k"] == "const"
    assert contains_dimension(raw)
    assert contains_dimension({"a": [1, {"b": hp.uniform("b", 0, 1)}]})
    assert not contains_dimension({"a": 1, "b": [2, {"c": "x"}]})


def test_a_bare_dimension_is_not_a_space() -> None:
    """A space must name its parameters: a lone dimension is a ConfigError."""
    with pytest.raises(ConfigError, match="dict of named parameters"):
        to_hyperopt(uniform(0, 1))


# --- grids -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("space", "size"),
    [
        ({"a": choice(1, 2, 3), "b": randint(2)}, 6),
        ({"q": quniform(0, 1, 0.25)}, 5),
        ({"q": quniform(16, 128, 16)}, 8),
        ({"l": qloguniform(16, 128, 16)}, 8),
        ({"opt": choice({"m": choice(0.0, 0.9)}, "adam"), "n": randint(3)}, 9),
        ({"nested": {"a": choice(1, 2), "b": [randint(2), 5]}}, 4),
        ({"c": "constant"}, 1),
        ({"a": choice(1, 2), "u": uniform(0, 1)}, None),
        ({"a": choice(1, 2), "n": normal(0, 1)}, None),
        ({"a": choice(1, 2), "h": hp.uniform("h", 0, 1)}, None),
    ],
)
def test_grid_size(space: dict, size: int | None) -> None:
    """grid_size counts distinct configurations, or is None with a continuous dimension."""
    assert grid_size(space) == size


def test_grid_points_enumerate_nested_choices_exactly_once() -> None:
    """Every configuration of a nested discrete space appears once and decodes correctly."""
    space = {
        "opt": choice({"name": "sgd", "m": choice(0.0, 0.9)}, {"name": "adam"}),
        "n": randint(1, 3),
        "q": quniform(0, 1, 0.5),
    }
    points = list(grid_points(space))
    assert len(points) == grid_size(space) == 3 * 2 * 3
    decoded = [space_eval(to_hyperopt(space), point) for point in points]
    as_text = [json.dumps(d, sort_keys=True) for d in decoded]
    assert len(set(as_text)) == len(as_text)
    optimisers = [{"name": "sgd", "m": 0.0}, {"name": "sgd", "m": 0.9}, {"name": "adam"}]
    expected = [
        {"opt": opt, "n": n, "q": q}
        for opt, n, q in itertools.product(optimisers, (1, 2), (0.0, 0.5, 1.0))
    ]
    assert sorted(as_text) == sorted(json.dumps(e, sort_keys=True) for e in expected)
    labels = _labels(space)
    for point in points:
        assert set(point) <= labels
        # the momentum label is present exactly when sgd is chosen
        assert ("opt[0].m" in point) == (point["opt"] == 0)


def test_grid_points_of_lists_and_constants() -> None:
    """Lists of dimensions and constants are enumerated too."""
    space = {"layers": [choice(8, 16), randint(2)], "fixed": "x"}
    points = list(grid_points(space))
    assert points == [
        {"layers[0]": 0, "layers[1]": 0},
        {"layers[0]": 0, "layers[1]": 1},
        {"layers[0]": 1, "layers[1]": 0},
        {"layers[0]": 1, "layers[1]": 1},
    ]


@pytest.mark.parametrize(
    ("space", "name"),
    [
        ({"a": choice(1, 2), "lr": uniform(0, 1)}, "'lr'"),
        ({"opt": {"lr": loguniform(1e-4, 1e-1)}}, "'opt.lr'"),
        ({"opt": choice({"mu": normal(0, 1)}, "adam")}, "'opt[0].mu'"),
    ],
)
def test_grid_of_a_continuous_dimension_names_it(space: dict, name: str) -> None:
    """A grid over a continuous dimension is a ConfigError naming that dimension."""
    with pytest.raises(ConfigError) as info:
        list(grid_points(space))
    assert name in str(info.value)
    assert "continuous" in str(info.value)


def test_grid_of_a_raw_hyperopt_space_is_refused() -> None:
    """A raw Hyperopt expression cannot be enumerated; the error says what to use."""
    with pytest.raises(ConfigError, match="raw Hyperopt expression"):
        list(grid_points({"h": hp.choice("h", [1, 2])}))


def test_grid_values_of_a_continuous_dimension_raise() -> None:
    """Asking a continuous Dimension for its values is a ConfigError."""
    with pytest.raises(ConfigError, match="continuous"):
        Dimension("uniform", (0, 1)).grid_values()


# --- fingerprints ----------------------------------------------------------------------------

_SPACE_SOURCE = (
    "{'lr': loguniform(1e-4, 1e-1), 'opt': choice({'m': uniform(0, 1)}, 'sgd'), "
    "'z': {'k': randint(3)}, 'h': hp.uniform('h', 0, 1)}"
)


def _space_from_source() -> dict:
    scope = {
        "loguniform": loguniform,
        "choice": choice,
        "uniform": uniform,
        "randint": randint,
        "hp": hp,
    }
    return eval(_SPACE_SOURCE, scope)


def test_fingerprint_is_stable_across_builds_and_processes() -> None:
    """The same space gives the same fingerprint, also in another interpreter."""
    here = fingerprint(to_hyperopt(_space_from_source()))
    assert here == fingerprint(to_hyperopt(_space_from_source()))
    code = (
        "from hyperopt import hp\n"
        "from nbopt import loguniform, choice, uniform, randint\n"
        "from nbopt.space import fingerprint, to_hyperopt\n"
        f"print(fingerprint(to_hyperopt({_SPACE_SOURCE})))\n"
    )
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert other == here


@pytest.mark.parametrize(
    "changed",
    [
        {"lr": loguniform(1e-5, 1e-1)},
        {"lr": uniform(1e-4, 1e-1)},
        {"rate": loguniform(1e-4, 1e-1)},
        {"lr": loguniform(1e-4, 1e-1), "extra": choice(1, 2)},
        {"lr": choice(1e-4, 1e-1)},
    ],
)
def test_fingerprint_differs_for_different_spaces(changed: dict) -> None:
    """Changing a bound, a kind, a name or adding a dimension changes the fingerprint."""
    base = fingerprint(to_hyperopt({"lr": loguniform(1e-4, 1e-1)}))
    assert fingerprint(to_hyperopt(changed)) != base
