"""``algo="auto"``: determinism, every space type, no repeats, search quality, the GP's maths."""

from __future__ import annotations

import json
import math
import numbers
import sys

import numpy as np
import pytest
from hyperopt import base, hp
from hypothesis import given, settings
from hypothesis import strategies as st

import nbopt
from nbopt import choice, loguniform, normal, qloguniform, quniform, randint, uniform
from nbopt.space import grid_points, grid_size, to_hyperopt
from nbopt.tuning._algorithms import SearchContext, get_algorithm, vals_key
from nbopt.tuning.gp._model import Embedding, _log_h, _neg_log_posterior
from nbopt.tuning.gp._search import _warp
from nbopt.tuning.gp._space import SpaceTable, row_keys

EVERY_TYPE = {
    "lr": loguniform(1e-5, 1e-1),
    "dropout": uniform(0.0, 0.5),
    "width": quniform(16, 128, 16),
    "half": quniform(0.5, 4.0, 0.5),
    "batch": qloguniform(8, 256, 8),
    "depth": randint(1, 4),
    "shift": normal(0.0, 2.0),
    "act": choice("relu", "tanh"),
    "optim": choice(
        {"name": "sgd", "momentum": uniform(0.5, 0.99), "nesterov": choice(True, False)},
        {"name": "adam", "betas": choice({"b1": uniform(0.8, 0.95)}, {"b1": 0.9})},
        {"name": "rms"},
    ),
}


def tune(objective, space, **options):
    options.setdefault("algo", "auto")
    options.setdefault("progress", "none")
    options.setdefault("logdir", None)
    return nbopt.tune(objective, space, **options)


def every_type_loss(params: dict) -> float:
    """A smooth loss of every parameter of EVERY_TYPE, so the GP has something to model."""
    optim = params["optim"]
    loss = (math.log10(params["lr"]) + 3) ** 2 + (params["dropout"] - 0.1) ** 2
    loss += ((params["width"] - 64) / 64) ** 2 + (params["half"] - 2) ** 2 / 4
    loss += math.log2(max(params["batch"], 1) / 32) ** 2 / 10 + (params["depth"] - 2) ** 2
    loss += params["shift"] ** 2 / 10 + (params["act"] == "tanh")
    if optim["name"] == "sgd":
        loss += (optim["momentum"] - 0.9) ** 2 + 0.5 * optim["nesterov"]
    elif optim["name"] == "adam":
        loss += (optim["betas"]["b1"] - 0.9) ** 2
    else:
        loss += 1.0
    return loss


def drive(space, budget: int, *, seed: int = 0, loss=None) -> list[dict]:
    """Call auto's suggest directly, as the search loop does but with no duplicate filter.

    Returns each suggested configuration (Hyperopt's encoding), until the budget or until the
    algorithm has nothing new to suggest.
    """
    domain = base.Domain(lambda params: 0.0, to_hyperopt(space))
    suggest = get_algorithm("auto").build(SearchContext(space, budget))
    trials = base.Trials()
    rng = np.random.default_rng(seed)
    suggested = []
    for _ in range(budget):
        docs = suggest(trials.new_trial_ids(1), domain, trials, int(rng.integers(2**31 - 1)))
        if not docs:
            break
        vals = base.spec_from_misc(docs[0]["misc"])
        suggested.append(vals)
        finish(trials, docs[0], loss(vals) if loss else float(sum(vals.values())))
    return suggested


def finish(trials, doc: dict, loss: float) -> None:
    """Record a suggested trial as done with ``loss``, as the search loop does."""
    doc["result"] = {"status": base.STATUS_OK, "loss": loss}
    doc["state"] = base.JOB_STATE_DONE
    trials.insert_trial_docs([doc])
    trials.refresh()


def branin(x1: float, x2: float) -> float:
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


# --- through nbopt.tune ----------------------------------------------------------------------


def test_same_seed_same_trials_and_another_seed_other_trials() -> None:
    """Two runs with one seed propose the same configurations, past the initial design too."""
    first = tune(every_type_loss, EVERY_TYPE, max_evals=16, seed=7)
    again = tune(every_type_loss, EVERY_TYPE, max_evals=16, seed=7)
    other = tune(every_type_loss, EVERY_TYPE, max_evals=16, seed=8)
    params = [json.dumps(t.params, sort_keys=True) for t in first.trials]
    assert params == [json.dumps(t.params, sort_keys=True) for t in again.trials]
    assert params != [json.dumps(t.params, sort_keys=True) for t in other.trials]


