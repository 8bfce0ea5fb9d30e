"""The notebook face of nbopt: the IPython magics, the only package that imports IPython.

Each magic is a module here (its options and a ``run`` function) over the shared runner
(:mod:`nbopt.magics.runner`), calling a public function of nbopt. Settings are traitlets, so
``%config NbOptMagics.progress = "text"`` works as for any other extension.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_cell_magic, line_magic, magics_class
from traitlets import CaselessStrEnum, Unicode

from nbopt.magics import accelerate as accelerate_magic
from nbopt.magics import batchsize as batchsize_magic
from nbopt.magics import lr_find as lr_find_magic
from nbopt.magics import optimize as optimize_magic
from nbopt.magics import optimize_auto as optimize_auto_magic
from nbopt.magics import tune as tune_magic
from nbopt.magics.options import tokenize
from nbopt.ui import DEFAULT_LOGDIR, PROGRESS_MODES


def _documented(text: str):
    """Give a magic the help text that ``%magic?`` shows."""

    def decorate(function):
        function.__doc__ = text
        return function

    return decorate


@magics_class
class NbOptMagics(Magics):
    """nbopt's magics: ``%tune``, ``%%optimize``, ``%batchsize``, ``%lr_find``, ``%%accelerate``,
    ``%nbopt``."""

    progress = CaselessStrEnum(
        PROGRESS_MODES,
        default_value="auto",
        config=True,
        help="Live view of the magics: auto (a widget in a notebook, text elsewhere), "
        "widget, text or none.",
    )
    logdir = Unicode(
        DEFAULT_LOGDIR,
        config=True,
        help="TensorBoard log directory of the magics; empty or 'none' for no logs.",
    )

    @line_cell_magic
    @_documented(tune_magic.HELP)
    def tune(self, line: str, cell: str | None = None) -> Any:
        return tune_magic.run(self, line, cell)

    @cell_magic
    @_documented(optimize_magic.HELP + "\n\n" + optimize_auto_magic.HELP)
    def optimize(self, line: str, cell: str) -> Any:
        auto, rest = _auto_form(line)
        if auto:
            return optimize_auto_magic.run(self, rest, cell)
        return optimize_magic.run(self, line, cell)

    @line_magic
    @_documented(batchsize_magic.HELP)
    def batchsize(self, line: str) -> Any:
        return batchsize_magic.run(self, line)

    @line_magic
    @_documented(lr_find_magic.HELP)
    def lr_find(self, line: str) -> Any:
        return lr_find_magic.run(self, line)

    @cell_magic
    @_documented(accelerate_magic.HELP)
    def accelerate(self, line: str, cell: str) -> Any:
        return accelerate_magic.run(self, line, cell)

    @line_magic
    def nbopt(self, line: str) -> None:
        """nbopt's own commands.

        %nbopt tensorboard [LOGDIR]   open TensorBoard on LOGDIR (default: the magics' logdir,
                                      %config NbOptMagics.logdir) inside the notebook
        """
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"%nbopt: {exc}") from None
        if not words or words[0] != "tensorboard" or len(words) > 2:
            raise UsageError("%nbopt: usage: %nbopt tensorboard [LOGDIR]")
        logdir = words[1] if len(words) == 2 else self.logdir
        if logdir in ("", "none"):
            raise UsageError("%nbopt tensorboard: logging is off (NbOptMagics.logdir); give LOGDIR")
        from tensorboard import notebook

        with _tensorboard_binary():
            notebook.start(f"--logdir {shlex.quote(logdir)} --host 127.0.0.1")


def _auto_form(line: str) -> tuple[bool, str]:
    """Whether ``%%optimize`` is asked for its auto form (the bare word ``auto``), and the line
    without that word."""
    try:
        tokens = tokenize(line)
    except ValueError:
        return False, line  # the parser says what is wrong
    if "auto" not in tokens:
        return False, line
    return True, " ".join(token for token in tokens if token != "auto")


@contextlib.contextmanager
def _tensorboard_binary() -> Iterator[None]:
    """Point TensorBoard's launcher at the ``tensorboard`` beside this Python when none is on
    PATH: a kernel started from a virtual environment that was never activated has the package
    but not its scripts on PATH, and TensorBoard looks for the program there only."""
    beside = Path(sys.executable).parent / "tensorboard"
    if "TENSORBOARD_BINARY" in os.environ or shutil.which("tensorboard") or not beside.exists():
        yield
        return
    os.environ["TENSORBOARD_BINARY"] = str(beside)
    try:
        yield
    finally:
        del os.environ["TENSORBOARD_BINARY"]
