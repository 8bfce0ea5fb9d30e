"""What a compression step lets out: one summarised note for the warnings of the libraries it
calls, and one clear error line for their failures.

Torch-Pruning, torch.export and torchao warn freely ("Unwrapped parameters detected",
"Maximum recursive depth reached!") and fail with long tracebacks from deep inside a model's
graph. A notebook user needs neither: the step's outcome says in one note what the libraries
warned about, and a failure becomes a :class:`nbopt.ConfigError` saying which step failed,
what the library said, and what to do.
"""

from __future__ import annotations

import functools
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import PurePath
from typing import Any, TypeVar

from nbopt.compress._registry import StepOutcome
from nbopt.errors import ConfigError

# Distinct warnings named in the note; the rest are counted.
_SHOWN = 3
_LONGEST = 160
# The library a warning came from, by the package its file lies in.
_LIBRARIES = {
    "torch_pruning": "Torch-Pruning",
    "torchao": "torchao",
    "transformers": "transformers",
    "torch": "torch",
}

Step = TypeVar("Step", bound=Callable[..., StepOutcome])


def guarded_step(what: str, advice: str) -> Callable[[Step], Step]:
    """Wrap a step function: warnings raised inside it become one note of its outcome, and an
    exception raised inside an installed library (Torch-Pruning, torch, torchao, transformers:
    where its innermost frame lies) becomes a :class:`ConfigError`: ``"{what} failed on this
    model (Library raised Error: message); {advice}"``. nbopt's own warnings pass through, and
    so do exceptions of the user's own code (a bug there is theirs to see) and interrupts.
    """

    def decorate(step: Step) -> Step:
        @functools.wraps(step)
        def run(*args: Any, **kwargs: Any) -> StepOutcome:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    outcome = step(*args, **kwargs)
                except ConfigError:
                    raise
                except Exception as exc:
                    library = _raised_by(exc)
                    if library is None:
                        raise
                    message = _first_line(str(exc)) or "no message"
                    raise ConfigError(
                        f"{what} failed on this model ({library} raised "
                        f"{type(exc).__name__}: {message}); {advice}"
                    ) from None
            foreign = _pass_own(caught)
            note = summarise(foreign)
            if note is not None:
                outcome.notes.append(note)
            return outcome

        return run  # type: ignore[return-value]

    return decorate


def _raised_by(exc: BaseException) -> str | None:
    """The installed library whose code raised ``exc`` (its innermost frame), or None when
    that is the user's own code or nbopt's: those propagate as they are."""
    traceback = exc.__traceback__
    filename = None
    while traceback is not None:
        filename = traceback.tb_frame.f_code.co_filename
        traceback = traceback.tb_next
    if filename is None:
        return None
    library = _library(filename)
    if library is None and _installed(filename):
        return "a library"
    return library


def _installed(filename: str) -> bool:
    parts = PurePath(filename).parts
    return "site-packages" in parts or "dist-packages" in parts


def _library(filename: str) -> str | None:
    if not _installed(filename):
        return None
    for part in PurePath(filename).parts:
        if part in _LIBRARIES:
            return _LIBRARIES[part]
    return None


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0].strip() if text.strip() else ""
    return line if len(line) <= _LONGEST else line[: _LONGEST - 1] + "…"


def _pass_own(caught: list[warnings.WarningMessage]) -> list[warnings.WarningMessage]:
    """Re-issue nbopt's own warnings (their messages start with ``nbopt:``); the others, to
    summarise. A library's warning may point at nbopt's line that called it (``stacklevel``),
    so the file does not tell whose a warning is."""
    foreign = []
    for item in caught:
        if str(item.message).startswith("nbopt:"):
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
        else:
            foreign.append(item)
    return foreign


def summarise(caught: list[warnings.WarningMessage]) -> str | None:
    """One note for the warnings libraries raised, most frequent first; None for none."""
    if not caught:
        return None
    counts = Counter(
        (_library(item.filename) or "a library", _first_line(str(item.message))) for item in caught
    )
    shown = [
        f"{library}: {message}" + (f" (x{count})" if count > 1 else "")
        for (library, message), count in counts.most_common(_SHOWN)
    ]
    more = len(counts) - len(shown)
    tail = f"; and {more} other warning{'s' if more > 1 else ''}" if more > 0 else ""
    return "warnings of the libraries, not shown: " + "; ".join(shown) + tail