def test_every_space_type_is_respected() -> None:
    """Bounds, integrality, steps, choices and conditional parameters hold for every trial."""
    result = tune(every_type_loss, EVERY_TYPE, max_evals=30, seed=1)
    assert len(result.trials) == 30 and all(t.status == "ok" for t in result.trials)
    names = set()
    for trial in result.trials:
        p = trial.params
        # Exactly: Hyperopt keeps log(0.1), whose exp is 0.10000000000000002.
        assert 1e-5 <= p["lr"] <= 1e-1
        assert 0.0 <= p["dropout"] <= 0.5
        assert isinstance(p["width"], int) and p["width"] % 16 == 0 and 16 <= p["width"] <= 128
        assert p["half"] % 0.5 == 0 and 0.5 <= p["half"] <= 4.0
        assert isinstance(p["batch"], int) and p["batch"] % 8 == 0 and 8 <= p["batch"] <= 256
        assert isinstance(p["depth"], int) and p["depth"] in (1, 2, 3)
        assert math.isfinite(p["shift"]) and p["act"] in ("relu", "tanh")
        optim = p["optim"]
        names.add(optim["name"])
        keys = {"sgd": {"name", "momentum", "nesterov"}, "adam": {"name", "betas"}}
        assert set(optim) == keys.get(optim["name"], {"name"})
        if optim["name"] == "sgd":
            assert 0.5 <= optim["momentum"] <= 0.99 and optim["nesterov"] in (True, False)
        if optim["name"] == "adam":
            assert optim["betas"]["b1"] == 0.9 or 0.8 <= optim["betas"]["b1"] <= 0.95
        # Hyperopt's encoding holds exactly the active labels of the chosen branches.
        sgd, adam = trial.vals["optim"] == 0, trial.vals["optim"] == 1
        assert ("optim[0].momentum" in trial.vals) == sgd
        assert ("optim[1].betas" in trial.vals) == adam
        adam_b1 = adam and trial.vals["optim[1].betas"] == 0
        assert ("optim[1].betas[0].b1" in trial.vals) == adam_b1
    assert names == {"sgd", "adam", "rms"}
    # The GP phase learnt something: the best of the last half beats the initial design's.
    first = min(t.value for t in result.trials[:10])
    assert min(t.value for t in result.trials[10:]) < first


def test_a_raw_hyperopt_space_with_every_distribution() -> None:
    """hp.* nodes nbopt has no function for (pchoice, qnormal, lognormal ...) work as well."""
    space = {
        "p": hp.pchoice("p", [(0.2, "a"), (0.8, "b")]),
        "qn": hp.qnormal("qn", 0.0, 3.0, 0.5),
        "ln": hp.lognormal("ln", 0.0, 1.0),
        "qln": hp.qlognormal("qln", 1.0, 0.5, 2.0),
        "r": hp.randint("r", 5),
        "ui": hp.uniformint("ui", 1, 9),
        "u": hp.uniform("u", -1.0, 1.0),
    }

    def loss(params):
        return (params["u"] - 0.3) ** 2 + (params["p"] == "a") + abs(params["qn"]) / 10

    for trial in tune(loss, space, max_evals=14, seed=0).trials:
        p = trial.params
        assert p["p"] in ("a", "b") and p["qn"] % 0.5 == 0 and p["ln"] > 0
        assert p["qln"] % 2.0 == 0 and p["qln"] >= 0 and -1 <= p["u"] <= 1
        assert p["r"] in range(5) and p["ui"] in range(1, 10) and isinstance(p["ui"], int)


def test_a_node_auto_cannot_search_is_a_config_error_before_any_trial() -> None:
    from hyperopt.pyll import scope

    calls = []
    space = {"x": scope.hyperopt_param("x", scope.randint_via_categorical([0.5, 0.5]))}
    with pytest.raises(nbopt.ConfigError, match=r"algo=auto cannot search 'x'.*algo=tpe"):
        tune(lambda x: calls.append(x) or 0.0, space, max_evals=3)
    assert calls == []


