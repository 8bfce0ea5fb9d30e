"""``export=``: the optimised model written to a file, loaded back and checked."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from nbopt.compress import optimize
from nbopt.errors import ConfigError

QUIET = {"progress": "none", "logdir": None}


def test_a_pruned_model_round_trips_through_pt2_at_any_batch_size(
    mlp: nn.Module, tmp_path: Path
) -> None:
    x = torch.randn(8, 64)
    path = tmp_path / "small" / "mlp.pt2"
    result = optimize(mlp, prune=0.5, export=path, example=x, **QUIET)
    assert [s.kind for s in result.steps] == ["prune", "export"]
    exported = result.exported
    assert exported["path"] == str(path) and exported["file_bytes"] == path.stat().st_size
    assert exported["difference"] <= 1e-3
    assert result.steps[-1].after == result.steps[0].after  # the model itself is as it was
    loaded = torch.export.load(path).module()
    other = torch.randn(3, 64)  # a batch size the example did not have
    with torch.no_grad():
        assert torch.allclose(loaded(other), result.model(other), atol=1e-5)
    assert "exported" in result.summary()


def test_an_int8_model_exports_to_pt2_on_torchaos_kernels(mlp: nn.Module, tmp_path: Path) -> None:
    """torch.export cannot trace torch.ao's packed weights, so auto takes torchao whatever
    the timings say."""
    x = torch.randn(8, 64)
    result = optimize(mlp, quant="int8", export=tmp_path / "q.pt2", example=x, **QUIET)
    assert result.quant_backend == "torchao"
    assert (tmp_path / "q.pt2").exists() and result.exported["difference"] <= 1e-3


def test_a_model_round_trips_through_onnx(cnn: nn.Module, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    x = torch.randn(4, 1, 8, 8)
    result = optimize(cnn, prune=0.5, export=tmp_path / "cnn.onnx", example=x, **QUIET)
    assert (tmp_path / "cnn.onnx").stat().st_size == result.exported["file_bytes"]
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "cnn.onnx"))
    (output,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(output), result.model(x), atol=1e-4)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"export": "model.pt3"}, r"unknown export format '\.pt3' \(did you mean \.pt2\?\)"),
        ({"export": "model.pt2", "example": None}, "export= needs example="),
        (
            {"export": "model.pt2", "quant": "int8", "quant_backend": "torch.ao"},
            r"export=\.pt2 cannot hold torch\.ao's int8 layers",
        ),
    ],
)
def test_bad_export_input_is_one_line_before_any_work(
    mlp: nn.Module, tmp_path: Path, options: dict, message: str, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message):
        optimize(mlp, **{"example": torch.randn(4, 64), **options}, **QUIET)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_onnx_package_names_the_extra(mlp: nn.Module, monkeypatch, tmp_path) -> None:
    import sys

    from nbopt._imports import MissingDependency

    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(MissingDependency, match=r'pip install "nbopt\[onnx\]"'):
        optimize(mlp, export=tmp_path / "m.onnx", example=torch.randn(4, 64), **QUIET)
