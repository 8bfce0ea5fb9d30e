"""Shared fixtures: a temporary working directory and an in-process IPython shell with nbopt."""

from __future__ import annotations

from typing import Any

import pytest


def run_cell(shell: Any, source: str) -> Any:
    """Run ``source`` as a notebook cell; re-raise its error, else return its value.

    A plain ``run_cell`` prints the error and returns normally, which would let a failing
    magic pass unnoticed.
    """
    result = shell.run_cell(source)
    result.raise_error()
    return result.result


@pytest.fixture
def in_tmp_dir(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run the test in ``tmp_path``, so default ``runs/nbopt`` logs and studies land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def _shell() -> Any:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    run_cell(shell, "%load_ext nbopt")
    return shell


def _restore_defaults(shell: Any) -> None:
    from nbopt.magics import NbOptMagics

    shell.reset(new_session=False)
    shell.magics_manager.registry["NbOptMagics"].last_results.clear()
    for name in ("progress", "logdir"):
        default = NbOptMagics.class_traits()[name].default_value
        run_cell(shell, f"%config NbOptMagics.{name} = {default!r}")


@pytest.fixture
def ip(_shell: Any, in_tmp_dir: Any) -> Any:
    """An ``InteractiveShell`` with ``%load_ext nbopt`` done, a clean namespace and default
    ``%config NbOptMagics`` settings, working in a temporary directory."""
    _restore_defaults(_shell)
    yield _shell
    _restore_defaults(_shell)


@pytest.fixture(name="run_cell")
def run_cell_fixture() -> Any:
    """The :func:`run_cell` helper (test modules cannot import conftest)."""
    return run_cell