def test_maximising_and_failed_trials() -> None:
    """mode=max climbs, and failed trials (exceptions, NaN) neither stop nor mislead it."""

    def objective(x):
        if x < -1.5:
            raise ValueError("diverged")
        if x > 2.5:
            return math.nan
        return -((x - 1.0) ** 2)

    result = tune(objective, {"x": uniform(-3, 3)}, max_evals=20, seed=0, mode="max")
    assert len(result.trials) == 20
    assert any(t.status == "failed" for t in result.trials)
    assert abs(result.best_params["x"] - 1.0) < 0.05


def test_when_every_early_trial_fails_it_keeps_exploring() -> None:
    """Past the initial design with no value to model, it goes on with new random points."""

    def objective(x):
        if x < 0.8:
            raise RuntimeError("out of memory")
        return x

    result = tune(objective, {"x": uniform(0, 1)}, max_evals=25, seed=0)
    xs = [t.params["x"] for t in result.trials]
    assert len(set(xs)) == 25 and result.best_value >= 0.8
    assert sum(t.status == "ok" for t in result.trials) >= 2


def test_a_resumed_study_continues_without_repeating(tmp_path) -> None:
    """A study continued with auto proposes configurations the first session did not try."""
    study = tmp_path / "auto.json"
    space = {"a": randint(0, 6), "b": choice("x", "y", "z"), "c": quniform(0, 1, 0.25)}

    def loss(a, b, c):
        return (a - 3) ** 2 + (b == "y") + c

    tune(loss, space, max_evals=10, seed=0, study=study)
    result = tune(loss, space, max_evals=25, seed=0, study=study)
    keys = [json.dumps(t.params, sort_keys=True) for t in result.trials]
    assert len(keys) == 25 and len(set(keys)) == 25


def test_timeout_only() -> None:
    """Without max_evals (a timeout only), auto works with no budget to plan for."""
    result = tune(lambda x: (x - 0.2) ** 2, {"x": uniform(-1, 1)}, timeout=1.5, seed=0)
    assert len(result.trials) >= 8
    assert result.best_value < 0.01


# --- any finite loss -------------------------------------------------------------------------

HUGE = sys.float_info.max


def in_gp_phase(result, inside) -> float:
    """The share of the trials after the first 10 (past the initial design) where ``inside``."""
    return float(np.mean([inside(t.params) for t in result.trials[10:]]))


def test_the_largest_float_as_a_diverged_penalty_is_avoided() -> None:
    """Half the space returns sys.float_info.max: the search completes its budget, proposes
    mostly in the other half, and finds the optimum there."""

    def loss(x, y):
        return HUGE if x > 0.5 else (x - 0.2) ** 2 + (y - 0.6) ** 2

    result = tune(loss, {"x": uniform(0, 1), "y": uniform(0, 1)}, max_evals=30, seed=0)
    assert len(result.trials) == 30 and all(t.status == "ok" for t in result.trials)
    assert any(t.value == HUGE for t in result.trials)
    assert result.best_value < 1e-3
    assert in_gp_phase(result, lambda p: p["x"] <= 0.5) >= 2 / 3


def test_minus_1e308_marks_the_region_it_exploits() -> None:
    """A region returning -1e308 (the best loss) is found and then searched mostly there,
    though everywhere else the losses are ordinary numbers."""

    def loss(x, y):
        return -1e308 if abs(x - 0.7) < 0.1 else (x - 0.2) ** 2 + y

    result = tune(loss, {"x": uniform(0, 1), "y": uniform(0, 1)}, max_evals=30, seed=0)
    assert len(result.trials) == 30 and all(t.status == "ok" for t in result.trials)
    assert result.best_value == -1e308
    assert in_gp_phase(result, lambda p: abs(p["x"] - 0.7) < 0.1) >= 0.5


def test_losses_from_1e_300_to_1e300_are_ordered_by_magnitude() -> None:
    """Losses spanning 600 orders of magnitude: the search finds the tiny ones."""

    def loss(x, y):
        return 10.0 ** (600 * (y - 0.5)) * (1 + (x - 0.3) ** 2)

    result = tune(loss, {"x": uniform(0, 1), "y": uniform(0, 1)}, max_evals=30, seed=0)
    assert len(result.trials) == 30 and all(t.status == "ok" for t in result.trials)
    assert result.best_value < 1e-290


