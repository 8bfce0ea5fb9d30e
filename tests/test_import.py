"""``import nbopt`` and ``%load_ext nbopt`` stay light: heavy packages load only when needed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = (
    "torch",
    "hyperopt",
    "IPython",
    "tensorboard",
    "ipywidgets",
    "ray",
    "matplotlib",
    "numpy",
)

_REPORT = f"""
import json, sys
heavy = {HEAVY!r}
print(json.dumps(sorted(m for m in heavy if m in sys.modules)))
"""


def _heavy_modules_after(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter; return the heavy packages it left imported."""
    completed = subprocess.run(
        [sys.executable, "-c", code + _REPORT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_import_nbopt_imports_no_heavy_package() -> None:
    """``import nbopt`` (and its space functions) loads no torch/hyperopt/IPython/... at all."""
    code = (
        "import nbopt\nnbopt.uniform(0, 1)\nnbopt.choice(1, 2)\nassert nbopt.report(0) is False\n"
    )
    assert _heavy_modules_after(code) == []


def test_load_ext_imports_neither_torch_nor_tensorboard() -> None:
    """``%load_ext nbopt`` registers every magic without importing torch, TensorBoard, Ray,
    Hyperopt or NumPy: their modules load when a magic runs."""
    code = (
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "from traitlets.config import Config\n"
        "c = Config(); c.HistoryManager.hist_file = ':memory:'\n"
        "ip = InteractiveShell.instance(config=c)\n"
        "ip.run_cell('%load_ext nbopt').raise_error()\n"
        "assert 'tune' in ip.magics_manager.magics['line']\n"
        "assert 'tune' in ip.magics_manager.magics['cell']\n"
        "assert {'optimize', 'accelerate'} <= set(ip.magics_manager.magics['cell'])\n"
        "assert 'batchsize' in ip.magics_manager.magics['line']\n"
    )
    loaded = _heavy_modules_after(code)
    assert "IPython" in loaded  # the check itself works
    for package in ("torch", "tensorboard", "ray", "hyperopt", "numpy", "matplotlib"):
        assert package not in loaded


def test_lazy_public_names_resolve() -> None:
    """``nbopt.tune``/``TuneResult``/``Trial`` resolve on first access and show in ``dir``."""
    import nbopt
    from nbopt.tuning import Trial, TuneResult, tune

    assert nbopt.tune is tune
    assert nbopt.TuneResult is TuneResult
    assert nbopt.Trial is Trial
    assert {"tune", "TuneResult", "Trial"} <= set(dir(nbopt))
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        _ = nbopt.nonexistent


def test_missing_optional_package_names_the_extra() -> None:
    """A missing optional dependency says which nbopt extra installs it."""
    from nbopt._imports import optional_import

    with pytest.raises(ImportError, match=r'pip install "nbopt\[ray\]"') as info:
        optional_import("nbopt_no_such_module.sub", "ray", "backend=ray")
    assert "backend=ray" in str(info.value)
