"""Model compression: :func:`optimize` prunes, factorises and quantizes a copy of a model and
reports, measured, what it gained; :func:`optimize_auto` searches for the plan that does it best
within the accuracy the user can afford.

Importing this package is light; torch, Torch-Pruning and torchao are imported when a run starts.
"""

from __future__ import annotations

from typing import Any

from nbopt._imports import renamed
from nbopt.compress._api import optimize, optimize_auto
from nbopt.compress._plan import Plan
from nbopt.compress._registry import EXPORT, INT8_BACKENDS, PRUNING, QUANTIZATION
from nbopt.compress._result import ModelMeasurement, OptimizeResult, StepRecord
from nbopt.compress.auto import AutoOptimizeResult, LayerSensitivity, PlanTrial
from nbopt.compress.report import Change

__all__ = [
    "AutoOptimizeResult",
    "Change",
    "LayerSensitivity",
    "ModelMeasurement",
    "OptimizeResult",
    "Plan",
    "PlanTrial",
    "StepRecord",
    "distillation_loss",
    "methods",
    "optimize",
    "optimize_auto",
]


# What each int8 backend is, for methods() and the magic's help.
_BACKEND_SUMMARIES = {
    "auto": "the fastest backend on this model whose outputs stay close to float (measured)",
    "torchao": "torchao's quantize_ (maintained; CPU and CUDA)",
    "torch.ao": "torch.ao's eager dynamic quantization (CPU; deprecated in torch)",
}


def methods() -> dict[str, dict[str, str]]:
    """The named methods of each option, with a one-line summary of each:
    ``{"prune_mode": {"structured": "...", ...}, "quant": {"int8": "...", ...}, ...}``."""
    named = {
        registry.option: {name: registry.get(name).summary for name in registry.names()}
        for registry in (PRUNING, QUANTIZATION)
    }
    named["quant_backend"] = {name: _BACKEND_SUMMARIES[name] for name in INT8_BACKENDS}
    named["export"] = {f"*{name}": EXPORT.get(name).summary for name in EXPORT.names()}
    return named


def check_finetune_options(**options: Any) -> None:
    """Raise :class:`nbopt.ConfigError` for fine-tune options of :func:`optimize` that do not
    go together or are out of range (``finetune``, ``data``, ``loss``, ``epochs``,
    ``finetune_steps``, ``lr``, ``distill``, ``temperature``, ``alpha``, ``student``), as
    ``optimize`` would before any work."""
    from nbopt.compress._finetune import make_trainer

    make_trainer(**options)


def __getattr__(name: str) -> Any:
    if name == "Measurement":
        return renamed("nbopt.compress", name, "ModelMeasurement", ModelMeasurement)
    if name == "distillation_loss":
        # It imports torch: loaded when asked for, not with the package.
        from nbopt.compress._train import distillation_loss

        return distillation_loss
    raise AttributeError(f"module 'nbopt.compress' has no attribute {name!r}")