@pytest.mark.parametrize("mode", ["min", "max"])
def test_a_mixture_of_extreme_losses_of_both_signs(mode: str) -> None:
    """Bands of +-max, +-1e-300, 0, 1e300 and the smallest subnormal (negated for mode=max):
    every trial runs and the search ends in the band of the best loss."""
    bands = [HUGE, -HUGE, 1e-300, -1e-300, 0.0, 1e300, 5e-324]
    sign = 1.0 if mode == "min" else -1.0

    def objective(band, x):
        return sign * bands[band] / 2 * (1 + x)

    space = {"band": randint(0, len(bands)), "x": uniform(0, 1)}
    result = tune(objective, space, max_evals=25, seed=3, mode=mode)
    assert len(result.trials) == 25 and all(t.status == "ok" for t in result.trials)
    assert result.best_params["band"] == 1
    assert sign * result.best_value < -0.9 * HUGE


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.just(math.nan)),
        min_size=2,
        max_size=40,
    ).filter(lambda losses: any(not math.isnan(v) for v in losses))
)
def test_the_warp_of_any_finite_losses_is_finite_and_keeps_their_order(losses) -> None:
    """No overflow, no NaN, order kept, failed trials (NaN) as the worst."""
    losses = np.array(losses)
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        y = _warp(losses)
    assert np.all(np.isfinite(y)) and np.all(np.abs(y) < 10)
    usable = ~np.isnan(losses)
    order = np.argsort(losses[usable], kind="stable")
    assert np.all(np.diff(y[usable][order]) >= 0)
    assert np.all(y[~usable] >= y[usable].max())


def test_the_warp_is_linear_up_to_the_median_and_capped_above_it() -> None:
    losses = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 50.0, 1e9])
    y = _warp(losses)
    steps = np.diff(y[:4])
    assert np.allclose(steps, steps[0])  # the good half keeps its shape
    assert (y[3] - y[0]) / (y[-1] - y[0]) > 0.1  # and is not flattened by the huge loss
    assert np.array_equal(_warp(np.r_[losses[:-1], HUGE]), y)  # beyond the cap, all alike


@pytest.fixture
def shell(tmp_path, monkeypatch):
    """The in-process IPython shell with nbopt loaded, working in a temporary directory."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    monkeypatch.chdir(tmp_path)
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    ip = InteractiveShell.instance(config=config)
    ip.run_cell("%load_ext nbopt").raise_error()
    return ip


def test_the_tune_magic_takes_algo_auto(shell) -> None:
    """``%tune ... algo=auto`` runs the search and stores its result."""
    shell.user_ns["loss"] = lambda x, n: (x - 0.5) ** 2 + n
    cell = shell.run_cell(
        "%tune loss x=uniform(-2, 2) n=randint(0, 3) algo=auto max_evals=9 seed=0 "
        "progress=none logdir=none"
    )
    cell.raise_error()
    result = cell.result
    assert result.algo == "auto" and len(result.trials) == 9
    assert shell.user_ns["_nbopt"] is result and result.best_params["n"] == 0


def test_branin_regret_below_0_1_in_100_evaluations() -> None:
    """Search quality on a fixed seed (Hyperopt's TPE: median 0.25, Optuna's TPE: 0.019)."""
    space = {"x1": uniform(-5, 10), "x2": uniform(0, 15)}
    result = tune(branin, space, max_evals=100, seed=0)
    assert result.best_value - 0.397887 < 0.1


# --- the suggest function alone --------------------------------------------------------------


SMALL_DISCRETE = {
    "small": {"depth": randint(1, 4), "act": choice("relu", "tanh"), "w": quniform(0, 1, 0.5)},
    "nested": {
        "model": choice(
            {"kind": "tree", "depth": randint(2, 5)},
            {"kind": "net", "layers": choice(1, 2), "norm": choice({"eps": choice(1e-5, 1e-3)}, 0)},
        ),
        "bs": choice(32, 64),
    },
}


@pytest.mark.parametrize("name", sorted(SMALL_DISCRETE))
def test_no_repeat_on_a_small_discrete_space_until_it_is_exhausted(name: str) -> None:
    """Every suggestion is new; after the last configuration the algorithm suggests nothing."""
    space = SMALL_DISCRETE[name]
    size = grid_size(space)
    suggested = drive(space, size + 5)
    keys = [vals_key(vals) for vals in suggested]
    assert len(keys) == size and len(set(keys)) == size
    assert set(keys) == {vals_key(point) for point in grid_points(space)}


def test_no_repeat_on_a_raw_hyperopt_discrete_space() -> None:
    """A raw Hyperopt space is enumerated too, with its conditional labels."""
    space = hp.choice("m", [{"k": hp.randint("k", 3)}, {"q": hp.quniform("q", 0, 2, 1)}, 5])
    suggested = drive(space, 12)
    assert len(suggested) == 7
    assert len({vals_key(vals) for vals in suggested}) == 7


def test_no_repeat_on_a_large_discrete_space_in_the_gp_phase() -> None:
    """Beyond the exhaustive limit the GP's candidates are filtered against every trial."""
    space = {"a": randint(0, 20), "b": randint(0, 20), "c": randint(0, 20)}  # 8000
    suggested = drive(space, 40, loss=lambda v: (v["a"] - 3) ** 2 + (v["b"] - 3) ** 2 + v["c"])
    assert len({vals_key(vals) for vals in suggested}) == 40


