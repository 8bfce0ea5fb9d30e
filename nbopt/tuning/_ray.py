"""The Ray Tune backend: the same search, with trials running ``parallel`` at a time on Ray.

nbopt's own proposer (Hyperopt's algorithms, as on the local backend) suggests every
configuration through a small Ray ``Searcher``, so both backends propose alike and record the
same Hyperopt encoding in the study, which either backend can resume. We use this rather
than Ray's ``HyperOptSearch``, which keeps its own Hyperopt state that the study could not
hold. Early stopping maps onto Ray's own schedulers (``ASHAScheduler``,
``MedianStoppingRule``). Ray's console output is silenced; results come back through a Ray
``Callback`` in this process, which records them in the study and emits nbopt's events, so
the widget and TensorBoard look as for a local search.

Limits: a trial's prints go to Ray's logs, not the notebook; for ``%%tune`` cells, only the
best trial's parameters come back to the notebook (the variables a trial assigned stay in
its worker).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from nbopt._context import reporting_to
from nbopt._imports import optional_import
from nbopt.errors import user_traceback
from nbopt.events import StepReported
from nbopt.tuning._objective import read_metric
from nbopt.tuning._proposer import Proposal
from nbopt.tuning._ray_cluster import check_nodes_can_load, parse_address, ray_session
from nbopt.tuning._ray_send import check_sendable
from nbopt.tuning._result import TuneResult
from nbopt.tuning._search import Search
from nbopt.tuning._trial import Trial, TrialState
from nbopt.tuning.events import TrialStarted

_OBJECTIVE = "nbopt_objective"  # the value in "lower is better" form, for Ray's schedulers
_STEP = "nbopt_step"


def run_on_ray(
    search: Search, call: Callable[[Any], Any], *, parallel: int, address: str | None
) -> TuneResult:
    """Run ``search`` on Ray; returns its result (and re-raises an interrupt after saving).

    Without ``address`` (and no Ray connection open), a local Ray is started for the search
    and shut down after it; with one, the search joins that cluster (see ``_ray_cluster``).
    Raises ConfigError, before any trial, for a cluster that cannot run the search.
    """
    ray = optional_import("ray", "ray", "backend=ray")
    tune = optional_import("ray.tune", "ray", "backend=ray")
    where = parse_address(address)
    check_sendable(call)
    with ray_session(ray, where, max(parallel, os.cpu_count() or 1)) as on_cluster:
        return _fit(search, call, parallel, tune, ray, check_nodes=on_cluster)


def _fit(
    search: Search,
    call: Callable[[Any], Any],
    parallel: int,
    tune: Any,
    ray: Any,
    *,
    check_nodes: bool,
) -> TuneResult:
    function = _make_trainable(call, search.metric)
    if check_nodes:
        check_nodes_can_load(ray, function)
    bridge = _Bridge(search)
    searcher, callback, stopper = _ray_hooks(bridge)
    cpus = float(ray.available_resources().get("CPU", parallel))
    trainable = tune.with_resources(function, {"cpu": cpus / parallel})
    search.start(backend="ray")
    with (
        tempfile.TemporaryDirectory(prefix="nbopt-ray-") as storage,
        _environ(
            # Reports of metrics alone, and failed trials, carry no objective for the scheduler.
            TUNE_DISABLE_STRICT_METRIC_CHECKING="1",
            TUNE_DISABLE_SIGINT_HANDLER="1",
            # Ray's console output and its own CSV/JSON/TensorBoard logs: nbopt shows and logs.
            RAY_AIR_NEW_OUTPUT="0",
            TUNE_DISABLE_AUTO_CALLBACK_LOGGERS="1",
        ),
        _interrupt_handler(bridge),
    ):
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=_scheduler(search, tune),
                num_samples=-1,
                max_concurrent_trials=parallel,
            ),
            run_config=tune.RunConfig(
                storage_path=storage,
                verbose=0,
                stop=stopper,
                callbacks=[callback],
                failure_config=tune.FailureConfig(max_failures=0),
            ),
        )
        try:
            tuner.fit()
        except BaseException:
            for number in list(bridge.pending):
                bridge.end(number, TrialState.INTERRUPTED)
            search.finish("failed")
            raise
    for number in list(bridge.pending):
        bridge.end(number, TrialState.INTERRUPTED)
    if bridge.interrupted:
        search.finish("interrupted")
        raise KeyboardInterrupt
    return search.finish("done")


def _ray_hooks(bridge: _Bridge) -> tuple[Any, Any, Any]:
    """Ray's searcher, callback and stopper, each forwarding to ``bridge``."""
    searcher_class, callback_class, stopper_class = _hook_classes()
    searcher = searcher_class(metric=_OBJECTIVE, mode="min")
    hooks = (searcher, callback_class(), stopper_class())
    for hook in hooks:
        hook.bridge = bridge
    return hooks


