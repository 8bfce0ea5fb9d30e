"""Fixtures of the launching tests: a shell with nbopt loaded, and checks for leftover processes.

Test modules cannot import this file (pytest runs with ``--import-mode=importlib``), so the
helpers are handed out as fixtures.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest


def _gone(pid: int) -> bool:
    try:
        # A zombie whose parent died waits for an init that may never reap it: it runs nothing.
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def gone() -> Callable[[int], bool]:
    """``gone(pid)``: True if no process ``pid`` is running."""
    return _gone


@pytest.fixture
def pid_dir(tmp_path: Path) -> Path:
    """A directory where a job's processes leave their pids as empty files, to be checked."""
    directory = tmp_path / "pids"
    directory.mkdir()
    return directory


@pytest.fixture
def no_leftover_children() -> Any:
    """Fail if the test leaves a child process of this one running."""
    me = psutil.Process()
    before = {child.pid for child in me.children(recursive=True)}
    yield
    left = [
        child
        for child in me.children(recursive=True)
        if child.pid not in before and not _gone(child.pid)
    ]
    assert not left, f"processes left running: {left}"


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An in-process IPython shell with ``%load_ext nbopt``, text progress and no TensorBoard
    logs, working in ``tmp_path``; its namespace and settings are restored afterwards."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    monkeypatch.chdir(tmp_path)
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    ip = InteractiveShell.instance(config=config)
    ip.run_line_magic("load_ext", "nbopt")
    magics = ip.magics_manager.registry["NbOptMagics"]
    saved = magics.progress, magics.logdir
    magics.progress, magics.logdir = "text", "none"
    ip.reset(new_session=False)
    yield ip
    ip.reset(new_session=False)
    magics.progress, magics.logdir = saved


@pytest.fixture
def cell(shell: Any) -> Callable[[str], Any]:
    """Run a notebook cell in ``shell``, re-raising its error (a plain run_cell prints it)."""

    def run(source: str) -> Any:
        result = shell.run_cell(textwrap.dedent(source).strip("\n"))
        result.raise_error()
        return result.result

    return run
