"""Errors of a search that IPython shows in a few lines, without nbopt's own frames."""

from __future__ import annotations

from nbopt.errors import ConfigError, TuneError


class _Brief(TuneError):
    """A ``TuneError`` whose text is a one-line summary, optionally followed by the user's own
    traceback (``details``); in IPython that is all that is shown."""

    def __init__(self, summary: str, details: str = "") -> None:
        self.summary = summary
        self.details = details.rstrip("\n")
        super().__init__(f"{summary}\n{self.details}" if self.details else summary)

    def _render_traceback_(self) -> list[str]:
        lines = self.details.splitlines()
        return [*lines, *([""] if lines else []), f"{type(self).__name__}: {self.summary}"]


class StudyWriteError(_Brief):
    """The study file could not be written during a search (a full disk, say).

    The search stops; every trial that finished is in the result (``_nbopt`` in a notebook)
    and, up to the one that could not be saved, in the study.
    """


class AllTrialsFailed(_Brief):
    """Every trial of a search failed; the summary says how the first one failed, and
    ``details`` holds its traceback (the user's frames) when it raised."""


class StopSearch(ConfigError):
    """The objective cannot work as written, as its first trial showed (a ``%%tune`` cell that
    never assigns its ``metric=``): raised by nbopt's own wrapper of the objective, it ends the
    search instead of failing every trial the same way."""
