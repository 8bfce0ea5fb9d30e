"""One search: its record of trials, its study file, its events, and the local loop.

We drive Hyperopt's ``suggest`` functions ourselves (see ``_proposer.py``) rather than calling
``fmin``: that is what lets a failed trial be recorded and the search go on, a configuration
already evaluated be skipped, every finished trial be saved at once, a bad trial be stopped
early, and an interrupt keep what finished. Other backends (Ray) reuse the bookkeeping and
the proposer, and run the trials their own way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nbopt._context import reporting_to
from nbopt.errors import ConfigError, TrialStopped, TuneError, user_traceback
from nbopt.events import EventBus, RunFinished, RunStarted, StepReported
from nbopt.tuning._algorithms import Algorithm, get_algorithm
from nbopt.tuning._objective import read_metric
from nbopt.tuning._proposer import Proposal, Proposer
from nbopt.tuning._result import TuneResult
from nbopt.tuning._stopping import StopSettings
from nbopt.tuning._study import StudyFile, StudyHeader
from nbopt.tuning._trial import Trial, TrialState
from nbopt.tuning.events import TrialFinished, TrialStarted

DEFAULT_MAX_EVALS = 20


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
        metric: str | None = None,
        mode: str = "min",
        study: str | Path | None = None,
        restart: bool = False,
        deterministic: bool = True,
        stop: StopSettings | None = None,
        name: str = "",
        backend: str = "local",
    ) -> None:
        if mode not in ("min", "max"):
            raise ConfigError(f"mode must be 'min' or 'max', got {mode!r}")
        if max_evals is not None and max_evals < 1:
            raise ConfigError(f"max_evals must be at least 1, got {max_evals}")
        if timeout is not None and not timeout > 0:
            raise ConfigError(f"timeout must be a positive number of seconds, got {timeout}")
        self.bus = bus
        self.mode = mode
        self.metric = metric
        self.timeout = timeout
        self.name = name
        algorithm = get_algorithm(algo)
        self.algo = algorithm.name
        self.stop = stop or StopSettings()
        self.stopper = self.stop.stopper(mode)
        self.proposer = Proposer(
            space,
            algorithm=algorithm,
            max_evals=max_evals,
            seed=seed,
            deterministic=deterministic,
            mode=mode,
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
        self.n_finished = self._n_failed = 0
        self.best: Trial | None = None
        self.status = "running"
        self.header = StudyHeader(
            metric=metric or "value", mode=mode, space=self.proposer.fingerprint, backend=backend
        )
        self._study = StudyFile(study) if study is not None else None
        self.resumed = self._open_study(restart) if self._study is not None else 0
        self._last_number = max((trial.number for trial in self.trials), default=-1)
        self._started = time.perf_counter()

    @property
    def result(self) -> TuneResult:
        return TuneResult(
            trials=list(self.trials),
            metric=self.header.metric,
            mode=self.mode,
            status=self.status,
            study=str(self._study.path) if self._study else None,
            algo=self.algo,
        )

    # -- bookkeeping shared by the backends ---------------------------------------------------

    def start(self, backend: str = "local") -> None:
        self._started = time.perf_counter()
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
                columns=("trial", self.header.metric, "best", "params", "time"),
                config={"algo": self.algo, "backend": backend, "stop": self.stop.name},
                notes=tuple(self.notes),
            )
        )

    def next_number(self) -> int:
        """A new trial's number: trials are numbered in the order they start."""
        self._last_number += 1
        return self._last_number

    def budget_left(self) -> int | None:
        """Trials that may still start (None: no limit but the timeout)."""
        return None if self.max_evals is None else self.max_evals - self.n_finished

    def timed_out(self) -> bool:
        return self.timeout is not None and time.perf_counter() - self._started >= self.timeout

    def record(self, trial: Trial) -> None:
        """Add a trial that ended, save the study, tell the reporters."""
        self._append(trial)
        if self._study is not None:
            self._study.save(self.header, self.trials)
        self.bus.emit(TrialFinished(trial, self.best, self.n_finished, self._n_failed))

    def finish(self, status: str) -> TuneResult:
        """Emit the end of the run (``done``, ``interrupted`` or ``failed``: nbopt itself hit an
        error); after a ``done`` run, raise TuneError if no trial produced a value."""
        self.status = status
        seconds = time.perf_counter() - self._started
        result = self.result
        self.bus.emit(RunFinished("tune", status, _summary(self, seconds), result))
        if status == "done" and not any(trial.usable for trial in self.trials):
            failed = [trial for trial in self.trials if trial.status == TrialState.FAILED]
            if failed:
                raise TuneError(
                    f"all {len(failed)} trials failed; the first one raised:\n{failed[0].traceback}"
                )
        return result

    def history(self) -> list[Trial]:
        """Finished trials that reported intermediate values, for the stopping rules."""
        return [trial for trial in self.trials if trial.finished and trial.intermediate]

    def _append(self, trial: Trial) -> None:
        self.trials.append(trial)
        if trial.finished:
            self.n_finished += 1
            self._n_failed += trial.status == TrialState.FAILED
        if trial.usable and (
            self.best is None or self._signed(trial.value) < self._signed(self.best.value)
        ):
            self.best = trial

    def _signed(self, value: float) -> float:
        return value if self.mode == "min" else -value

    def _open_study(self, restart: bool) -> int:
        assert self._study is not None
        if not self._study.exists():
            return 0
        header, trials = self._study.load()  # raises on a file that is not a valid study
        if restart:
            return 0
        self._study.check_compatible(header, self.header)
        self.header.created = header.created
        for saved in trials:
            try:
                saved.params = self.proposer.params(saved.vals)
                if saved.finished:
                    self.proposer.restore(saved)
            except Exception as exc:
                raise ConfigError(
                    f"study file {self._study.path}: trial {saved.number} does not fit the search "
                    f"space ({type(exc).__name__}: {exc}); the file was left untouched"
                ) from None
            self._append(saved)
        return self.n_finished

    # -- the local backend --------------------------------------------------------------------

    def run(self, call: Callable[[Any], Any]) -> TuneResult:
        """Run trials in this process until the budget, the timeout or the space is exhausted."""
        self.start()
        try:
            while ((left := self.budget_left()) is None or left > 0) and not self.timed_out():
                proposal = self.proposer.ask()
                if proposal is None:
                    break
                self._run_trial(call, proposal)
        except KeyboardInterrupt:
            self.finish("interrupted")
            raise
        except BaseException:
            self.finish("failed")  # the views close and what finished is returned as usual
            raise
        return self.finish("done")

    def evaluate(self, call: Callable[[Any], Any], vals: dict[str, Any]) -> Trial:
        """Run the configuration ``vals`` (Hyperopt's encoding) as the next trial, after the
        run: recorded, saved and reported like the others."""
        self._run_trial(call, self.proposer.given(vals))
        return self.trials[-1]

    def _run_trial(self, call: Callable[[Any], Any], proposal: Proposal) -> None:
        number = self.next_number()
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
                raw = call(proposal.params)
            trial.value, extras = read_metric(raw, self.metric)
            trial.metrics.update(extras)
            trial.status = TrialState.OK
        except TrialStopped as stop:
            trial.status, trial.value = TrialState.STOPPED, stop.value
        except KeyboardInterrupt:
            trial.status = TrialState.INTERRUPTED
            self._end_trial(trial, proposal, clock)
            raise
        except Exception as exc:
            trial.status = TrialState.FAILED
            trial.error = f"{type(exc).__name__}: {exc}"
            trial.traceback = user_traceback(exc)
        self._end_trial(trial, proposal, clock)

    def _end_trial(self, trial: Trial, proposal: Proposal, clock: float) -> None:
        trial.duration = time.perf_counter() - clock
        self.proposer.tell(proposal, trial)
        self.record(trial)


def _summary(search: Search, seconds: float) -> str:
    text = f"{search.result.summary()} in {seconds:.1f} s"
    if search.best is not None:
        text += (
            f"; best {search.header.metric} {search.best.value:.6g} at trial {search.best.number}"
        )
    return text


def run_locally(
    search: Search, call: Callable[[Any], Any], *, parallel: int = 1, address: str | None = None
) -> TuneResult:
    """The local backend: trials one after another in this process."""
    if parallel != 1 or address is not None:
        raise ConfigError("parallel= and address= need backend='ray'")
    return search.run(call)
