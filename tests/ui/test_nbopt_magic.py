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
