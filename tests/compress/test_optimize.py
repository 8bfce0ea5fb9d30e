"""``optimize()``: the pipeline, its guarantees about the original model, and its report."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from torch import nn

from nbopt.compress import OptimizeResult, optimize
from nbopt.compress.events import FinetuneReported, StepFinished
from nbopt.errors import ConfigError
from nbopt.events import Event, RunFinished, RunStarted

QUIET = {"progress": "none", "logdir": None}


def test_prune_and_int8_shrink_the_mlp_and_leave_the_original_alone(
    mlp: nn.Module, accuracy, state_of, same_state
) -> None:
    saved = state_of(mlp)
    x = torch.randn(32, 64)
    result = optimize(mlp, prune=0.5, quant="int8", example=x, evaluate=accuracy, **QUIET)
    assert same_state(mlp, saved) and isinstance(mlp.fc1, nn.Linear)
    assert result.model is not mlp
    report = result.report
    assert 0.2 < report["params"].ratio < 0.35  # hidden 128 -> 64: about a quarter
    assert report["size_bytes"].ratio < 0.2  # and a byte a weight, plus per-channel scales
    assert report["macs"].ratio < 0.35
    assert report["latency_s"].before > 0 and report["latency_s"].after > 0
    assert result.before.metric == pytest.approx(accuracy(mlp))
    assert result.after.metric == pytest.approx(accuracy(result.model))
    assert [step.kind for step in result.steps] == ["prune", "quant"]
    assert result.metric_name == "accuracy"
    assert result.threads == torch.get_num_threads()
    assert result.model(x).shape == (32, 10)


def test_steps_run_in_a_fixed_order_and_finetune_sees_the_pruned_float_model(
    mlp: nn.Module,
) -> None:
    seen: list[tuple[str, int, bool]] = []

    def finetune(model: nn.Module) -> None:
        seen.append((type(model.fc1).__name__, model.fc1.out_features, model.training))

    result = optimize(
        mlp,
        quant="int8",
        finetune=finetune,
        lowrank=0.99,
        prune=0.5,
        example=torch.randn(4, 64),
        **QUIET,
    )
    assert [step.kind for step in result.steps] == ["prune", "lowrank", "finetune", "quant"]
    assert seen == [("Linear", 64, True)]
    assert not result.model.training
    assert all(step.seconds >= 0 for step in result.steps)


@pytest.mark.slow
def test_finetune_reports_reach_the_callbacks_and_its_training_counts(
    cnn: nn.Module, digits, accuracy, finetuner
) -> None:
    events: list[Event] = []
    result = optimize(
        cnn,
        prune=0.5,
        finetune=finetuner,
        example=digits[2][:64],
        evaluate=accuracy,
        callbacks=[events.append],
        **QUIET,
    )
    reports = [e for e in events if isinstance(e, FinetuneReported)]
    assert [e.step for e in reports] == [0, 10, 20]
    assert all(e.value is not None and e.value > 0 for e in reports)
    pruned, tuned = (step.after.metric for step in result.steps)
    assert tuned > pruned + 0.15  # one epoch: a real recovery, if not a full one
    assert result.steps[1].detail == "finetune trained the model (3 reports)"


def test_inplace_gives_the_original_the_optimised_state(mlp: nn.Module) -> None:
    result = optimize(mlp, prune=0.5, example=torch.randn(4, 64), inplace=True, **QUIET)
    assert result.model is mlp
    assert mlp.fc1.out_features == 64


@pytest.mark.parametrize("inplace", [False, True])
def test_a_crashing_step_leaves_the_original_bit_identical(
    mlp: nn.Module, state_of, same_state, monkeypatch: pytest.MonkeyPatch, inplace: bool
) -> None:
    """Quantization changes the working copy module by module; a crash half-way (faked here
    after the first layers were swapped) must not reach the user's model."""
    from nbopt.compress import _quantize

    real = _quantize.quantize_int8_cpu

    def crash_half_way(model: nn.Module, *args: Any) -> Any:
        real(model, *args)  # the copy is now quantized ...
        raise RuntimeError("simulated crash")  # ... and the step fails

    monkeypatch.setattr(_quantize, "quantize_int8_cpu", crash_half_way)
    saved = state_of(mlp)
    events: list[Event] = []
    with pytest.raises(RuntimeError, match="simulated crash"):
        optimize(
            mlp,
            prune=0.5,
            quant="int8",
            quant_backend="torch.ao",
            example=torch.randn(4, 64),
            inplace=inplace,
            callbacks=[events.append],
            **QUIET,
        )
    assert same_state(mlp, saved)
    assert isinstance(mlp.fc1, nn.Linear) and mlp.fc1.out_features == 128
    finished = events[-1]
    assert isinstance(finished, RunFinished) and finished.status == "failed"
    assert "original model is unchanged" in finished.message


