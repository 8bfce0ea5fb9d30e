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


@dataclass
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

    @property
    def finished(self) -> bool:
        """True if the trial counts as an evaluation (ok, failed or stopped)."""
        return TrialState(self.status).finished

    @property
    def usable(self) -> bool:
        """True if the trial has a value the search can learn from (ok or stopped)."""
        return TrialState(self.status).usable and self.value is not None

    def to_json(self) -> dict[str, Any]:
        return {
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

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Trial:
        """Read a trial record; raises ValueError for one that does not have the right shape."""
        if not isinstance(data, dict):
            raise ValueError(f"a trial record must be an object, got {type(data).__name__}")
        try:
            status = TrialState(data.get("status"))
        except ValueError:
            raise ValueError(f"unknown trial status {data.get('status')!r}") from None
        value = _optional_number(data, "value")
        return cls(
            number=_integer(data.get("number"), "number"),
            params=_typed(data, "params", dict, {}),
            value=value,
            status=status,
            error=_typed(data, "error", str, None),
            traceback=_typed(data, "traceback", str, None),
            duration=_bounded(data, "duration", 0.0, 1e9),
            started=_bounded(data, "started", 0.0, 1e11),
            intermediate=[_step_value(item) for item in _typed(data, "intermediate", list, [])],
            metrics={
                str(k): _nan_if_none(_number(v, f"metric {k}"))
                for k, v in _typed(data, "metrics", dict, {}).items()
            },
            vals=_typed(data, "vals", dict, {}),
        )


def _typed(data: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise ValueError(f"trial field {key!r} must be a {kind.__name__}, got {value!r}")
    return value


def _number(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"trial {what} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or abs(number) > 1e300:
        raise ValueError(f"trial {what} must be a finite number, got {value!r}")
    return number


def _optional_number(data: dict[str, Any], key: str) -> float | None:
    return _number(data.get(key), key)


def _bounded(data: dict[str, Any], key: str, low: float, high: float) -> float:
    """A number of seconds (a duration, a time stamp) within sane bounds; 0 when absent."""
    value = _optional_number(data, key) or 0.0
    if not low <= value <= high:
        raise ValueError(f"trial field {key!r} is out of range: {value!r}")
    return value


def _integer(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"trial {what} must be a non-negative integer, got {value!r}")
    return int(value)


def _step_value(item: Any) -> tuple[int, float]:
    if not isinstance(item, list) or len(item) != 2:
        raise ValueError(f"an intermediate value must be [step, value], got {item!r}")
    return _integer(item[0], "intermediate step"), _nan_if_none(_number(item[1], "intermediate"))


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
