"""Out-of-memory errors, releasing memory after one, and measuring the peak memory of a step.

How the peak memory of a step is measured:

* **CUDA**: the caching allocator's own statistics. ``torch.cuda.reset_peak_memory_stats``
  before the step, ``torch.cuda.max_memory_allocated`` after it, less what was allocated when
  measuring began.
* **CPU on Linux**: the process's resident memory (RSS), which is what the kernel's
  out-of-memory killer charges. Writing ``5`` to ``/proc/self/clear_refs`` resets the
  high-water mark (``VmHWM`` in ``/proc/self/status``) to the current RSS, so the mark read
  after the step is the peak of that step alone, less the RSS when measuring began. The
  alternatives measure less or worse: ``tracemalloc`` does not see torch's C++ allocator,
  torch (2.13) keeps no CPU allocator statistics, the profiler's memory records count tensors
  only (not oneDNN scratch buffers or malloc's overhead) and slow the step down, and
  ``getrusage``'s ``ru_maxrss`` only ever grows, so it says nothing about a step smaller than
  an earlier one. The reset also resets ``ru_maxrss`` of this process.
* **Elsewhere** (macOS, Windows, MPS, or a kernel that forbids ``clear_refs``) peak memory is
  not measured and no cap is enforced. There an allocation that does not fit raises (it does
  not kill the process), and that is caught like any out-of-memory error.
"""

from __future__ import annotations

