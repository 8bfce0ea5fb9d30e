"""Early stopping of bad trials from the intermediate values they report.

A stopper looks at the running trial's reports and at the finished trials of the study (their
``intermediate`` values, which the study file keeps, so a resumed search judges as before)
and says whether the trial should stop. Both rules are stateless functions of that history.

* ``median``: as Optuna's ``MedianPruner``. At step ``s`` (from ``warmup`` on, once
  ``min_trials`` earlier trials reported a value at ``s``), stop when the trial's best value so
  far is worse than the median of those trials' values at ``s``.
* ``asha``: asynchronous successive halving, as Ray Tune's ``ASHAScheduler``. Rungs sit at
  ``rung * factor**k`` steps; when a trial first reaches a rung, it stops unless its value is in
  the best ``1/factor`` of the values that earlier trials had there.
"""

from __future__ import annotations

import abc
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nbopt.errors import ConfigError
from nbopt.tuning._trial import Trial

STOP_RULES = ("none", "median", "asha")


class Stopper(abc.ABC):
    """Decides whether a running trial should stop; values are compared in ``mode``."""

    def __init__(self, mode: str) -> None:
        self.sign = 1.0 if mode == "min" else -1.0

    @abc.abstractmethod
    def should_stop(self, trial: Trial, history: Sequence[Trial]) -> bool:
        """``trial.intermediate`` ends with the report just made; ``history`` is finished trials."""


@dataclass(frozen=True)
class StopSettings:
    """The ``stop=`` options, shared by the local and the Ray backends."""

    rule: str = "none"
    warmup: int = 0
    min_trials: int = 5
    rung: int = 1
    factor: int = 3

    def __post_init__(self) -> None:
        if self.rule not in STOP_RULES:
            raise ConfigError(
                f"unknown stop rule {self.rule!r}; known rules: {', '.join(STOP_RULES)}"
            )
        for name in ("warmup", "min_trials"):
            if getattr(self, name) < 0:
                raise ConfigError(f"stop_{name} must be >= 0, got {getattr(self, name)}")
        if self.rung < 1:
            raise ConfigError(f"rung must be >= 1, got {self.rung}")
        if self.factor < 2:
            raise ConfigError(f"the reduction factor must be >= 2, got {self.factor}")

    def stopper(self, mode: str) -> Stopper | None:
        builders: dict[str, Callable[[], Stopper]] = {
            "median": lambda: MedianStopper(mode, self.warmup, self.min_trials),
            "asha": lambda: AshaStopper(mode, self.rung, self.factor),
        }
        return builders[self.rule]() if self.rule in builders else None


class MedianStopper(Stopper):
    def __init__(self, mode: str, warmup: int = 0, min_trials: int = 5) -> None:
        super().__init__(mode)
        self.warmup = warmup
        self.min_trials = min_trials

    def should_stop(self, trial: Trial, history: Sequence[Trial]) -> bool:
        step, _ = trial.intermediate[-1]
        if step < self.warmup:
            return False
        others = [
            value
            for past in history
            if past.status == "ok"
            for past_step, value in past.intermediate
            if past_step == step
        ]
        if len(others) < self.min_trials:
            return False
        best_so_far = min(self.sign * value for _, value in trial.intermediate)
        return best_so_far > statistics.median(self.sign * value for value in others)


class AshaStopper(Stopper):
    def __init__(self, mode: str, rung: int = 1, factor: int = 3) -> None:
        super().__init__(mode)
        self.rung = rung
        self.factor = factor

    def should_stop(self, trial: Trial, history: Sequence[Trial]) -> bool:
        step, value = trial.intermediate[-1]
        earlier_steps = [s for s, _ in trial.intermediate[:-1]]
        milestone = self._new_milestone(step, max(earlier_steps, default=-1))
        if milestone is None:
            return False
        recorded = [v for past in history if (v := _value_at(past, milestone)) is not None]
        if not recorded:
            return False
        cutoff = _percentile([self.sign * v for v in recorded], 100 / self.factor)
        return self.sign * value > cutoff

    def _new_milestone(self, step: int, previous_step: int) -> int | None:
        """The highest rung that this report reaches and the trial's earlier ones did not."""
        milestone, reached = self.rung, None
        while milestone <= step:
            if milestone > previous_step:
                reached = milestone
            milestone *= self.factor
        return reached


def _value_at(trial: Trial, milestone: int) -> float | None:
    """The value a trial reported when it first reached ``milestone`` steps."""
    for step, value in trial.intermediate:
        if step >= milestone:
            return value
    return None


def _percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile with linear interpolation (NumPy's and Ray's default method)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
