"""One search: its record of trials, its study file, its events, and the local loop.

We drive Hyperopt's ``suggest`` functions ourselves (see ``_proposer.py``) rather than calling
``fmin``: that is what lets a failed trial be recorded and the search go on, a configuration
already evaluated be skipped, every finished trial be saved at once, a bad trial be stopped
early, and an interrupt keep what finished. Other backends (local worker processes, Ray)
reuse the bookkeeping and the proposer, and run the trials their own way.

A trial is *claimed* before it runs (:meth:`Search.claim`): with a study, under the study's
lock, the search first reads what other processes recorded (their finished trials teach the
proposer, their running ones are not proposed again and count against the budget), then asks
the proposer and writes the claim. So any number of kernels can run one study at once.
"""

from __future__ import annotations

import contextlib
import gc
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from nbopt._context import reporting_to
from nbopt.errors import ConfigError, TrialStopped, user_traceback
from nbopt.events import EventBus, RunFinished, RunStarted, StepReported
from nbopt.tuning._algorithms import Algorithm, get_algorithm
from nbopt.tuning._constraints import Constraints
from nbopt.tuning._errors import AllTrialsFailed, StopSearch, StudyWriteError
from nbopt.tuning._objective import settle
from nbopt.tuning._objectives import Front, Objectives
from nbopt.tuning._proposer import Proposal, Proposer, identity
from nbopt.tuning._records import ACTIVE_SEARCHES, StudyHeader
from nbopt.tuning._result import TuneResult
from nbopt.tuning._stopping import StopSettings
from nbopt.tuning._study import Study, StudyUpdate
from nbopt.tuning._trial import Trial, TrialState
from nbopt.tuning.events import TrialFinished, TrialStarted

DEFAULT_MAX_EVALS = 20
# Seconds the last read of a shared study at the end may wait for the lock.
FINAL_READ_TIMEOUT = 5.0


