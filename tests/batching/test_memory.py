"""Out-of-memory detection, and peak memory measured on this machine."""

from __future__ import annotations

import sys

import pytest
import torch

from nbopt.batching import is_oom_error
from nbopt.batching._memory import (
    CudaMemoryMeter,
    ResidentMemoryMeter,
    available_memory,
    memory_meter,
    oom_message,
    predict_peak,
)

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not ResidentMemoryMeter.works(),
    reason="resident memory is measured through /proc/self/clear_refs (Linux)",
)


def _real_cpu_oom() -> RuntimeError:
    try:
        torch.empty(1 << 50, dtype=torch.uint8)  # 1 PiB: the allocator refuses at once
    except RuntimeError as exc:
        return exc
    raise AssertionError("allocating 1 PiB succeeded")


def test_the_cpu_allocators_own_error_is_an_oom() -> None:
    error = _real_cpu_oom()
    assert "DefaultCPUAllocator: can't allocate memory" in str(error)
    assert is_oom_error(error)


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("CUDA error: out of memory"),
        RuntimeError("cuDNN error: CUDNN_STATUS_NOT_SUPPORTED. This error may appear if ..."),
        RuntimeError("MPS backend out of memory (MPS allocated: 1.2 GB)"),
        MemoryError(),
    ],
    ids=["cuda-type", "cuda-message", "cudnn", "mps", "python"],
)
def test_device_oom_errors_are_recognised(error: BaseException) -> None:
    assert is_oom_error(error)


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x3 and 5x6)"),
        ValueError("out of memory"),  # the right words in the wrong type: not torch's error
        KeyboardInterrupt(),
    ],
)
def test_other_errors_are_not(error: BaseException) -> None:
    assert not is_oom_error(error)


def test_oom_message_drops_the_cpp_assertion() -> None:
    message = oom_message(_real_cpu_oom())
    assert message.startswith("DefaultCPUAllocator: can't allocate memory: you tried to allocate")
    assert oom_message(RuntimeError("CUDA out of memory.\nmore")) == "CUDA out of memory."


def test_peak_prediction_interpolates_between_measured_sizes() -> None:
    peaks = {8: 100, 16: 180, 64: 500}
    assert predict_peak(peaks, {}, 16) == 180
    assert predict_peak(peaks, {}, 32) == pytest.approx(180 + 320 * 16 / 48)
    assert predict_peak(peaks, {}, 2) == 100  # below every measured size: the smallest's
    assert predict_peak({}, {}, 32) is None


def test_peak_prediction_scales_what_a_step_adds_to_the_resident_level() -> None:
    # 1000 bytes stay between steps; the step at 64 adds 640 on top: 10 a sample.
    assert predict_peak({64: 1640}, {64: 1000}, 128) == 1000 + 1280
    # Where the line through the last two peaks grows faster, it wins (here: 30 a sample).
    assert predict_peak({32: 680, 64: 1640}, {64: 1000}, 128) == 1640 + 30 * 64


@linux_only
def test_resident_meter_sees_a_step_that_touches_memory() -> None:
    meter = ResidentMemoryMeter()
    meter.begin()
    meter.reset()
    block = torch.ones(64_000_000, dtype=torch.uint8)  # 64 MB, written so it is resident
    peak_with_block = meter.peak()
    del block
    meter.reset()
    small = torch.ones(1000)
    peak_without = meter.peak()
    del small
    assert peak_with_block >= 60_000_000
    # The reset makes each step's peak its own: the freed block no longer counts.
    assert peak_without < 20_000_000


@linux_only
def test_cpu_meter_and_available_memory_on_linux() -> None:
    assert isinstance(memory_meter(torch.device("cpu")), ResidentMemoryMeter)
    available = available_memory()
    assert available is not None
    assert 0 < available < 1 << 50


def test_cuda_device_gets_the_allocator_meter() -> None:
    assert isinstance(memory_meter(torch.device("cuda", 0)), CudaMemoryMeter)
    assert memory_meter(torch.device("meta")) is None
