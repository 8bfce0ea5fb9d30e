"""One run of a batch-size search: measuring a batch size, the memory cap, and the result.

Which sizes are measured is decided in ``_strategies.py`` (the searches of each mode) and, for
``mode="efficient"``, what is predicted from them in ``_efficient.py``.

The speed of a batch size is taken from its fastest timed step, not the median. On a two-core
machine shared with other processes, the median of 3 ms steps was 2.6 times slower than the
fastest and moved with the load, which made a batch look slower than a smaller one and ended
the doubling early; the fastest step of the same batch varied by 5% over ten measurements.
How much it moves is measured with it: the gap between the fastest and the second fastest
step.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from nbopt.batching import _strategies
from nbopt.batching._efficient import (
    RULE,
    NoisePlan,
    efficient_size,
    measure_noise,
    predicted_times,
    scaled_learning_rate,
)
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
    NoiseScale,
    best_measurement,
    chosen_size,
)
from nbopt.batching._workload import Batches, Workload
from nbopt.batching.events import (
    BatchSizeMeasured,
    BatchSizeStarted,
    BatchSizeWarning,
    NoiseScaleMeasured,
)
from nbopt.errors import ConfigError
from nbopt.events import EventBus, RunFinished, RunStarted
from nbopt.units import format_bytes

# Steps at each new batch size before timing: the first call at a new shape builds oneDNN
# primitives, cuDNN plans and (training) the optimizer state. Peak memory is read over these.
_WARMUP_STEPS = 2
# Timed steps per batch size: at least _MIN_REPEATS, and more (up to _MAX_REPEATS) until they
# add up to _MIN_SECONDS, so that fast steps are not judged on a few noisy samples; and more
# while the two fastest steps differ by over _SETTLED, for up to _NOISY_SECONDS: on a loaded
# machine, where a step is often descheduled, the fastest of five can still be a slowed one.
_MIN_REPEATS = 5
_MAX_REPEATS = 200
_MIN_SECONDS = 0.05
_SETTLED = 0.05
_NOISY_SECONDS = 0.5
# mode="max" only needs to know that a step runs; two timed steps give a rough speed.
_MAX_MODE_REPEATS = 2
# A speed whose measured noise is more than this share beyond the tolerance of the choice
# cannot tell the batch sizes within the tolerance apart.
_NOISY = 0.1
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
        noise_plan: NoisePlan | None = None,
        mode_reason: str = "",
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
        self.noise_plan = noise_plan
        self.mode_reason = mode_reason
        self.measurements: list[BatchMeasurement] = []
        self.noise_scales: list[NoiseScale] = []
        self.warnings: list[str] = []
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
            if self.noise_plan is not None:
                measured = measure_noise(self.workload.model, self.batches, self.noise_plan)
                for noise, final in measured:
                    self.noise_scales.append(noise)
                    self.bus.emit(NoiseScaleMeasured(noise, final))
            with self.workload:
                # Zero after the training copy is made: its optimizer may import modules the
                # first time (torch._dynamo, some 80 MB), which no batch size should be billed.
                release_memory(self.device.type, collect=True)
                if self.meter is not None:
                    self.meter.begin()
                if self.mode == "max":
                    _strategies.search_max(self)
                else:
                    _strategies.search_throughput(self)
                    if self.mode == "efficient":
                        best = efficient_size(self._predicted_times(), 0.0)
                        if best is not None:
                            _strategies.refine_around(self, best)
        except KeyboardInterrupt:
            self._finish("interrupted")
            raise
        except BaseException:
            self._finish("failed")
            raise
        finally:
            release_memory(self.device.type)
        return self._finish("done")

    # -- measuring one batch size -----------------------------------------------------------

    def warn(self, message: str) -> None:
        """Record a warning in the result and show it live (once)."""
        if message not in self.warnings:
            self.warnings.append(message)
            self.bus.emit(BatchSizeWarning(message))

    def probe(self, size: int, phase: str) -> BatchMeasurement:
        """Measure ``size`` and record it; ConfigError if no batch size has run at all."""
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
            # How far the fastest step could move if measured again: the gap to the second
            # fastest. Load only slows steps down, so the fastest is trusted as far as
            # another step came close to it.
            second = sorted(times)[1] if len(times) > 1 else None
            noise = (second - fastest) / fastest if second is not None else None
            return BatchMeasurement(
                size,
                OK,
                phase,
                samples_per_second=size / fastest,
                step_time=median,
                spread=(quartiles[2] - quartiles[0]) / median,
                repeats=len(times),
                peak_memory=peak,
                noise=noise,
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
        for _ in range(_WARMUP_STEPS if self.mode != "max" else 1):
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
        while len(times) < least or (
            len(times) < most and (sum(times) < seconds or self._unsettled(times))
        ):
            began = time.perf_counter()
            self.workload.step(inputs, target)
            self._synchronize()
            times.append(time.perf_counter() - began)
        return peak, times

    def _unsettled(self, times: list[float]) -> bool:
        """Whether to time more steps: the fastest two still disagree by more than
        ``_SETTLED``, and the steps have not yet taken ``_NOISY_SECONDS``."""
        if self.mode == "max" or sum(times) >= _NOISY_SECONDS or len(times) < 2:
            return False
        fastest, second = sorted(times)[:2]
        return second - fastest > _SETTLED * fastest

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # -- memory cap -------------------------------------------------------------------------

    def over_cap(self, size: int) -> bool:
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

    def _predicted_times(self) -> dict[int, float]:
        if not self.noise_scales:
            return {}
        return predicted_times(self.measurements, self.noise_scales[-1].value)

    def _check_noise(self, chosen: int | None, best: BatchMeasurement | None) -> None:
        """Warn if the speeds the choice rests on moved more than the choice can tell apart."""
        limit = max(self.tolerance, _NOISY)
        for size in dict.fromkeys(s for s in (chosen, best.batch_size if best else None) if s):
            noises = [m.noise for m in self.measurements if m.batch_size == size and m.noise]
            if noises and min(noises) > limit:
                self.warn(
                    f"the machine was too noisy to decide: the speed of batch {size} moved by "
                    f"{min(noises):.0%} between its timed steps, more than the {limit:.0%} that "
                    "tells batch sizes apart; measure again when it is quieter"
                )
                return

    def _finish(self, status: str) -> BatchSizeResult:
        best = best_measurement(self.measurements, self.mode)
        chosen = chosen_size(self.measurements, self.mode, self.tolerance)
        times = self._predicted_times()
        learning_rate = None
        if self.mode == "efficient":
            chosen = efficient_size(times, self.tolerance)
            plan = self.noise_plan
            if chosen is not None and plan is not None and plan.lr is not None and plan.lr_batch:
                noise = self.noise_scales[-1].value
                learning_rate = scaled_learning_rate(plan.lr, plan.lr_batch, chosen, noise)
        if status == "done" and self.mode != "max":
            self._check_noise(chosen, best)
        result = BatchSizeResult(
            batch_size=chosen,
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
            mode_reason=self.mode_reason,
            noise_scale=self.noise_scales[-1] if self.noise_scales else None,
            noise_scales=list(self.noise_scales),
            predicted_time=times,
            learning_rate=learning_rate,
            lr_rule=RULE if learning_rate is not None else "",
            warnings=list(self.warnings),
        )
        message = (
            f"{len(self.measurements)} batch sizes in {result.duration:.1f} s; {result.summary()}"
        )
        if self.warnings:
            message += f" ({len(self.warnings)} warning(s): see result.warnings)"
        self.bus.emit(RunFinished("batchsize", status, message, result=result))
        return result
