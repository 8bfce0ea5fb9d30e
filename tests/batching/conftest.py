"""Fixtures of the batch-size tests: small real models, one torch thread, an nbopt shell."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Run torch on one thread: on a shared two-core machine, two OpenMP threads wait on each
    other whenever another process takes a core, which makes timings erratic."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _mlp(width: int = 256, classes: int = 10) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(64, width),
        torch.nn.BatchNorm1d(width),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.2),
        torch.nn.Linear(width, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, classes),
    )


def _cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1),
        torch.nn.BatchNorm2d(16),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(32, 10),
    )


@pytest.fixture
def make_mlp() -> Callable[..., torch.nn.Module]:
    """``make_mlp(width=256)``: an MLP for 64 features, with batch norm and dropout (state that
    a training step would change)."""
    return _mlp


@pytest.fixture
def make_cnn() -> Callable[[], torch.nn.Module]:
    """``make_cnn()``: a small CNN for 3x16x16 images, with batch norm."""
    return _cnn


@pytest.fixture
def watch() -> Callable[[torch.nn.Module], Callable[[], None]]:
    """``unchanged = watch(model)`` records the model; ``unchanged()`` asserts that its
    weights, buffers, gradients and train/eval modes are as recorded."""

    def record(model: torch.nn.Module) -> Callable[[], None]:
        state = {name: value.detach().clone() for name, value in model.state_dict().items()}
        modes = [module.training for module in model.modules()]
        grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]

        def unchanged() -> None:
            after = model.state_dict()
            assert after.keys() == state.keys()
            for name, value in state.items():
                assert torch.equal(after[name], value), f"{name} changed"
            assert [module.training for module in model.modules()] == modes
            for grad, parameter in zip(grads, model.parameters(), strict=True):
                if grad is None:
                    assert parameter.grad is None
                else:
                    assert torch.equal(parameter.grad, grad)

        return unchanged

    return record


def run_cell(shell: Any, source: str) -> Any:
    """Run ``source`` as a notebook cell and re-raise its error (a plain run_cell swallows it)."""
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
