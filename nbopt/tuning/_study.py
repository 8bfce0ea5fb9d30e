"""Study files: every finished trial of a named search, saved as JSON, atomically.

The file is rewritten whole after each trial: written to a temporary file beside it, flushed
to disk, then renamed over the old one, so a crash at any moment leaves either the previous
complete file or the new one. It is JSON, never pickle, so loading a study runs no code.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from nbopt.errors import ConfigError
from nbopt.tuning._trial import Trial

FORMAT = "nbopt-study"
VERSION = 1


@dataclass
class StudyHeader:
    """What a study was made with; a resumed search must match it."""

    metric: str
    mode: str
    space: str  # fingerprint of the search space
    created: float = field(default_factory=time.time)
    backend: str = "local"


class StudyFile:
    """A study saved at ``path``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> tuple[StudyHeader, list[Trial]]:
        """Read the study; raises ``ConfigError`` (and changes nothing) if it is not a valid one."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(self._unusable(f"cannot be read as JSON ({exc})")) from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(self._unusable("is not an nbopt study file"))
        if data.get("version") != VERSION:
            raise ConfigError(self._unusable(f"has unsupported version {data.get('version')!r}"))
        try:
            header = StudyHeader(
                metric=str(data["metric"]),
                mode=str(data["mode"]),
                space=str(data["space"]),
                created=float(data.get("created", 0.0)),
                backend=str(data.get("backend", "local")),
            )
            trials = [Trial.from_json(item) for item in data["trials"]]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(self._unusable(f"is corrupt ({type(exc).__name__}: {exc})")) from None
        return header, trials

    def save(self, header: StudyHeader, trials: list[Trial]) -> None:
        """Replace the file atomically with ``trials``."""
        document = {
            "format": FORMAT,
            "version": VERSION,
            "metric": header.metric,
            "mode": header.mode,
            "space": header.space,
            "created": header.created,
            "backend": header.backend,
            "trials": [trial.to_json() for trial in trials],
        }
        text = json.dumps(document, indent=1, allow_nan=False)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with open(temporary, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise

    def check_compatible(self, header: StudyHeader, wanted: StudyHeader) -> None:
        """Raise ``ConfigError`` if a resumed search differs from the saved study."""
        for attribute, what in (("metric", "metric"), ("mode", "mode"), ("space", "search space")):
            saved, now = getattr(header, attribute), getattr(wanted, attribute)
            if saved != now:
                detail = "" if attribute == "space" else f" ({saved!r}, now {now!r})"
                raise ConfigError(
                    f"study {self.path} was made with a different {what}{detail}; "
                    "pass restart=True to start it over, or use another study path"
                )

    def _unusable(self, why: str) -> str:
        return f"study file {self.path} {why}; it was left untouched (use another path)"
