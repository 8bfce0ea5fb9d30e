"""``optimize_auto``: the plan it chooses, its front, its search on the tuning engine, and its
guarantees about bad input and the user's code."""

from __future__ import annotations

import copy
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nbopt
from nbopt.compress import AutoOptimizeResult, optimize_auto
from nbopt.compress._measure import count_macs
from nbopt.compress.auto._pareto import dominates
from nbopt.compress.auto.events import PlanTrialFinished
from nbopt.errors import ConfigError
from nbopt.events import Event, RunFinished, RunStarted, StepReported
from nbopt.tuning._study import read_study
from nbopt.ui.text import TextReporter

QUIET: dict[str, Any] = {"progress": "none", "logdir": None}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: where other processes share the cores, OpenMP threads wait on each
    other and an epoch of the digits CNN takes a hundred times longer."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def assert_front_is_non_dominated(result: AutoOptimizeResult) -> None:
    points = [result.original, *[t for t in result.trials if t.status == "ok"]]
    mode = result.tolerance.mode
    for point in result.front:
        assert not any(
            dominates((other.ratio, other.metric), (point.ratio, point.metric), mode)
            for other in points
        )
    assert result.chosen in result.front


def _keyword_task(vocab: int = 2000, length: int = 16, n: int = 1600) -> tuple[torch.Tensor, ...]:
    """Random token sequences; each of 4 classes has 30 keywords, 3 of which its sequences hold."""
    generator = torch.Generator().manual_seed(0)
    keywords = torch.randperm(vocab, generator=generator)[:120].view(4, 30)
    ids = torch.randint(0, vocab, (n, length), generator=generator)
    labels = torch.randint(0, 4, (n,), generator=generator)
    slots = torch.rand(n, length, generator=generator).argsort(1)[:, :3]
    picked = torch.randint(0, 30, (n, 3), generator=generator)
    ids.scatter_(1, slots, keywords[labels][torch.arange(n)[:, None], picked])
    return ids[:1200], labels[:1200], ids[1200:], labels[1200:]


@pytest.fixture
def text_task(models) -> tuple[nn.Module, Callable[[nn.Module], float], torch.Tensor]:
    """A transformer block (embedding, encoder layer, head) trained on a keyword task, its
    test accuracy, and an example batch."""
    x_train, y_train, x_test, y_test = _keyword_task()
    torch.manual_seed(0)
    model = models.TextClassifier(vocab=2000, dim=64)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(3):
        for start in range(0, len(x_train), 64):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x_train[start : start + 64]), y_train[start : start + 64])
            loss.backward()
            optimizer.step()
    model.eval()

    def accuracy(model: nn.Module) -> float:
        with torch.no_grad():
            return (model(x_test).argmax(1) == y_test).float().mean().item()

    return model, accuracy, x_test[:32]


@pytest.fixture
def trained_cnn(models, digits) -> nn.Module:
    torch.manual_seed(0)
    model = models.CNN()
    models.fit(model, digits[0], digits[1], epochs=3, lr=1e-2)
    return model


