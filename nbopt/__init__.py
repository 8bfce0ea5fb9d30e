"""nbopt: tune, compress and scale PyTorch models without leaving a Jupyter notebook.

In a notebook::

    %load_ext nbopt
    %tune train lr=loguniform(1e-4, 1e-1) layers=choice(1, 2, 3) max_evals=40

In a script, the same engines are plain functions::

    import nbopt
    result = nbopt.tune(train, {"lr": nbopt.loguniform(1e-4, 1e-1)}, max_evals=40)

``import nbopt`` stays light: torch, hyperopt, tensorboard and ipywidgets are imported
only when a function that needs them is called.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from nbopt._context import report
from nbopt.errors import ConfigError, TrialStopped, TuneError
from nbopt.space import choice, loguniform, normal, qloguniform, quniform, randint, uniform

__version__ = "0.1.0.dev0"

# Public names whose modules pull in heavy dependencies; resolved on first access.
_LAZY = {
    "tune": "nbopt.tuning",
    "TuneResult": "nbopt.tuning",
    "Trial": "nbopt.tuning",
    "find_batch_size": "nbopt.batching",
    "BatchSizeResult": "nbopt.batching",
    "find_lr": "nbopt.learning_rate",
    "LRFindResult": "nbopt.learning_rate",
    "optimize": "nbopt.compress",
    "OptimizeResult": "nbopt.compress",
    "optimize_auto": "nbopt.compress",
    "AutoOptimizeResult": "nbopt.compress",
    "launch": "nbopt.launching",
    "LaunchError": "nbopt.launching",
    "LaunchTimeout": "nbopt.launching",
}

if TYPE_CHECKING:
    from nbopt.batching import BatchSizeResult, find_batch_size
    from nbopt.compress import AutoOptimizeResult, OptimizeResult, optimize, optimize_auto
    from nbopt.launching import LaunchError, LaunchTimeout, launch
    from nbopt.learning_rate import LRFindResult, find_lr
    from nbopt.tuning import Trial, TuneResult, tune

__all__ = [
    "AutoOptimizeResult",
    "BatchSizeResult",
    "ConfigError",
    "LRFindResult",
    "LaunchError",
    "LaunchTimeout",
    "OptimizeResult",
    "Trial",
    "TrialStopped",
    "TuneError",
    "TuneResult",
    "choice",
    "find_batch_size",
    "find_lr",
    "launch",
    "load_ipython_extension",
    "loguniform",
    "normal",
    "optimize",
    "optimize_auto",
    "qloguniform",
    "quniform",
    "randint",
    "report",
    "tune",
    "uniform",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nbopt' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def load_ipython_extension(ipython: Any) -> None:
    """Register nbopt's magics; called by ``%load_ext nbopt``."""
    from nbopt.magics import NbOptMagics

    magics = NbOptMagics(shell=ipython)
    ipython.register_magics(magics)
    if magics not in ipython.configurables:
        # Makes ``%config NbOptMagics.progress = "text"`` work like any other extension.
        ipython.configurables.append(magics)
