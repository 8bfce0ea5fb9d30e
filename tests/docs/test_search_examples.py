"""The worked examples of the search pages, against independent computations and nbopt itself."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.stats import binom, gaussian_kde, norm
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern

import nbopt
from nbopt.space import grid_size


def test_random_search_odds_are_those_of_the_binomial_distribution(page):
    example = page("methods/random-and-grid.md")["random"]
    p, n = example["p"], example["n"]
    assert example["hit"] == pytest.approx(binom.sf(0, n, p), rel=1e-12)
    smallest = next(m for m in itertools.count(1) if binom.sf(0, m, p) >= 0.95)
    assert example["needed"] == smallest


def test_grid_size_is_the_number_of_combinations_and_nbopts(page):
    example = page("methods/random-and-grid.md")["random"]
    k, d = example["k"], example["d"]
    assert example["grid_trials"] == len(list(itertools.product(range(k), repeat=d)))
    space = {f"x{i}": nbopt.choice(*range(k)) for i in range(d)}
    assert grid_size(space) == example["grid_trials"]


def test_grid_search_runs_every_combination_by_default():
    space = {"a": nbopt.choice(1, 2, 3), "b": nbopt.randint(0, 4)}
    result = nbopt.tune(lambda a, b: a * b, space, algo="grid", progress="none", logdir=None)
    assert len(result.trials) == 3 * 4
    assert {(t.params["a"], t.params["b"]) for t in result.trials} == set(
        itertools.product((1, 2, 3), range(4))
    )


def _scikit_learn_posterior(example, x):
    kernel = ConstantKernel(1.0, "fixed") * Matern(
        length_scale=0.5, length_scale_bounds="fixed", nu=2.5
    )
    model = GaussianProcessRegressor(kernel, alpha=example["noise"], optimizer=None)
    model.fit(example["x_seen"][:, None], example["y_seen"])
    return model.predict(np.asarray(x)[:, None], return_std=True)


def _improvement_by_integration(best, mean, sd):
    """E[max(best - f, 0)] for f ~ N(mean, sd^2), by quadrature."""
    value, _ = quad(lambda f: (best - f) * norm.pdf(f, mean, sd), mean - 12 * sd, best)
    return value


def test_gp_posterior_matches_scikit_learn(page):
    example = page("methods/bayesian-optimisation.md")["gp"]
    mean, sd = _scikit_learn_posterior(example, [0.0])
    assert example["mean_0"][0] == pytest.approx(mean[0], abs=1e-6)
    assert example["sd_0"][0] == pytest.approx(sd[0], abs=1e-6)


def test_expected_improvement_closed_form_matches_integration(page):
    example = page("methods/bayesian-optimisation.md")["gp"]
    best = example["y_seen"].min()
    mean, sd = _scikit_learn_posterior(example, [0.0])
    assert example["ei_0"] == pytest.approx(
        _improvement_by_integration(best, mean[0], sd[0]), rel=1e-5
    )
    grid = example["grid"]
    means, sds = _scikit_learn_posterior(example, grid)
    integrated = [_improvement_by_integration(best, m, s) for m, s in zip(means, sds, strict=True)]
    assert example["next_x"] == grid[int(np.argmax(integrated))]


def test_tpe_densities_match_scipy_kernel_density(page):
    example = page("methods/tpe.md")["tpe"]
    x_seen, y_seen = example["x_seen"], example["y_seen"]
    best_quarter = x_seen[np.argsort(y_seen)[: int(np.ceil(0.25 * len(y_seen)))]]
    assert set(example["good"]) == set(best_quarter)
    good, bad, bandwidth = example["good"], example["bad"], example["bandwidth"]
    # gaussian_kde's bandwidth is its factor times the data's standard deviation.
    l_density = gaussian_kde(good, bw_method=bandwidth / good.std(ddof=1))
    g_density = gaussian_kde(bad, bw_method=bandwidth / bad.std(ddof=1))
    assert example["at_half"] == pytest.approx(l_density(0.5)[0] / g_density(0.5)[0], rel=1e-9)
    candidates = example["candidates"]
    ratio = l_density(candidates) / g_density(candidates)
    assert example["candidates"][np.argmax(example["ratio"])] == candidates[np.argmax(ratio)]


def test_tpe_expected_improvement_identity():
    """EI = C / (gamma + (1 - gamma) g/l) on a joint distribution built as TPE models it."""
    rng = np.random.default_rng(0)
    losses = np.linspace(0.0, 1.0, 200)
    p_loss = rng.random(200)
    p_loss /= p_loss.sum()
    threshold = 0.3
    below = losses < threshold
    gamma = p_loss[below].sum()
    good, bad = rng.random(50), rng.random(50)
    good, bad = good / good.sum(), bad / bad.sum()
    joint = np.where(below[None, :], good[:, None], bad[:, None]) * p_loss[None, :]
    improvement = np.maximum(threshold - losses, 0.0)
    expected = (joint * improvement).sum(1) / joint.sum(1)
    constant = (improvement * p_loss).sum()
    assert expected == pytest.approx(constant / (gamma + (1 - gamma) * bad / good), rel=1e-12)


def _curves_search(curves, **options):
    """A grid search whose trial i reports ``curves[i]``, one value per step."""

    def objective(curve):
        for step, value in enumerate(curves[curve]):
            nbopt.report(step, value)
        return curves[curve][-1]

    return nbopt.tune(
        objective,
        {"curve": nbopt.choice(*range(len(curves)))},
        algo="grid",
        progress="none",
        logdir=None,
        **options,
    )


def test_median_rule_stops_where_nbopt_stops(page):
    example = page("methods/early-stopping.md")["stopping"]
    curves = [*example["finished"].tolist(), example["running"]]
    result = _curves_search(curves, stop="median")
    assert [t.params["curve"] for t in result.trials] == list(range(len(curves)))
    assert [t.status for t in result.trials] == ["ok"] * 5 + ["stopped"]
    assert result.trials[-1].intermediate[-1][0] == example["stop_step"]


def test_successive_halving_budget_matches_a_simulation(page):
    example = page("methods/early-stopping.md")["stopping"]
    n, eta, r, rungs = example["n"], example["eta"], example["r"], example["K"]
    quality = np.random.default_rng(0).random(n)
    alive, trained, steps = list(range(n)), [0] * n, 0
    for k in range(rungs):
        for config in alive:
            while trained[config] < r * eta**k:
                trained[config] += 1
                steps += 1
        alive = sorted(alive, key=quality.__getitem__)[: len(alive) // eta]
    assert example["budget"] == steps == example["closed_form"]
    assert example["full"] == n * r * eta ** (rungs - 1)


@pytest.mark.parametrize("shift", [0.0, -0.02])
def test_asha_cutoff_is_the_one_nbopt_applies(page, shift):
    example = page("methods/early-stopping.md")["stopping"]
    value = example["new_value"] + shift
    curves = [[1.0, v, v] for v in [*example["earlier_at_rung"], value]]
    result = _curves_search(curves, stop="asha", rung=1)
    statuses = [t.status for t in result.trials]
    assert statuses[:3] == ["ok"] * 3
    assert statuses[3] == ("stopped" if value > example["cutoff"] else "ok")
    if shift == 0.0:
        assert example["asha_stops"] and statuses[3] == "stopped"
