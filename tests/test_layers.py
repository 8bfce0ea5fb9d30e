"""The package's layers, checked on every run: magics -> Python API -> engines -> events -> views.

Every import of every module (at module level and inside functions) is read with ``ast``:

- the engines (``ENGINES``: ``tuning``, ``compress``, ``batching`` ...) never import IPython,
  ipywidgets, traitlets, ``nbopt.magics``, nor ``nbopt.ui``'s views: from ``nbopt.ui`` they may
  use only the bus factory, the formatting helpers, the plots and the interactive displays of
  result objects (``ENGINE_MAY_USE``);
- only ``nbopt.magics`` imports IPython's magic machinery or traitlets;
- no package imports another package's private (``_name``) module, and ``nbopt.ui`` knows the
  engines only through their public modules (the package and its ``events``);
- in a fresh interpreter, importing the engines loads no IPython, ipywidgets or traitlets.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "nbopt"
ENGINES = ("tuning", "compress", "batching", "launching", "learning_rate")
FRONTEND_PACKAGES = ("IPython", "ipywidgets", "traitlets")
# What an engine may use of nbopt.ui: building its bus, formatting numbers, plotting and
# displaying its result objects. The rest of ui (live views, TensorBoard) subscribes to events.
ENGINE_MAY_USE = ("nbopt.ui", "nbopt.ui.reporting", "nbopt.ui.format", "nbopt.ui.plots")
ENGINE_MAY_USE_PREFIXES = ("nbopt.ui.plots.", "nbopt.ui.interactive")
# The magic machinery and settings, which only the face uses (ui may display with IPython).
MAGIC_ONLY = ("IPython.core", "traitlets")

# Violations not fixed yet: (module, imported). Empty when the layers hold.
ALLOWED: set[tuple[str, str]] = set()


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _imports(module: str, path: Path) -> Iterator[str]:
    """Every module that ``module`` imports, resolved to absolute dotted names."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            yield base
            # ``from nbopt.tuning import _views`` imports the module nbopt.tuning._views.
            yield from (f"{base}.{alias.name}" for alias in node.names if alias.name[0] == "_")


def _top_package(module: str) -> str | None:
    """``tuning`` for ``nbopt.tuning._search``; None for the root's modules (``nbopt.errors``)."""
    parts = module.split(".")
    if len(parts) >= 2 and parts[0] == "nbopt" and (PACKAGE / parts[1] / "__init__.py").exists():
        return parts[1]
    return None


def _private_part(module: str) -> bool:
    return any(part.startswith("_") for part in module.split(".")[2:])


def _violations(module: str, imported: str) -> list[str]:
    found = []
    own = _top_package(module)
    other = _top_package(imported) if imported.startswith("nbopt.") else None
    root = imported.split(".")[0]
    if own in ENGINES:
        if root in FRONTEND_PACKAGES:
            found.append(f"engine imports {root}")
        if imported.startswith("nbopt.magics"):
            found.append("engine imports the magics")
        if other == "ui" and not (
            imported in ENGINE_MAY_USE or imported.startswith(ENGINE_MAY_USE_PREFIXES)
        ):
            found.append("engine imports a ui view")
    if own != "magics" and imported.startswith(MAGIC_ONLY):
        found.append("only nbopt.magics uses IPython's magic machinery and traitlets")
    if other is not None and other != own and _private_part(imported):
        found.append(f"imports a private module of nbopt.{other}")
    return found


def _all_violations() -> set[tuple[str, str, str]]:
    return {
        (module, imported, why)
        for module, path in _modules()
        for imported in _imports(module, path)
        for why in _violations(module, imported)
    }


def test_every_import_goes_in_the_direction_of_the_layers() -> None:
    found = {(module, imported, why) for module, imported, why in _all_violations()}
    unexpected = sorted(v for v in found if (v[0], v[1]) not in ALLOWED)
    assert not unexpected, "layer violations:\n" + "\n".join(
        f"  {module} imports {imported}: {why}" for module, imported, why in unexpected
    )


def test_the_allow_list_holds_only_violations_that_still_exist() -> None:
    """Fixing a violation must shrink the allow-list, so that it cannot come back unseen."""
    found = {(module, imported) for module, imported, _ in _all_violations()}
    assert found >= ALLOWED, f"no longer violated, remove from ALLOWED: {sorted(ALLOWED - found)}"


@pytest.mark.parametrize(
    ("module", "source", "why"),
    [
        ("nbopt.tuning._search", "import IPython", "engine imports IPython"),
        ("nbopt.compress._prune", "from ipywidgets import HTML", "engine imports ipywidgets"),
        ("nbopt.batching", "from nbopt.magics import runner", "engine imports the magics"),
        ("nbopt.launching._job", "from nbopt.ui.views import x", "engine imports a ui view"),
        ("nbopt.ui.views.tuning", "from nbopt.tuning._trial import Trial", "private module"),
        ("nbopt.compress.auto", "from nbopt.tuning._proposer import P", "private module"),
        ("nbopt.ui.progress", "from traitlets import Unicode", "only nbopt.magics uses"),
    ],
)
def test_the_check_catches_each_kind_of_violation(
    tmp_path: Path, module: str, source: str, why: str
) -> None:
    """The rules fire on a module written like each violation (here, in a temporary file)."""
    path = tmp_path / "module.py"
    path.write_text(f"def f():\n    {source}\n", encoding="utf-8")
    reasons = [r for imported in _imports(module, path) for r in _violations(module, imported)]
    assert any(why in reason for reason in reasons), reasons


def test_importing_the_engines_loads_no_frontend_package() -> None:
    code = (
        "import json, sys\n"
        "import nbopt.tuning, nbopt.compress, nbopt.batching, nbopt.launching\n"
        "import nbopt.tuning.gp, nbopt.learning_rate\n"
        f"print(json.dumps(sorted(m for m in {FRONTEND_PACKAGES!r} if m in sys.modules)))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == []
