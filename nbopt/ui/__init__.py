"""Views of running engines: events, live progress (widget, text), TensorBoard logs and plots."""

DEFAULT_LOGDIR = "runs/nbopt"
