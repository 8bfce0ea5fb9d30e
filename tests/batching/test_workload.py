"""Batches of any size, and steps that leave the user's model as it was."""

from __future__ import annotations

from collections import namedtuple

import pytest
import torch

from nbopt.batching._workload import Batches, Workload, batch_length, call_model
from nbopt.errors import ConfigError

Pair = namedtuple("Pair", "x mask")
CPU = torch.device("cpu")


def test_a_tensor_is_tiled_by_repeating_its_rows() -> None:
    example = torch.arange(6.0).reshape(3, 2)
    inputs, target = Batches(example, None, None, CPU)(7)
    assert target is None
    assert inputs.shape == (7, 2)
    assert torch.equal(inputs[:, 0], torch.tensor([0.0, 2, 4, 0, 2, 4, 0]))
    assert inputs.data_ptr() != example.data_ptr()  # a fresh batch, not a view


def test_tuples_dicts_and_named_tuples_keep_their_shape_and_non_tensors() -> None:
    x, mask = torch.randn(4, 3), torch.ones(4, 5, dtype=torch.bool)
    batches = Batches((x, mask, "keep"), None, None, CPU)
    tiled, _ = batches(10)
    assert isinstance(tiled, tuple)
    assert [t.shape[0] for t in tiled[:2]] == [10, 10] and tiled[2] == "keep"
    named, _ = Batches(Pair(x, mask), None, None, CPU)(2)
    assert isinstance(named, Pair) and named.x.shape == (2, 3)
    keywords, _ = Batches({"x": x, "scale": 2.0}, None, None, CPU)(6)
    assert keywords["x"].shape == (6, 3) and keywords["scale"] == 2.0


def test_the_target_is_tiled_with_the_same_rows() -> None:
    x, y = torch.arange(3.0).unsqueeze(1), torch.tensor([10, 11, 12])
    inputs, target = Batches(x, None, y, CPU)(5)
    assert torch.equal(target, torch.tensor([10, 11, 12, 10, 11]))
    assert torch.equal(inputs.squeeze(1), torch.tensor([0.0, 1, 2, 0, 1]))


def test_make_batch_is_called_with_the_size_and_checked() -> None:
    calls = []

    def make(size: int) -> torch.Tensor:
        calls.append(size)
        return torch.zeros(size, 4)

    inputs, _ = Batches(None, make, None, CPU)(12)
    assert calls == [12] and inputs.shape == (12, 4)
    with pytest.raises(ConfigError, match=r"make_batch\(8\) returned a batch of 4"):
        Batches(None, lambda size: torch.zeros(4, 2), None, CPU)(8)


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (torch.tensor(3.0), "no batch dimension"),
        ((torch.zeros(4, 2), torch.zeros(5, 2)), r"different first dimensions \[4, 5\]"),
        (torch.zeros(0, 3), "empty batch"),
        ([1, 2, 3], "holds no tensor"),
        ({"x": 1.0}, "holds no tensor"),
    ],
    ids=["0-d", "mismatch", "empty", "list-of-ints", "dict-without-tensor"],
)
def test_batches_without_a_clear_batch_dimension_are_refused(batch, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        batch_length(batch, "example")


def test_example_and_target_must_describe_the_same_samples() -> None:
    with pytest.raises(ConfigError, match="example has 4 samples but target has 3"):
        Batches(torch.zeros(4, 2), None, torch.zeros(3), CPU)


def test_call_model_spreads_tuples_and_dicts() -> None:
    class Sum(torch.nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
            return a if b is None else a + b

    model, one = Sum(), torch.ones(2)
    assert torch.equal(call_model(model, one), one)
    assert torch.equal(call_model(model, (one, one)), 2 * one)
    assert torch.equal(call_model(model, {"a": one, "b": 3 * one}), 4 * one)


def test_inference_runs_in_eval_mode_and_restores_each_modules_mode(make_mlp, watch) -> None:
    model = make_mlp()
    model[3].eval()  # a mixed state: only the dropout in eval mode
    unchanged = watch(model)
    seen = []
    model.register_forward_hook(lambda module, args, out: seen.append(module.training))
    with Workload(model, train=False) as workload:
        workload.step(torch.randn(8, 64), None)
    assert seen == [False]
    unchanged()


def test_a_training_step_changes_a_copy_only(make_mlp, watch) -> None:
    model = make_mlp()
    unchanged = watch(model)
    losses = []

    def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        value = torch.nn.functional.cross_entropy(output, target)
        losses.append(value.item())
        return value

    with Workload(model, train=True, loss=loss) as workload:
        copy = workload._net
        for _ in range(3):
            workload.step(torch.randn(16, 64), torch.randint(0, 10, (16,)))
    assert len(losses) == 3
    assert not torch.equal(copy[0].weight, model[0].weight)  # the copy did train
    unchanged()


def test_the_default_loss_needs_a_differentiable_output(make_mlp) -> None:
    with (
        Workload(torch.nn.Sequential(torch.nn.Linear(4, 3), Argmax()), train=True) as workload,
        pytest.raises(ConfigError, match="give loss="),
    ):
        workload.step(torch.randn(2, 4), None)


def test_a_loss_must_return_one_number(make_mlp) -> None:
    with (
        Workload(make_mlp(), train=True, loss=lambda out, target: out) as workload,
        pytest.raises(ConfigError, match=r"loss must return a tensor with one element, got a "),
    ):
        workload.step(torch.randn(4, 64), None)


def test_a_model_without_trainable_parameters_cannot_train(make_mlp) -> None:
    model = make_mlp().requires_grad_(False)
    with pytest.raises(ConfigError, match="no parameter that requires grad"):
        Workload(model, train=True).__enter__()


class Argmax(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.argmax(dim=1)
