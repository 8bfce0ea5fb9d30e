"""Every engine on the architectures users bring: ``optimize_auto``, ``find_batch_size`` in both
modes, and a search whose objective builds the model, on each model of the zoo.

The step-level capabilities of ``optimize`` on every zoo model are in
``tests/compress/test_zoo.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from zoo import MODELS, call, fresh, primary

import nbopt

QUIET = {"progress": "none", "logdir": None}
# Large graphs whose sensitivity pass and plans take tens of seconds on two cores.
_SLOW_AUTO = {"bert", "gpt2", "vit", "resnet18", "mobilenet_v3"}


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def _unchanged(model: torch.nn.Module, saved: dict[str, torch.Tensor]) -> bool:
    now = model.state_dict()
    return now.keys() == saved.keys() and all(torch.equal(now[k], saved[k]) for k in saved)


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=[pytest.mark.slow] if n in _SLOW_AUTO else []) for n in MODELS],
)
def test_optimize_auto_finds_a_plan_or_says_why_on_every_zoo_model(name: str) -> None:
    entry = fresh(name)
    saved = _state(entry.model)
    result = nbopt.optimize_auto(
        entry.model,
        evaluate=entry.metric,
        target="size",
        tolerable_loss=0.05,
        example=entry.example,
        max_trials=3,
        seed=0,
        **QUIET,
    )
    assert _unchanged(entry.model, saved) and result.model is not entry.model
    assert result.trials and all(t.status in ("ok", "failed") for t in result.trials)
    failed = [t for t in result.trials if t.status == "failed"]
    assert not failed or any("could not be built" in note for note in result.notes)
    assert result.chosen.within
    # The chosen model is what the report says: its size ratio, measured here again.
    with torch.no_grad():
        call(result.model, entry.example)


@pytest.mark.parametrize("mode", ["throughput", "max"])
@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=[pytest.mark.slow] if n in _SLOW_AUTO else []) for n in MODELS],
)
def test_find_batch_size_trains_every_zoo_model_in_both_modes(name: str, mode: str) -> None:
    """A training step of every architecture, its inputs tiled from the example (dicts of
    token ids included), at a few batch sizes (the search, not the sizes, is under test)."""
    entry = fresh(name)
    saved = _state(entry.model)
    result = nbopt.find_batch_size(
        entry.model,
        entry.example,
        target=entry.target,
        loss=lambda output, target: entry.loss(primary(output), target),
        train=True,
        mode=mode,
        max_batch_size=8,
        **QUIET,
    )
    assert _unchanged(entry.model, saved)
    assert result.batch_size is not None and 2 <= result.batch_size <= 8
    assert result.mode == mode


@pytest.mark.parametrize("name", ["bert", "resnet18", "lstm", "recommender"])
def test_a_search_whose_objective_builds_each_zoo_model(name: str) -> None:
    """The objective builds a fresh model per trial (as users do), trains it a step, and
    returns its loss; every trial finishes."""

    def objective(lr: float) -> float:
        entry = fresh(name)
        model = entry.model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        loss = entry.loss(primary(call(model, entry.example)), entry.target)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            return float(entry.loss(primary(call(model, entry.example)), entry.target))

    result = nbopt.tune(
        objective, {"lr": nbopt.loguniform(1e-4, 1e-1)}, max_evals=3, seed=0, **QUIET
    )
    assert [t.status for t in result.trials] == ["ok"] * 3


def test_the_original_is_untouched_by_nbopts_own_calls() -> None:
    """A buffer that forward updates and a forward hook of the user: optimize and
    optimize_auto measure hundreds of calls, and neither the buffer nor the hook sees one."""

    class Counting(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Sequential(
                torch.nn.Linear(32, 128), torch.nn.ReLU(), torch.nn.Linear(128, 4)
            )
            self.register_buffer("calls", torch.zeros((), dtype=torch.long))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            return self.body(x)

    torch.manual_seed(0)
    model = Counting().eval()
    seen: list[int] = []
    model.register_forward_hook(lambda module, inputs, output: seen.append(1))
    x = torch.randn(16, 32)
    labels = model.body(x).argmax(1)
    evaluated: list[int] = []

    def agreement(candidate: Any) -> float:
        evaluated.append(1)
        with torch.no_grad():
            return float((candidate(x).argmax(1) == labels).float().mean())

    result = nbopt.optimize(model, prune=0.5, quant="int8", example=x, **QUIET)
    assert int(model.calls) == 0 and seen == []
    assert int(result.model.calls) == 0  # the copy's counter was restored after measuring
    auto = nbopt.optimize_auto(
        model, evaluate=agreement, target="latency", example=x, max_trials=3, seed=0, **QUIET
    )
    assert int(model.calls) == 0
    # The hook fired for the calls the user's own metric made on the copies, and no others.
    assert len(seen) == len(evaluated) > 0
    assert auto.model is not model
