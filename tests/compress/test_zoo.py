"""Every compression capability on the architectures users bring (the zoo in tests/zoo.py):
a measured result or one clear error line, never a third-party traceback or warning."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn
from torch.utils import _pytree as pytree
from zoo import MODELS, call, capability_params, fresh, options_for

from nbopt.compress import optimize
from nbopt.compress._inputs import set_eval
from nbopt.compress._measure import count_weights, measure, serialized_size
from nbopt.compress._registry import LOWRANK, PRUNING, QUANTIZATION, StepContext
from nbopt.errors import ConfigError

CPU = torch.device("cpu")


def _shapes(output: object) -> list[tuple[int, ...]]:
    return [tuple(t.shape) for t in pytree.tree_leaves(output) if isinstance(t, torch.Tensor)]


def _run_step(model: nn.Module, example: object, options: dict) -> object:
    """The capability's step as ``optimize`` runs it: its check, then its function."""
    if "prune" in options:
        backend = PRUNING.get(options.get("prune_mode", "structured"))
        config = backend.make_config(amount=options["prune"])
    elif "lowrank" in options:
        backend = LOWRANK.get("svd")
        config = backend.make_config(energy=options["lowrank"])
    else:
        backend = QUANTIZATION.get(options["quant"])
        config = backend.make_config(calib=options.get("calib"))
    context = StepContext(example, CPU)
    check = backend.load_check()
    if check is not None:
        check(model, config, context)
    return backend.load()(model, config, context)


def _foreign(caught: list[warnings.WarningMessage]) -> list[str]:
    """Warnings that are not nbopt's own (``nbopt: ...``)."""
    return [str(w.message)[:120] for w in caught if not str(w.message).startswith("nbopt:")]


@pytest.mark.parametrize(("name", "capability"), capability_params())
def test_every_capability_gives_a_measured_model_with_the_same_outputs(
    name: str, capability: str
) -> None:
    entry = fresh(name)
    model = entry.model
    with torch.no_grad():
        expected = _shapes(call(model, entry.example))
    weights_before = count_weights(model)[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcome = _run_step(model, entry.example, options_for(entry, capability))
        result = outcome.model
        set_eval(result)
        measured = measure(result, entry.example, metric=entry.metric(result), latency=False)
        with torch.no_grad():
            shapes = _shapes(call(result, entry.example))
    assert _foreign(caught) == []
    assert shapes == expected
    assert 0 < measured.params <= weights_before
    assert measured.size_bytes == serialized_size(result) > 0
    assert measured.macs > 0
    assert math.isfinite(measured.metric)
    assert outcome.detail
    # At most one note summarises what the libraries warned about.
    assert sum(note.startswith("warnings of the libraries") for note in outcome.notes) <= 1


@pytest.mark.parametrize(
    "name", ["lstm", "recommender", pytest.param("gpt2", marks=pytest.mark.slow)]
)
def test_optimize_prunes_and_quantizes_leaving_the_original_unchanged(
    name: str,
) -> None:
    """The whole run, measured, on a recurrent model, an embedding-bag model and a tied one
    (every model's steps are run above; a full run times them, so only a few here)."""
    entry = fresh(name)
    state = {k: v.clone() for k, v in entry.model.state_dict().items()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = optimize(
            entry.model,
            prune=0.5,
            quant="int8",
            example=entry.example,
            evaluate=entry.metric,
            progress="none",
            logdir=None,
        )
    assert _foreign(caught) == []
    report = result.report
    assert report["params"].ratio < 1
    assert report["size_bytes"].ratio < 1
    assert report["metric"].before == pytest.approx(1.0)
    after = entry.model.state_dict()
    assert after.keys() == state.keys()
    assert all(torch.equal(after[k], v) for k, v in state.items())


def test_a_library_failure_is_one_clear_error_line() -> None:
    """torch.export cannot follow a branch on a tensor's value: int8-static says so in one
    line naming the step, the library and what to do."""

    class Branching(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return y if y.sum() > 0 else -y

    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ConfigError) as error:
        optimize(
            Branching().eval(),
            quant="int8-static",
            calib=[x],
            example=x,
            progress="none",
            logdir=None,
        )
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("quant=int8-static failed on this model (torch raised")
    assert "use quant=int8" in message


@pytest.mark.parametrize("backend", ["torchao", "torch.ao"])
@pytest.mark.parametrize("name", MODELS)
def test_int8_runs_on_either_backend_for_every_zoo_model(name: str, backend: str) -> None:
    """quant_backend=torchao (the maintained kernels) and torch.ao both quantize every
    architecture: a smaller model, outputs of the same shapes, no foreign warning."""
    entry = fresh(name)
    size = serialized_size(entry.model)
    with torch.no_grad():
        expected = _shapes(call(entry.model, entry.example))
    config = QUANTIZATION.get("int8").make_config(backend=backend)
    context = StepContext(entry.example, CPU)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        QUANTIZATION.get("int8").load_check()(entry.model, config, context)
        outcome = QUANTIZATION.get("int8").load()(entry.model, config, context)
        set_eval(outcome.model)
        with torch.no_grad():
            shapes = _shapes(call(outcome.model, entry.example))
    assert _foreign(caught) == []
    assert shapes == expected
    assert outcome.info["backend"] == backend
    assert 0 < outcome.info["fidelity"] <= 1 + 1e-9
    # A model whose quantized layers are a sliver of it (conv1d's classifier head) may not shrink.
    assert serialized_size(outcome.model) < size or name == "conv1d"
