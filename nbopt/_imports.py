"""Import an optional dependency, naming the extra that provides it when it is missing."""

from __future__ import annotations

import importlib
from types import ModuleType


def optional_import(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise an ImportError that says how to install it.

    Args:
        module: Dotted module name, e.g. ``"ray.tune"``.
        extra: The nbopt extra that installs it, e.g. ``"ray"``.
        purpose: What needs it, for the message, e.g. ``"backend=ray"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{purpose} needs {module.split('.')[0]}, which is not installed; "
            f'install it with: pip install "nbopt[{extra}]"'
        ) from exc
