"""``mode="efficient"``: the gradient noise scale, the predicted time to a given loss, the
scaled learning rate, and which mode runs when none is asked for."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from nbopt.batching import NoiseScale, find_batch_size
from nbopt.batching._efficient import (
    efficient_size,
    predicted_times,
    scaled_learning_rate,
)
from nbopt.batching._noise import GROUP, SMALL_BATCH, measure_groups, noise_scale
from nbopt.batching._result import BatchMeasurement
from nbopt.batching.events import NoiseScaleMeasured
from nbopt.errors import ConfigError
from nbopt.events import Event

QUIET = {"progress": "none", "logdir": None}
cross_entropy = torch.nn.functional.cross_entropy


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    data = load_digits()
    return torch.tensor(data.data / 16.0, dtype=torch.float32), torch.tensor(data.target)


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(64, 64),
        torch.nn.BatchNorm1d(64),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.1),
        torch.nn.Linear(64, 10),
    )


def test_the_noise_scale_of_least_squares_matches_its_definition() -> None:
    """On a linear model with a squared loss, per-sample gradients are known in closed form:
    tr(Σ) / |G|² computed from them is what the two-batch estimate must find."""
    torch.manual_seed(0)
    rows, features = 4096, 10
    x = torch.randn(rows, features)
    y = x @ torch.randn(features, 1) + 0.5 * torch.randn(rows, 1)
    model = torch.nn.Linear(features, 1, bias=False)
    with torch.no_grad():
        residual = model(x) - y
    per_sample = (2 * residual * x).double()  # the gradient of (x·w - y)² for each sample
    mean = per_sample.mean(dim=0)
    exact = float(((per_sample - mean) ** 2).sum(dim=1).mean() / (mean @ mean))
    groups = measure_groups(model, torch.nn.functional.mse_loss, x, y, rows, seed=0)
    assert len(groups.small) == rows // (SMALL_BATCH * GROUP)
    estimate = noise_scale([groups], steps=0, seed=0)
    assert estimate.value == pytest.approx(exact, rel=0.25)
    assert estimate.low <= estimate.value <= estimate.high
    assert estimate.gradient_norm == pytest.approx(float(mean @ mean), rel=0.25)
    pooled = noise_scale([groups, groups], steps=5, seed=0)
    assert pooled.value == pytest.approx(estimate.value) and pooled.pooled == 2
    assert pooled.rows == 2 * estimate.rows


def _measurement(size: int, rate: float) -> BatchMeasurement:
    return BatchMeasurement(size, "ok", "doubling", rate, size / rate, 0.0, 5, noise=0.01)


def test_the_predicted_time_is_steps_times_the_time_of_a_step() -> None:
    # Samples per second double up to batch 64, then stay flat.
    measured = [_measurement(size, 100.0 * min(size, 64)) for size in (8, 16, 32, 64, 128, 256)]
    times = predicted_times(measured, noise_scale=64.0)
    # T(B) = (B + 64) / r(B): 72/800, 80/1600, 96/3200, 128/6400, 192/6400, 320/6400.
    raw = {8: 72 / 800, 16: 80 / 1600, 32: 96 / 3200, 64: 128 / 6400, 128: 192 / 6400}
    raw[256] = 320 / 6400
    assert times == pytest.approx({size: value / raw[64] for size, value in raw.items()})
    assert efficient_size(times, 0.0) == 64
    assert efficient_size(times, 0.6) == 32  # 96/3200 is 1.5 times 128/6400
    # Without noise, a step is a step: the fastest step wins. With infinite noise, samples/s.
    assert efficient_size(predicted_times(measured, 0.0), 0.0) == 8
    assert efficient_size(predicted_times(measured, math.inf), 0.0) == 64
    assert efficient_size({}, 0.05) is None


def test_the_learning_rate_is_linear_below_the_noise_scale_and_flat_above() -> None:
    assert scaled_learning_rate(0.1, 32, 32, 1000.0) == pytest.approx(0.1)
    assert scaled_learning_rate(0.1, 8, 16, 1e6) == pytest.approx(0.2, rel=1e-4)
    assert scaled_learning_rate(0.1, 4096, 8192, 10.0) == pytest.approx(0.1, rel=2e-3)
    assert scaled_learning_rate(0.1, 32, 64, math.inf) == pytest.approx(0.2)
    rates = [scaled_learning_rate(0.1, 32, size, 100.0) for size in (32, 64, 128, 1024, 8192)]
    assert rates == sorted(rates) and rates[-1] < 0.1 * (1 + 100 / 32)


def test_efficient_mode_on_digits(digits, watch) -> None:
    x, y = digits
    model = _mlp()
    unchanged = watch(model)
    rng = torch.get_rng_state()
    events: list[Event] = []
    result = find_batch_size(
        model, x, target=y, loss=cross_entropy, train=True, lr=0.05, lr_batch=32,
        optimizer=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), noise_steps=40,
        max_batch_size=512, callbacks=[events.append], **QUIET,
    )  # fmt: skip
    unchanged()
    assert torch.equal(torch.get_rng_state(), rng)
    assert result.mode == "efficient" and "default" in result.mode_reason
    # Measured at the start and at 4 points of 40 training steps; those from half-way pooled.
    assert [n.steps for n in result.noise_scales] == [0, 10, 20, 30, 40, 40]
    assert result.noise_scale is result.noise_scales[-1] and result.noise_scale.pooled == 3
    final = [e for e in events if isinstance(e, NoiseScaleMeasured) and e.final]
    assert [e.noise for e in final] == [result.noise_scale]
    noise = result.noise_scale.value
    assert 0 < noise < math.inf
    # The predicted times are (B + B_noise) / r(B) of the sizes measured, relative to the best.
    ran = {m.batch_size for m in result.measurements if m.ok}
    assert set(result.predicted_time) == ran
    raw = {size: (size + noise) / result.throughput(size) for size in ran}
    assert result.predicted_time == pytest.approx(
        {s: t / min(raw.values()) for s, t in raw.items()}
    )
    within = [s for s, t in result.predicted_time.items() if t <= 1 + result.tolerance]
    assert result.batch_size == min(within)
    assert result.learning_rate == pytest.approx(
        scaled_learning_rate(0.05, 32, result.batch_size, noise)
    )
    assert "critical batch B_noise" in result.summary()
    assert "predicted_time" in result.to_dataframe().columns


def test_an_lr_find_result_gives_the_rate_and_its_batch(digits) -> None:
    from nbopt.learning_rate import find_lr

    x, y = digits
    found = find_lr(_mlp(), (x, y), loss=cross_entropy, steps=30, repeats=1, batch_size=16, **QUIET)
    result = find_batch_size(
        _mlp(), x, target=y, loss=cross_entropy, train=True, lr=found, noise_steps=0,
        max_batch_size=64, **QUIET,
    )  # fmt: skip
    assert len(result.noise_scales) == 1 and result.noise_scale.steps == 0
    assert result.learning_rate == pytest.approx(
        scaled_learning_rate(found.suggestion, 16, result.batch_size, result.noise_scale.value)
    )


@pytest.mark.parametrize(
    ("arguments", "mode", "reason"),
    [
        ({"train": True, "loss": cross_entropy}, "efficient", "the default for training with a"),
        ({"train": True}, "throughput", "the default for training without loss="),
        ({}, "throughput", "the default for inference"),
        ({"train": True, "loss": cross_entropy, "rows": 100}, "throughput", "100 rows of example"),
        ({"train": True, "loss": cross_entropy, "mode": "max"}, "max", "mode=max, as asked"),
    ],
)
def test_which_mode_runs_and_why(digits, arguments, mode: str, reason: str) -> None:
    x, y = digits
    arguments = dict(arguments)
    rows = arguments.pop("rows", len(x))
    if arguments.get("loss") is not None:
        arguments["target"] = y[:rows]
    result = find_batch_size(
        _mlp(), x[:rows], max_batch_size=8, noise_steps=0 if mode == "efficient" else None,
        **arguments, **QUIET,
    )  # fmt: skip
    assert result.mode == mode and reason in result.mode_reason
    assert (result.noise_scale is not None) == (mode == "efficient")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"mode": "efficient"}, "give train=True and loss="),
        ({"mode": "efficient", "train": True}, "give train=True and loss="),
        ({"mode": "efficient", "train": True, "loss": cross_entropy, "rows": 100}, "at least 256"),
        (
            {"mode": "efficient", "train": True, "loss": cross_entropy, "make": True},
            "not make_batch",
        ),
        ({"train": True, "lr": 0.1, "lr_batch": 32}, "lr= only applies with mode='efficient'"),
        ({"mode": "max", "tolerance": 0.1}, "tolerance= only applies with mode='efficient' or"),
        ({"mode": "throughput", "noise_steps": 3}, "noise_steps= only applies with"),
        ({"mode": "max", "seed": 1}, "seed= only applies with mode='efficient'"),
        ({"train": True, "loss": cross_entropy, "lr": 0.1}, "give lr_batch="),
        ({"train": True, "loss": cross_entropy, "lr_batch": 32}, "give lr= too"),
        ({"train": True, "loss": cross_entropy, "lr": "fast", "lr_batch": 8}, "positive number"),
        ({"train": True, "loss": cross_entropy, "noise_steps": -1}, "noise_steps must be"),
    ],
)
def test_options_the_mode_cannot_use_are_errors(digits, watch, arguments, message: str) -> None:
    x, y = digits
    arguments = dict(arguments)
    rows = arguments.pop("rows", len(x))
    if arguments.pop("make", False):
        arguments["make_batch"] = lambda size: x[:size]
    else:
        arguments["example"] = x[:rows]
    if arguments.get("loss") is not None:
        arguments["target"] = y[:rows] if "example" in arguments else None
    model = _mlp()
    unchanged = watch(model)
    events: list[Event] = []
    with pytest.raises(ConfigError, match=message):
        find_batch_size(model, callbacks=[events.append], **arguments, **QUIET)
    assert events == []
    unchanged()


def test_noise_scale_text() -> None:
    scale = NoiseScale(62.4, 48.2, 80.9, 1.0, 62.4, 0.5, 10, 512)
    assert scale.text() == "62 (48 to 81)"
    lost = NoiseScale(math.inf, 300.0, math.inf, -1.0, 5.0, 0.5, 10, 512)
    assert lost.text() == "beyond what the data can measure"
    assert NoiseScale(30.0, 20.0, math.inf, 1.0, 30.0, 0.5, 0, 512).text() == "30 (20 to inf)"


def test_a_failing_copy_is_a_clear_error(digits) -> None:
    x, y = digits
    with pytest.raises(ConfigError, match="lower the learning rate"):
        find_batch_size(
            _mlp(), x, target=y, loss=cross_entropy, train=True, noise_steps=20,
            optimizer=lambda p: torch.optim.SGD(p, lr=1e6), max_batch_size=8, **QUIET,
        )  # fmt: skip


def _frozen() -> torch.nn.Module:
    model = _mlp()
    model.requires_grad_(False)
    return model


class _Detached(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).detach()


@pytest.mark.parametrize("mode", ["efficient", "throughput"])
@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("frozen", "the model does not train: it has no parameter that requires grad"),
        ("detached", "the model does not train: the loss has no gradient"),
        ("nan", "the loss is nan on the first batch, before any training step"),
        ("misfit", r"data does not fit the model: a batch of 2 \(inputs \(2, 10\)\) fails"),
        ("loss", r"loss must return a tensor with one element, got a tensor of shape \(2, 10\)"),
    ],
)
def test_a_training_search_that_cannot_train_is_one_clear_error_before_any_step(
    digits, watch, mode: str, case: str, message: str
) -> None:
    x, y = digits
    model = {"frozen": _frozen, "detached": _Detached}.get(case, _mlp)()
    example = {"nan": torch.full_like(x, math.nan), "misfit": x[:, :10]}.get(case, x)
    loss = (lambda output, target: output) if case == "loss" else cross_entropy
    unchanged = watch(model)
    events: list[Event] = []
    with pytest.raises(ConfigError, match=message) as info:
        find_batch_size(
            model, example, target=y, loss=loss, train=True, mode=mode, max_batch_size=16,
            callbacks=[events.append], **QUIET,
        )  # fmt: skip
    assert "\n" not in str(info.value)
    assert events == []
    unchanged()


def test_noise_groups_use_every_row_up_to_the_cap() -> None:
    x = torch.randn(300, 4)
    groups = measure_groups(
        torch.nn.Linear(4, 1), torch.nn.functional.mse_loss, x, x[:, :1], 300, seed=0
    )
    assert len(groups.small) == 300 // 64 and np.all(groups.small >= 0)
