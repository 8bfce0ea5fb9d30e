"""Exceptions that nbopt raises on purpose.

``ConfigError`` is bad input found before anything runs; the magics show it as a one-line
``UsageError``. Errors raised by the user's own code are never wrapped: they propagate as
they are, so a failing cell fails the notebook run.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """An argument or option is invalid; nothing has been run or changed."""


class TuneError(RuntimeError):
    """A search produced no usable trial (for example, every trial failed)."""


class TrialStopped(Exception):
    """Raised by :func:`nbopt.report` when the running trial should stop early.

    The search records the trial as ``stopped`` with its last reported value. A training loop
    needs no code for it; wrap the loop in ``try/finally`` if it must clean up.
    """

    def __init__(self, step: int, value: float | None) -> None:
        super().__init__(f"trial stopped early at step {step} (value {value})")
        self.step = step
        self.value = value
