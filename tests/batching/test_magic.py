"""``%batchsize`` in an IPython shell: results in the namespace, one-line usage errors."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from nbopt.batching import BatchSizeResult

SETUP = """
import torch
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
x = torch.randn(10, 8)
y = torch.randint(0, 3, (10,))
loss_fn = torch.nn.CrossEntropyLoss()
before = {k: v.clone() for k, v in net.state_dict().items()}
"""
UNCHANGED = "assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())"


def test_the_magic_stores_the_result_and_sets_the_batch_size(shell, cell) -> None:
    cell(shell, SETUP)
    returned = cell(shell, "%batchsize net example=x max=32 set=bs out=search")
    namespace = shell.user_ns
    result = namespace["search"]
    assert isinstance(result, BatchSizeResult) and returned is result
    assert namespace["_nbopt"] is result
    assert namespace["bs"] == result.batch_size and 1 <= namespace["bs"] <= 32
    assert result.mode == "throughput" and not result.train
    cell(shell, UNCHANGED)


def test_a_training_search_with_labels_and_a_loss(shell, cell) -> None:
    cell(shell, SETUP)
    cell(shell, "%batchsize net example=x target=y loss=loss_fn train mode=max max=24 memory=2GB")
    result = shell.user_ns["_nbopt"]
    assert result.train and result.mode == "max" and result.batch_size == 24
    assert result.memory_limit == 2_000_000_000
    assert [m.batch_size for m in result.measurements] == [2, 4, 8, 16, 24]
    cell(shell, UNCHANGED)


def test_make_batch_builds_the_batches(shell, cell) -> None:
    cell(
        shell,
        SETUP + "sizes = []\ndef make(n):\n    sizes.append(n)\n    return torch.randn(n, 8)\n",
    )
    cell(shell, "%batchsize net make_batch=make mode=max max=5 start=2")
    assert shell.user_ns["sizes"] == [2, 4, 5]
    assert shell.user_ns["_nbopt"].batch_size == 5


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("%batchsize example=x", "name the model"),
        (
            "%batchsize nett example=x",
            r"'nett' is not defined in the notebook \(did you mean net\?\)",
        ),
        ("%batchsize x example=x", "'x' is a Tensor, not an nn.Module"),
        ("%batchsize net example=x start=64 max=8", "max=8 is below start=64"),
        ("%batchsize net example=scalar", "example has no batch dimension"),
        ("%batchsize net example=x loss=loss_fn", "loss= is for training steps: add train=True"),
        ("%batchsize net example=x mode=fast", "expected one of efficient|throughput|max"),
        ("%batchsize net example=x lr=0.1 lr_batch=8", "lr= only applies with mode='efficient'"),
        ("%batchsize net example=x mode=max tolerance=0.1", "tolerance= only applies with"),
        ("%batchsize net example=x lr=net", "'net' is a Sequential, not a learning rate"),
        (
            "%batchsize net example=x target=y loss=loss_fn train mode=efficient",
            "needs at least 256 rows of example=",
        ),
        ("%batchsize net example=x make_batch=x", "'x' is not callable"),
        (
            "%batchsize net example=scalar8 target=y loss=loss_fn train",
            "data does not fit the model: a batch of 2",
        ),
        (
            "%batchsize net example=nans target=y loss=loss_fn train",
            "the loss is nan on the first batch",
        ),
        ("%batchsize net", "give either example="),
        ("%batchsize net example=x memory=lots", "expected a size such as 4GB"),
        ("%batchsize net example=x tolerance=1", r"tolerance must be in \[0, 1\)"),
        ("%batchsize net example=x maxx=8", r"unknown option 'maxx' \(did you mean max\?\)"),
    ],
)
def test_bad_input_is_one_usage_error_line_and_changes_nothing(
    shell, cell, line: str, message: str
) -> None:
    extra = "scalar = torch.tensor(1.0)\nscalar8 = torch.randn(10, 5)\nnans = x * float('nan')"
    cell(shell, SETUP + extra)
    with pytest.raises(UsageError, match=message) as info:
        cell(shell, line)
    assert "\n" not in str(info.value)
    assert "_nbopt" not in shell.user_ns
    cell(shell, UNCHANGED)


def test_an_error_in_the_model_is_a_real_exception(shell, cell) -> None:
    cell(shell, SETUP + "wrong = torch.randn(4, 5)")
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied") as info:
        cell(shell, "%batchsize net example=wrong")
    assert not isinstance(info.value, UsageError)
    notes = getattr(info.value, "__notes__", [])
    assert any("failed at batch size 1, the first tried" in note for note in notes)


def test_the_help_lists_every_option(shell) -> None:
    text = shell.magics_manager.magics["line"]["batchsize"].__doc__
    for option in (
        "example",
        "make_batch",
        "mode",
        "train",
        "target",
        "loss",
        "optimizer",
        "start",
        "max",
        "memory",
        "tolerance",
        "set",
        "progress",
        "logdir",
        "out",
    ):
        assert f"\n  {option} " in text


DIGITS = """
import torch
from sklearn.datasets import load_digits

digits = load_digits()
x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
y = torch.tensor(digits.target)
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
loss_fn = torch.nn.CrossEntropyLoss()
before = {k: v.clone() for k, v in net.state_dict().items()}
"""


def test_training_with_a_loss_is_efficient_and_scales_the_rate(shell, cell) -> None:
    cell(shell, DIGITS)
    cell(
        shell,
        "%batchsize net example=x target=y loss=loss_fn train lr=0.05 lr_batch=16 "
        "noise_steps=20 max=256 set=bs out=search",
    )
    result = shell.user_ns["search"]
    assert result.mode == "efficient" and "default" in result.mode_reason
    assert shell.user_ns["bs"] == result.batch_size and result.learning_rate is not None
    assert result.noise_scale is not None and result.noise_scale.steps == 20
    cell(shell, UNCHANGED)


def test_the_learning_rate_from_lr_find(shell, cell) -> None:
    cell(shell, DIGITS)
    cell(shell, "%lr_find net data=(x, y) loss=loss_fn batch_size=16 repeats=1 steps=30 out=found")
    cell(
        shell,
        "%batchsize net example=x target=y loss=loss_fn train lr=found noise_steps=0 max=64",
    )
    result, found = shell.user_ns["_nbopt"], shell.user_ns["found"]
    from nbopt.batching._efficient import scaled_learning_rate

    noise = result.noise_scale.value
    expected = scaled_learning_rate(found.suggestion, 16, result.batch_size, noise)
    assert result.learning_rate == expected
    cell(shell, UNCHANGED)
