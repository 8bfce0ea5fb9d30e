"""The suggestion rules on curves whose answer is known."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from nbopt.errors import ConfigError
from nbopt.learning_rate import RULES
from nbopt.learning_rate._rules import (
    centered,
    check_rule,
    ema,
    median_curve,
    minimum,
    minimum_centered,
    steep,
    steepest,
    suggest,
    valley,
)

RATES = np.logspace(-6, 1, 100)
DECADES = np.log10(RATES)


def _dip(lowest_at: float = -1.0) -> np.ndarray:
    """A loss that falls smoothly (tanh) around a decade before ``lowest_at`` and shoots up
    after it: the shape of a range test."""
    fall = 1 - np.tanh((DECADES - (lowest_at - 1)) * 2)
    rise = np.clip(DECADES - lowest_at, 0, None) * 20
    return 1 + fall + rise**2


def test_ema_is_the_debiased_moving_average() -> None:
    losses = [2.0, 4.0, 1.0]
    expected, average = [], 0.0
    for index, loss in enumerate(losses):
        average = 0.98 * average + 0.02 * loss
        expected.append(average / (1 - 0.98 ** (index + 1)))
    assert ema(losses) == pytest.approx(expected)
    assert ema([3.0] * 10) == pytest.approx([3.0] * 10)  # debiased: no start at zero


def test_centered_smoothing_has_no_lag_and_drops_single_spikes() -> None:
    symmetric = 2 - np.exp(-(((DECADES + 1) / 0.5) ** 2))  # lowest at 1e-1
    assert abs(DECADES[np.argmin(centered(RATES, symmetric))] + 1) <= 0.05
    assert DECADES[np.argmin(ema(symmetric))] + 1 > 0.4  # the moving average lags
    curve = _dip()
    smoothed = centered(RATES, curve)
    spiked = curve.copy()
    spiked[40] -= 5
    assert np.abs(centered(RATES, spiked) - smoothed).max() < 0.05


def test_each_rule_on_a_clean_curve() -> None:
    curve = _dip(lowest_at=-1.0)
    lowest = RATES[np.argmin(centered(RATES, curve))]
    assert minimum_centered(RATES, curve) == pytest.approx(lowest / 5)
    fastai_lowest = RATES[10:-5][np.argmin(ema(curve)[10:-5])]
    assert minimum(RATES, curve) == pytest.approx(fastai_lowest / 10)
    # The steepest fall of the curve is at its tanh's centre, 1e-2; the moving average lags.
    assert 1e-2 <= steep(RATES, curve) <= 1e0
    assert 1e-2 <= steepest(RATES, curve) <= 1e0
    assert 1e-4 <= valley(RATES, curve) < fastai_lowest


def test_valley_is_half_way_along_the_longest_decreasing_subsequence() -> None:
    rng = np.random.default_rng(0)
    losses = np.concatenate([rng.normal(5, 0.01, 20), np.linspace(5, 1, 40), np.linspace(1, 9, 40)])
    rates, smoothed = RATES[10:-5], ema(losses)[10:-5]
    best: tuple[int, int] = (1, 0)  # (length, end) of the longest decreasing subsequence
    lengths = [1] * len(smoothed)
    for i, j in itertools.product(range(len(smoothed)), repeat=2):
        if j < i and smoothed[j] > smoothed[i]:
            lengths[i] = max(lengths[i], lengths[j] + 1)
    for i, length in enumerate(lengths):
        if length > best[0]:
            best = (length, i)
    length, end = best
    start = end - length
    expected = rates[start + int((end - start) / 3) + int((end - start) / 6)]
    assert valley(RATES, losses) == pytest.approx(expected)


def test_on_a_noisy_curve_the_centered_minimum_moves_least() -> None:
    """Over 30 draws of minibatch noise, the centered minimum's suggestion stays within a
    factor of 2 of the noiseless one, while the steepest point of Lightning jumps around."""
    clean = _dip(lowest_at=-1.0)
    reference = minimum_centered(RATES, clean)
    rng = np.random.default_rng(1)
    ours, lightning = [], []
    for _ in range(30):
        noisy = clean * rng.lognormal(0, 0.15, len(clean))
        ours.append(minimum_centered(RATES, noisy))
        lightning.append(steepest(RATES, noisy))
    spread = np.log10(np.max(ours) / np.min(ours))
    assert all(reference / 2 <= rate <= 2 * reference for rate in ours)
    assert np.log10(np.max(lightning) / np.min(lightning)) > 2 * spread


def test_no_suggestion_when_the_loss_never_falls() -> None:
    rising = np.linspace(1, 3, 100)
    assert minimum_centered(RATES, rising) is None
    assert suggest("minimum_centered", RATES[:3], rising[:3]) is None


def test_a_curve_is_cut_at_its_first_non_finite_loss() -> None:
    curve = _dip(lowest_at=-1.0)
    broken = curve.copy()
    broken[60:] = np.nan
    assert suggest("minimum", RATES, broken) == minimum(RATES[:60], curve[:60])


def test_median_curve_stops_where_half_the_sweeps_had_diverged() -> None:
    curves = [[3.0, 2.0, 1.0, 0.5], [3.2, 2.2, 1.2], [2.8, 1.8]]
    median = median_curve(curves)
    assert list(median) == [3.0, 2.0, 1.2]  # at step 4, two of three sweeps had stopped
    assert list(median_curve([[1.0, 2.0], [3.0, 4.0]])) == [2.0, 3.0]


def test_unknown_rules_are_named_with_the_known_ones() -> None:
    assert check_rule("valley") == "valley"
    with pytest.raises(ConfigError, match=r"unknown rule 'steepst' \(did you mean steepest\?\)"):
        check_rule("steepst")
    assert set(RULES) == {"minimum_centered", "valley", "minimum", "steep", "steepest"}


def test_the_magic_offers_every_rule() -> None:
    from nbopt.magics import lr_find

    assert set(lr_find.RULES) == set(RULES) and lr_find.RULES[0] == "minimum_centered"
