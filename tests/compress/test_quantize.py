"""Quantization: dynamic int8 (torch.ao on CPU, torchao's path), static int8 (PT2E), casts."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

from nbopt.compress._cast import cast, check_cast, fast_path
from nbopt.compress._measure import count_weights, serialized_size
from nbopt.compress._quantize import check_int8, quantize_int8_cpu, quantize_int8_torchao
from nbopt.compress._registry import Cast, DynamicInt8, StaticInt8, StepContext
from nbopt.compress._static import check_int8_static, quantize_int8_static
from nbopt.errors import ConfigError

CPU = torch.device("cpu")


def _relative_error(expected: torch.Tensor, actual: torch.Tensor) -> float:
    return ((actual.float() - expected).norm() / expected.norm()).item()


def test_int8_mlp_is_about_four_times_smaller_and_close(mlp: nn.Module) -> None:
    x = torch.randn(32, 64)
    with torch.no_grad():
        expected = mlp(x)
    size = serialized_size(mlp)
    quantized = quantize_int8_cpu(mlp).model
    assert type(quantized.fc1).__name__ == "Linear" and not isinstance(quantized.fc1, nn.Linear)
    # A quarter, plus each output channel's scale and zero point and the file's own records,
    # which weigh more in a model this small (26k weights).
    assert serialized_size(quantized) < 0.37 * size
    with torch.no_grad():
        assert _relative_error(expected, quantized(x)) < 0.02


def test_int8_quantizes_embedding_tables_too(
    text_model: nn.Module, token_ids: torch.Tensor
) -> None:
    """Most of this model is its embedding table: quantizing Linear layers alone would barely
    shrink it."""
    with torch.no_grad():
        expected = text_model(token_ids)
    size = serialized_size(text_model)
    table_size = serialized_size(text_model.embed)
    outcome = quantize_int8_cpu(text_model)
    quantized = outcome.model
    assert quantized.embed.weight().dtype == torch.quint8
    # 64 bytes a row, plus each row's float scale and offset.
    assert serialized_size(quantized.embed) < 0.3 * table_size
    # The attention projections (5% of the weights) stay in float.
    assert serialized_size(quantized) < 0.34 * size
    with torch.no_grad():
        assert _relative_error(expected, quantized(token_ids)) < 0.05
    assert "Embedding" in outcome.detail
    assert any("MultiheadAttention" in note for note in outcome.notes)


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")  # the float reference
def test_int8_transformer_encoder_with_padding_mask_still_runs() -> None:
    """torch's fused and nested-tensor paths reject quantized Linear layers; they are turned
    off for the quantized layers only."""
    torch.manual_seed(0)
    encoder = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(32, 4, 64, batch_first=True), 2, enable_nested_tensor=True
    ).eval()
    x = torch.randn(2, 6, 32)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, 4:] = True
    with torch.no_grad():
        expected = encoder(x, src_key_padding_mask=mask)
    quantized = quantize_int8_cpu(encoder).model
    with torch.no_grad():
        actual = quantized(x, src_key_padding_mask=mask)
    assert _relative_error(expected[1], actual[1]) < 0.05


def test_int8_quantizes_lstm_layers() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.LSTM(16, 64, batch_first=True))
    x = torch.randn(4, 10, 16)
    with torch.no_grad():
        expected = model(x)[0]
    size = serialized_size(model)
    outcome = quantize_int8_cpu(model)
    quantized = outcome.model
    assert "LSTM" in outcome.detail
    assert serialized_size(quantized) < 0.4 * size
    with torch.no_grad():
        assert _relative_error(expected, quantized(x)[0]) < 0.05


def test_int8_emits_no_torch_ao_deprecation_warning(mlp: nn.Module) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quantize_int8_cpu(mlp).model(torch.randn(2, 64))
    assert not [w for w in caught if "deprecated" in str(w.message)]
    with pytest.warns(DeprecationWarning, match="torch.ao.quantization is deprecated"):
        torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(4, 4)), {nn.Linear})


def test_int8_without_any_quantizable_layer_is_a_config_error() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3))
    with pytest.raises(ConfigError, match="int8-static"):
        check_int8(model, DynamicInt8(), StepContext(None, CPU))


def test_int8_on_an_unsupported_device_is_a_config_error(mlp: nn.Module) -> None:
    with pytest.raises(ConfigError, match="not supported on meta"):
        check_int8(mlp, DynamicInt8(), StepContext(None, torch.device("meta")))


@pytest.mark.slow
def test_torchao_int8_path_quantizes_linear_and_embedding_weights(
    text_model: nn.Module, token_ids: torch.Tensor
) -> None:
    """The CUDA path (torchao), run here on CPU: it is not fast on CPU, but it is the same
    code, and its weights and outputs can be checked."""
    with torch.no_grad():
        expected = text_model(token_ids)
    size = serialized_size(text_model)
    weights = count_weights(text_model)
    outcome = quantize_int8_torchao(text_model)
    model = outcome.model
    assert "Int8" in type(model.encoder.linear1.weight).__name__
    assert "Int8" in type(model.embed.weight).__name__
    assert serialized_size(model) < 0.32 * size
    assert count_weights(model)[0] == weights[0]
    with torch.no_grad():
        assert _relative_error(expected, model(token_ids)) < 0.05


@pytest.mark.slow
def test_torchao_import_writes_no_cuda_extension_noise() -> None:
    """torchao's first import logs "Failed to load ..." for CUDA extensions on CPU machines."""
    code = (
        "from nbopt.compress._quantize import import_torchao\n"
        "import_torchao('torchao.quantization', 'test')\n"
        "import logging; logging.getLogger('torchao').warning('still logging')\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "Failed to load" not in completed.stderr
    assert "register_constant" not in completed.stderr
    assert "still logging" in completed.stderr  # the level was restored


@pytest.mark.slow
def test_int8_static_quantizes_convolutions_with_calibration(
    cnn: nn.Module, digits: tuple[torch.Tensor, ...], accuracy
) -> None:
    x_train, y_train, x_test, _ = digits
    calib = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x_train[:256], y_train[:256]), batch_size=64
    )
    context = StepContext(x_test[:32], CPU)
    check_int8_static(cnn, StaticInt8(calib), context)
    before = accuracy(cnn)
    size = serialized_size(cnn)
    outcome = quantize_int8_static(cnn, StaticInt8(calib), context)
    model = outcome.model
    assert isinstance(model, torch.fx.GraphModule)
    assert outcome.info["calibration_batches"] == 4
    assert serialized_size(model) < 0.45 * size  # the float weights left by convert are gone
    assert accuracy(model) > before - 0.03
    assert model(x_test[:5]).shape == (5, 10)  # any batch size, not only the example's
    assert any("torch.compile" in note for note in outcome.notes)


