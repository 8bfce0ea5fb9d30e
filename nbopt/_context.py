"""``nbopt.report``: the one call user code makes to report progress.

An engine that wants reports (a tuning trial, an accelerate job) installs a sink for the
duration of the user's code with :func:`reporting_to`. Outside any engine, ``report`` does
nothing, so the same training function runs unchanged in plain Python.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

ReportSink = Callable[[int, "float | None", dict[str, float]], None]

_sink: ContextVar[ReportSink | None] = ContextVar("nbopt_report_sink", default=None)


def report(step: int, value: float | None = None, **metrics: float) -> bool:
    """Report progress from inside a training loop.

    Inside a ``%tune`` trial, ``value`` is the trial's intermediate objective at ``step``
    (for example the validation loss after each epoch): it draws the trial's learning curve
    and feeds early stopping, which raises :class:`nbopt.TrialStopped` out of this call when
    the trial should end (the search records it as ``stopped``; no handling is needed).
    Inside an ``%%accelerate`` job it feeds the per-rank progress. Elsewhere it does nothing.

    Args:
        step: A non-negative step number (epoch, batch, ...), increasing within a trial.
        value: The objective's intermediate value, in the direction of the search's ``mode``.
        **metrics: Further named numbers to show and log (``loss=..., acc=...``).

    Returns:
        True if a running nbopt engine received the report, False otherwise.

    Example:
        >>> import nbopt
        >>> nbopt.report(0, 0.5)  # outside nbopt: a no-op
        False
    """
    sink = _sink.get()
    if sink is None:
        return False
    step = _step_number(step)
    if value is not None:
        value = float(value)
    sink(step, value, {name: _as_float(name, v) for name, v in metrics.items()})
    return True


def _step_number(step: Any) -> int:
    """``step`` as an int: Python, NumPy or torch integers (``np.arange`` epochs), never a bool."""
    try:
        number = None if isinstance(step, bool) else operator.index(step)
    except TypeError:
        number = None
    if number is None or number < 0:
        raise TypeError(f"report() needs a non-negative integer step, got {step!r}")
    return number


def _as_float(name: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"report() metric {name!r} must be a number, got {value!r}") from None


@contextlib.contextmanager
def reporting_to(sink: ReportSink | None) -> Iterator[None]:
    """Route ``nbopt.report`` calls made in this context to ``sink``."""
    token = _sink.set(sink)
    try:
        yield
    finally:
        _sink.reset(token)
