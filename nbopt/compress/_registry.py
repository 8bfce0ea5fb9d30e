"""The steps' backends: a config dataclass and a function for each named method.

A registry maps a name (``"structured"``, ``"int8"``) to a :class:`Backend`: the config type it
takes and the dotted path of the function that applies it, imported only when the step runs, so
that listing the names (for ``%%optimize?`` and its option checks) imports no torch. As in
torchao's ``quantize_``, a config says *what* to do and the function *how*; an unknown name
fails with the list of known ones.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nbopt.errors import ConfigError, did_you_mean


@dataclass(frozen=True)
class StepContext:
    """What a step may need besides the model: the example input and the model's device."""

    example: Any
    device: Any


@dataclass
class StepOutcome:
    """What a step returns: the changed model (possibly a new object), what it did, and plain
    statements for the report (what cannot get faster, what stayed in float)."""

    model: Any
    detail: str
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


# Configs: one per method. ``validate`` raises ConfigError before anything runs.


def _check_fraction(option: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ConfigError(f"{option} must be a fraction in (0, 1), got {value!r}")


@dataclass(frozen=True)
class StructuredPruning:
    """Remove ``amount`` of the channels (neurons) of each prunable layer with Torch-Pruning."""

    amount: float
    ignore: tuple[str, ...] = ()

    def validate(self) -> None:
        _check_fraction("prune", self.amount)


@dataclass(frozen=True)
class UnstructuredPruning:
    """Zero the ``amount`` of Conv/Linear/attention weights smallest in magnitude, globally."""

    amount: float
    ignore: tuple[str, ...] = ()

    def validate(self) -> None:
        _check_fraction("prune", self.amount)


@dataclass(frozen=True)
class LowRank:
    """Factorise each Linear whose sides are at least ``min_features`` into two smaller ones,
    keeping the smallest rank that retains ``energy`` of its squared singular values."""

    energy: float
    min_features: int = 32

    def validate(self) -> None:
        _check_fraction("lowrank", self.energy)


@dataclass(frozen=True)
class DynamicInt8:
    """8-bit weights, activations quantized on the fly (CPU: torch.ao; CUDA: torchao); the
    modules named in ``skip`` (and everything inside them) stay in float."""

    skip: tuple[str, ...] = ()

    def validate(self) -> None:
        """Nothing to check here: the device and the names are checked against the model."""


@dataclass(frozen=True)
class StaticInt8:
    """8-bit weights and activations calibrated on ``calib`` (torchao PT2E, x86 CPUs); the
    modules named in ``skip`` stay in float."""

    calib: Any = None
    skip: tuple[str, ...] = ()

    def validate(self) -> None:
        if self.calib is None:
            raise ConfigError(
                "quant=int8-static needs calib=: calibration inputs (a DataLoader, a list of "
                "batches or one batch tensor)"
            )


@dataclass(frozen=True)
class Cast:
    """Cast weights and compute to ``dtype`` (``"float16"`` or ``"bfloat16"``)."""

    dtype: str

    def validate(self) -> None:
        if self.dtype not in ("float16", "bfloat16"):
            raise ConfigError(f"cast dtype must be float16 or bfloat16, got {self.dtype!r}")


@dataclass(frozen=True)
class Backend:
    """One named method: its config type, the function applying it (``"module:function"``)
    and, optionally, a check run before anything changes (device support, required inputs)."""

    name: str
    config: type
    function: str
    check: str | None = None
    summary: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)

    def make_config(self, **values: Any) -> Any:
        """The validated config, from ``values`` (the fields the config has) and ``options``."""
        names = {f.name for f in dataclasses.fields(self.config)}
        given = {key: value for key, value in values.items() if key in names}
        config = self.config(**{**given, **self.options})
        config.validate()
        return config

    def load(self) -> Callable[[Any, Any, StepContext], StepOutcome]:
        return _resolve(self.function)

    def load_check(self) -> Callable[[Any, Any, StepContext], None] | None:
        return None if self.check is None else _resolve(self.check)


def _resolve(path: str) -> Callable[..., Any]:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


class Registry:
    """Named backends of one step kind (``"prune_mode"``, ``"quant"``)."""

    def __init__(self, option: str) -> None:
        self.option = option
        self._backends: dict[str, Backend] = {}

    def add(self, backend: Backend) -> None:
        self._backends[backend.name] = backend

    def names(self) -> tuple[str, ...]:
        return tuple(self._backends)

    def get(self, name: str) -> Backend:
        backend = self._backends.get(name)
        if backend is None:
            hint = did_you_mean(str(name), self.names())
            raise ConfigError(
                f"unknown {self.option} {name!r}{hint}; known: {', '.join(self.names())}"
            )
        return backend


PRUNING = Registry("prune_mode")
PRUNING.add(
    Backend(
        "structured",
        StructuredPruning,
        "nbopt.compress._prune:prune_structured",
        "nbopt.compress._prune:check_structured",
        "remove whole channels and neurons (Torch-Pruning): smaller and faster",
    )
)
PRUNING.add(
    Backend(
        "unstructured",
        UnstructuredPruning,
        "nbopt.compress._prune:prune_unstructured",
        check="nbopt.compress._prune:check_unstructured",
        summary="zero single weights (torch.nn.utils.prune): sparser, not faster on dense kernels",
    )
)

LOWRANK = Registry("lowrank method")
LOWRANK.add(
    Backend(
        "svd",
        LowRank,
        "nbopt.compress._lowrank:factorize_linears",
        summary="replace large Linear layers by two thinner ones from their SVD",
    )
)

QUANTIZATION = Registry("quant")
QUANTIZATION.add(
    Backend(
        "int8",
        DynamicInt8,
        "nbopt.compress._quantize:quantize_int8",
        "nbopt.compress._quantize:check_int8",
        "dynamic int8: Linear, LSTM, GRU and embeddings",
    )
)
QUANTIZATION.add(
    Backend(
        "int8-static",
        StaticInt8,
        "nbopt.compress._static:quantize_int8_static",
        "nbopt.compress._static:check_int8_static",
        "static int8 calibrated on calib= (torchao PT2E), for convolutional models",
    )
)
QUANTIZATION.add(
    Backend(
        "fp16",
        Cast,
        "nbopt.compress._quantize:cast",
        "nbopt.compress._quantize:check_cast",
        "cast to float16",
        {"dtype": "float16"},
    )
)
QUANTIZATION.add(
    Backend(
        "bf16",
        Cast,
        "nbopt.compress._quantize:cast",
        "nbopt.compress._quantize:check_cast",
        "cast to bfloat16",
        {"dtype": "bfloat16"},
    )
)
