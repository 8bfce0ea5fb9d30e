"""``optimize_auto``'s machinery: the search for the compression plan that gains most within
the accuracy the user can afford (plan search, layer sensitivity, tolerance, Pareto front).

Importing it is light; torch is imported when a run starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nbopt.compress.auto._result import TARGETS, AutoOptimizeResult, LayerSensitivity, PlanTrial
from nbopt.compress.auto._tolerance import LOSS_MODES, METRIC_MODES, Tolerance

if TYPE_CHECKING:
    from nbopt.compress.auto._run import AutoOptimization

__all__ = [
    "LOSS_MODES",
    "METRIC_MODES",
    "TARGETS",
    "AutoOptimization",
    "AutoOptimizeResult",
    "LayerSensitivity",
    "PlanTrial",
    "Tolerance",
]


def __getattr__(name: str) -> Any:
    # The run imports torch: it loads when a run starts, not with the package.
    if name == "AutoOptimization":
        from nbopt.compress.auto._run import AutoOptimization

        return AutoOptimization
    raise AttributeError(f"module 'nbopt.compress.auto' has no attribute {name!r}")
