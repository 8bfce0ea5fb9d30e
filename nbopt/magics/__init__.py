"""The notebook face of nbopt: the IPython magics, the only package that imports IPython.

Each magic is a module here (its options and a ``run`` function) over the shared runner
(:mod:`nbopt.magics.runner`), calling a public function of nbopt. Settings are traitlets, so
``%config NbOptMagics.progress = "text"`` works as for any other extension.
"""

from __future__ import annotations

from typing import Any

from IPython.core.magic import Magics, cell_magic, line_cell_magic, line_magic, magics_class
from traitlets import CaselessStrEnum, Unicode

from nbopt.magics import accelerate as accelerate_magic
from nbopt.magics import batchsize as batchsize_magic
from nbopt.magics import lr_find as lr_find_magic
from nbopt.magics import optimize as optimize_magic
from nbopt.magics import optimize_auto as optimize_auto_magic
from nbopt.magics import tensorboard as tensorboard_command
from nbopt.magics import tune as tune_magic
from nbopt.magics import tune_whatif as tune_whatif_magic
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
    """nbopt's magics: ``%tune``, ``%tune_whatif``, ``%%optimize``, ``%batchsize``,
    ``%lr_find``, ``%%accelerate``, ``%nbopt``.

    ``last_results`` holds the last result of each magic of the session, by magic name
    (``"tune"``), however its run ended.
    """

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

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.last_results: dict[str, Any] = {}

    @line_cell_magic
    @_documented(tune_magic.HELP)
    def tune(self, line: str, cell: str | None = None) -> Any:
        return tune_magic.run(self, line, cell)

    @line_magic
    @_documented(tune_whatif_magic.HELP)
    def tune_whatif(self, line: str) -> Any:
        return tune_whatif_magic.run(self, line)

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
    @_documented(tensorboard_command.HELP)
    def nbopt(self, line: str) -> None:
        tensorboard_command.run(self, line)


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