def test_int8_static_checks_its_inputs(cnn: nn.Module) -> None:
    x = torch.randn(4, 1, 8, 8)
    with pytest.raises(ConfigError, match="needs example="):
        check_int8_static(cnn, StaticInt8([x]), StepContext(None, CPU))
    with pytest.raises(ConfigError, match="holds no batch"):
        check_int8_static(cnn, StaticInt8([]), StepContext(x, CPU))
    with pytest.raises(ConfigError, match="calibration batch does not run"):
        check_int8_static(cnn, StaticInt8([torch.randn(4, 3, 8, 8)]), StepContext(x, CPU))
    with pytest.raises(ConfigError, match="not supported on cuda"):
        check_int8_static(cnn, StaticInt8([x]), StepContext(x, torch.device("cuda")))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_cast_halves_the_size_and_keeps_float32_inputs_and_outputs(
    mlp: nn.Module, dtype: str
) -> None:
    x = torch.randn(8, 64)
    with torch.no_grad():
        expected = mlp(x)
    size = serialized_size(mlp)
    model = cast(mlp, Cast(dtype), StepContext(x, CPU)).model
    assert model.fc1.weight.dtype == getattr(torch, dtype)
    assert serialized_size(model) < 0.55 * size
    with torch.no_grad():
        output = model(x)
    assert output.dtype == torch.float32
    assert _relative_error(expected, output) < 0.02


def test_cast_warns_where_the_hardware_has_no_fast_path(mlp: nn.Module) -> None:
    for dtype in ("float16", "bfloat16"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_cast(mlp, Cast(dtype), StepContext(None, CPU))
        warned = any("no fast" in str(w.message) for w in caught)
        assert warned == (not fast_path(getattr(torch, dtype), CPU))
