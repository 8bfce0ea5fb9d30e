"""``%nbopt tensorboard``: TensorBoard on the magics' logs, inside the notebook.

One server per log directory: a directory that a running server already shows is shown again
from that server rather than by a new one, a directory that does not exist is refused (a new
user's typo would otherwise open an empty TensorBoard), and ``list`` says what is running.
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

USAGE = "%nbopt: usage: %nbopt tensorboard [LOGDIR] | %nbopt tensorboard list"

HELP = """nbopt's own commands.

%nbopt tensorboard [LOGDIR]   open TensorBoard on LOGDIR (default: the magics' logdir,
                              %config NbOptMagics.logdir) inside the notebook; a server
                              already showing LOGDIR is reused
%nbopt tensorboard list       the TensorBoard servers running, with their log directories
"""


def run(magics: Any, line: str) -> None:
    """Parse ``%nbopt``, then open, reuse or list TensorBoard servers."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"%nbopt: {exc}") from None
    if not words or words[0] != "tensorboard" or len(words) > 2:
        raise UsageError(USAGE)
    from tensorboard import manager, notebook

    running = [info for info in manager.get_all() if _alive(info.pid)]
    if words[1:] == ["list"]:
        print(_listing(running))
        return
    logdir = words[1] if len(words) == 2 else magics.logdir
    if logdir in ("", "none"):
        raise UsageError("%nbopt tensorboard: logging is off (NbOptMagics.logdir); give LOGDIR")
    path = Path(logdir).expanduser().resolve()
    if not path.is_dir():
        raise UsageError(
            f"%nbopt tensorboard: {logdir} is not a directory (nothing was logged there); the "
            f"magics log under NbOptMagics.logdir = {magics.logdir!r}"
        )
    same = [info for info in running if Path(info.logdir or "").resolve() == path]
    if same:
        print(f"TensorBoard on port {same[0].port} already shows {logdir}; showing it again")
        notebook.display(port=same[0].port)
        return
    with _tensorboard_binary():
        notebook.start(f"--logdir {shlex.quote(str(path))} --host 127.0.0.1")


def _listing(running: list[Any]) -> str:
    if not running:
        return "no TensorBoard server is running"
    return "\n".join(
        f"port {info.port}: {info.logdir} (pid {info.pid})"
        for info in sorted(running, key=lambda info: info.port)
    )


def _alive(pid: int) -> bool:
    """TensorBoard's list of servers keeps the entries of servers killed uncleanly."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
