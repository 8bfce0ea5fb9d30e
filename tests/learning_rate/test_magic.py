"""``%lr_find`` in an IPython shell: results in the namespace, one-line usage errors."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from nbopt.learning_rate import LRFindResult

SETUP = """
import torch
from sklearn.datasets import load_digits

digits = load_digits()
x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
y = torch.tensor(digits.target)
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
loss_fn = torch.nn.CrossEntropyLoss()
before = {k: v.clone() for k, v in net.state_dict().items()}
"""
UNCHANGED = (
    "assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())\n"
    "assert opt.param_groups[0]['lr'] == 0.01 and not opt.state"
)


def test_the_magic_stores_the_result_and_sets_the_rate(shell, cell) -> None:
    cell(shell, SETUP)
    returned = cell(
        shell, "%lr_find net data=loader loss=loss_fn optimizer=opt steps=30 set=lr out=found"
    )
    namespace = shell.user_ns
    result = namespace["found"]
    assert isinstance(result, LRFindResult) and returned is result
    assert namespace["_nbopt"] is result
    assert namespace["lr"] == result.suggestion and result.optimizer == "SGD"
    assert result.batch_size == 32 and len(result.sweeps) == 3
    cell(shell, UNCHANGED)


def test_tensors_a_rule_and_a_batch_size(shell, cell) -> None:
    cell(shell, SETUP)
    cell(
        shell, "%lr_find net data=(x, y) loss=loss_fn rule=valley batch_size=128 repeats=1 steps=20"
    )
    result = shell.user_ns["_nbopt"]
    assert result.rule == "valley" and result.batch_size == 128 and len(result.sweeps) == 1
    assert result.suggestion == result.suggestions["valley"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("%lr_find data=loader", "name the model"),
        ("%lr_find net loss=loss_fn", "give the training data: data="),
        (
            "%lr_find nett data=loader",
            r"'nett' is not defined in the notebook \(did you mean net\?\)",
        ),
        ("%lr_find x data=loader", "'x' is a Tensor, not an nn.Module"),
        ("%lr_find net data=loader loss=x", "'x' is not callable"),
        ("%lr_find net data=loader rule=valey", r"expected one of .* \(did you mean valley\?\)"),
        ("%lr_find net data=loader steps=5", "expected a value >= 10"),
        ("%lr_find net data=loader start=0", "expected a value > 0"),
        ("%lr_find net data=loader loss=loss_fn batch_size=8", "a DataLoader has its own"),
        ("%lr_find net data=x loss=loss_fn", "data must be a DataLoader or a tuple of tensors"),
        ("%lr_find net data=(x[:, :10], y) loss=loss_fn", "data does not fit the model"),
        ("%lr_find net data=loader stepz=20", r"unknown option 'stepz' \(did you mean steps\?\)"),
    ],
)
def test_bad_input_is_one_usage_error_line_and_changes_nothing(
    shell, cell, line: str, message: str
) -> None:
    cell(shell, SETUP)
    with pytest.raises(UsageError, match=message) as info:
        cell(shell, line)
    assert "\n" not in str(info.value)
    assert "_nbopt" not in shell.user_ns
    cell(shell, UNCHANGED)


def test_every_option_sets_a_parameter_of_find_lr_with_its_default() -> None:
    import inspect

    from nbopt.learning_rate import find_lr
    from nbopt.magics import lr_find

    parameters = inspect.signature(find_lr).parameters
    for option in lr_find.SCHEMA.options.values():
        if option.parameter is None:
            continue
        assert option.parameter in parameters, option.name
        default = parameters[option.parameter].default
        if default is not inspect.Parameter.empty:
            assert option.default == default, option.name
