"""The range test on real models and data: the user's objects untouched, the sweeps, the
suggestion, and bad input refused before anything runs."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from nbopt.errors import ConfigError
from nbopt.events import Event, RunFinished, RunStarted
from nbopt.learning_rate import RULES, LRFindResult, find_lr
from nbopt.learning_rate.events import LRStepMeasured, LRSweepFinished

QUIET = {"progress": "none", "logdir": None}
cross_entropy = torch.nn.functional.cross_entropy


def test_the_model_its_buffers_and_the_optimizer_state_are_never_changed(
    digits, make_mlp, watch
) -> None:
    x, y = digits
    model = make_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    # Give the optimizer state of its own (momentum buffers) and the model gradients.
    cross_entropy(model(x[:32]), y[:32]).backward()
    optimizer.step()
    cross_entropy(model(x[:32]), y[:32]).backward()
    model.eval()
    unchanged = watch(model, optimizer)
    result = find_lr(model, (x, y), loss=cross_entropy, optimizer=optimizer, steps=40, **QUIET)
    unchanged()
    assert isinstance(result, LRFindResult) and result.optimizer == "SGD"
    assert result.suggestion is not None and 1e-7 <= result.suggestion <= 10


def test_three_cheap_sweeps_of_geometric_rates_and_a_suggestion_from_their_median(
    digits, make_mlp
) -> None:
    x, y = digits
    events: list[Event] = []
    result = find_lr(
        make_mlp(), (x, y), loss=cross_entropy, start=1e-5, end=10, steps=60,
        callbacks=[events.append], **QUIET,
    )  # fmt: skip
    assert len(result.sweeps) == 3 and result.status == "done" and result.batch_size == 64
    for sweep in result.sweeps:
        rates = sweep.learning_rates
        assert rates[0] == pytest.approx(1e-5)
        ratios = [b / a for a, b in itertools.pairwise(rates)]
        assert all(r == pytest.approx(ratios[0]) for r in ratios)
        assert ratios[0] == pytest.approx((10 / 1e-5) ** (1 / 59))
        assert len(sweep.losses) == len(rates) <= 60
        assert all(math.isfinite(loss) for loss in sweep.losses)
    # Adam at 10 diverges on digits: the sweeps stop before the end of the range.
    assert any("diverged" in sweep.stop_reason for sweep in result.sweeps)
    # Sweeps differ by the order of the data only: same start, different curves.
    first, second = result.sweeps[0].losses, result.sweeps[1].losses
    assert first[:3] != second[:3]
    assert set(result.suggestions) == set(RULES)
    assert result.suggestion == result.suggestions[result.rule]
    own = [sweep.suggestion for sweep in result.sweeps]
    assert result.band == (min(own), max(own))
    # The suggestion is where the loss still falls: below the rate of the lowest loss.
    curve = result.curve()
    lowest = curve.learning_rates[int(curve.smoothed.argmin())]
    assert result.suggestion < lowest and curve.smoothed[0] > curve.smoothed.min()
    steps = [e for e in events if isinstance(e, LRStepMeasured)]
    assert len(steps) == sum(len(sweep.losses) for sweep in result.sweeps)
    assert [e.record.index for e in events if isinstance(e, LRSweepFinished)] == [0, 1, 2]
    assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunFinished)
    assert events[-1].result is result


def test_the_same_seed_gives_the_same_curves(digits, make_mlp) -> None:
    x, y = digits
    runs = [
        find_lr(make_mlp(), (x, y), loss=cross_entropy, steps=30, repeats=1, seed=seed, **QUIET)
        for seed in (3, 3, 4)
    ]
    assert runs[0].sweeps[0].losses == runs[1].sweeps[0].losses
    assert runs[0].sweeps[0].losses != runs[2].sweeps[0].losses


def test_one_sweep_when_repeating_is_not_cheap(digits, make_mlp, monkeypatch) -> None:
    import nbopt.learning_rate

    monkeypatch.setattr(nbopt.learning_rate, "CHEAP_SECONDS", 0.0)
    x, y = digits
    result = find_lr(make_mlp(), (x, y), loss=cross_entropy, steps=20, **QUIET)
    assert len(result.sweeps) == 1 and result.band is None
    explicit = find_lr(make_mlp(), (x, y), loss=cross_entropy, steps=20, repeats=2, **QUIET)
    assert len(explicit.sweeps) == 2


def test_a_data_loader_its_generator_untouched(digits, make_mlp) -> None:
    x, y = digits
    generator = torch.Generator().manual_seed(7)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True, generator=generator
    )
    state = generator.get_state()
    seen: list[int] = []

    def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        seen.append(len(target))
        return cross_entropy(output, target)

    # 120 steps of 32 samples: more than the 57 batches of one pass over the loader.
    result = find_lr(make_mlp(), loader, loss=loss, steps=120, end=1.0, repeats=1, **QUIET)
    assert torch.equal(generator.get_state(), state)
    assert result.batch_size == 32
    assert len(result.sweeps[0].losses) > 57 and max(seen) == 32


def test_a_model_that_returns_its_own_loss() -> None:
    class Regression(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(4, 1)

        def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"loss": torch.nn.functional.mse_loss(self.linear(inputs), labels)}

    torch.manual_seed(0)
    inputs = torch.randn(256, 4)
    labels = inputs @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    loader = torch.utils.data.DataLoader(
        [{"inputs": a, "labels": b} for a, b in zip(inputs, labels, strict=True)], batch_size=16
    )
    result = find_lr(Regression(), loader, optimizer=torch.optim.SGD, repeats=1, **QUIET)
    assert result.optimizer == "SGD" and result.suggestion is not None


def test_an_interrupt_keeps_the_finished_sweeps_and_is_re_raised(digits, make_mlp, watch) -> None:
    x, y = digits
    model = make_mlp()
    unchanged = watch(model)
    calls = []

    def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 1 + 20 + 10:  # the check, one sweep of 20, and 10 steps into the next
            raise KeyboardInterrupt
        return cross_entropy(output, target)

    finished: list[RunFinished] = []
    with pytest.raises(KeyboardInterrupt):
        find_lr(
            model, (x, y), loss=loss, steps=20, end=1e-2, repeats=3,
            callbacks=[lambda e: finished.append(e) if isinstance(e, RunFinished) else None],
            **QUIET,
        )  # fmt: skip
    partial = finished[0].result
    assert finished[0].status == "interrupted" and partial.status == "interrupted"
    assert len(partial.sweeps) == 1 and len(partial.sweeps[0].losses) == 20
    unchanged()


class Detached(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).detach()


class Dead(torch.nn.Module):
    """Its output does not depend on its weight: a zero gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ (self.weight * 0) + x[:, :10]


