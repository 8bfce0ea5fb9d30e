"""Early stopping with several objectives: stop a trial that the front of earlier trials
dominates at the step it reached.

A trial reports every objective with ``nbopt.report(step, val_acc=..., params=...)``. Its
values *at step s* are, for each metric, the last it reported at or before ``s`` (so a metric
that does not change while training, a parameter count, can be reported once, at step 0).
An earlier trial counts at ``s`` if it reported the first metric at ``s`` itself.

* ``stop="median"``, the dominance rule: from step ``warmup`` on, once ``min_trials`` earlier
  trials count at ``s``, stop the trial if one of them is at least as good in every objective
  at ``s`` and better in one, i.e. if the front of the earlier trials at ``s`` dominates it.
* ``stop="asha"``, successive halving by fronts: at rungs of ``rung``, ``rung * factor``, ...
  steps, sort the earlier trials' values there and the trial's into fronts (non-dominated
  sorting); the trial goes on if its front is among those that hold the best
  ``1/factor`` of the trials, whole fronts kept (as Schmucker et al.'s multi-objective ASHA,
  without their tie-break inside the last front).

The assumption, as with one objective: a trial's standing at an early step predicts its
standing at the end, here in every objective at once. A metric that only improves with
training in a way that reorders trials late (one model catching up after a slow start) is
what the rule gets wrong; ``stop_warmup`` and ``rung`` say how long to wait.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from nbopt.tuning._objectives import Objectives, dominates
from nbopt.tuning._stopping import Stopper, new_milestone
from nbopt.tuning._trial import Trial, TrialState


def values_at(trial: Trial, step: int, objectives: Objectives) -> tuple[float, ...] | None:
    """The trial's losses (negated for ``max``) at ``step``: each metric's last report at or
    before it; None if one of them was not reported by then."""
    series = [trial.intermediate] + [
        trial.intermediate_metrics.get(name, []) for name in objectives.names[1:]
    ]
    values = []
    for steps, mode in zip(series, objectives.modes, strict=True):
        reported = [v for s, v in steps if s <= step and math.isfinite(v)]
        if not reported:
            return None
        values.append(reported[-1] if mode == "min" else -reported[-1])
    return tuple(values)


def _reported_at(trial: Trial, step: int) -> bool:
    return any(s == step for s, _ in trial.intermediate)


class DominatedStopper(Stopper):
    """``stop="median"`` with several objectives: stop a trial dominated at its step by an
    earlier trial (after ``warmup`` steps, once ``min_trials`` trials reported the step)."""

    def __init__(self, objectives: Objectives, warmup: int = 0, min_trials: int = 5) -> None:
        super().__init__(objectives.modes[0])
        self.objectives = objectives
        self.warmup = warmup
        self.min_trials = min_trials

    def should_stop(self, trial: Trial, history: Sequence[Trial]) -> bool:
        step, _ = trial.intermediate[-1]
        if step < self.warmup:
            return False
        mine = values_at(trial, step, self.objectives)
        if mine is None:
            return False
        others = [
            values
            for past in history
            if past.status == TrialState.OK
            and _reported_at(past, step)
            and (values := values_at(past, step, self.objectives)) is not None
        ]
        if len(others) < self.min_trials:
            return False
        return any(dominates(other, mine) for other in others)


class FrontAshaStopper(Stopper):
    """``stop="asha"`` with several objectives: at each rung, a trial goes on only if its
    front, in a non-dominated sorting of the earlier trials' values there and its own, is
    among the fronts that hold the best ``1/factor`` of them."""

    def __init__(self, objectives: Objectives, rung: int = 1, factor: int = 3) -> None:
        super().__init__(objectives.modes[0])
        self.objectives = objectives
        self.rung = rung
        self.factor = factor

    def should_stop(self, trial: Trial, history: Sequence[Trial]) -> bool:
        step = trial.intermediate[-1][0]
        previous = max((s for s, _ in trial.intermediate[:-1]), default=-1)
        milestone = new_milestone(step, previous, self.rung, self.factor)
        if milestone is None:
            return False
        mine = values_at(trial, step, self.objectives)
        if mine is None:
            return False
        recorded = [
            values
            for past in history
            if (reached := _first_step_from(past, milestone)) is not None
            and (values := values_at(past, reached, self.objectives)) is not None
        ]
        if not recorded:
            return False
        ranks = front_ranks([*recorded, mine])
        kept = math.ceil(len(ranks) / self.factor)
        return ranks[-1] > sorted(ranks)[kept - 1]


def front_ranks(points: Sequence[Sequence[float]]) -> list[int]:
    """Each point's front in a non-dominated sorting (0: not dominated by any point, 1: only
    by points of front 0, ...)."""
    ranks = [-1] * len(points)
    left = set(range(len(points)))
    rank = 0
    while left:
        current = {
            i for i in left if not any(dominates(points[j], points[i]) for j in left if j != i)
        }
        for i in current:
            ranks[i] = rank
        left -= current
        rank += 1
    return ranks


def _first_step_from(trial: Trial, milestone: int) -> int | None:
    """The first step at or after ``milestone`` at which ``trial`` reported its first metric."""
    return next((s for s, _ in trial.intermediate if s >= milestone), None)
