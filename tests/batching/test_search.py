"""The search on real models: out-of-memory handling, the memory cap, throughput mode."""

from __future__ import annotations

import gc
import itertools
import weakref
from collections.abc import Iterator

import pytest
import torch

from nbopt.batching import find_batch_size
from nbopt.batching._result import OOM, OVER_MEMORY
from nbopt.errors import ConfigError
from nbopt.events import Event, RunFinished

QUIET = {"progress": "none", "logdir": None}


class VirtualClock:
    """The search's clock, moved only by the synthetic models below: each says how long its
    step takes, so what the search decides from those times does not depend on the load of
    the machine the tests run on."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    from nbopt.batching import _search

    virtual = VirtualClock()
    monkeypatch.setattr(_search, "time", virtual)
    return virtual


class RunsOutAt(torch.nn.Module):
    """A linear model whose step fails, from ``threshold`` samples on, with the real error of
    the allocator that failed: torch's CPU allocator refusing 1 PiB, or a CUDA OOM.

    Before failing it makes an activation and puts it in a reference cycle, as a failed step
    can; ``alive`` holds weak references to the input and activation of every failed step,
    also those of the training copy (deep copies share the list's ``append``).
    """

    def __init__(self, threshold: int, cuda: bool = False) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(8, 8)
        self.threshold = threshold
        self.cuda_error = cuda
        self.alive: list[weakref.ref] = []
        self._remember = self.alive.append

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.linear(x)
        if x.shape[0] >= self.threshold:
            cycle: dict[str, object] = {"activation": hidden * 2}
            cycle["self"] = cycle
            self._remember(weakref.ref(x))
            self._remember(weakref.ref(cycle["activation"]))
            if self.cuda_error:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
            torch.empty(1 << 50, dtype=torch.uint8)
        return hidden


@pytest.fixture
def no_automatic_gc() -> Iterator[None]:
    """Only an explicit collection frees cycles: proves that the search collects them."""
    gc.collect()
    gc.disable()
    yield
    gc.enable()


@pytest.mark.parametrize(
    ("threshold", "start", "train", "cuda"),
    [(37, 1, False, False), (64, 1, True, False), (65, 3, False, True), (2, 1, True, True)],
)
def test_max_mode_finds_the_size_just_below_the_first_that_runs_out(
    threshold: int, start: int, train: bool, cuda: bool, watch, no_automatic_gc
) -> None:
    model = RunsOutAt(threshold, cuda=cuda)
    unchanged = watch(model)
    result = find_batch_size(
        model, torch.randn(4, 8), mode="max", train=train, start=start, **QUIET
    )
    assert result.batch_size == threshold - 1 == result.best_batch_size
    statuses = {m.batch_size: m.status for m in result.measurements}
    assert statuses[threshold - 1] == "ok"
    assert min(size for size, status in statuses.items() if status == OOM) == threshold
    assert all(status == "ok" for size, status in statuses.items() if size < threshold)
    assert "out of memory" in result.stop_reason
    # The failed steps' inputs and activations were freed, cycles included.
    assert model.alive and all(ref() is None for ref in model.alive)
    unchanged()


def test_max_mode_stops_at_max_batch_size_when_all_fit() -> None:
    result = find_batch_size(
        torch.nn.Linear(8, 2), torch.randn(3, 8), mode="max", max_batch_size=100, **QUIET
    )
    assert result.batch_size == 100
    assert [m.batch_size for m in result.measurements] == [1, 2, 4, 8, 16, 32, 64, 100]
    assert result.stop_reason == "reached max_batch_size=100"


def test_not_even_start_fits_is_a_clear_error_and_changes_nothing(watch) -> None:
    model = RunsOutAt(threshold=1)
    unchanged = watch(model)
    finished: list[RunFinished] = []
    with pytest.raises(ConfigError, match="even batch size 2 runs out of memory"):
        find_batch_size(model, torch.randn(4, 8), train=True, callbacks=[_keep(finished)], **QUIET)
    assert finished[0].status == "failed"
    unchanged()


def test_an_error_of_the_model_itself_propagates_unchanged(watch) -> None:
    model = torch.nn.Linear(5, 2)
    unchanged = watch(model)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied") as info:
        find_batch_size(model, torch.randn(2, 3), **QUIET)  # 3 features for a 5-feature model
    assert not isinstance(info.value, ConfigError)
    unchanged()


@pytest.mark.parametrize("train", [False, True])
def test_throughput_mode_on_an_mlp(train: bool, make_mlp, watch) -> None:
    model = make_mlp()
    unchanged = watch(model)
    example = torch.randn(32, 64)
    rng_state = torch.get_rng_state()
    result = find_batch_size(model, example, train=train, max_batch_size=256, **QUIET)
    _check_throughput_result(result, start=2 if train else 1, stop=256)
    assert result.train is train and result.device == "cpu"
    unchanged()
    assert torch.equal(torch.get_rng_state(), rng_state)  # dropout ran on a forked RNG


@pytest.mark.slow
def test_throughput_mode_on_a_cnn_with_labels(make_cnn, watch) -> None:
    model = make_cnn()
    unchanged = watch(model)
    images, labels = torch.randn(16, 3, 16, 16), torch.randint(0, 10, (16,))
    result = find_batch_size(
        model,
        images,
        target=labels,
        loss=torch.nn.functional.cross_entropy,
        train=True,
        start=2,
        max_batch_size=128,
        **QUIET,
    )
    _check_throughput_result(result, start=2, stop=128)
    unchanged()


class PeaksAt64(torch.nn.Module):
    """A step that takes 6 ms plus 0.15 ms a sample up to 64 samples, and 25% longer per
    sample above, on the virtual clock: samples per second rise until 64, then fall."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)
        self.clock = clock

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[0]
        self.clock.advance(0.006 + 0.00015 * size if size <= 64 else 1.25 * 0.0156 * size / 64)
        return self.linear(x)


def test_throughput_search_stops_two_doublings_past_the_fastest(clock: VirtualClock) -> None:
    result = find_batch_size(PeaksAt64(clock), torch.randn(8, 4), max_batch_size=4096, **QUIET)
    tried = [m.batch_size for m in result.measurements]
    table = result.to_dataframe().to_string()
    assert max(tried) == 256, table  # two doublings without gain, not all the way to 4096
    assert result.stop_reason == "no faster than batch 64, beyond the noise, for 2 doublings", table
    assert result.best_batch_size == 64, table
    # 56 samples take 14.4 ms: 95% of the speed of 64, within the 5% tolerance if measured so.
    assert result.batch_size in (56, 64), table
    assert {48, 96} <= set(tried)  # the midpoints around the fastest were measured too


def _check_throughput_result(result, start: int, stop: int) -> None:
    sizes = [m.batch_size for m in result.measurements]
    assert all(start <= size <= stop for size in sizes)
    doubling = [m.batch_size for m in result.measurements if m.phase == "doubling"]
    assert doubling[0] == start
    # Each step doubles (quadruples while the speed still nearly doubles), up to the stop.
    assert all(b in (2 * a, 4 * a, stop) for a, b in itertools.pairwise(doubling))
    assert result.batch_size in sizes and result.best_batch_size in sizes
    best = result.throughput(result.best_batch_size)
    assert best == max(m.samples_per_second for m in result.measurements if m.ok)
    # The chosen batch is the smallest within tolerance of the fastest.
    assert result.batch_size <= result.best_batch_size
    assert result.throughput(result.batch_size) >= (1 - result.tolerance) * best
    within = [s for s in set(sizes) if (result.throughput(s) or 0) >= (1 - result.tolerance) * best]
    assert result.batch_size == min(within)
    # Each speed comes with how far it could move, a share of itself.
    assert all(m.noise is not None and m.noise >= 0 for m in result.measurements if m.ok)


@pytest.mark.slow
def test_the_memory_cap_is_honoured(make_mlp) -> None:
    model = make_mlp(width=1024)
    example = torch.randn(64, 64)
    free = find_batch_size(model, example, mode="max", train=True, max_batch_size=2048, **QUIET)
    peaks = {m.batch_size: m.peak_memory for m in free.measurements}
    assert peaks[2048] > peaks[64] + 10_000_000  # activations of 2048 samples are visible
    cap = peaks[1024]
    capped = find_batch_size(
        model, example, mode="max", train=True, max_batch_size=2048, memory=cap, **QUIET
    )
    assert capped.memory_limit == cap
    assert all(m.peak_memory <= cap for m in capped.measurements if m.ok)
    # At most one step ran past the cap (a prediction that came out low), none far past it.
    over = [m for m in capped.measurements if m.status == OVER_MEMORY]
    assert len(over) <= 1 and all(m.peak_memory < 1.5 * cap for m in over)
    assert max(m.batch_size for m in capped.measurements) < 2048
    assert 128 <= capped.batch_size < 2048
    assert "memory cap" in capped.stop_reason or "exceeded the cap" in capped.stop_reason


def test_the_default_cap_is_half_the_available_memory() -> None:
    from nbopt.batching._memory import available_memory

    result = find_batch_size(torch.nn.Linear(4, 2), torch.randn(2, 4), max_batch_size=4, **QUIET)
    assert result.memory_limit == pytest.approx(0.5 * available_memory(), rel=0.1)


def test_a_cap_that_start_exceeds_is_a_clear_error() -> None:
    with pytest.raises(
        ConfigError, match=r"even batch size 8 needs .* over the memory cap of 1 kB"
    ):
        find_batch_size(
            torch.nn.Linear(64, 1024), torch.randn(8, 64), train=True, start=8, memory=1000, **QUIET
        )


def test_an_interrupt_keeps_what_finished_and_is_re_raised(make_mlp, watch) -> None:
    model = make_mlp()
    unchanged = watch(model)
    finished: list[RunFinished] = []

    made: list[int] = []

    def make_batch(size: int) -> torch.Tensor:
        if len(made) == 3:  # the check of a training step before the search, then 2 and 4
            raise KeyboardInterrupt
        made.append(size)
        return torch.randn(size, 64)

    with pytest.raises(KeyboardInterrupt):
        find_batch_size(
            model, make_batch=make_batch, train=True, callbacks=[_keep(finished)], **QUIET
        )
    partial = finished[0].result
    assert finished[0].status == "interrupted" and partial.status == "interrupted"
    assert made == [2, 2, 4]
    assert [m.batch_size for m in partial.measurements] == [2, 4]  # training starts at 2
    assert partial.batch_size in made
    unchanged()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"example": torch.tensor(1.0)}, "no batch dimension"),
        (
            {"example": torch.zeros(2, 4), "start": 64, "max_batch_size": 32},
            "max_batch_size=32 is below start=64",
        ),
        ({}, "give either example="),
        ({"example": torch.zeros(2, 4), "make_batch": lambda size: None}, "give either example="),
        (
            {"example": torch.zeros(2, 4), "loss": torch.nn.functional.mse_loss},
            "loss= is for training steps",
        ),
        ({"example": torch.zeros(2, 4), "mode": "fastest"}, "mode must be one of"),
        ({"example": torch.zeros(2, 4), "tolerance": 1.0}, "tolerance must be in"),
        ({"example": torch.zeros(2, 4), "memory": "lots"}, "memory: expected a size"),
        ({"example": torch.zeros(2, 4), "start": 0}, "start must be a positive integer"),
        ({"example": torch.zeros(2, 4), "progress": "loud"}, "progress must be one of"),
    ],
    ids=[
        "0-d",
        "max<start",
        "neither",
        "both",
        "loss-no-train",
        "mode",
        "tolerance",
        "memory",
        "start",
        "progress",
    ],
)
def test_bad_input_is_refused_before_anything_runs(arguments, message: str, watch) -> None:
    model = torch.nn.Linear(4, 2)
    unchanged = watch(model)
    events: list[Event] = []
    with pytest.raises(ConfigError, match=message):
        find_batch_size(model, callbacks=[events.append], **{**QUIET, **arguments})
    assert events == []  # not even a RunStarted
    unchanged()


