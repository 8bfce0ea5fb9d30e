"""Interactive displays of result objects in a notebook (ipywidgets): the front picker of an
automatic optimisation. Outside a widget front end they give way to the results' HTML and text.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbopt.compress import AutoOptimizeResult


def in_widget_frontend() -> bool:
    """True inside a Jupyter kernel (where widgets can render) with ipywidgets installed."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    if shell is None or "IPKernelApp" not in getattr(shell, "config", {}):
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def widget_bundle(make_widget: Callable[[], Any]) -> dict[str, Any]:
    """The widget's display bundle inside a widget front end, else ``{}`` (so that IPython
    shows the object's HTML and text forms)."""
    if not in_widget_frontend():
        return {}
    bundle = make_widget()._repr_mimebundle_()
    # IPython fills the other forms from _repr_html_ and _repr_pretty_.
    bundle.pop("text/plain", None)
    return bundle


def front_picker(result: AutoOptimizeResult) -> Any:
    """A dropdown of the front's points over the result's summary; picking a point makes its
    model ``result.model``."""
    import ipywidgets as widgets

    front = result.front
    dropdown = widgets.Dropdown(
        options=[(result.point_text(point), index) for index, point in enumerate(front)],
        value=next((i for i, point in enumerate(front) if point is result.chosen), None),
        description="model:",
        layout=widgets.Layout(width="max-content"),
    )
    summary = widgets.HTML(result._repr_html_())

    def picked(change: dict[str, Any]) -> None:
        if change["new"] is not None:
            result.select(front[change["new"]])
            summary.value = result._repr_html_()

    dropdown.observe(picked, names="value")
    return widgets.VBox([dropdown, summary])