def test_an_exception_in_finetune_propagates_as_it_is(mlp: nn.Module, state_of, same_state) -> None:
    saved = state_of(mlp)

    def finetune(model: nn.Module) -> None:
        with torch.no_grad():
            model.fc1.weight.zero_()
        raise ValueError("diverged")

    with pytest.raises(ValueError, match="diverged"):
        optimize(mlp, finetune=finetune, inplace=True, **QUIET)
    assert same_state(mlp, saved)


def test_keyboard_interrupt_marks_the_run_and_is_re_raised(mlp: nn.Module) -> None:
    events: list[Event] = []

    def finetune(model: nn.Module) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        optimize(mlp, finetune=finetune, callbacks=[events.append], **QUIET)
    assert isinstance(events[-1], RunFinished) and events[-1].status == "interrupted"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prune": 1.5}, r"prune must be a fraction in \(0, 1\)"),
        ({"prune": 0.0}, r"prune must be a fraction"),
        ({"lowrank": 1.0}, r"lowrank must be a fraction"),
        (
            {"prune": 0.5, "prune_mode": "channel"},
            r"unknown prune_mode 'channel'; known: structured",
        ),
        ({"quant": "int4"}, r"unknown quant 'int4'.*known: int8, int8-static, fp16, bf16"),
        ({"quant": "int8-static"}, r"needs calib="),
        ({"calib": [torch.randn(2, 64)]}, r"calib= is only used by quant=int8-static"),
        ({"prune_ignore": ["fc1"]}, r"prune_ignore= is given without prune="),
        ({"prune": 0.5, "prune_ignore": "fc3"}, r"no module named 'fc3' \(did you mean fc[12]\?\)"),
        ({"prune": 0.5, "example": None}, r"structured needs example="),
        ({"example": torch.randn(4, 3)}, r"example= does not run through the model: RuntimeError"),
        ({"evaluate": lambda model: "high"}, r"evaluate= must return a number.*str"),
        ({"evaluate": 0.9}, r"evaluate= must be a function"),
        ({"finetune": "train"}, r"finetune= must be a function"),
        ({"progress": "loud"}, r"progress must be one of"),
        (
            {"quant": "int8-static", "calib": [torch.randn(2, 64)], "inplace": True},
            r"inplace=True cannot be used with quant=int8-static",
        ),
    ],
)
def test_bad_input_is_one_config_error_and_changes_nothing(
    mlp: nn.Module, state_of, same_state, tmp_path, options: dict[str, Any], message: str
) -> None:
    options = {"example": torch.randn(4, 64), "progress": "none", **options}
    saved = state_of(mlp)
    with pytest.raises(ConfigError, match=message) as raised:
        optimize(mlp, logdir=tmp_path / "tb", **options)
    assert "\n" not in str(raised.value)
    assert same_state(mlp, saved)
    assert not (tmp_path / "tb").exists()


def test_a_model_that_is_not_a_module_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"must be a torch\.nn\.Module, got dict"):
        optimize({"weights": 1}, **QUIET)