def test_a_non_module_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"model must be a torch\.nn\.Module, got function"):
        find_batch_size(lambda x: x, torch.zeros(2, 2), **QUIET)


def test_memory_cap_where_memory_cannot_be_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    from nbopt.batching._memory import ResidentMemoryMeter

    # As on macOS or Windows, where there is no /proc/self/clear_refs.
    monkeypatch.setattr(ResidentMemoryMeter, "works", staticmethod(lambda: False))
    with pytest.raises(ConfigError, match="memory= cannot be enforced on cpu"):
        find_batch_size(torch.nn.Linear(4, 2), torch.zeros(2, 4), memory="1GB", **QUIET)
    result = find_batch_size(torch.nn.Linear(4, 2), torch.zeros(2, 4), max_batch_size=4, **QUIET)
    assert result.memory_limit is None
    assert all(m.peak_memory is None for m in result.measurements)


def _keep(events: list[RunFinished]):
    def keep(event: Event) -> None:
        if isinstance(event, RunFinished):
            events.append(event)

    return keep


class FlatAbove64(torch.nn.Module):
    """Samples per second rise until 64 samples, then stay exactly flat (a plateau): 6 ms
    plus 0.15 ms a sample up to 64, and 15.6 ms per 64 samples above, on the virtual clock."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)
        self.clock = clock

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[0]
        self.clock.advance(0.006 + 0.00015 * size if size <= 64 else 0.0156 * size / 64)
        return self.linear(x)


def test_a_plateau_ends_the_doubling_instead_of_the_largest_size(clock: VirtualClock) -> None:
    result = find_batch_size(FlatAbove64(clock), torch.randn(8, 4), max_batch_size=4096, **QUIET)
    tried = [m.batch_size for m in result.measurements]
    table = result.to_dataframe().to_string()
    assert max(tried) <= 512, table  # not all the way to 4096
    assert "beyond the noise" in result.stop_reason, table
    assert result.best_batch_size >= 48 and result.batch_size >= 32, table


class BurstOnFirstVisit(torch.nn.Module):
    """A 4 ms step, except the first 10 steps at ``slow`` samples, which take 10 times as long:
    a burst of load from another process while that batch size was measured."""

    def __init__(self, clock: VirtualClock, slow: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)
        self.clock = clock
        self.slow = slow
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        burst = x.shape[0] == self.slow and self.calls < 10
        self.calls += x.shape[0] == self.slow
        self.clock.advance(0.04 if burst else 0.004 * (1 + x.shape[0] / 64))
        return self.linear(x)


def test_a_burst_of_load_is_measured_again_and_reported(clock: VirtualClock) -> None:
    from nbopt.batching.events import BatchSizeWarning

    events: list[Event] = []
    result = find_batch_size(
        BurstOnFirstVisit(clock, slow=16), torch.randn(8, 4), start=8, max_batch_size=64,
        callbacks=[events.append], **QUIET,
    )  # fmt: skip
    sixteen = [m for m in result.measurements if m.batch_size == 16]
    assert [m.phase for m in sixteen] == ["doubling", "repeat"]
    # The repeat is kept: the speed of 16 is that of a 5 ms step, not of a 40 ms one.
    assert result.throughput(16) > 3 * sixteen[0].samples_per_second
    warnings = [e.message for e in events if isinstance(e, BatchSizeWarning)]
    assert warnings == result.warnings
    assert warnings[0].startswith("the machine was too noisy to decide: batch 16 ran at")


class OneFastStep(torch.nn.Module):
    """At each batch size, the first timed step (after two warm-up steps) takes 2 ms and every
    other one 6 ms, on the virtual clock: the fastest step is never seen again, however long
    the search times."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)
        self.clock = clock
        self.calls: dict[int, int] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        calls = self.calls.get(x.shape[0], 0)
        self.calls[x.shape[0]] = calls + 1
        self.clock.advance(0.002 if calls == 2 else 0.006)
        return self.linear(x)


def test_speeds_that_move_more_than_the_tolerance_are_reported(clock: VirtualClock) -> None:
    result = find_batch_size(OneFastStep(clock), torch.randn(8, 4), max_batch_size=8, **QUIET)
    # A size measured again (or whose fast step fell in the warm-up) never sees its fast step:
    # only the sizes that did show the gap, and the warning names one of them.
    noisy = {m.batch_size for m in result.measurements if m.ok and m.noise and m.noise > 0.5}
    assert noisy, result.measurements
    warned = [w for w in result.warnings if "moved by" in w]
    assert warned, result.warnings
    assert any(f"speed of batch {size} moved" in warned[0] for size in noisy), warned
