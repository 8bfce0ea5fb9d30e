"""The README's first examples work on a plain ``pip install nbopt``, as a new user installs it.

The wheel is built from this checkout and installed, without extras, into a fresh virtual
environment beside the CPU build of torch (and ipykernel, which any notebook has); a real
kernel of that environment then runs the README's "30 seconds" examples and
``%%optimize prune=0.5 quant=int8``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TORCH = "torch==2.13.0"

pytestmark = pytest.mark.slow


def _pip(python: Path, *arguments: str) -> str:
    completed = subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", *arguments],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--sdist", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        timeout=600,
        check=True,
    )
    return next(out.glob("nbopt-*.whl"))


@pytest.fixture(scope="module")
def base_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with torch, the wheel (no extras) and ipykernel."""
    venv = tmp_path_factory.mktemp("base") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    _pip(python, "install", "--quiet", TORCH)
    _pip(python, "install", "--quiet", str(wheel), "ipykernel")
    return python


def test_the_development_environment_is_consistent() -> None:
    assert "No broken requirements" in _pip(Path(sys.executable), "check")


def test_the_distributions_hold_the_package_and_its_metadata_only(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
    assert tops == {"nbopt", wheel.name.split("-py3")[0] + ".dist-info"}
    sdist = next(wheel.parent.glob("nbopt-*.tar.gz"))
    listing = subprocess.run(
        ["tar", "tzf", str(sdist)], capture_output=True, text=True, check=True
    ).stdout.split()
    inside = {name.split("/")[1] for name in listing if name.count("/") >= 1}
    assert "nbopt" in inside and "tests" not in inside and "benchmarks" not in inside
    assert "demo_notebooks" not in inside and "docs" not in inside


def test_the_base_install_is_consistent_and_the_extras_resolve(
    base_python: Path, wheel: Path
) -> None:
    assert "No broken requirements" in _pip(base_python, "check")
    modules = subprocess.run(
        [str(base_python), "-c", "import torch_pruning, torchao, ray"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "No module named 'ray'" in modules.stderr  # the core has the compressors, not Ray
    report = _pip(
        base_python,
        "install",
        "--dry-run",
        "--quiet",
        "--report",
        "-",
        f"nbopt[ray,atpe,bench,docs,compress] @ {wheel.as_uri()}",
        TORCH,
    )
    to_install = {item["metadata"]["name"].lower() for item in json.loads(report)["install"]}
    assert {"ray", "lightgbm", "optuna", "mkdocs"} <= to_install
    assert "torch" not in to_install  # the extras keep the torch that is installed


README_CELLS = [
    "%load_ext nbopt",
    textwrap.dedent(
        """
        import torch
        from torch import nn

        torch.manual_seed(0)
        x, y = torch.randn(256, 8), torch.randint(0, 2, (256,))

        def make_model(hidden):
            return nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Linear(hidden, 2))

        def fit(model, lr):
            optimizer = torch.optim.Adam(model.parameters(), lr=lr)
            for _ in range(20):
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                optimizer.step()
            return (model(x).argmax(1) == y).float().mean().item()

        def train(lr, layers):
            return 1.0 - fit(make_model(16 * layers), lr)
        """
    ),
    "%%tune max_evals=6 metric=val_acc mode=max progress=text logdir=none\n"
    "lr = loguniform(1e-4, 1e-1)\n"
    "hidden = choice(32, 64, 128)\n"
    "model = make_model(hidden)\n"
    "val_acc = fit(model, lr)",
    "cell_result = _nbopt\n"
    "assert len(cell_result.trials) == 6\n"
    "assert val_acc == cell_result.best_value and hidden in (32, 64, 128)\n"
    "assert isinstance(model, nn.Sequential)",
    "%tune train lr=loguniform(1e-4, 1e-1) layers=choice(1, 2, 3) max_evals=5 seed=0 "
    "progress=none logdir=none out=line_result",
    "import nbopt\n"
    "script = nbopt.tune(train, {'lr': nbopt.loguniform(1e-4, 1e-1), 'layers': nbopt.choice(1, 2)},"
    " max_evals=4, seed=0, progress='none', logdir=None)\n"
    "assert len(line_result.trials) == 5 and len(script.trials) == 4\n"
    "assert 'site-packages' in nbopt.__file__  # the installed wheel, not the checkout",
    "%%optimize prune=0.5 quant=int8 example=example progress=none logdir=none out=small\n"
    "net = nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),\n"
    "                    nn.Linear(512, 10)).eval()\n"
    "example = torch.randn(16, 64)",
    "assert small.model is not net and net[0].out_features == 512\n"
    "assert [step.kind for step in small.steps] == ['prune', 'quant']\n"
    "# Half the channels: about a quarter of the weights; int8: a quarter of the bytes again.\n"
    "assert small.report['params'].ratio < 0.35 and small.report['size_bytes'].ratio < 0.15\n"
    "print('BASE INSTALL OK', small.summary())",
]


def test_the_readme_examples_run_in_a_kernel_of_the_base_install(
    base_python: Path, tmp_path: Path
) -> None:
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec = tmp_path / "kernels" / "nbopt-base"
    spec.mkdir(parents=True)
    argv = [str(base_python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "nbopt base install", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel), encoding="utf-8")
    manager = KernelManager(
        kernel_name="nbopt-base",
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec.parent)]),
    )
    manager.start_kernel(cwd=str(tmp_path), env={**os.environ, "PYTHONNOUSERSITE": "1"})
    client = manager.client()
    client.start_channels()
    client.wait_for_ready(timeout=180)
    outputs = []
    try:
        for source in README_CELLS:
            reply = client.execute_interactive(source, timeout=600, output_hook=outputs.append)
            if reply["content"]["status"] != "ok":
                error = reply["content"]
                pytest.fail(f"{source!r} failed: {error['ename']}: {error['evalue']}")
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    printed = "".join(
        message["content"].get("text", "") for message in outputs if message["msg_type"] == "stream"
    )
    assert "BASE INSTALL OK" in printed