def test_proposals_asked_before_trials_finish_are_spread_out() -> None:
    """A parallel backend asks again before trials end; the model assumes the pending ones
    done, so the proposals do not pile up on one point."""
    space = {"x": uniform(-5, 10), "y": uniform(0, 15)}
    domain = base.Domain(lambda params: 0.0, to_hyperopt(space))
    suggest = get_algorithm("auto").build(SearchContext(space, 40))
    trials = base.Trials()
    for seed in range(12):
        (doc,) = suggest(trials.new_trial_ids(1), domain, trials, seed)
        vals = base.spec_from_misc(doc["misc"])
        finish(trials, doc, branin(vals["x"], vals["y"]))
    points = []
    for seed in range(4):  # four running trials: none finished
        (doc,) = suggest(trials.new_trial_ids(1), domain, trials, 100 + seed)
        vals = base.spec_from_misc(doc["misc"])
        points.append((vals["x"] / 15, vals["y"] / 15))
    gaps = [math.dist(a, b) for i, a in enumerate(points) for b in points[i + 1 :]]
    assert min(gaps) > 0.005  # without the pending ones they land within 1e-4


def test_more_proposals_running_than_the_initial_design_has_points() -> None:
    """Asked 12 times before any trial ends: the Sobol points, then new random ones."""
    space = {"x": uniform(0, 1), "k": randint(0, 3)}
    domain = base.Domain(lambda params: 0.0, to_hyperopt(space))
    suggest = get_algorithm("auto").build(SearchContext(space, 40))
    trials = base.Trials()
    keys = set()
    for seed in range(12):
        (doc,) = suggest(trials.new_trial_ids(1), domain, trials, seed)
        keys.add(vals_key(base.spec_from_misc(doc["misc"])))
    assert len(keys) == 12


def test_auto_is_registered_with_its_summary() -> None:
    """``%tune?`` and the unknown-algo error list it with the others."""
    algorithm = get_algorithm("auto")
    assert algorithm.name == "auto" and "Gaussian" in algorithm.summary


# --- the space table -------------------------------------------------------------------------


def _discrete_dimension():
    return st.one_of(
        st.integers(1, 4).map(lambda n: randint(0, n)),
        st.integers(1, 3).map(lambda n: choice(*range(n))),
        st.sampled_from([quniform(0, 2, 1), quniform(1, 2, 0.5), qloguniform(1, 8, 2)]),
    )


_spaces = st.recursive(
    st.dictionaries(st.sampled_from("abc"), _discrete_dimension(), min_size=1, max_size=3),
    lambda inner: st.dictionaries(
        st.sampled_from("xyz"),
        st.one_of(_discrete_dimension(), st.lists(inner, min_size=1, max_size=3).map(choice)),
        min_size=1,
        max_size=2,
    ),
    max_leaves=5,
)


@settings(max_examples=60, deadline=None)
@given(_spaces)
def test_enumeration_matches_nbopt_grid(space) -> None:
    """The table enumerates exactly nbopt's grid of a discrete space, nested choices included;
    a space larger than the limit is not enumerated."""
    table = SpaceTable.from_domain(base.Domain(lambda p: 0, to_hyperopt(space)))
    rows = table.enumerate(300)
    if grid_size(space) > 300:
        assert rows is None
        return
    found = sorted(vals_key(table.configuration(row)) for row in rows)
    assert found == sorted(vals_key(point) for point in grid_points(space))
    assert len(set(row_keys(rows))) == len(rows)