@pytest.mark.slow
def test_on_the_digits_cnn_the_chosen_plan_is_within_tolerance(
    trained_cnn: nn.Module, accuracy, digits, state_of, same_state
) -> None:
    def finetune(model: nn.Module) -> None:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for step in range(100):
            start = 64 * step % 1344
            loss = F.cross_entropy(
                model(digits[0][start : start + 64]), digits[1][start : start + 64]
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            nbopt.report(step, loss.item())

    cnn, example = trained_cnn, digits[2][:64]
    saved = state_of(cnn)
    events: list[Event] = []
    result = optimize_auto(
        cnn,
        evaluate=accuracy,
        tolerable_loss=0.01,
        target="macs",
        example=example,
        finetune=finetune,
        finetune_steps=40,
        max_trials=4,
        seed=0,
        callbacks=[events.append],
        **QUIET,
    )
    assert same_state(cnn, saved) and result.model is not cnn
    # The tolerance and the gain hold on the model itself, measured again here.
    assert accuracy(result.model) >= 0.99 * accuracy(cnn)
    macs = count_macs(result.model, example) / count_macs(cnn, example)
    assert macs == pytest.approx(result.chosen.ratio) and macs < 0.7
    assert result.chosen.within and result.plan.prune is not None
    assert_front_is_non_dominated(result)
    # The fine-tune function ran within its budget, inside the trials, and was seen live.
    reports = [e for e in events if isinstance(e, StepReported)]
    assert reports and max(e.step for e in reports) == 40
    assert all(e.trial is not None and "finetune" in e.metrics for e in reports)
    assert [e.kind for e in events if isinstance(e, RunStarted)] == ["optimize-auto"]
    assert isinstance(events[-1], RunFinished) and events[-1].status == "done"


def test_latency_is_measured_side_by_side_and_the_front_again_at_the_end(
    mlp: nn.Module, accuracy
) -> None:
    result = optimize_auto(
        mlp,
        evaluate=accuracy,
        target="latency",
        example=torch.randn(64, 64),
        max_trials=3,
        seed=0,
        **QUIET,
    )
    assert all(t.ratio > 0 and t.ratios["latency"] == t.ratio for t in result.trials)
    # The front's trials are timed again: whether any plan beat the original's latency depends
    # on the machine's load, the re-measurement of those that did does not.
    remeasured = any("measured again" in note for note in result.notes)
    assert remeasured == any(point.number is not None for point in result.front)
    assert result.chosen is next(p for p in result.front if p.within)
    assert result.threads == 1
    assert_front_is_non_dominated(result)


@pytest.mark.slow
def test_on_the_transformer_block_int8_embeddings_shrink_it_within_tolerance(text_task) -> None:
    model, accuracy, example = text_task
    result = optimize_auto(
        model, evaluate=accuracy, target="size", example=example, max_trials=5, seed=0, **QUIET
    )
    assert accuracy(result.model) >= 0.99 * accuracy(model)
    assert result.chosen.ratio < 0.4  # 8-bit rows of the embedding table, most of the weights
    assert result.plan.quant is not None
    assert {item.layer for item in result.sensitivity if item.kind == "quant"} == {
        "embed",
        "encoder.linear1",
        "encoder.linear2",
        "head",
    }
    assert_front_is_non_dominated(result)


def test_a_tolerance_of_zero_returns_the_original_or_a_lossless_plan(
    mlp: nn.Module, accuracy
) -> None:
    result = optimize_auto(
        mlp,
        evaluate=accuracy,
        tolerable_loss=0,
        target="size",
        example=torch.randn(8, 64),
        max_trials=6,
        seed=0,
        **QUIET,
    )
    assert accuracy(result.model) >= accuracy(mlp)
    assert all(t.metric >= accuracy(mlp) for t in result.trials if t.within)
    assert_front_is_non_dominated(result)


def test_sensitivity_keeps_a_fragile_layer_in_float(mlp: nn.Module, accuracy, digits) -> None:
    """fc1 gets weights of 10,000 on pixel 0, which is 0 in every image: the float model is
    unchanged, but per-channel int8 then rounds every other weight of fc1 to zero."""
    assert digits[0][:, 0, 0, 0].abs().max() == 0 and digits[2][:, 0, 0, 0].abs().max() == 0
    with torch.no_grad():
        mlp.fc1.weight[:, 0] = 1e4
    shown = io.StringIO()
    result = optimize_auto(
        mlp,
        evaluate=accuracy,
        target="size",
        example=digits[2][:8],
        max_trials=3,
        seed=0,
        callbacks=[TextReporter(shown)],
        **QUIET,
    )
    assert "fc1 quantized alone: accuracy 0.1" in shown.getvalue()
    quant = [item for item in result.sensitivity if item.kind == "quant"]
    assert quant[0].layer == "fc1" and quant[0].breaks
    assert not any(item.breaks for item in quant[1:])
    int8 = [t for t in result.trials if t.plan.quant == "int8"]
    assert int8 and all("fc1" in t.plan.quant_keep for t in int8)
    first = int8[0]
    assert first.within and first.plan.quant_keep == ("fc1",)
    model = result.select(first.number)
    assert type(model.fc1) is nn.Linear and type(model.fc2) is not nn.Linear
    assert accuracy(model) >= 0.99 * accuracy(mlp)


def test_stop_at_ends_the_search_at_the_first_plan_that_reaches_it(
    mlp: nn.Module, accuracy
) -> None:
    result = optimize_auto(
        mlp,
        evaluate=accuracy,
        target="size",
        example=torch.randn(8, 64),
        stop_at=0.5,
        max_trials=10,
        seed=0,
        **QUIET,
    )
    assert [t.plan.label() for t in result.trials] == ["int8"]  # 0.35x: a byte a weight
    assert result.chosen.ratio <= 0.5


def test_a_study_is_saved_and_continued(mlp: nn.Module, accuracy, tmp_path: Path) -> None:
    study = tmp_path / "auto.json"
    options = {"evaluate": accuracy, "target": "size", "example": torch.randn(8, 64), "seed": 0}
    first = optimize_auto(copy.deepcopy(mlp), max_trials=3, study=study, **options, **QUIET)
    header, saved, running = read_study(study)
    assert header.metric == "score" and len(saved) == 3 and running == []
    events: list[Event] = []
    second = optimize_auto(
        mlp, max_trials=5, study=study, callbacks=[events.append], **options, **QUIET
    )
    assert [t.plan for t in second.trials[:3]] == [t.plan for t in first.trials]
    assert len(second.trials) == 5 and len(read_study(study)[1]) == 5
    assert sum(isinstance(e, PlanTrialFinished) for e in events) == 2
    # A model of the earlier session is rebuilt from its plan.
    model = second.select(0)
    assert second.chosen.number == 0 and model(torch.randn(2, 64)).shape == (2, 10)
    # A smaller budget than the study holds runs nothing more.
    third = optimize_auto(mlp, max_trials=2, study=study, **options, **QUIET)
    assert [t.plan for t in third.trials] == [t.plan for t in second.trials]


def test_the_user_fine_tune_error_propagates_and_stops_the_search(
    mlp: nn.Module, accuracy, state_of, same_state
) -> None:
    saved = state_of(mlp)

    def finetune(model: nn.Module) -> None:
        raise RuntimeError("out of patience")

    events: list[Event] = []
    with pytest.raises(RuntimeError, match="out of patience"):
        optimize_auto(
            mlp,
            evaluate=accuracy,
            target="size",
            example=torch.randn(8, 64),
            finetune=finetune,
            max_trials=10,
            seed=0,
            callbacks=[events.append],
            **QUIET,
        )
    trials = [e.trial for e in events if isinstance(e, PlanTrialFinished)]
    assert trials[-1].status == "failed" and "out of patience" in trials[-1].error
    assert all(t.status == "ok" for t in trials[:-1])  # nothing ran after it
    assert events[-1].status == "failed" and same_state(mlp, saved)


def test_an_interrupt_keeps_the_finished_trials_and_is_re_raised(
    mlp: nn.Module, accuracy, tmp_path: Path
) -> None:
    calls = 0

    def interrupted(model: nn.Module) -> float:
        nonlocal calls
        calls += 1
        # Baseline twice, 3 Linear + 2 pruning groups alone, one trial; then Ctrl-C.
        if calls == 9:
            raise KeyboardInterrupt
        return accuracy(model)

    events: list[Event] = []
    with pytest.raises(KeyboardInterrupt):
        optimize_auto(
            mlp,
            evaluate=interrupted,
            target="size",
            example=torch.randn(8, 64),
            study=tmp_path / "s.json",
            seed=0,
            callbacks=[events.append],
            **QUIET,
        )
    saved = read_study(tmp_path / "s.json")[1]
    assert [trial.status for trial in saved] == ["ok", "interrupted"]
    assert isinstance(events[-1], RunFinished) and events[-1].status == "interrupted"


def test_a_metric_that_is_not_deterministic_is_refused_before_any_work(
    mlp: nn.Module, tmp_path: Path
) -> None:
    noise = torch.Generator().manual_seed(0)
    events: list[Event] = []
    with pytest.raises(ConfigError, match="not deterministic"):
        optimize_auto(
            mlp,
            evaluate=lambda model: torch.rand(1, generator=noise).item(),
            example=torch.randn(8, 64),
            callbacks=[events.append],
            progress="none",
            logdir=tmp_path / "tb",
        )
    assert events == [] and not (tmp_path / "tb").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"evaluate": None}, "needs evaluate="),
        ({"target": "speed"}, "target must be one of latency, size, macs"),
        ({"example": None}, "target=latency needs example="),
        ({"tolerable_loss": -1}, "tolerable_loss must be a number >= 0"),
        ({"loss_mode": "percent"}, "loss_mode must be relative or absolute"),
        ({"finetune_steps": 5}, "finetune_steps= is given without finetune="),
        ({"max_trials": 0}, "max_trials must be an int >= 1"),
        ({"prune_ignore": "fc9"}, "no module named 'fc9'"),
        ({"example": torch.randn(2, 3)}, "example= does not run through the model"),
    ],
)
def test_bad_input_is_a_config_error(mlp: nn.Module, accuracy, options: dict, message: str) -> None:
    arguments = {"evaluate": accuracy, "example": torch.randn(8, 64), **options}
    with pytest.raises(ConfigError, match=message):
        optimize_auto(mlp, **arguments, **QUIET)


def test_without_an_example_only_quantization_is_searched_for_size(
    mlp: nn.Module, accuracy
) -> None:
    result = optimize_auto(mlp, evaluate=accuracy, target="size", max_trials=2, seed=0, **QUIET)
    assert all(t.plan.prune is None and t.plan.lowrank is None for t in result.trials)
    assert any("needs example=" in note for note in result.notes)


def test_nbopt_report_outside_finetune_is_not_a_budget(mlp: nn.Module, accuracy) -> None:
    """Only the fine-tune function's reports count against finetune_steps."""
    calls: list[int] = []

    def finetune(model: nn.Module) -> None:
        calls.append(1)

    result = optimize_auto(
        mlp,
        evaluate=accuracy,
        target="size",
        example=torch.randn(8, 64),
        finetune=finetune,
        finetune_steps=3,
        max_trials=5,
        seed=0,
        **QUIET,
    )
    structures = {t.plan.structure for t in result.trials if t.plan.changes_structure}
    assert len(calls) == len(structures)  # once per pruned model, shared by its variants
    assert any(t.reused for t in result.trials)
    assert any("never called nbopt.report" in note for note in result.notes)
    assert nbopt.report(0, 1.0) is False
