"""Checking that an objective can be sent to Ray workers, and naming the variable to blame.

Ray pickles the objective with cloudpickle for every worker and refuses a function larger
than its limit with a message that names no variable; a closure that holds a big array (or
something that cannot be pickled at all, such as a lock) is a common way to get there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from nbopt.errors import ConfigError

# Ray refuses to ship a function larger than this (ray_constants.FUNCTION_SIZE_ERROR_THRESHOLD).
SEND_LIMIT_BYTES = 10**8


def check_sendable(call: Callable[[Any], Any], limit: int = SEND_LIMIT_BYTES) -> None:
    """ConfigError naming the variable to blame if the objective cannot be sent to Ray."""
    from ray import cloudpickle

    try:
        size = len(cloudpickle.dumps(call))
    except Exception as exc:
        name = _culprit(call, lambda value: _pickled_size(value) is None)
        where = f" because of the variable {name!r}" if name else ""
        raise ConfigError(
            f"the objective cannot be sent to Ray workers{where}: {type(exc).__name__}: {exc}"
        ) from None
    if size > limit:
        name = _culprit(call, lambda value: True)
        where = f"; most of it is the variable {name!r}" if name else ""
        raise ConfigError(
            f"the objective is {size / 1e6:.0f} MB when pickled for Ray, over the "
            f"{limit / 1e6:.0f} MB limit{where}: load such data inside the objective, "
            "or put it in Ray's object store with ray.put and pass the reference"
        )


def _captured(call: Any, depth: int = 3) -> dict[str, Any]:
    """The variables a callable carries: closure cells, globals it names, objective state."""
    found: dict[str, Any] = {}
    code = getattr(call, "__code__", None)
    if code is not None:
        for name, cell in zip(
            code.co_freevars, getattr(call, "__closure__", None) or (), strict=True
        ):
            with contextlib.suppress(ValueError):
                found[name] = cell.cell_contents
        globals_ = getattr(call, "__globals__", {})
        found.update({name: globals_[name] for name in code.co_names if name in globals_})
    sendable = getattr(call, "sendable_namespace", None)
    if callable(sendable):
        found.update(sendable())
    if depth > 0:
        for value in [v for v in found.values() if callable(v)]:
            for name, inner in _captured(value, depth - 1).items():
                found.setdefault(name, inner)
    return found


def _culprit(call: Any, suspect: Callable[[Any], bool]) -> str | None:
    """The captured variable that ``suspect`` accepts and that pickles largest (or not at all)."""
    candidates = {
        name: value
        for name, value in _captured(call).items()
        if not callable(value) or _pickled_size(value) is None
    }
    suspects = [name for name, value in candidates.items() if suspect(value)]
    if not suspects:
        return None
    return max(suspects, key=lambda name: _pickled_size(candidates[name]) or float("inf"))


def _pickled_size(value: Any) -> int | None:
    from ray import cloudpickle

    try:
        return len(cloudpickle.dumps(value))
    except Exception:
        return None