import abc
import ctypes
import functools
import gc
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_OOM_MESSAGES = (
    "CUDA out of memory",
    "CUDA error: out of memory",
    "MPS backend out of memory",
    "XPU out of memory",
    "DefaultCPUAllocator: can't allocate memory",
    "cuDNN error: CUDNN_STATUS_NOT_SUPPORTED",
)
# Default cap on CPU: this share of the memory available when the search starts. Half leaves
# room for a prediction that is off by a factor of two before the process could be killed.
DEFAULT_MEMORY_FRACTION = 0.5

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_MEMINFO = Path("/proc/meminfo")
_CGROUP_LIMITS = (
    (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")),
    (
        Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
        Path("/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ),
)


def is_oom_error(exc: BaseException) -> bool:
    """True if ``exc`` says that memory ran out: CUDA, MPS, XPU or CPU allocation failures,
    and cuDNN's "not supported", which is what cuDNN raises for a batch too large for it.

    Example:
        >>> is_oom_error(RuntimeError("DefaultCPUAllocator: can't allocate memory: ..."))
        True
        >>> is_oom_error(ValueError("shapes do not match"))
        False
    """
    import torch

    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(text in str(exc) for text in _OOM_MESSAGES)


def release_memory(device_type: str, collect: bool = False) -> None:
    """Hand cached memory back, so the next batch size is measured from a clean slate.

    ``collect=True`` also runs the garbage collector, for what a failed step can leave in
    reference cycles (a traceback holding frames that hold tensors). It is not done after
    every step: with torch imported a full collection takes about a tenth of a second.
    """
    if collect:
        gc.collect()
    if device_type == "cuda":
        import torch

        torch.cuda.empty_cache()
    elif (trim := _malloc_trim()) is not None:
        # glibc keeps freed blocks below its mmap threshold (up to 32 MB) in the heap; while
        # they stay resident, a later step reuses them and its peak looks smaller than it is.
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):  # not glibc: macOS, Windows, musl
        return None


def oom_message(exc: BaseException) -> str:
    """The first line of an out-of-memory error, without the C++ assertion that torch's CPU
    allocator puts before it."""
    lines = str(exc).strip().splitlines()
    line = lines[0] if lines else type(exc).__name__
    if line.startswith("[enforce fail") and "DefaultCPUAllocator" in line:
        line = line[line.index("DefaultCPUAllocator") :]
    return line[:200]


def predict_peak(peaks: Mapping[int, int], levels: Mapping[int, int], size: int) -> float | None:
    """The peak memory of a step at ``size``, from the peaks measured at other batch sizes;
    None if none was measured.

    Between measured batch sizes, the peak is interpolated; below them all, it is taken to be
    that of the smallest. Above them, it is the larger of two estimates: what the largest
    measured step added on top of ``levels`` (the memory held between its steps: weights,
    gradients, optimizer state) scaled in proportion to the batch, which overestimates by the
    part of a step's memory that does not grow with the batch; and the line through the two
    largest measured peaks, which holds where memory that an earlier step left resident hides
    part of the growth from the first estimate.

    Example:
        >>> predict_peak({64: 300, 128: 500}, {128: 100}, 256)
        900.0
    """
    points = sorted(peaks.items())
    below = [point for point in points if point[0] <= size]
    above = [point for point in points if point[0] >= size]
    if below and above:
        (b0, p0), (b1, p1) = below[-1], above[0]
        return float(p0) if b1 == b0 else p0 + (p1 - p0) * (size - b0) / (b1 - b0)
    if above:
        return float(above[0][1])
    if not below:
        return None
    b0, p0 = below[-1]
    level = min(levels.get(b0, 0), p0)
    estimate = level + (p0 - level) * size / b0
    if len(below) > 1:
        bm, pm = below[-2]
        estimate = max(estimate, p0 + max(p0 - pm, 0) * (size - b0) / (b0 - bm))
    return estimate


class MemoryMeter(abc.ABC):
    """Peak memory of single steps, in bytes above the level when :meth:`begin` was called."""

    @abc.abstractmethod
    def begin(self) -> None:
        """Take the current memory as the zero of every later figure."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Start measuring the peak of the next step."""

    @abc.abstractmethod
    def peak(self) -> int:
        """Peak since :meth:`reset`, above the level at :meth:`begin`."""

    @abc.abstractmethod
    def level(self) -> int:
        """Memory held now, above the level at :meth:`begin`."""


class ResidentMemoryMeter(MemoryMeter):
    """Linux: the process's resident memory, with its high-water mark reset before each step."""

    def __init__(self) -> None:
        self._zero = 0

    @staticmethod
    def works() -> bool:
        """True if this kernel lets the process reset its own high-water mark."""
        try:
            _CLEAR_REFS.write_text("5")
            return "VmHWM" in _STATUS.read_text()
        except OSError:
            return False

    def begin(self) -> None:
        self._zero = _status_bytes("VmRSS")

    def reset(self) -> None:
        _CLEAR_REFS.write_text("5")

    def peak(self) -> int:
        return max(_status_bytes("VmHWM") - self._zero, 0)

    def level(self) -> int:
        return max(_status_bytes("VmRSS") - self._zero, 0)


class CudaMemoryMeter(MemoryMeter):
    """CUDA: the caching allocator's statistics for one device."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self._zero = 0

    def begin(self) -> None:
        import torch

        self._zero = torch.cuda.memory_allocated(self.device)

    def reset(self) -> None:
        import torch

        torch.cuda.reset_peak_memory_stats(self.device)

    def peak(self) -> int:
        import torch

        return max(torch.cuda.max_memory_allocated(self.device) - self._zero, 0)

    def level(self) -> int:
        import torch

        return max(torch.cuda.memory_allocated(self.device) - self._zero, 0)


def memory_meter(device: Any) -> MemoryMeter | None:
    """The meter for ``device`` (a ``torch.device``), or None where memory cannot be measured."""
    if device.type == "cuda":
        return CudaMemoryMeter(device)
    if device.type == "cpu" and ResidentMemoryMeter.works():
        return ResidentMemoryMeter()
    return None


def available_memory() -> int | None:
    """Bytes this process could still take on Linux: the kernel's ``MemAvailable``, or less
    if a container's cgroup limit is nearer. None where neither can be read."""
    candidates = []
    try:
        match = re.search(r"^MemAvailable:\s+(\d+) kB", _MEMINFO.read_text(), re.MULTILINE)
    except OSError:
        match = None
    if match:
        candidates.append(int(match.group(1)) * 1024)
    for limit_file, usage_file in _CGROUP_LIMITS:
        try:
            limit_text = limit_file.read_text().strip()
            usage = int(usage_file.read_text().strip())
        except (OSError, ValueError):
            continue
        # "max" (v2) or a huge number (v1) means no limit.
        if limit_text.isdigit() and int(limit_text) < 2**60:
            candidates.append(max(int(limit_text) - usage, 0))
    return min(candidates) if candidates else None


def _status_bytes(key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    if match is None:
        raise OSError(f"{_STATUS} has no {key} line")
    return int(match.group(1)) * 1024