def test_loguniform_bounds_are_the_users_though_hyperopt_keeps_their_logs() -> None:
    table = SpaceTable.from_domain(base.Domain(lambda p: 0, to_hyperopt(EVERY_TYPE)))
    (column,) = [c for c in table.columns if c.label == "lr"]
    assert list(column.from_unit(np.array([0.0, 1.0]))) == [1e-5, 1e-1]
    raw = SpaceTable.from_domain(base.Domain(lambda p: 0, {"x": hp.loguniform("x", -1.5, 0.7)}))
    low, high = raw.columns[0].exp_bounds  # raw log bounds: exp of them, to rounding
    assert low == pytest.approx(math.exp(-1.5), rel=1e-14)
    assert high == pytest.approx(math.exp(0.7), rel=1e-14)


def test_choices_of_ordered_numbers_are_ordinal_and_others_categorical() -> None:
    space = {
        "batch": choice(16, 32, 64, 128),
        "down": choice(0.5, 0.1, 0.01),
        "shuffled": choice(3, 1, 2),
        "names": choice("a", "b", "c"),
        "two": choice(1, 2),
    }
    table = SpaceTable.from_domain(base.Domain(lambda p: 0, to_hyperopt(space)))
    categorical = dict(zip([c.label for c in table.columns], table.categorical, strict=True))
    assert categorical == {
        "batch": False,
        "down": False,
        "shuffled": True,
        "names": True,
        "two": True,
    }


def test_encoding_round_trips_and_snaps_to_valid_values() -> None:
    """Configurations survive encode -> configuration (continuous values to rounding error);
    random rows snap to valid values."""
    table = SpaceTable.from_domain(base.Domain(lambda p: 0, to_hyperopt(EVERY_TYPE)))
    rng = np.random.default_rng(0)
    rows = table.snap(table.draw(rng, 200))
    for row in rows:
        vals = table.configuration(row)
        again = table.configuration(table.encode([vals])[0])
        assert again.keys() == vals.keys()
        for label, value in vals.items():
            assert again[label] == pytest.approx(value, rel=1e-9)
            assert type(again[label]) is type(value)
        assert vals["width"] in range(16, 129, 16) and vals["depth"] in (1, 2, 3)
        assert isinstance(vals["optim"], int) and isinstance(vals["depth"], int)
    numeric = rows[:, ~table.categorical]
    assert np.all((numeric[~np.isnan(numeric)] >= 0) & (numeric[~np.isnan(numeric)] <= 1))
    indices = rows[:, table.categorical]
    assert np.all(indices[~np.isnan(indices)] % 1 == 0)


# --- the GP's maths --------------------------------------------------------------------------


def test_log_expected_improvement_factor_is_accurate_and_finite() -> None:
    """log(z Phi(z) + phi(z)) matches the direct formula and stays finite where it underflows."""
    from scipy.stats import norm

    z = np.linspace(-30, 5, 200)
    direct = np.log(z * norm.cdf(z) + norm.pdf(z))
    fine = np.isfinite(direct) & (z > -20)
    assert np.allclose(_log_h(z)[fine], direct[fine], rtol=1e-6, atol=1e-9)
    far = _log_h(np.array([-40.0, -1e3]))
    assert np.all(np.isfinite(far)) and far[1] < far[0]


def test_marginal_likelihood_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(0)
    units = rng.random((25, 3))
    units[:, 2] = rng.integers(0, 3, 25)
    units[:6, 1] = np.nan  # an inactive conditional label
    embedding = Embedding([0, 0, 3])
    distances = embedding.squared_distances(units).reshape(3, -1)
    y = rng.standard_normal(25)
    theta = np.array([-0.7, 0.3, 0.1, 0.2, -4.0])
    _, grad = _neg_log_posterior(theta, distances, y, embedding)
    step = 1e-6
    numeric = [
        (
            _neg_log_posterior(theta + e, distances, y, embedding)[0]
            - _neg_log_posterior(theta - e, distances, y, embedding)[0]
        )
        / (2 * step)
        for e in np.eye(len(theta)) * step
    ]
    assert np.allclose(grad, numeric, rtol=1e-4, atol=1e-5)


def test_integral_values_are_ints_for_the_user() -> None:
    """quniform/randint with integer bounds reach the objective as ints under auto too."""
    seen = []

    def objective(width, depth):
        seen.append((width, depth))
        return width / 100 + depth

    tune(objective, {"width": quniform(16, 64, 16), "depth": randint(1, 3)}, max_evals=8, seed=0)
    assert len(seen) == 8
    assert all(isinstance(w, numbers.Integral) and isinstance(d, numbers.Integral) for w, d in seen)
