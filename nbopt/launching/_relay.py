"""Relaying a rank's output to the notebook as it comes.

A forked rank cannot write into the notebook's cell itself (in a Jupyter kernel,
``sys.stdout`` is an ipykernel stream, not a file descriptor the cell shows), so its
standard output and error go through pipes that the launcher reads and copies to its own
``sys.stdout`` and ``sys.stderr``.
"""

from __future__ import annotations

import codecs
import os
import sys
from typing import TextIO

# Enough for a crash dump under a deep stack (the launcher's frames, inherited, come last).
_TAIL_CHARS = 65536


class Relay:
    """Copies one stream of one rank to the launcher's stream of the same name.

    Rank 0's text is copied as it comes, carriage returns included, so that its progress bars
    animate. Another rank's text is shown only when ``shown``, whole lines at a time, each line
    prefixed with ``[rank N]`` and reduced to its last carriage-return segment (a bar's final
    state). The recent text is always kept (:attr:`tail`) for failure messages.
    """

    def __init__(self, fd: int, rank: int, name: str, shown: bool) -> None:
        self.fd = fd
        self.rank = rank
        self.name = name
        self.shown = shown
        self.open = True
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._partial = ""
        self._recent = ""
        self._capture: list[str] | None = None

    @property
    def tail(self) -> str:
        """The last few thousand characters the rank wrote to this stream."""
        return self._recent

    def read(self) -> None:
        """Read what is available (the descriptor is ready); closes the relay at end of file."""
        try:
            data = os.read(self.fd, 65536)
        except OSError:
            data = b""
        if not data:
            self._write(self._decoder.decode(b"", final=True))
            self._end_partial_line()
            self.close()
            return
        self._write(self._decoder.decode(data))

    def start_capture(self) -> None:
        """Keep what the rank writes from now on, for :meth:`captured`, instead of showing it."""
        self._capture = []
        self.shown = False

    def captured(self) -> str:
        return "".join(self._capture or [])

    def close(self) -> None:
        if self.open:
            self.open = False
            os.close(self.fd)

    def _write(self, text: str) -> None:
        if not text:
            return
        self._recent = (self._recent + text)[-_TAIL_CHARS:]
        if self._capture is not None:
            self._capture.append(text)
        if not self.shown:
            return
        if self.rank == 0:
            self._target().write(text)
            self._target().flush()
            return
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        if lines:
            self._target().write("".join(self._prefixed(line) for line in lines))
            self._target().flush()

    def _end_partial_line(self) -> None:
        if self._partial and self.shown:
            self._target().write(self._prefixed(self._partial))
            self._target().flush()
        self._partial = ""

    def _prefixed(self, line: str) -> str:
        segments = [segment for segment in line.split("\r") if segment]
        return f"[rank {self.rank}] {segments[-1] if segments else ''}\n"

    def _target(self) -> TextIO:
        # Looked up at each write: a notebook cell, or a test, may have swapped the stream.
        return sys.stdout if self.name == "stdout" else sys.stderr