def test_example_may_be_a_dict_of_keyword_inputs() -> None:
    """As Hugging Face models take their batches."""

    class Tagger(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(500, 32)
            self.hidden = nn.Linear(32, 64)
            self.out = nn.Linear(64, 5)

        def forward(self, input_ids: torch.Tensor, scale: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"logits": self.out(torch.relu(self.hidden(self.embed(input_ids)))) * scale}

    batch = {"input_ids": torch.randint(0, 500, (4, 7)), "scale": torch.ones(4, 1, 1)}
    result = optimize(Tagger().eval(), prune=0.5, quant="int8", example=batch, **QUIET)
    assert result.model.hidden.out_features == 32
    assert result.report["macs"].ratio < 0.6
    assert result.model(**batch)["logits"].shape == (4, 7, 5)


def test_without_steps_the_model_is_only_measured(mlp: nn.Module) -> None:
    result = optimize(mlp, example=torch.randn(4, 64), **QUIET)
    assert result.steps == []
    assert result.report["params"].ratio == 1.0
    assert "measured only" in repr(result)


def test_unstructured_pruning_reports_sparsity_and_says_it_is_not_faster(mlp: nn.Module) -> None:
    result = optimize(mlp, prune=0.7, prune_mode="unstructured", **QUIET)
    assert result.report["params"].ratio == 1.0
    assert result.report["nonzero"].ratio == pytest.approx(0.3, abs=0.02)
    assert result.report["size_bytes"].ratio == pytest.approx(1.0, abs=0.01)
    assert any("do not get faster" in note for note in result.notes)


@pytest.mark.parametrize("quant", ["fp16", "bf16"])
def test_a_cast_model_still_takes_float32_and_warns_without_a_fast_path(
    mlp: nn.Module, quant: str
) -> None:
    from nbopt.compress._cast import fast_path

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[quant]
    x = torch.randn(8, 64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = optimize(mlp, quant=quant, example=x, **QUIET)
    slow = not fast_path(dtype, torch.device("cpu"))
    assert any("no fast" in str(w.message) for w in caught) == slow
    assert any("no fast" in note for note in result.notes) == slow
    assert result.model.fc1.weight.dtype == dtype
    assert result.model(x).dtype == torch.float32
    assert result.report["size_bytes"].ratio < 0.55


def test_report_table_dataframe_and_plot(mlp: nn.Module, accuracy) -> None:
    result = optimize(
        mlp, prune=0.5, quant="int8", example=torch.randn(8, 64), evaluate=accuracy, **QUIET
    )
    frame = result.to_dataframe()
    assert list(frame["step"]) == ["original", "prune structured 0.5", "quantize int8"]
    assert {"params", "nonzero", "size_bytes", "macs", "latency_ms", "accuracy"} <= set(frame)
    assert frame["size_bytes"].iloc[-1] == result.steps[-1].after.size_bytes
    html = result._repr_html_()
    assert "<table" in html and "serialized size" in html and "accuracy" in html
    assert "threads" in html
    text = _pretty(result)
    assert "serialized size" in text and "x" in text
    figure = result.plot()
    axes = figure.axes[0]
    assert len(axes.patches) == 2 * 5  # two steps, five quantities
    heights = [patch.get_height() for patch in axes.patches]
    # Bars of the last step: parameters, non-zeros, size, MACs, latency, relative to the original.
    assert heights[5 + 2] == pytest.approx(result.report["size_bytes"].ratio)
    assert heights[5 + 3] == pytest.approx(result.report["macs"].ratio)


def _pretty(result: OptimizeResult) -> str:
    from IPython.lib.pretty import pretty

    return pretty(result)


def test_events_tell_the_run_from_start_to_finish(mlp: nn.Module) -> None:
    events: list[Event] = []
    optimize(
        mlp, prune=0.5, quant="int8", example=torch.randn(4, 64), callbacks=[events.append], **QUIET
    )
    started = events[0]
    assert isinstance(started, RunStarted) and started.kind == "optimize" and started.total == 2
    assert [e.index for e in events if isinstance(e, StepFinished)] == [1, 2]
    finished = events[-1]
    assert isinstance(finished, RunFinished) and finished.status == "done"
    assert isinstance(finished.result, OptimizeResult)
