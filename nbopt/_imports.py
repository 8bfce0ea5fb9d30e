"""Imports that say what to do: an optional dependency names the extra that provides it, a
renamed public name says its new name."""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType
from typing import Any


class MissingDependency(ImportError):
    """An optional package is not installed; the message says which extra installs it."""


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
        raise MissingDependency(
            f"{purpose} needs {module.split('.')[0]}, which is not installed; "
            f'install it with: pip install "nbopt[{extra}]"'
        ) from exc


def renamed(module: str, old: str, new: str, value: Any) -> Any:
    """``value``, with a DeprecationWarning that ``module.old`` is now ``module.new``; for a
    module's ``__getattr__``, so that the old name keeps working for one release."""
    warnings.warn(
        f"{module}.{old} is now {new}; the old name will be removed in the next release",
        DeprecationWarning,
        stacklevel=3,
    )
    return value
