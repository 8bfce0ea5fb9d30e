"""Views of running engines: live progress (widget, text), TensorBoard logs, plots, and the
interactive displays of result objects.

Engines emit events (:mod:`nbopt.events`); the live views and TensorBoard subscribe to them
through the bus that :func:`nbopt.ui.reporting.reporting_bus` builds, and know how to show each
engine's events from :mod:`nbopt.ui.views`, where every view is registered.
"""

DEFAULT_LOGDIR = "runs/nbopt"
PROGRESS_MODES = ("auto", "widget", "text", "none")
