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
from typing import TYPE_CHECKING

from nbopt.errors import ConfigError
from nbopt.tuning._trial import Trial, TrialState

if TYPE_CHECKING:
    from nbopt.tuning._objectives import Objectives

STOP_RULES = ("none", "median", "asha")


class Stopper(abc.ABC):
    """Decides whether a running trial should stop, like Optuna's ``BasePruner``.

    Subclass it and pass an instance as ``tune(stop=...)`` to stop trials by a rule of your
    own; the search sets :attr:`mode` to its own before the first trial.

    Example:
        >>> class AboveOne(Stopper):
        ...     def should_stop(self, trial, history):
        ...         return self.sign * trial.intermediate[-1][1] > 1.0
        >>> import nbopt
        >>> def train(lr):
        ...     for step in range(3):
        ...         nbopt.report(step, lr * 10)
        ...     return lr
        >>> result = nbopt.tune(train, {"lr": nbopt.uniform(0, 1)}, stop=AboveOne(), seed=0,
        ...                     max_evals=5, progress="none", logdir=None)
        >>> all(t.status == "stopped" for t in result.trials if t.value > 0.1)
        True
    """

    def __init__(self, mode: str = "min") -> None:
        self.mode = mode

    @property
    def sign(self) -> float:
        """1 when lower values are better (``mode="min"``), -1 otherwise."""
        return 1.0 if self.mode == "min" else -1.0

    @abc.abstractmethod
    def should_stop(self, trial: Trial, history: Sequence[Trial]) -> bool:
        """Whether ``trial`` should stop now.

        Args:
            trial: The running trial; ``trial.intermediate`` ends with the report just made.
            history: The study's finished trials that reported intermediate values.
        """


@dataclass(frozen=True)
class StopSettings:
    """The ``stop=`` options, shared by the local and the Ray backends: a rule's name and its
    settings, or a :class:`Stopper` of the user's own (local backend only)."""

    rule: str | Stopper = "none"
    warmup: int = 0
    min_trials: int = 5
    rung: int = 1
    factor: int = 3

    def __post_init__(self) -> None:
        if isinstance(self.rule, Stopper):
            return
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

    @property
    def name(self) -> str:
        """The rule's name, or the class name of a user's own stopper."""
        return self.rule if isinstance(self.rule, str) else type(self.rule).__name__

    def stopper(self, mode: str, objectives: Objectives | None = None) -> Stopper | None:
        """The stopper of a search; with several ``objectives``, the rule judges them all
        (:mod:`nbopt.tuning._front_stopping`)."""
        if isinstance(self.rule, Stopper):
            self.rule.mode = mode
            return self.rule
        if objectives is not None:
            from nbopt.tuning._front_stopping import DominatedStopper, FrontAshaStopper

            builders: dict[str, Callable[[], Stopper]] = {
                "median": lambda: DominatedStopper(objectives, self.warmup, self.min_trials),
                "asha": lambda: FrontAshaStopper(objectives, self.rung, self.factor),
            }
            return builders[self.rule]() if self.rule in builders else None
        builders = {
            "median": lambda: MedianStopper(mode, self.warmup, self.min_trials),
            "asha": lambda: AshaStopper(mode, self.rung, self.factor),
        }
        return builders[self.rule]() if self.rule in builders else None


class MedianStopper(Stopper):
    """``stop="median"``: stop a trial whose best value so far is worse than the median of
    the earlier trials' values at the same step (from step ``warmup`` on, once ``min_trials``
    trials reported that step)."""

    def __init__(self, mode: str = "min", warmup: int = 0, min_trials: int = 5) -> None:
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
            if past.status == TrialState.OK
            for past_step, value in past.intermediate
            if past_step == step
        ]
        if len(others) < self.min_trials:
            return False
        best_so_far = min(self.sign * value for _, value in trial.intermediate)
        return best_so_far > statistics.median(self.sign * value for value in others)


class AshaStopper(Stopper):
    """``stop="asha"``: at rungs of ``rung``, ``rung * factor``, ... steps, a trial goes on
    only if its value is in the best ``1/factor`` of the earlier trials' there."""

    def __init__(self, mode: str = "min", rung: int = 1, factor: int = 3) -> None:
        super().__init__(mode)
        self.rung = rung
        self.factor = factor

    def should_stop(self, trial: Trial, history: Sequence[Trial]) -> bool:
        step, value = trial.intermediate[-1]
        earlier_steps = [s for s, _ in trial.intermediate[:-1]]
        milestone = new_milestone(step, max(earlier_steps, default=-1), self.rung, self.factor)
        if milestone is None:
            return False
        recorded = [v for past in history if (v := _value_at(past, milestone)) is not None]
        if not recorded:
            return False
        cutoff = _percentile([self.sign * v for v in recorded], 100 / self.factor)
        return self.sign * value > cutoff


def new_milestone(step: int, previous_step: int, rung: int, factor: int) -> int | None:
    """The highest rung (``rung * factor**k`` steps) that a report at ``step`` reaches and the
    trial's earlier reports, up to ``previous_step``, did not."""
    milestone, reached = rung, None
    while milestone <= step:
        if milestone > previous_step:
            reached = milestone
        milestone *= factor
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
