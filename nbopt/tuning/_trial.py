"""The record of one trial, and its JSON form."""

from __future__ import annotations

import enum
import math
import numbers
from dataclasses import dataclass, field
from typing import Any


class TrialState(str, enum.Enum):
    """How a trial ended. A ``str`` enum: it compares equal to, and is stored as, its value."""

    OK = "ok"
    FAILED = "failed"
    STOPPED = "stopped"  # ended early by stop=, with its last reported value
    INTERRUPTED = "interrupted"  # cut by a kernel interrupt; not counted

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__

    @property
    def finished(self) -> bool:
        """True if a trial in this state counts as an evaluation (towards ``max_evals``)."""
        return self is not TrialState.INTERRUPTED

    @property
    def usable(self) -> bool:
        """True if a trial in this state has a value the search learns from."""
        return self in (TrialState.OK, TrialState.STOPPED)


@dataclass(slots=True)
class Trial:
    """One evaluation of the objective.

    Attributes:
        number: Position in the study, from 0.
        params: The configuration the objective was called with.
        value: The metric it returned (as the user sees it, not negated for ``mode=max``);
            for a stopped trial, its last reported value; None if it failed.
        status: A :class:`TrialState`: ``ok``, ``failed``, ``stopped`` (ended early by
            ``stop=``) or ``interrupted`` (cut by a kernel interrupt; not counted).
        error: ``"TypeError: message"`` for a failed trial.
        traceback: The formatted traceback of a failed trial.
        duration: Seconds spent in the objective.
        started: Wall-clock start, seconds since the epoch.
        intermediate: ``(step, value)`` pairs reported with ``nbopt.report``.
        metrics: Other numbers the objective returned (a dict result) or reported.
        intermediate_metrics: With several objectives, ``(step, value)`` pairs of each metric
            but the first (which is in ``intermediate``), as reported with ``nbopt.report``.
    """

    number: int
    params: dict[str, Any]
    value: float | None = None
    status: TrialState = TrialState.OK
    error: str | None = None
    traceback: str | None = None
    duration: float = 0.0
    started: float = 0.0
    intermediate: list[tuple[int, float]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    vals: dict[str, Any] = field(default_factory=dict, repr=False)
    intermediate_metrics: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """True if the trial counts as an evaluation (ok, failed or stopped)."""
        return TrialState(self.status).finished

    @property
    def usable(self) -> bool:
        """True if the trial has a value the search can learn from (ok or stopped)."""
        return TrialState(self.status).usable and self.value is not None

    def to_json(self) -> dict[str, Any]:
        record = {
            "number": self.number,
            "status": TrialState(self.status).value,
            "value": _finite_or_none(self.value),
            "params": jsonable(self.params),
            "vals": jsonable(self.vals),
            "error": self.error,
            "traceback": self.traceback,
            "duration": round(self.duration, 6),
            "started": self.started,
            "intermediate": [[step, _finite_or_none(v)] for step, v in self.intermediate],
            "metrics": {k: _finite_or_none(v) for k, v in self.metrics.items()},
        }
        if self.intermediate_metrics:  # several objectives only: other studies stay as they were
            record["intermediate_metrics"] = {
                name: [[step, _finite_or_none(v)] for step, v in steps]
                for name, steps in self.intermediate_metrics.items()
            }
        return record

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Trial:
        """Read a trial record; raises ValueError for one that does not have the right shape.

        Studies of many thousands of trials are read whole, so this is written for speed.
        """
        if not isinstance(data, dict):
            raise ValueError(f"a trial record must be an object, got {type(data).__name__}")
        get = data.get
        status = get("status")
        if not isinstance(status, str) or status not in _STATES:
            raise ValueError(f"unknown trial status {status!r}")
        intermediate = get("intermediate") or ()
        metrics = get("metrics") or {}
        per_metric = get("intermediate_metrics") or {}
        params, vals = get("params") or {}, get("vals") or {}
        error, traceback = get("error"), get("traceback")
        if type(intermediate) is not list and intermediate != ():
            raise ValueError(f"trial field 'intermediate' must be a list, got {intermediate!r}")
        for key, value, kind in (
            ("metrics", metrics, dict),
            ("intermediate_metrics", per_metric, dict),
            ("params", params, dict),
            ("vals", vals, dict),
        ):
            if type(value) is not kind:
                raise ValueError(f"trial field {key!r} must be an object, got {value!r}")
        for key, value in (("error", error), ("traceback", traceback)):
            if value is not None and type(value) is not str:
                raise ValueError(f"trial field {key!r} must be a string, got {value!r}")
        return cls(
            number=_integer(get("number"), "number"),
            params=params,
            value=_number(get("value"), "value"),
            status=_STATES[status],
            error=error,
            traceback=traceback,
            duration=_bounded(data, "duration", 1e9),
            started=_bounded(data, "started", 1e11),
            intermediate=_steps(intermediate),
            metrics={str(k): _nan_if_none(_number(v, f"metric {k}")) for k, v in metrics.items()},
            vals=vals,
            intermediate_metrics={
                str(name): _steps(steps if type(steps) is list else [steps])
                for name, steps in per_metric.items()
            },
        )


_STATES = {state.value: state for state in TrialState}


def _number(value: Any, what: str) -> float | None:
    """A finite number read from JSON (where numbers are int or float), or None."""
    if value is None:
        return None
    kind = type(value)
    if (kind is not float and kind is not int) or not -1e300 <= value <= 1e300:
        raise ValueError(f"trial {what} must be a finite number, got {value!r}")
    return float(value)


def _bounded(data: dict[str, Any], key: str, high: float) -> float:
    """A number of seconds (a duration, a time stamp) in ``[0, high]``; 0 when absent."""
    value = _number(data.get(key), key) or 0.0
    if not 0.0 <= value <= high:
        raise ValueError(f"trial field {key!r} is out of range: {value!r}")
    return value


def _integer(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"trial {what} must be a non-negative integer, got {value!r}")
    return int(value)


def _steps(items: Any) -> list[tuple[int, float]]:
    """``[[step, value], ...]`` read back: steps are non-negative ints, values finite or null."""
    steps = []
    for item in items:
        if type(item) is not list or len(item) != 2:
            raise ValueError(f"an intermediate value must be [step, value], got {item!r}")
        step, value = item
        if type(step) is not int or step < 0:
            raise ValueError(f"an intermediate step must be a non-negative integer, got {step!r}")
        if value is None:
            value = math.nan
        elif (type(value) is not float and type(value) is not int) or not -1e300 <= value <= 1e300:
            raise ValueError(f"trial intermediate must be a finite number, got {value!r}")
        steps.append((step, float(value)))
    return steps


def _finite_or_none(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else float(value)


def jsonable(value: Any) -> Any:
    """A JSON-safe copy of ``value``: numbers, strings, lists and dicts pass; others become
    ``{"repr": "..."}`` (the study keeps Hyperopt's encoding to rebuild the real objects)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else repr(number)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return {"repr": repr(value)}
