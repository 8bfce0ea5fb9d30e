"""%nbopt tensorboard opens TensorBoard on the magics' log directory."""

from __future__ import annotations

import contextlib
import os
import signal

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell


@pytest.fixture
def shell():
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "nbopt")
    yield ip
    ip.run_line_magic("config", "NbOptMagics.logdir = 'runs/nbopt'")


def run(ip, source):
    result = ip.run_cell(source)
    result.raise_error()
    return result.result


@pytest.mark.slow
def test_nbopt_tensorboard_starts_tensorboard_on_the_configured_logdir(shell, tmp_path, capsys):
    from tensorboard import manager

    logdir = tmp_path / "logs"
    logdir.mkdir()
    run(shell, f"%config NbOptMagics.logdir = {str(logdir)!r}")
    before = {info.pid for info in manager.get_all()}
    try:
        run(shell, "%nbopt tensorboard")
        started = [info for info in manager.get_all() if info.pid not in before]
        assert [info.logdir for info in started] == [str(logdir)]
        assert "http://localhost:" in capsys.readouterr().out
    finally:
        for info in manager.get_all():
            if info.pid not in before:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(info.pid, signal.SIGTERM)


def test_nbopt_without_a_known_command_is_a_usage_error(shell):
    with pytest.raises(UsageError, match=r"usage: %nbopt tensorboard \[LOGDIR\]"):
        run(shell, "%nbopt board")


def test_nbopt_tensorboard_with_logging_off_says_so(shell):
    run(shell, "%config NbOptMagics.logdir = 'none'")
    with pytest.raises(UsageError, match="logging is off"):
        run(shell, "%nbopt tensorboard")


def test_a_logdir_that_does_not_exist_is_refused_in_one_line(shell, tmp_path):
    """A typo would otherwise open an empty TensorBoard, silently."""
    with pytest.raises(UsageError, match=r"is not a directory \(nothing was logged there\)"):
        run(shell, f"%nbopt tensorboard {tmp_path / 'runs' / 'missing'}")


@pytest.mark.slow
def test_a_running_server_for_the_same_logdir_is_reused_and_listed(shell, tmp_path, capsys):
    from tensorboard import manager

    logdir = tmp_path / "logs"
    logdir.mkdir()
    before = {info.pid for info in manager.get_all()}
    try:
        run(shell, f"%nbopt tensorboard {logdir}")
        started = [info for info in manager.get_all() if info.pid not in before]
        capsys.readouterr()
        run(shell, f"%nbopt tensorboard {logdir}")
        assert [info for info in manager.get_all() if info.pid not in before] == started
        out = capsys.readouterr().out
        assert f"TensorBoard on port {started[0].port} already shows" in out
        run(shell, "%nbopt tensorboard list")
        assert f"port {started[0].port}: {logdir}" in capsys.readouterr().out
    finally:
        for info in manager.get_all():
            if info.pid not in before:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(info.pid, signal.SIGTERM)
