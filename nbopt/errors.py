"""Exceptions that nbopt raises on purpose.

``ConfigError`` is bad input found before anything runs; the magics show it as a one-line
``UsageError``. Errors raised by the user's own code are never wrapped: they propagate as
they are, so a failing cell fails the notebook run.
"""

from __future__ import annotations

import difflib
import traceback
from collections.abc import Iterable
from pathlib import Path

_PACKAGE_DIR = str(Path(__file__).resolve().parent)


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


def user_traceback(exc: BaseException) -> str:
    """The formatted traceback from the first frame outside nbopt: what the user's code did."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        tb = tb.tb_next
    shown = tb if tb is not None else exc.__traceback__
    return "".join(traceback.format_exception(type(exc), exc, shown))


def did_you_mean(word: str, candidates: Iterable[str], cutoff: float = 0.6) -> str:
    """`` (did you mean lr?)`` for the closest of ``candidates``, or an empty string."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=cutoff)
    return f" (did you mean {close[0]}?)" if close else ""
