"""The search: measure batch sizes, doubling then narrowing down, and choose one.

``mode="max"`` doubles the batch until a step runs out of memory, would exceed the memory cap
or reaches the largest size allowed, then binary-searches between the last batch that fitted
and the first that did not. ``mode="throughput"`` doubles until two doublings in a row gain
less than 3% in speed (a doubling that comes out slower than a smaller batch is measured once
more first; while a doubling nearly doubles the speed, the next step quadruples), then
measures the midpoints on both sides of the fastest batch, and one below the smallest batch
within ``tolerance`` of it.

The speed of a batch size is taken from its fastest timed step, not the median. On a two-core
machine shared with other processes, the median of 3 ms steps was 2.6 times slower than the
fastest and moved with the load, which made a batch look slower than a smaller one and ended
the doubling early; the fastest step of the same batch varied by 5% over ten measurements.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

import torch

from nbopt.batching._memory import (
    MemoryMeter,
    is_oom_error,
    oom_message,
    predict_peak,
    release_memory,
)
from nbopt.batching._result import (
    OK,
    OOM,
    OVER_MEMORY,
    BatchMeasurement,
    BatchSizeResult,
    best_measurement,
    chosen_size,
    fastest_rate,
)
from nbopt.batching._workload import Batches, Workload
from nbopt.batching.events import BatchSizeMeasured, BatchSizeStarted
from nbopt.errors import ConfigError
from nbopt.events import EventBus, RunFinished, RunStarted
from nbopt.units import format_bytes

# Steps at each new batch size before timing: the first call at a new shape builds oneDNN
# primitives, cuDNN plans and (training) the optimizer state. Peak memory is read over these.
_WARMUP_STEPS = 2
# Timed steps per batch size: at least _MIN_REPEATS, and more (up to _MAX_REPEATS) until they
# add up to _MIN_SECONDS, so that fast steps are not judged on a few noisy samples.
_MIN_REPEATS = 5
_MAX_REPEATS = 200
_MIN_SECONDS = 0.05
# mode="max" only needs to know that a step runs; two timed steps give a rough speed.
_MAX_MODE_REPEATS = 2
# A doubling counts as faster only if it gains more than this: the fastest step of a batch
# size varied by 1% to 5% from one measurement to the next on a loaded two-core machine. The
# search stops after _PATIENCE doublings without such a gain.
_MIN_GAIN = 0.03
_PATIENCE = 2
# While a doubling still gains this much (nearly twice the speed: the fixed cost of a step
# dominates), the next step quadruples the batch: the fastest batch is far above.
_STEEP = 0.8
# A batch size is run only if its predicted peak memory, times this, is within the cap: the
# resident memory of batch sizes 1% apart differed by up to 40% (where malloc put the blocks).
_MEMORY_MARGIN = 1.1


class BatchSizeSearch:
    """One run of the search; :func:`nbopt.batching.find_batch_size` builds and runs it."""

    def __init__(
        self,
        workload: Workload,
        batches: Batches,
        *,
        bus: EventBus,
        device: Any,
        mode: str,
        start: int,
        stop: int,
        tolerance: float,
        meter: MemoryMeter | None,
        memory_limit: int | None,
        name: str,
    ) -> None:
        self.workload = workload
        self.batches = batches
        self.bus = bus
        self.device = device
        self.mode = mode
        self.start = start
        self.stop = stop
        self.tolerance = tolerance
        self.meter = meter
        self.memory_limit = memory_limit
        self.name = name
        self.measurements: list[BatchMeasurement] = []
        self.stop_reason = ""
        self._levels: dict[int, int] = {}
        self._clock = time.perf_counter()

    def run(self) -> BatchSizeResult:
        """Search, then return the result; the model is left as it was, even on error."""
        kind = "training" if self.workload.train else "inference"
        self.bus.emit(
            RunStarted(
                kind="batchsize",
                title=f"batch size · {self.mode} · {kind} on {self.device}",
                total=None,
                unit="batch sizes",
                metric="samples/s",
                mode="max",
                name=self.name,
                columns=("batch", "samples/s", "peak memory", "status", "phase"),
                config={"mode": self.mode, "train": self.workload.train},
            )
        )
        self._clock = time.perf_counter()
        try:
            with self.workload:
                # Zero after the training copy is made: its optimizer may import modules the
                # first time (torch._dynamo, some 80 MB), which no batch size should be billed.
                release_memory(self.device.type, collect=True)
                if self.meter is not None:
                    self.meter.begin()
                if self.mode == "max":
                    self._search_max()
                else:
                    self._search_throughput()
        except KeyboardInterrupt:
            self._finish("interrupted")
            raise
        except BaseException:
            self._finish("failed")
            raise
        finally:
            release_memory(self.device.type)
        return self._finish("done")

    # -- the two searches -------------------------------------------------------------------

    def _search_max(self) -> None:
        size, fitted, failed = self.start, 0, 0
        while True:
            if fitted and self._over_cap(size):
                failed = size
                break
            if not self._probe(size, "doubling").ok:
                failed = size
                break
            fitted = size
            if size >= self.stop:
                self.stop_reason = f"reached max_batch_size={self.stop}"
                break
            size = min(2 * size, self.stop)
        if failed:
            self._binary_search(fitted, failed)

    def _binary_search(self, low: int, high: int) -> None:
        """Narrow down between a batch that fits (``low``) and one that does not."""
        while high - low > 1:
            middle = (low + high) // 2
            if self._over_cap(middle) or not self._probe(middle, "binary search").ok:
                high = middle
            else:
                low = middle

    def _search_throughput(self) -> None:
        size, anchor, misses, previous = self.start, None, 0, None
        while True:
            measurement = self._probe(size, "doubling")
            if not measurement.ok:
                break
            if anchor is not None and _slower(measurement, anchor):
                # A larger batch that runs slower is more often a burst of load on the machine
                # than the truth: measure it once more and keep the faster measurement.
                again = self._probe(size, "repeat")
                if again.ok and (again.samples_per_second or 0) > (
                    measurement.samples_per_second or 0
                ):
                    measurement = again
            if anchor is None or _faster(measurement, anchor):
                anchor, misses = measurement, 0
            else:
                misses += 1
            if misses >= _PATIENCE:
                self.stop_reason = (
                    f"no faster than batch {anchor.batch_size} for {_PATIENCE} doublings"
                )
                break
            if size >= self.stop:
                self.stop_reason = f"reached max_batch_size={self.stop}"
                break
            steep = previous is not None and _gain_per_doubling(previous, measurement) >= _STEEP
            previous = measurement
            size = min((4 if steep else 2) * size, self.stop)
            if self._over_cap(size):
                break
        self._refine()

    def _refine(self) -> None:
        """Measure the midpoints around the fastest batch, then below the chosen one."""
        fastest = best_measurement(self.measurements, "throughput")
        if fastest is None:
            return
        best = fastest.batch_size
        tried = sorted({m.batch_size for m in self.measurements})
        smaller = [s for s in tried if s < best and fastest_rate(self.measurements, s)]
        larger = [s for s in tried if s > best]
        for neighbour in smaller[-1:] + larger[:1]:
            self._probe_midpoint(best, neighbour)
        chosen = chosen_size(self.measurements, self.mode, self.tolerance)
        if chosen is not None:
            below = sorted({m.batch_size for m in self.measurements if m.ok})
            below = [size for size in below if size < chosen]
            if below:
                self._probe_midpoint(chosen, below[-1])

    def _probe_midpoint(self, a: int, b: int) -> None:
        middle = (a + b) // 2
        tried = {m.batch_size for m in self.measurements}
        if middle in tried or middle in (a, b) or self._over_cap(middle):
            return
        self._probe(middle, "refine")

    # -- measuring one batch size -----------------------------------------------------------

    def _probe(self, size: int, phase: str) -> BatchMeasurement:
        self.bus.emit(BatchSizeStarted(size, phase))
        measurement = self._measure(size, phase)
        self.measurements.append(measurement)
        if not measurement.ok and not self.stop_reason:
            failure = "ran out of memory" if measurement.status == OOM else "exceeded the cap"
            self.stop_reason = f"batch {size} {failure} ({measurement.error})"
        failed = sum(1 for m in self.measurements if not m.ok)
        self.bus.emit(
            BatchSizeMeasured(
                measurement,
                best_measurement(self.measurements, self.mode),
                self.mode,
                len(self.measurements),
                failed,
            )
        )
        if failed == len(self.measurements):
            raise ConfigError(self._does_not_fit(measurement))
        return measurement

    def _measure(self, size: int, phase: str) -> BatchMeasurement:
        release_memory(self.device.type)
        try:
            peak, times = self._run_steps(size)
        except Exception as exc:
            if not is_oom_error(exc):
                if not self.measurements:
                    self._explain_first_failure(exc, size)
                raise
            error = oom_message(exc)
        else:
            if self.meter is not None:
                # What stays between steps (weights, gradients, optimizer state), for scaling
                # the rest of the peak to other batch sizes.
                release_memory(self.device.type)
                self._levels[size] = self.meter.level()
            if times is None:
                return BatchMeasurement(
                    size,
                    OVER_MEMORY,
                    phase,
                    peak_memory=peak,
                    error=f"peak {format_bytes(peak)} > cap {format_bytes(self.memory_limit)}",
                )
            # A clock tick is the shortest step a timer can tell apart from none.
            fastest = max(min(times), 1e-9)
            median = max(statistics.median(times), 1e-9)
            quartiles = statistics.quantiles(times, n=4) if len(times) > 1 else [median] * 3
            return BatchMeasurement(
                size,
                OK,
                phase,
                samples_per_second=size / fastest,
                step_time=median,
                spread=(quartiles[2] - quartiles[0]) / median,
                repeats=len(times),
                peak_memory=peak,
            )
        # The exception, its traceback and the frames holding the batch are unreachable now.
        release_memory(self.device.type, collect=True)
        return BatchMeasurement(size, OOM, phase, error=error)

    def _run_steps(self, size: int) -> tuple[int | None, list[float] | None]:
        """Warm up (reading the peak memory), then time steps. Times are None when the peak
        is over the cap."""
        inputs, target = self.batches(size)
        if self.meter is not None:
            self.meter.reset()
        for _ in range(_WARMUP_STEPS if self.mode == "throughput" else 1):
            self.workload.step(inputs, target)
        self._synchronize()
        peak = self.meter.peak() if self.meter is not None else None
        if peak is not None and self.memory_limit is not None and peak > self.memory_limit:
            return peak, None
        if self.mode == "max":
            least, most, seconds = _MAX_MODE_REPEATS, _MAX_MODE_REPEATS, 0.0
        else:
            least, most, seconds = _MIN_REPEATS, _MAX_REPEATS, _MIN_SECONDS
        times: list[float] = []
        while len(times) < least or (sum(times) < seconds and len(times) < most):
            began = time.perf_counter()
            self.workload.step(inputs, target)
            self._synchronize()
            times.append(time.perf_counter() - began)
        return peak, times

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # -- memory cap -------------------------------------------------------------------------

    def _over_cap(self, size: int) -> bool:
        """True if ``size`` is predicted to need more than the cap (then it is not run)."""
        if self.memory_limit is None:
            return False
        predicted = self._predicted_peak(size)
        if predicted is None or predicted * _MEMORY_MARGIN <= self.memory_limit:
            return False
        if not self.stop_reason:
            self.stop_reason = (
                f"batch {size} would need about {format_bytes(predicted)}, over the memory cap "
                f"of {format_bytes(self.memory_limit)}"
            )
        return True

    def _predicted_peak(self, size: int) -> float | None:
        peaks: dict[int, int] = {}
        for m in self.measurements:
            if m.peak_memory is not None:
                peaks[m.batch_size] = max(peaks.get(m.batch_size, 0), m.peak_memory)
        return predict_peak(peaks, self._levels, size)

    def _explain_first_failure(self, exc: Exception, size: int) -> None:
        """Add a note to an error of the model at the first batch size (Python 3.11+)."""
        if not hasattr(exc, "add_note"):
            return
        step = "training step" if self.workload.train else "inference"
        note = f"find_batch_size: the model's {step} failed at batch size {size}, the first tried."
        example = self.batches.example
        if self.batches.make_batch is None and isinstance(example, torch.Tensor):
            note += (
                f" The first dimension of example (shape {tuple(example.shape)}) is taken as "
                "the batch; a single sample needs one more, e.g. x.unsqueeze(0)."
            )
        if self.workload.train and size == 1:
            note += " Batch norm cannot train on one sample: try start=2."
        exc.add_note(note)

    def _does_not_fit(self, measurement: BatchMeasurement) -> str:
        size = measurement.batch_size
        if measurement.status == OVER_MEMORY:
            return (
                f"even batch size {size} needs {format_bytes(measurement.peak_memory)}, over the "
                f"memory cap of {format_bytes(self.memory_limit)}; raise memory= or lower start="
            )
        return (
            f"even batch size {size} runs out of memory ({measurement.error}); free memory or "
            "lower start="
        )

    def _finish(self, status: str) -> BatchSizeResult:
        best = best_measurement(self.measurements, self.mode)
        result = BatchSizeResult(
            batch_size=chosen_size(self.measurements, self.mode, self.tolerance),
            best_batch_size=best.batch_size if best is not None else None,
            mode=self.mode,
            train=self.workload.train,
            device=str(self.device),
            measurements=list(self.measurements),
            tolerance=self.tolerance,
            memory_limit=self.memory_limit,
            stop_reason=self.stop_reason or "done",
            status=status,
            duration=time.perf_counter() - self._clock,
        )
        message = (
            f"{len(self.measurements)} batch sizes in {result.duration:.1f} s; {result.summary()}"
        )
        self.bus.emit(RunFinished("batchsize", status, message, result=result))
        return result


def _faster(candidate: BatchMeasurement, reference: BatchMeasurement) -> bool:
    """Whether ``candidate`` is faster than ``reference`` by more than _MIN_GAIN."""
    return (candidate.samples_per_second or 0.0) > (reference.samples_per_second or 0.0) * (
        1 + _MIN_GAIN
    )


def _gain_per_doubling(smaller: BatchMeasurement, larger: BatchMeasurement) -> float:
    doublings = math.log2(larger.batch_size / smaller.batch_size)
    ratio = (larger.samples_per_second or 0.0) / (smaller.samples_per_second or 1.0)
    return ratio ** (1 / doublings) - 1 if ratio > 0 else -1.0


def _slower(candidate: BatchMeasurement, reference: BatchMeasurement) -> bool:
    return (candidate.samples_per_second or 0.0) < (reference.samples_per_second or 0.0) * (
        1 - _MIN_GAIN
    )
