"""Quantities with units, read and written the same way everywhere: sizes in bytes and
durations in seconds, as the magics' options take them (``memory=4GB``, ``timeout=5m``) and as
the engines accept them (``find_batch_size(memory="4GB")``), and their short printed forms."""

from __future__ import annotations

import re

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600}


def parse_size(text: str) -> int:
    """Bytes from ``4GB``, ``512MB``, ``1.5GiB`` or ``1000000`` (decimal units: 1 GB = 10^9 B).

    Raises:
        ValueError: for anything else, or a size that is not positive.

    Example:
        >>> parse_size("1.5GiB")
        1610612736
    """
    match = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)", text.strip())
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _SIZE_UNITS:
        raise ValueError(f"expected a size such as 4GB or 512MB, got {text!r}")
    size = int(float(match.group(1)) * _SIZE_UNITS[unit])
    if size <= 0:
        raise ValueError(f"expected a positive size, got {text!r}")
    return size


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``30s``, ``5m``, ``2h``.

    Raises:
        ValueError: for anything else, or a duration that is not positive.

    Example:
        >>> parse_duration("5m")
        300.0
    """
    match = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)", text.strip())
    if not match or match.group(2) not in _DURATION_UNITS:
        raise ValueError(f"expected a duration such as 600, 30s, 5m or 2h, got {text!r}")
    seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"expected a positive duration, got {text!r}")
    return seconds


def format_bytes(size: float | None) -> str:
    """``512 B``, ``12.3 MB``, ``1.50 GB`` (decimal units, as :func:`parse_size` reads them)."""
    if size is None:
        return "n/a"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(size) >= scale:
            value = size / scale
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{size:.0f} B"


def format_rate(rate: float | None) -> str:
    """A rate (samples per second) with thousands separators: ``31,250``; ``0.52`` below ten."""
    if rate is None:
        return "n/a"
    return f"{rate:,.0f}" if rate >= 10 else f"{rate:.3g}"
