"""Fixtures for the documentation's tests."""

from __future__ import annotations

from typing import Any

import pytest
from _doc_pages import page_sessions


@pytest.fixture
def page() -> Any:
    """``page("methods/tpe.md")["tpe"]`` is the namespace of that page's executed blocks."""
    return page_sessions
