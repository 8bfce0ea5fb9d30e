"""The worked examples of the compression pages, against torch, scikit-learn and nbopt itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA
from torch import nn
from torch.nn.utils import prune
from torch.utils.flop_counter import FlopCounterMode

import nbopt


def _optimize(model, **options):
    return nbopt.optimize(model, progress="none", logdir=None, **options)


def test_l1_filter_choice_is_torchs(page):
    example = page("methods/pruning.md")["pruning"]
    conv = nn.Conv2d(2, 4, 3)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(example["weight"]))
    prune.ln_structured(conv, "weight", amount=0.5, n=1, dim=0)
    zeroed = [j for j in range(4) if conv.weight_mask[j].sum() == 0]
    assert example["pruned_filters"].tolist() == zeroed


@pytest.mark.slow  # nbopt also times both models on the example: several seconds
def test_filter_pruning_costs_are_what_nbopt_measures(page):
    pytest.importorskip("torch_pruning")
    example = page("methods/pruning.md")["pruning"]
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    )
    result = _optimize(model, prune=0.5, example=torch.randn(1, 3, 32, 32))
    assert (result.before.params, result.after.params) == (
        example["params_before"],
        example["params_after"],
    )
    assert (result.before.macs, result.after.macs) == (
        example["macs_before"],
        example["macs_after"],
    )


def test_soft_pruning_regrowth_and_choice_follow_least_squares(page):
    example = page("methods/pruning.md")["pruning"]
    x, y, lr = example["x"], example["y"], example["lr"]
    optimum = np.linalg.lstsq(x, y, rcond=None)[0].T
    assert example["removed"] == int(np.argmin(np.linalg.norm(optimum, axis=1)))
    # Each filter's loss is its own: from zero, gradient descent gives (I - A^t) w*.
    step_matrix = np.eye(x.shape[1]) - 2 * lr * x.T @ x / len(x)
    first = example["zeroed"][0]
    regrown = (np.eye(x.shape[1]) - np.linalg.matrix_power(step_matrix, 20)) @ optimum[first]
    assert example["regrown"] == pytest.approx(np.linalg.norm(regrown), rel=1e-9)


def test_truncated_svd_error_is_eckart_youngs(page):
    example = page("methods/low-rank.md")["lowrank"]
    weight, rank = example["W"], example["rank"]
    u, s, vt = np.linalg.svd(weight, full_matrices=False)
    approximation = (u[:, :rank] * s[:rank]) @ vt[:rank]
    residual = weight - approximation
    assert example["error"] == pytest.approx(
        np.linalg.norm(residual) / np.linalg.norm(weight), rel=1e-9
    )
    assert np.linalg.norm(residual, 2) == pytest.approx(s[rank], rel=1e-9)
    assert example["error"] <= np.sqrt(1 - 0.9)


def test_energy_rule_is_nbopts_and_pcas(page):
    example = page("methods/low-rank.md")["lowrank"]
    weight = example["W"]
    out_features, in_features = weight.shape
    linear = nn.Linear(in_features, out_features)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(weight))
    result = _optimize(nn.Sequential(linear), lowrank=0.9)
    assert result.steps[0].info["ranks"] == {"0": (example["rank"], min(weight.shape))}
    assert PCA(n_components=0.9).fit(weight).n_components_ == example["components"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")
def test_affine_parameters_and_values_are_torchs(page):
    from torch.ao.quantization.observer import MinMaxObserver

    example = page("methods/quantization.md")["quant"]
    values = torch.tensor(example["x"], dtype=torch.float32)
    observer = MinMaxObserver(dtype=torch.quint8, qscheme=torch.per_tensor_affine)
    observer(values)
    scale, zero_point = observer.calculate_qparams()
    assert example["scale"] == pytest.approx(scale.item(), rel=1e-6)
    assert example["zero_point"] == zero_point.item()
    quantized = torch.quantize_per_tensor(values, scale.item(), zero_point.item(), torch.quint8)
    assert example["q"].tolist() == quantized.int_repr().tolist()
    assert example["x_hat"] == pytest.approx(quantized.dequantize().numpy(), abs=1e-6)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")
def test_rounding_error_is_at_most_half_a_step():
    from torch.ao.quantization.observer import MinMaxObserver

    rng = np.random.default_rng(0)
    for _ in range(50):
        values = torch.tensor(rng.standard_normal(1000) * rng.uniform(0.1, 10), dtype=torch.float32)
        observer = MinMaxObserver(dtype=torch.quint8, qscheme=torch.per_tensor_affine)
        observer(values)
        scale, zero_point = observer.calculate_qparams()
        restored = torch.quantize_per_tensor(
            values, scale.item(), zero_point.item(), torch.quint8
        ).dequantize()
        assert (values - restored).abs().max().item() <= scale.item() / 2 * (1 + 1e-5)


def test_int8_size_is_what_nbopt_measures(page):
    example = page("methods/quantization.md")["quant"]
    model = nn.Sequential(nn.Linear(example["n_in"], example["n_out"]))
    result = _optimize(model, quant="int8")
    assert result.before.size_bytes == pytest.approx(example["float32_bytes"], rel=0.01)
    assert result.after.size_bytes == pytest.approx(example["int8_bytes"], rel=0.01)


@pytest.mark.parametrize("batch", [1, 256])
def test_arithmetic_intensity_counts_torchs_flops_and_bytes(page, batch):
    example = page("methods/quantization.md")["quant"]
    layer = nn.Linear(example["n_in"], example["n_out"], bias=False)
    inputs = torch.randn(batch, example["n_in"])
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        outputs = layer(inputs)
    flops = counter.get_total_flops()
    activations = inputs.nbytes + outputs.nbytes
    int8_weight = layer.weight.to(torch.int8)
    assert example["intensity"](batch, 4) == pytest.approx(
        flops / (layer.weight.nbytes + activations), rel=1e-12
    )
    assert example["intensity"](batch, 1) == pytest.approx(
        flops / (int8_weight.nbytes + activations), rel=1e-12
    )


def test_distillation_loss_is_torchs(page):
    example = page("methods/distillation.md")["distill"]
    temperature, alpha = example["T"], example["alpha"]
    student = torch.tensor(example["student"], dtype=torch.float64)[None]
    teacher = torch.tensor(example["teacher"], dtype=torch.float64)[None]
    soft = F.kl_div(
        F.log_softmax(student / temperature, dim=1),
        F.softmax(teacher / temperature, dim=1),
        reduction="batchmean",
    )
    hard = F.cross_entropy(student, torch.tensor([example["label"]]))
    expected = alpha * temperature**2 * soft + (1 - alpha) * hard
    assert example["loss"] == pytest.approx(expected.item(), rel=1e-9)


def test_the_pages_loss_is_nbopts_distillation_loss(page):
    from nbopt.compress import distillation_loss

    example = page("methods/distillation.md")["distill"]
    student = torch.tensor(example["student"], dtype=torch.float64)[None]
    teacher = torch.tensor(example["teacher"], dtype=torch.float64)[None]
    loss = distillation_loss(
        student,
        teacher,
        torch.tensor([example["label"]]),
        temperature=example["T"],
        alpha=example["alpha"],
    )
    assert loss.item() == pytest.approx(example["loss"], rel=1e-9)


def _soft_gradient(student, teacher, temperature):
    logits = torch.tensor(student, dtype=torch.float64, requires_grad=True)
    target = F.softmax(torch.tensor(teacher, dtype=torch.float64) / temperature, dim=0)
    F.kl_div(F.log_softmax(logits / temperature, dim=0), target, reduction="sum").backward()
    return logits.grad.numpy()


def test_soft_gradient_and_its_high_temperature_limit(page):
    example = page("methods/distillation.md")["distill"]
    student, teacher = example["student"], example["teacher"]
    last = example["temperature"]
    assert example["grad"] == pytest.approx(_soft_gradient(student, teacher, last), rel=1e-9)
    limit = np.linalg.norm(1e4**2 * _soft_gradient(student, teacher, 1e4))
    assert np.linalg.norm(example["difference"]) / len(student) == pytest.approx(limit, rel=1e-3)
