"""Numbers from what user code returns: Python, NumPy and one-element tensor values alike."""

from __future__ import annotations

import numbers
from typing import Any


def as_number(value: Any) -> float | None:
    """A real number from a Python, NumPy or one-element tensor value; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    item = getattr(value, "item", None)  # NumPy scalars and one-element tensors
    size = getattr(value, "size", None)
    numel = getattr(value, "numel", None)
    one_element = (callable(numel) and numel() == 1) or size == 1
    if callable(item) and one_element:
        try:
            number = item()
        except (TypeError, ValueError, RuntimeError):
            return None
        if isinstance(number, numbers.Real) and not isinstance(number, bool):
            return float(number)
    return None
