"""int8 on its backends (``quant_backend=``), quantization-aware training (``qat=True``), and
nbopt without ``torch.ao.quantization``."""

from __future__ import annotations

import sys
import warnings

import pytest
import torch
from torch import nn

import nbopt
from nbopt.compress import optimize
from nbopt.compress._int8 import FIDELITY, fidelity
from nbopt.errors import ConfigError

QUIET = {"progress": "none", "logdir": None}


@pytest.fixture
def without_torch_ao(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import torch.ao.quantization`` fails, as it will once torch removes it (torchao, which
    nbopt then uses, is imported first, as on a torch that never had it)."""
    import torchao.quantization  # noqa: F401

    monkeypatch.setitem(sys.modules, "torch.ao.quantization", None)
    with pytest.raises(ImportError):
        import torch.ao.quantization  # noqa: F401


@pytest.mark.parametrize("backend", ["torchao", "torch.ao"])
def test_each_backend_gives_int8_layers_and_reports_its_fidelity(
    mlp: nn.Module, backend: str, quantized
) -> None:
    x = torch.randn(16, 64)
    result = optimize(mlp, quant="int8", quant_backend=backend, example=x, **QUIET)
    assert result.quant_backend == backend
    assert all(quantized(layer) for layer in (result.model.fc1, result.model.fc2, result.model.out))
    with torch.no_grad():
        assert result.fidelity == pytest.approx(fidelity(mlp(x), result.model(x)), abs=1e-6)
    assert FIDELITY <= result.fidelity <= 1.0
    assert result.report["size_bytes"].ratio < 0.35
    assert backend in result.steps[0].detail and "cosine to float" in result.steps[0].detail


def test_auto_measures_the_backends_once_per_structure_and_says_what_it_chose(
    mlp: nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbopt.compress import _int8

    monkeypatch.setattr(_int8, "_CHOICES", type(_int8._CHOICES)())
    measured: list[str] = []
    original = _int8._measure
    monkeypatch.setattr(
        _int8, "_measure", lambda *args: measured.append("measured") or original(*args)
    )
    x = torch.randn(16, 64)
    first = optimize(mlp, quant="int8", example=x, **QUIET)
    second = optimize(mlp, quant="int8", example=x, **QUIET)
    assert measured == ["measured"]  # the second run reused the choice
    assert first.quant_backend == second.quant_backend in ("torchao", "torch.ao")
    (note,) = [n for n in first.notes if n.startswith("int8 backend")]
    assert "torch.ao" in note and "torchao" in note and "latency" in note


class _Distorted(nn.Module):
    """A candidate whose outputs are the model's, negated or pushed along a constant."""

    def __init__(self, model: nn.Module, negate: bool) -> None:
        super().__init__()
        self.model, self.negate = model, negate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return -out if self.negate else out + 100 * out.abs().mean()


def test_auto_takes_the_closest_backend_when_none_is_faithful(mlp: nn.Module) -> None:
    from nbopt.compress import _int8
    from nbopt.compress._registry import StepContext

    def quantize(name: str, model: nn.Module, skip: tuple[str, ...]) -> nn.Module:
        return _Distorted(model, negate=name == "torch.ao")

    context = StepContext(torch.randn(16, 64), torch.device("cpu"))
    choice = _int8._measure(mlp, (), context, ["torch.ao", "torchao"], quantize)
    assert choice.measured["torch.ao"][1] == pytest.approx(-1.0)
    assert -1 < choice.measured["torchao"][1] < FIDELITY
    assert choice.name == "torchao" and "the closest" in choice.reason


def test_without_torch_ao_int8_runs_on_torchao(mlp: nn.Module, without_torch_ao, quantized):
    x = torch.randn(16, 64)
    result = optimize(mlp, quant="int8", example=x, **QUIET)
    assert result.quant_backend == "torchao" and quantized(result.model.fc1)
    with pytest.raises(ConfigError, match=r"this torch has no torch\.ao\.quantization"):
        optimize(mlp, quant="int8", quant_backend="torch.ao", example=x, **QUIET)


def test_the_magic_works_without_torch_ao(shell, run_cell, without_torch_ao) -> None:
    run_cell(shell, "import torch\nx = torch.randn(8, 32)")
    result = run_cell(
        shell,
        "%%optimize quant=int8 example=x\nmodel = torch.nn.Sequential(torch.nn.Linear(32, 64))",
    )
    assert result.quant_backend == "torchao"


def test_torch_aos_deprecation_warnings_do_not_reach_the_user(mlp: nn.Module) -> None:
    x = torch.randn(16, 64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = optimize(mlp, quant="int8", quant_backend="torch.ao", example=x, **QUIET)
        result.model(x)
    assert [str(w.message) for w in caught] == []


def test_qat_trains_with_fake_quantized_layers_then_gives_an_int8_model(
    mlp: nn.Module, digits, quantized
) -> None:
    seen: list[list[str]] = []

    def finetune(model: nn.Module) -> None:
        seen.append([type(m).__name__ for m in (model.fc1, model.fc2, model.out)])
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        x, y = digits[0][:128], digits[1][:128]
        for step in range(2):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            nbopt.report(step)

    result = optimize(
        mlp, quant="int8", qat=True, finetune=finetune, example=digits[0][:16], **QUIET
    )
    assert seen == [["FakeQuantizedLinear"] * 3]
    assert [s.kind for s in result.steps] == ["finetune", "quant"]
    assert result.steps[0].info["fake_quantized"] == 3
    assert "int8 fake quantization" in result.steps[0].detail
    assert all(quantized(layer) for layer in (result.model.fc1, result.model.fc2, result.model.out))
    # After the fine-tune the layers are plain Linear again, holding the trained weights.
    assert not any(type(m).__name__.startswith("FakeQuantized") for m in result.model.modules())


def test_qat_with_the_built_in_loop_after_pruning(mlp: nn.Module, digits, quantized) -> None:
    result = optimize(
        mlp,
        prune=0.5,
        quant="int8",
        qat=True,
        data=(digits[0][:128], digits[1][:128]),
        example=digits[0][:16],
        **QUIET,
    )
    assert [s.kind for s in result.steps] == ["prune", "finetune", "quant"]
    assert result.steps[1].info["fake_quantized"] == 3
    assert result.model.fc1.out_features == 64 and quantized(result.model.fc1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"qat": True}, "qat=True needs a fine-tune"),
        ({"qat": True, "quant": "fp16", "finetune": print}, "qat=True needs quant=int8"),
        ({"quant_backend": "onnx"}, "unknown quant_backend 'onnx'"),
        ({"quant": "fp16", "quant_backend": "torchao"}, "quant_backend= only applies"),
    ],
)
def test_bad_quantization_input_is_one_line(mlp: nn.Module, options: dict, message: str):
    arguments = {"quant": "int8", "example": torch.randn(4, 64), **options}
    with pytest.raises(ConfigError, match=message):
        optimize(mlp, **arguments, **QUIET)
