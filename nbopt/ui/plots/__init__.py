"""Matplotlib renderings of result objects, one module per engine; the numbers come from pure
functions (``nbopt.tuning.analysis``, the results' own methods), the drawing is here.

Each function returns a figure that pyplot no longer tracks: a notebook shows it once, when
the cell returns it, and a script can ``savefig`` it.
"""

from __future__ import annotations

from typing import Any


def new_figure(**kwargs: Any) -> Any:
    """A pyplot figure, closed at once: pyplot's import sets up notebook display, and closing
    keeps the inline backend from showing it a second time at the end of the cell."""
    import matplotlib.pyplot as plt

    figure = plt.figure(**kwargs)
    plt.close(figure)
    return figure
