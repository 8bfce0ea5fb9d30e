"""Every engine's events have a view, registered in one place (``nbopt.ui.views``)."""

from __future__ import annotations

import dataclasses
import importlib

import pytest

from nbopt.events import Event
from nbopt.ui import views

EVENT_MODULES = [
    "nbopt.events",
    "nbopt.tuning.events",
    "nbopt.compress.events",
    "nbopt.compress.auto.events",
    "nbopt.batching.events",
    "nbopt.launching.events",
    "nbopt.learning_rate.events",
]


def _event_types() -> list[type]:
    found = []
    for name in EVENT_MODULES:
        module = importlib.import_module(name)
        found += [
            value
            for value in vars(module).values()
            if isinstance(value, type)
            and issubclass(value, Event)
            and value is not Event
            and value.__module__ == name
        ]
    return found


@pytest.mark.parametrize("event_type", _event_types(), ids=lambda t: t.__name__)
def test_every_event_is_shown_by_the_live_view(event_type: type) -> None:
    """The live view has a presenter for each event type (its own, or a base class's)."""
    assert any(cls in views.PRESENTERS for cls in event_type.__mro__)


def test_the_views_import_no_engine_run() -> None:
    """Loading the views (a live view does) imports no torch or Hyperopt: they load with runs."""
    import subprocess
    import sys

    code = (
        "import sys, nbopt.ui.views\n"
        "print(sorted(m for m in ('torch', 'hyperopt') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_events_are_immutable_records() -> None:
    for event_type in _event_types():
        assert dataclasses.is_dataclass(event_type)
        assert event_type.__dataclass_params__.frozen, event_type.__name__
