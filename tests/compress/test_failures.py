"""What a step that cannot work on a model does to a run: ``optimize`` says so in one line,
``optimize_auto`` records the plan as infeasible and searches on, and a slower result says
which step made it slower."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nbopt import ConfigError
from nbopt.compress import ModelMeasurement, OptimizeResult, StepRecord, optimize_auto
from nbopt.compress._pipeline import _slowdown

QUIET = {"progress": "none", "logdir": None}


def _fail_int8(*args, **kwargs):
    raise ConfigError("quant=int8 failed on this model (torch raised RuntimeError: no kernel)")


def test_a_plan_that_cannot_be_built_is_infeasible_and_the_search_goes_on(
    mlp: nn.Module, accuracy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fault (int8 failing on this model) is faked where the library would raise it."""
    monkeypatch.setattr("nbopt.compress._quantize.quantize_int8", _fail_int8)
    result = optimize_auto(
        mlp,
        evaluate=accuracy,
        target="size",
        example=torch.randn(8, 64),
        max_trials=5,
        seed=0,
        **QUIET,
    )
    failed = [t for t in result.trials if t.status == "failed"]
    assert failed and all("quant=int8 failed on this model" in t.error for t in failed)
    assert len(result.trials) == 5  # the search went on past the failures
    assert any(t.status == "ok" and t.plan.prune for t in result.trials)
    assert any("could not be built on this model" in note for note in result.notes)
    # The sensitivity pass left out the layers it could not quantize, and said so.
    assert any("left out of the sensitivity pass" in note for note in result.notes)
    assert result.chosen.within and result.chosen.plan.quant != "int8"


def test_when_every_plan_fails_the_original_is_kept_and_the_reason_given(
    mlp: nn.Module, accuracy, monkeypatch: pytest.MonkeyPatch
) -> None:
    for step in ("_quantize.quantize_int8", "_cast.cast"):
        monkeypatch.setattr(f"nbopt.compress.{step}", _fail_int8)
    result = optimize_auto(
        mlp, evaluate=accuracy, target="size", max_trials=2, seed=0, **QUIET
    )  # no example: only quantization and casts can be searched, and they fail
    assert result.chosen is result.original and result.model is not mlp
    assert all(t.status == "failed" for t in result.trials)
    assert any("could not be built" in note for note in result.notes)


def _measured(latency: float) -> ModelMeasurement:
    return ModelMeasurement(params=10, nonzero=10, size_bytes=100, latency_s=latency)


def _step(kind: str, label: str, latency: float, notes: tuple[str, ...] = ()) -> StepRecord:
    return StepRecord(kind, label, "", 0.1, _measured(latency), notes)


def test_a_slower_model_names_the_step_that_made_it_slower() -> None:
    baseline = _measured(1.0)
    steps = [_step("prune", "prune structured 0.5", 0.6), _step("quant", "quantize int8", 1.3)]
    note = _slowdown(baseline, _measured(1.25), steps)
    assert note is not None and note.startswith("the optimised model is 1.25x slower")
    assert "quantize int8 (2.17x: dynamic int8 quantizes the activations" in note
    assert "prune structured" not in note
    explained = [_step("quant", "quantize int8", 1.3, ("int8 is slower on small LSTMs",))]
    assert "quantize int8 (1.30x: see its note)" in _slowdown(baseline, _measured(1.3), explained)


def test_within_timing_noise_there_is_no_slowdown_note() -> None:
    baseline = _measured(1.0)
    assert _slowdown(baseline, _measured(1.04), [_step("quant", "q", 1.04)]) is None
    assert _slowdown(baseline, _measured(0.5), []) is None


def test_the_note_and_the_step_table_give_the_first_step_the_same_ratio() -> None:
    """Both compare the first step with the original as measured side by side at the end."""
    before = _measured(0.8)
    steps = [_step("quant", "quantize int8", 1.2)]
    note = _slowdown(before, _measured(1.2), steps)
    assert "quantize int8 (1.50x" in note
    result = OptimizeResult(
        model=None, before=before, after=_measured(1.2), steps=steps, notes=[note]
    )
    first_row = result._stage_rows()[0]
    assert any("1.50x" in cell for cell in first_row), first_row