def _frozen() -> torch.nn.Module:
    model = torch.nn.Linear(64, 10)
    model.requires_grad_(False)
    return model


@pytest.mark.parametrize(
    ("build", "arguments", "message"),
    [
        (lambda: torch.nn.Linear(64, 10), {"data": "digits"}, "data must be a DataLoader or a"),
        (_frozen, {}, "has no parameter that requires grad"),
        (Detached, {}, "the loss has no gradient"),
        (Dead, {}, "the gradient of the loss is zero"),
        (lambda: torch.nn.Linear(32, 10), {}, r"data does not fit the model: .*\(64, 64\)"),
        (lambda: torch.nn.Linear(64, 10), {"nan": True}, "the loss is nan on the first batch"),
        (lambda: torch.nn.Linear(64, 10), {"loss": None}, r"give loss=.*shape \(64, 10\)"),
        (lambda: torch.nn.Linear(64, 10), {"loss": "ce"}, "loss= must be callable"),
        (
            lambda: torch.nn.Linear(64, 10),
            {"optimizer": torch.optim.SGD(torch.nn.Linear(2, 2).parameters())},
            "holds none of the model's parameters",
        ),
        (lambda: torch.nn.Linear(64, 10), {"optimizer": 3}, "optimizer= must be an optimizer"),
        (lambda: torch.nn.Linear(64, 10), {"optimizer": lambda p: None}, "must return a torch"),
        (lambda: torch.nn.Linear(64, 10), {"start": 1.0, "end": 0.1}, "end=0.1 must be above"),
        (lambda: torch.nn.Linear(64, 10), {"steps": 3}, "steps must be an integer >= 10"),
        (lambda: torch.nn.Linear(64, 10), {"repeats": 0}, "repeats must be an integer >= 1"),
        (lambda: torch.nn.Linear(64, 10), {"diverge": 1.0}, "diverge must be above 1"),
        (lambda: torch.nn.Linear(64, 10), {"rule": "valey"}, r"did you mean valley\?"),
        (lambda: torch.nn.Linear(64, 10), {"batch_size": 0}, "batch_size must be a positive"),
        (lambda: torch.nn.Linear(64, 10), {"loader": True}, "a DataLoader has its own"),
        (lambda: torch.nn.Linear(64, 10), {"short": True}, "must share their first dimension"),
        (lambda: torch.nn.Linear(64, 10), {"progress": "loud"}, "progress must be one of"),
    ],
    ids=[
        "data-type",
        "frozen",
        "detached",
        "dead",
        "shape",
        "nan",
        "no-loss",
        "loss-type",
        "other-model",
        "optimizer-type",
        "factory",
        "range",
        "steps",
        "repeats",
        "diverge",
        "rule",
        "batch",
        "loader-batch",
        "lengths",
        "progress",
    ],
)
def test_bad_input_is_one_clear_error_before_anything_runs(
    digits, watch, build, arguments, message: str
) -> None:
    x, y = digits
    torch.manual_seed(0)
    model = build()
    unchanged = watch(model)
    arguments = dict(arguments)
    data: object = (x, y)
    if arguments.pop("nan", False):
        data = (torch.full_like(x, math.nan), y)
    if arguments.pop("loader", False):
        data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
        arguments["batch_size"] = 16
    if arguments.pop("short", False):
        data = (x, y[:10])
    data = arguments.pop("data", data)
    arguments.setdefault("loss", cross_entropy)
    events: list[Event] = []
    with pytest.raises(ConfigError, match=message) as info:
        find_lr(model, data, callbacks=[events.append], **{**QUIET, **arguments})
    assert "\n" not in str(info.value)
    assert events == []  # not even a RunStarted
    unchanged()


def test_a_non_module_is_refused(digits) -> None:
    with pytest.raises(ConfigError, match=r"model must be a torch\.nn\.Module, got function"):
        find_lr(lambda x: x, digits, **QUIET)


def test_an_error_of_the_model_after_the_first_batch_propagates(digits) -> None:
    class FailsLater(torch.nn.Linear):
        calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            FailsLater.calls += 1
            if FailsLater.calls == 5:
                raise ValueError("a bad batch")
            return super().forward(x)

    with pytest.raises(ValueError, match="a bad batch"):
        find_lr(FailsLater(64, 10), digits, loss=cross_entropy, repeats=1, **QUIET)