@functools.cache
def _hook_classes() -> tuple[type, type, type]:
    from ray.tune import Callback
    from ray.tune.search import Searcher
    from ray.tune.stopper import Stopper

    class Unpicklable:
        """Ray pickles its configuration for its own restore feature, which nbopt does not
        use (the study is the record); the live bridge is left out of those copies."""

        bridge: _Bridge

        def __getstate__(self) -> dict[str, Any]:
            return {k: v for k, v in self.__dict__.items() if k != "bridge"}

    class NbOptSearcher(Unpicklable, Searcher):
        def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
            return self.bridge.suggest()

        def on_trial_complete(self, trial_id: str, result: Any = None, error: bool = False) -> None:
            """The callback records trials and tells the proposer."""

    class NbOptCallback(Unpicklable, Callback):
        def on_trial_start(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
            self.bridge.started(trial)

        def on_trial_result(
            self, iteration: int, trials: Any, trial: Any, result: dict, **info: Any
        ) -> None:
            self.bridge.result(trial, result)

        def on_trial_complete(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
            self.bridge.completed(trial)

        def on_trial_error(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
            self.bridge.failed(trial)

    class NbOptStopper(Unpicklable, Stopper):
        def __call__(self, trial_id: str, result: dict) -> bool:
            return False

        def stop_all(self) -> bool:
            return self.bridge.interrupted

    return NbOptSearcher, NbOptCallback, NbOptStopper


def _scheduler(search: Search, tune: Any) -> Any:
    """Ray's scheduler for ``stop=``; its decisions end trials after a report."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule

    settings = search.stop
    if settings.rule == "asha":
        return ASHAScheduler(
            time_attr=_STEP,
            metric=_OBJECTIVE,
            mode="min",
            grace_period=settings.rung,
            reduction_factor=settings.factor,
            max_t=10**9,
            stop_last_trials=False,
        )
    if settings.rule == "median":
        return MedianStoppingRule(
            time_attr=_STEP,
            metric=_OBJECTIVE,
            mode="min",
            grace_period=settings.warmup,
            min_samples_required=settings.min_trials,
        )
    return FIFOScheduler()


@contextlib.contextmanager
def _interrupt_handler(bridge: _Bridge) -> Iterator[None]:
    """Turn a kernel interrupt into an orderly stop of every Ray trial.

    Ray's own SIGINT handler (switched off with TUNE_DISABLE_SIGINT_HANDLER) ends the run but
    hides that it happened; ours sets a flag that our stopper's ``stop_all`` hands to Ray.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_interrupt(signum: int, frame: Any) -> None:
        bridge.interrupted = True

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _environ(**variables: str) -> Iterator[None]:
    """Set environment variables (read by Ray Tune in this process) for the run only."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _Bridge:
    """Connects Ray's searcher and callback hooks to the search's proposer and record."""

    def __init__(self, search: Search) -> None:
        self.search = search
        self.pending: dict[int, tuple[Proposal, Trial]] = {}
        self.interrupted = False
        self._last: dict[int, dict[str, Any]] = {}

    def suggest(self) -> dict[str, Any] | str | None:
        """The next trial's config, None to wait for running trials, or FINISHED."""
        from ray.tune.search import Searcher

        left = self.search.budget_left()
        out_of_budget = left is not None and left <= len(self.pending)
        if self.interrupted or out_of_budget or self.search.timed_out():
            return Searcher.FINISHED if not self.pending else None
        claimed = self.search.claim()
        if claimed is None:
            return Searcher.FINISHED if not self.pending else None
        number, proposal = claimed
        self.pending[number] = (proposal, Trial(number, proposal.params, vals=proposal.vals))
        sign = 1 if self.search.mode == "min" else -1
        return {"nbopt_number": number, "nbopt_params": proposal.params, "nbopt_sign": sign}

    def started(self, trial: Any) -> None:
        number = trial.config["nbopt_number"]
        record = self.pending[number][1]
        record.started = time.time()
        self.search.bus.emit(TrialStarted(number, record.params))

    def result(self, trial: Any, result: dict[str, Any]) -> None:
        number = trial.config["nbopt_number"]
        record = self.pending[number][1]
        self._last[number] = result
        record.started = result.get("nbopt_started", record.started)
        if result.get("nbopt_final"):
            return
        value = result.get("nbopt_value")
        if value is not None:
            record.intermediate.append((result[_STEP], value))
        metrics = result.get("nbopt_metrics", {})
        record.metrics.update(metrics)
        self.search.bus.emit(StepReported(number, result[_STEP], value, metrics))

    def completed(self, trial: Any) -> None:
        number = trial.config["nbopt_number"]
        last = self._last.pop(number, {})
        record = self.pending[number][1]
        if last.get("nbopt_final"):
            record.value = last.get("nbopt_value")
            record.metrics.update(last.get("nbopt_metrics", {}))
            record.error, record.traceback = last.get("nbopt_error"), last.get("nbopt_traceback")
            status = TrialState.FAILED if record.error else TrialState.OK
        else:  # ended by the scheduler after a report
            status = TrialState.STOPPED
            record.value = record.intermediate[-1][1] if record.intermediate else None
        record.duration = last.get("nbopt_duration", time.time() - record.started)
        self.end(number, status)

    def failed(self, trial: Any) -> None:
        number = trial.config["nbopt_number"]
        self._last.pop(number, None)
        record = self.pending[number][1]
        record.error = f"RayTrialError: {_ray_error_text(trial)}"
        record.duration = time.time() - record.started if record.started else 0.0
        self.end(number, TrialState.FAILED)

    def end(self, number: int, status: TrialState) -> None:
        proposal, record = self.pending.pop(number)
        record.status = status
        self.search.end_trial(proposal, record)


def _make_trainable(call: Callable[[Any], Any], metric: str | None) -> Callable[[dict], None]:
    """The function each Ray trial runs: the objective, with ``nbopt.report`` sent to Ray."""

    def trainable(config: dict[str, Any]) -> None:
        from ray import tune

        started, clock = time.time(), time.perf_counter()
        last_step = -1

        def sink(step: int, value: float | None, metrics: dict[str, float]) -> None:
            nonlocal last_step
            last_step = step
            report = {
                _STEP: step,
                "nbopt_value": value,
                "nbopt_metrics": metrics,
                "nbopt_started": started,
            }
            if value is not None:
                report[_OBJECTIVE] = value if config["nbopt_sign"] > 0 else -value
            tune.report(report)

        final: dict[str, Any] = {"nbopt_final": 1, "nbopt_started": started}
        try:
            with reporting_to(sink):
                raw = call(config["nbopt_params"])
            value, extras = read_metric(raw, metric)
            final.update(nbopt_value=value, nbopt_metrics=extras)
            final[_OBJECTIVE] = value if config["nbopt_sign"] > 0 else -value
        except Exception as exc:
            final.update(
                nbopt_error=f"{type(exc).__name__}: {exc}", nbopt_traceback=user_traceback(exc)
            )
        final.update({_STEP: last_step + 1, "nbopt_duration": time.perf_counter() - clock})
        tune.report(final)

    return trainable


def _ray_error_text(trial: Any) -> str:
    """The last line of the error Ray recorded for a trial (a crashed worker, say)."""
    with contextlib.suppress(Exception):
        error = trial.get_error()
        if error is not None:
            lines = [line for line in str(error).strip().splitlines() if line.strip()]
            if lines:
                return lines[-1]
    return "the trial's worker failed"
