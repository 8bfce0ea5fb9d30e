"""Soft filter pruning (``prune_mode=soft``) and iterative pruning (``prune_steps=N``)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nbopt
from nbopt.compress import optimize
from nbopt.compress._plan import FINAL_SHARE, increments
from nbopt.compress._registry import PRUNING, SoftPruning, StepContext
from nbopt.compress._soft import SoftPruner, remove_soft
from nbopt.compress.events import SoftPruningApplied
from nbopt.errors import ConfigError
from nbopt.events import Event

QUIET = {"progress": "none", "logdir": None}
CPU = torch.device("cpu")


def _zero_rows(linear: nn.Linear) -> set[int]:
    return {i for i in range(linear.out_features) if not linear.weight[i].any()}


def test_soft_pruned_neurons_are_zero_after_each_report_and_removed_at_the_end(
    mlp: nn.Module, digits
) -> None:
    x, y = digits[0], digits[1]
    zero_after_report: list[tuple[int, int]] = []

    def finetune(model: nn.Module) -> None:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        for step, start in enumerate(range(0, 640, 64)):
            optimizer.zero_grad()
            F.cross_entropy(model(x[start : start + 64]), y[start : start + 64]).backward()
            optimizer.step()
            if step % 3 == 2:
                nbopt.report(step)
                zero_after_report.append((len(_zero_rows(model.fc1)), len(_zero_rows(model.fc2))))

    events: list[Event] = []
    result = optimize(
        mlp,
        prune=0.5,
        prune_mode="soft",
        finetune=finetune,
        example=x[:16],
        callbacks=[events.append],
        **QUIET,
    )
    assert zero_after_report == [(64, 64)] * 3  # each report zeroed half of each hidden layer
    kinds = [(s.kind, s.label) for s in result.steps]
    assert kinds == [
        ("prune", "prune soft 0.5"),
        ("finetune", "finetune finetune (soft pruning)"),
        ("prune", "remove soft-pruned channels"),
    ]
    soft, tuned, removed = result.steps
    assert soft.after.params == result.before.params  # zeroed, not removed
    assert soft.after.nonzero < 0.6 * result.before.nonzero
    assert (result.model.fc1.out_features, result.model.fc2.out_features) == (64, 64)
    assert result.model.out.out_features == 10
    assert removed.info["nonzero_removed"] == 0  # exactly the zeroed channels went
    assert removed.after.metric == tuned.after.metric
    zeroings = [e for e in events if isinstance(e, SoftPruningApplied)]
    # Once before training, once at each report, once at its end.
    assert [e.count for e in zeroings] == [1, 2, 3, 4, 5]
    assert all(e.zeroed == 128 and e.channels == 256 for e in zeroings)


def test_a_zeroed_neuron_that_grows_back_strongly_is_kept(mlp: nn.Module) -> None:
    """What soft pruning is for: a channel wrongly zeroed can recover and stay."""
    example = torch.randn(8, 64)
    pruner = SoftPruner(mlp, SoftPruning(0.5), StepContext(example, CPU))
    first = pruner.zero()
    zeroed = sorted(_zero_rows(mlp.fc1))
    assert first.zeroed == 128 and len(zeroed) == 64
    with torch.no_grad():
        mlp.fc1.weight[zeroed[0]] = 10.0  # training made it the strongest neuron
    second = pruner.zero()
    assert second.revived >= 1
    assert zeroed[0] not in _zero_rows(mlp.fc1) and len(_zero_rows(mlp.fc1)) == 64


def test_removing_the_zeroed_channels_leaves_the_outputs_as_they_were(cnn: nn.Module) -> None:
    """Convolution, BatchNorm and the residual sum: the removed channels output zero."""
    example = torch.randn(4, 1, 8, 8)
    config = SoftPruning(0.5)
    context = StepContext(example, CPU)
    SoftPruner(cnn, config, context).zero()
    assert len([c for c in range(16) if not cnn.stem[0].weight[c].any()]) == 8
    assert len([c for c in range(16) if cnn.stem[1].weight[c] == 0]) == 8  # its BatchNorm too
    with torch.no_grad():
        expected = cnn(example)
    outcome = remove_soft(cnn, config, context)
    assert cnn.stem[0].out_channels == 8 and cnn.block.conv2.out_channels == 8
    with torch.no_grad():
        assert torch.allclose(cnn(example), expected, atol=1e-5)
    assert outcome.info["nonzero_removed"] == 0


def test_the_built_in_loop_chooses_after_each_epoch_and_holds_through_the_last(
    mlp: nn.Module, digits, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[Event] = []
    zero_rows: list[set[int]] = []
    real = SoftPruner.hold

    def hold(pruner: SoftPruner) -> object:
        zeroing = real(pruner)
        zero_rows.append(_zero_rows(pruner.model.fc1))
        return zeroing

    monkeypatch.setattr(SoftPruner, "hold", hold)
    result = optimize(
        mlp,
        prune=0.25,
        prune_mode="soft",
        data=(digits[0][:256], digits[1][:256]),
        epochs=3,
        example=digits[0][:8],
        callbacks=[events.append],
        **QUIET,
    )
    zeroings = [e for e in events if isinstance(e, SoftPruningApplied)]
    assert len(zeroings) == 1 + 2 + 1  # before training, after epochs 1 and 2, at the end
    # Choices by the pruning step, before training and after epochs 1 and 2; then, through
    # the last epoch (four batches) and at its end, the choice made after epoch 2 is held.
    chosen_last, held = zero_rows[3], zero_rows[4:]
    assert len(held) == 4 + 1 and all(rows == chosen_last for rows in held)
    assert len(chosen_last) == 32
    assert result.model.fc1.out_features == 96


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prune_mode": "soft"}, "prune_mode=soft needs a fine-tune"),
        ({"prune_mode": "soft", "prune_steps": 2, "finetune": print}, "does not go with"),
        ({"prune_steps": 3}, "prune_steps= needs a fine-tune between its increments"),
        ({"prune": None, "prune_steps": 3}, "prune_steps= is given without prune="),
        ({"prune_steps": 0, "finetune": print}, "prune_steps must be an int >= 1"),
        ({"prune_mode": "sfot", "finetune": print}, r"did you mean soft\?"),
    ],
)
def test_bad_pruning_input_is_one_line(mlp: nn.Module, options: dict, message: str) -> None:
    arguments = {"prune": 0.5, "example": torch.randn(4, 64), **options}
    with pytest.raises(ConfigError, match=message):
        optimize(mlp, **arguments, **QUIET)


def test_increments_reach_equal_shares_of_the_original() -> None:
    assert increments(PRUNING.get("structured"), 0.5, 5) == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert increments(PRUNING.get("unstructured"), 0.6, 3) == pytest.approx([0.2, 0.4, 0.6])


def test_iterative_pruning_alternates_increments_and_fine_tunes_on_a_split_budget(
    mlp: nn.Module, digits
) -> None:
    widths: list[int] = []
    result = optimize(
        mlp,
        prune=0.5,
        prune_steps=3,
        data=(digits[0], digits[1]),
        finetune_steps=9,
        example=digits[0][:8],
        callbacks=[lambda e: None],
        **QUIET,
    )
    kinds = [s.kind for s in result.steps]
    assert kinds == ["prune", "finetune"] * 3
    # The last fine-tune gets FINAL_SHARE (half) of the 9 steps, the two between increments
    # share the other half.
    shares = [record.info["steps"] for record in result.steps if record.kind == "finetune"]
    assert FINAL_SHARE == 0.5 and shares == [2, 2, 4]
    widths = [s.after.params for s in result.steps if s.kind == "prune"]
    assert widths == sorted(widths, reverse=True)
    assert result.model.fc1.out_features == 64 and result.model.fc2.out_features == 64
    one_shot = optimize(mlp, prune=0.5, example=digits[0][:8], **QUIET)
    assert result.after.params == one_shot.after.params
    assert math.isclose(result.report["macs"].ratio, one_shot.report["macs"].ratio)