class Search:
    """The state of one search; :func:`nbopt.tune` builds it and runs it on a backend.

    ``result`` holds everything finished so far, even after an interrupt or an error.
    """

    def __init__(
        self,
        space: Any,
        *,
        bus: EventBus,
        algo: str | Algorithm = "auto",
        max_evals: int | None = None,
        timeout: float | None = None,
        seed: int | None = None,
        metric: str | Sequence[str] | None = None,
        mode: str | Sequence[str] = "min",
        constraint: str | Sequence[str] | None = None,
        study: str | Path | None = None,
        restart: bool = False,
        deterministic: bool = True,
        stop: StopSettings | None = None,
        name: str = "",
        backend: str = "local",
    ) -> None:
        self.objectives = Objectives.parse(metric, mode)
        if self.objectives is not None:
            metric, mode = self.objectives.names, self.objectives.modes[0]
        elif not isinstance(metric, (str, type(None))):
            metric = metric[0]
        mode = mode if isinstance(mode, str) else mode[0]
        if max_evals is not None and max_evals < 1:
            raise ConfigError(f"max_evals must be at least 1, got {max_evals}")
        if timeout is not None and not timeout > 0:
            raise ConfigError(f"timeout must be a positive number of seconds, got {timeout}")
        self.bus = bus
        self.mode = mode
        self.metric = metric
        self.timeout = timeout
        self.name = name
        self.constraints = Constraints.parse(constraint, self.metric_name)
        algorithm = get_algorithm(algo)
        self.algo = algorithm.name
        self.stop = stop or StopSettings()
        if self.objectives is not None and self.stop.name != "none":
            raise ConfigError(
                "stop= judges one metric, so it does not run with several objectives; "
                "leave stop= out or optimise one metric"
            )
        if self.objectives is not None and backend != "local":
            raise ConfigError("several objectives run on the local backend, not on Ray")
        self.stopper = self.stop.stopper(mode)
        self.proposer = Proposer(
            space,
            algorithm=algorithm,
            max_evals=max_evals,
            seed=seed,
            deterministic=deterministic,
            mode=mode,
            objectives=self.objectives,
            constraints=self.constraints,
        )
        size = self.proposer.size
        if max_evals is None and timeout is None:
            max_evals = size if self.algo == "grid" and size else DEFAULT_MAX_EVALS
        self.max_evals = max_evals
        self.notes: list[str] = []
        if deterministic and size is not None and max_evals is not None and max_evals > size:
            self.notes.append(
                f"the space has {size} configurations, so the search ends after {size} trials "
                f"(max_evals={max_evals}; deterministic=False would repeat configurations)"
            )
        self.trials: list[Trial] = []
        self._numbers: set[int] = set()
        self.n_finished = self._n_failed = 0
        self.best: Trial | None = None  # with several objectives: None, and ``front``
        self.front = Front(self.objectives) if self.objectives is not None else None
        self.status = "running"
        self.header = StudyHeader(
            metric=self.metric_name, mode=mode, space=self.proposer.fingerprint, backend=backend
        )
        if self.objectives is not None:
            self.header.metrics, self.header.modes = self.objectives.names, self.objectives.modes
        self._own: set[int] = set()  # trials this search claimed and has not recorded
        self._last_number = -1
        self._token = uuid.uuid4().hex[:12]
        self._study = Study(study, self.header, self._token) if study is not None else None
        self.resumed = self._open_study(restart) if self._study is not None else 0
        self._started = time.perf_counter()

    @property
    def metric_name(self) -> str:
        """The metric's name (the first one, with several objectives)."""
        if self.objectives is not None:
            return self.objectives.names[0]
        return self.metric or "value"

    @property
    def result(self) -> TuneResult:
        return TuneResult(
            trials=sorted(self.trials, key=lambda trial: trial.number),
            metric=self.header.metric,
            mode=self.mode,
            status=self.status,
            study=str(self._study.path) if self._study else None,
            algo=self.algo,
            objectives=dict(zip(self.objectives.names, self.objectives.modes, strict=True))
            if self.objectives is not None
            else {},
            constraints=self.constraints.texts if self.constraints is not None else (),
        )

    # -- bookkeeping shared by the backends ---------------------------------------------------

    def start(self, backend: str = "local") -> None:
        self._started = time.perf_counter()
        if self._study is not None:
            ACTIVE_SEARCHES.add(self._token)
        title = f"tune · {self.algo}" + ("" if backend == "local" else f" · {backend}")
        self.bus.emit(
            RunStarted(
                kind="tune",
                title=title,
                total=self.max_evals,
                resumed=self.resumed,
                metric=self.header.metric,
                mode=self.mode,
                name=self.name,
                columns=self._columns(),
                config={
                    "algo": self.algo,
                    "backend": backend,
                    "stop": self.stop.name,
                    **(
                        {"constraint": ", ".join(self.constraints.texts)}
                        if self.constraints
                        else {}
                    ),
                },
                notes=tuple(self.notes),
            )
        )

    def _columns(self) -> tuple[str, ...]:
        if self.objectives is not None:
            return ("trial", ", ".join(self.objectives.names), "front", "params", "time")
        return ("trial", self.header.metric, "best", "params", "time")

    def budget_left(self) -> int | None:
        """Trials that may still start besides those this search runs (None: no limit but the
        timeout); trials other processes are running on the study count as started."""
        if self.max_evals is None:
            return None
        elsewhere = len(self._study.running_elsewhere()) if self._study is not None else 0
        return self.max_evals - self.n_finished - elsewhere

    def timed_out(self) -> bool:
        return self.timeout is not None and time.perf_counter() - self._started >= self.timeout

    def claim(self) -> tuple[int, Proposal] | None:
        """A new trial's number and configuration, or None when the budget is spent or the
        space exhausted. With a study, the claim is written there before the trial runs.

        The proposer runs outside the study's lock (it may take a while, and other processes
        wait for the lock): the study is read, a configuration proposed, then the study read
        again under the lock before the claim is written; if another process claimed the same
        configuration meanwhile, it is proposed again there.
        """
        if self._study is None:
            return self._propose()
        with self._study.locked():
            self._absorb(self._study.sync(), loading=False)
        if not self._budget_allows():
            return None
        proposal = self.proposer.ask()
        with self._study.locked():
            taken = self._absorb(self._study.sync(), loading=False)
            if proposal is None:
                return self._propose()
            if self.proposer.deterministic and identity(proposal.vals) in taken:
                return self._propose()  # claimed by another process meanwhile: propose again
            if self._budget_allows():
                return self._propose(proposal)
            self.proposer.release(proposal.vals)  # not run: it may be proposed later
            return None

    def _budget_allows(self) -> bool:
        left = self.budget_left()
        return left is None or left > len(self._own)

    def _propose(self, proposal: Proposal | None = None) -> tuple[int, Proposal] | None:
        if proposal is None:
            if not self._budget_allows():
                return None
            proposal = self.proposer.ask()
            if proposal is None:
                return None
        if self._study is None:
            number = self._last_number + 1
        else:
            number = self._study.next_number()
            self._study.append_start(number, proposal.vals, time.time())
        self._last_number = number
        self._own.add(number)
        return number, proposal

    def record(self, trial: Trial) -> None:
        """Add a trial that ended, save it in the study, tell the reporters.

        Raises :class:`StudyWriteError` (after telling the reporters) if it cannot be saved.
        """
        self._own.discard(trial.number)
        self._check_constrained_metrics(trial)
        self._append(trial)
        failure = None
        if self._study is not None:
            try:
                with self._study.locked():
                    self._absorb(self._study.sync(), loading=False)  # to append after it all
                    self._study.append_finish(trial)
            except StudyWriteError as exc:
                failure = StudyWriteError(
                    f"{exc.summary}; the search stopped: trial {trial.number} and every trial "
                    "before it are in its result, and the study keeps those saved earlier"
                )
        several: dict[str, Any] = {}
        if self.objectives is not None and self.front is not None:
            several = {"objectives": self.objectives.names, "front": tuple(self.front.trials)}
        if self.constraints is not None and trial.usable:
            several["broken"] = tuple(str(item) for item in self.constraints.broken(trial))
        self.bus.emit(TrialFinished(trial, self.best, self.n_finished, self._n_failed, **several))
        if failure is not None:
            raise failure

    def end_trial(self, proposal: Proposal, trial: Trial) -> None:
        """Teach the proposer a trial that ended, and record it."""
        self._check_constrained_metrics(trial)
        self.proposer.tell(proposal, trial)
        self.record(trial)

    def finish(self, status: str) -> TuneResult:
        """Emit the end of the run (``done``, ``interrupted`` or ``failed``: nbopt itself hit an
        error); after a ``done`` run, raise TuneError if no trial produced a value."""
        self.status = status
        self._read_study_last()
        ACTIVE_SEARCHES.discard(self._token)
        seconds = time.perf_counter() - self._started
        result = self.result
        self.bus.emit(RunFinished("tune", status, _summary(self, seconds), result))
        if status == "done" and not any(trial.usable for trial in self.trials):
            failed = [trial for trial in self.trials if trial.status == TrialState.FAILED]
            if failed:
                first = min(failed, key=lambda trial: trial.number)
                error = (first.error or "").strip().splitlines()[:1] or ["no error recorded"]
                raise AllTrialsFailed(
                    f"all {len(failed)} trials failed; the first one: {error[0]}",
                    first.traceback or "",
                )
        return result

    def _read_study_last(self) -> None:
        """Take in what other processes finished meanwhile, so the result holds the study."""
        if self._study is None or not self._study.written or self.status == "failed":
            return
        try:
            with self._study.locked(timeout=FINAL_READ_TIMEOUT):
                self._absorb(self._study.sync(), loading=False)
        except (StudyWriteError, OSError) as exc:
            warnings.warn(
                f"nbopt: could not read study {self._study.path} at the end: {exc}",
                RuntimeWarning,
                stacklevel=3,
            )

    def history(self) -> list[Trial]:
        """Finished trials that reported intermediate values, for the stopping rules."""
        return [trial for trial in self.trials if trial.finished and trial.intermediate]

    def _check_constrained_metrics(self, trial: Trial) -> None:
        """Fail a trial that did not report a metric a constraint reads."""
        error = self.constraints.missing_error(trial) if self.constraints is not None else None
        if error is not None:
            trial.status, trial.value, trial.error = TrialState.FAILED, None, error

    def _append(self, trial: Trial) -> None:
        self.trials.append(trial)
        self._numbers.add(trial.number)
        self._last_number = max(self._last_number, trial.number)
        if trial.finished:
            self.n_finished += 1
            self._n_failed += trial.status == TrialState.FAILED
        if self.constraints is not None and not self.constraints.feasible(trial):
            return  # feasible for nothing: neither best nor on the front
        if self.front is not None:
            self.front.add(trial)
        elif trial.usable and (
            self.best is None or self._signed(trial.value) < self._signed(self.best.value)
        ):
            self.best = trial

    def _signed(self, value: float) -> float:
        return value if self.mode == "min" else -value

    def _open_study(self, restart: bool) -> int:
        assert self._study is not None
        with _bulk_loading():
            self._absorb(self._study.open(restart), loading=True)
        return self.n_finished

    def _absorb(self, update: StudyUpdate, *, loading: bool) -> set[frozenset[Any]]:
        """Take in trials read from the study (each checked against the space first); returns
        the identities of their configurations."""
        assert self._study is not None
        finished = [trial for trial in update.finished if trial.number not in self._numbers]
        running = [item for item in update.started if item.number in self._study.running]
        for item in [*finished, *running]:
            try:
                decoded = self.proposer.decode(item.vals)
            except ValueError as exc:
                message = (
                    f"study file {self._study.path}: trial {item.number} does not fit the "
                    f"search space ({exc})"
                )
                if loading:
                    raise ConfigError(f"{message}; the file was left untouched") from None
                raise StudyWriteError(message) from None
            if isinstance(item, Trial):
                item.params = decoded
        for item in running:
            self.proposer.hold(item.vals)
        for trial in finished:
            if not trial.finished:
                self.proposer.release(trial.vals)
            self._append(trial)
        self.proposer.restore([trial for trial in finished if trial.finished])
        return {identity(item.vals) for item in [*finished, *running]}

    # -- the local backend --------------------------------------------------------------------

    def run(self, call: Callable[[Any], Any]) -> TuneResult:
        """Run trials in this process until the budget, the timeout or the space is exhausted."""
        self.start()
        try:
            while not self.timed_out():
                claimed = self.claim()
                if claimed is None:
                    break
                self._run_trial(call, *claimed)
        except KeyboardInterrupt:
            self.finish("interrupted")
            raise
        except BaseException:
            self.finish("failed")  # the views close and what finished is returned as usual
            raise
        return self.finish("done")

    def evaluate(self, call: Callable[[Any], Any], vals: dict[str, Any]) -> Trial:
        """Run the configuration ``vals`` (Hyperopt's encoding) as one more trial after the run:
        claimed, recorded and saved in the study like the others."""
        proposal = self.proposer.given(vals)
        if self._study is not None:
            ACTIVE_SEARCHES.add(self._token)  # its claim in the study belongs to a live search
        try:
            if self._study is None:
                claimed = self._propose(proposal)
            else:
                with self._study.locked():
                    self._absorb(self._study.sync(), loading=False)
                    claimed = self._propose(proposal)
            assert claimed is not None
            self._run_trial(call, *claimed)
        finally:
            ACTIVE_SEARCHES.discard(self._token)
        return next(trial for trial in reversed(self.trials) if trial.number == claimed[0])

    def _run_trial(self, call: Callable[[Any], Any], number: int, proposal: Proposal) -> None:
        trial = Trial(number, proposal.params, vals=proposal.vals, started=time.time())
        self.bus.emit(TrialStarted(number, proposal.params))
        history = self.history() if self.stopper is not None else []

        def sink(step: int, value: float | None, metrics: dict[str, float]) -> None:
            if value is not None:
                trial.intermediate.append((step, value))
            trial.metrics.update(metrics)
            self.bus.emit(StepReported(number, step, value, metrics))
            stop = self.stopper
            if value is not None and stop is not None and stop.should_stop(trial, history):
                raise TrialStopped(step, value)

        clock = time.perf_counter()
        try:
            with reporting_to(sink):
                returned = call(proposal.params)
        except TrialStopped as stop:
            trial.status, trial.value = TrialState.STOPPED, stop.value
        except KeyboardInterrupt:
            trial.status = TrialState.INTERRUPTED
            with contextlib.suppress(StudyWriteError):  # the interrupt is what to report
                self._end_trial(trial, proposal, clock)
            raise
        except StopSearch as exc:
            trial.status, trial.error = TrialState.FAILED, f"{type(exc).__name__}: {exc}"
            self._end_trial(trial, proposal, clock)
            raise
        except Exception as exc:
            trial.status = TrialState.FAILED
            trial.error = f"{type(exc).__name__}: {exc}"
            trial.traceback = user_traceback(exc)
        else:
            settle(trial, returned, self.metric)
        self._end_trial(trial, proposal, clock)

    def _end_trial(self, trial: Trial, proposal: Proposal, clock: float) -> None:
        trial.duration = time.perf_counter() - clock
        self.end_trial(proposal, trial)


@contextlib.contextmanager
def _bulk_loading() -> Iterator[None]:
    """Pause the cyclic garbage collector while a study is read: a long study makes hundreds
    of thousands of small objects, none of them garbage, and collections triggered by their
    count would take a third of the time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _summary(search: Search, seconds: float) -> str:
    text = f"{search.result.summary()} in {seconds:.1f} s"
    if search.front is not None:
        text += f"; {len(search.front.trials)} trials on the front"
    elif search.best is not None:
        text += (
            f"; best {search.header.metric} {search.best.value:.6g} at trial {search.best.number}"
        )
    if search.constraints is not None and not any(map(search.constraints.feasible, search.trials)):
        text += f"; no trial met {' and '.join(search.constraints.texts)}"
    return text


def run_locally(
    search: Search, call: Callable[[Any], Any], *, parallel: int = 1, address: str | None = None
) -> TuneResult:
    """The local backend: trials one after another in this process, or ``parallel`` at a time
    in worker processes forked from it."""
    if parallel > 1:
        from nbopt.tuning._pool import run_in_workers

        return run_in_workers(search, call, parallel)
    return search.run(call)
