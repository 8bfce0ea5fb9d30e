"""Fixtures of the learning-rate tests: digits (scikit-learn's bundled set), small real models,
a recorder of everything a range test must leave as it was, and an nbopt shell."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from sklearn.datasets import load_digits


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def always_cheap(monkeypatch: pytest.MonkeyPatch) -> None:
    """By default, three sweeps when two more take at most 20 s: on a loaded machine that
    depends on the load, so the tests fix it to three (one test sets it back to one)."""
    import nbopt.learning_rate

    monkeypatch.setattr(nbopt.learning_rate, "CHEAP_SECONDS", math.inf)


@pytest.fixture(scope="session")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y): the 1,797 8x8 digits as 64 features in [0, 1], and their labels."""
    data = load_digits()
    return torch.tensor(data.data / 16.0, dtype=torch.float32), torch.tensor(data.target)


@pytest.fixture
def make_mlp() -> Callable[[], torch.nn.Module]:
    """An MLP with batch norm and dropout: buffers and randomness that training would touch."""

    def make() -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.Linear(64, 64),
            torch.nn.BatchNorm1d(64),
            torch.nn.ReLU(),
            torch.nn.Dropout(0.1),
            torch.nn.Linear(64, 10),
        )

    return make


def _state_of_optimizer(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    state = optimizer.state_dict()
    return {
        "groups": [dict(group) for group in state["param_groups"]],
        "state": {
            key: {
                name: value.clone() if isinstance(value, torch.Tensor) else value
                for name, value in entry.items()
            }
            for key, entry in state["state"].items()
        },
    }


@pytest.fixture
def watch() -> Callable[..., Callable[[], None]]:
    """``unchanged = watch(model, optimizer=None)``; ``unchanged()`` asserts that the model's
    weights, buffers, gradients and modes, and the optimizer's groups and state, are as they
    were, and that torch's random state is too."""

    def record(
        model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None
    ) -> Callable[[], None]:
        weights = {name: value.clone() for name, value in model.state_dict().items()}
        modes = [module.training for module in model.modules()]
        grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
        before = _state_of_optimizer(optimizer) if optimizer is not None else None
        rng = torch.get_rng_state()

        def unchanged() -> None:
            after = model.state_dict()
            assert after.keys() == weights.keys()
            for name, value in weights.items():
                assert torch.equal(after[name], value), f"{name} changed"
            assert [module.training for module in model.modules()] == modes
            for grad, parameter in zip(grads, model.parameters(), strict=True):
                assert (
                    (parameter.grad is None) if grad is None else torch.equal(parameter.grad, grad)
                )
            if optimizer is not None:
                now = _state_of_optimizer(optimizer)
                assert now["groups"] == before["groups"]
                assert now["state"].keys() == before["state"].keys()
                for key, entry in before["state"].items():
                    for name, value in entry.items():
                        other = now["state"][key][name]
                        same = (
                            torch.equal(other, value)
                            if isinstance(value, torch.Tensor)
                            else other == value
                        )
                        assert same, f"optimizer state {key}.{name} changed"
                held = [p for group in optimizer.param_groups for p in group["params"]]
                assert all(any(p is q for q in model.parameters()) for p in held)
            assert torch.equal(torch.get_rng_state(), rng)

        return unchanged

    return record


def run_cell(shell: Any, source: str) -> Any:
    result = shell.run_cell(source)
    result.raise_error()
    return result.result


@pytest.fixture
def cell() -> Callable[[Any, str], Any]:
    """``cell(shell, source)``: run a notebook cell, re-raising its error."""
    return run_cell


@pytest.fixture
def shell(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An InteractiveShell with nbopt loaded, a clean namespace, working in ``tmp_path``."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    monkeypatch.chdir(tmp_path)
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    ip = InteractiveShell.instance(config=config)
    run_cell(ip, "%load_ext nbopt")
    ip.reset(new_session=False)
    run_cell(ip, "%config NbOptMagics.progress = 'none'")
    run_cell(ip, "%config NbOptMagics.logdir = 'none'")
    yield ip
    run_cell(ip, "%config NbOptMagics.progress = 'auto'")
    run_cell(ip, "%config NbOptMagics.logdir = 'runs/nbopt'")
