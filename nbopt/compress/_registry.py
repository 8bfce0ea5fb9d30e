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
    """What a step may need besides the model: the example input, the model's device, and
    an input to check models with when there is no example (the first batch of ``data=``)."""

    example: Any
    device: Any
    sample: Any = None

    @property
    def probe(self) -> Any:
        """An input the model takes: the example, else the sample; None without either."""
        return self.example if self.example is not None else self.sample


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
    """Remove ``amount`` of the channels (neurons) of each prunable layer with Torch-Pruning.

    With ``of_original`` (the increments of iterative pruning), ``amount`` is the share of
    the channels the model had when it met its first such step that is removed by the end of
    this one, so that N increments end at the width one step of the whole amount gives.
    """

    amount: float
    ignore: tuple[str, ...] = ()
    of_original: bool = False

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
class SoftPruning:
    """Soft filter pruning: zero ``amount`` of the channels of each group, smallest in L2
    norm of their own weights, and keep training them; the fine-tune zeroes the selection
    again at each report, and the channels zero at its end are removed (Torch-Pruning)."""

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


# The int8 kernels ``quant_backend=`` chooses from; ``auto`` measures them on the model.
INT8_BACKENDS = ("auto", "torchao", "torch.ao")


@dataclass(frozen=True)
class DynamicInt8:
    """8-bit weights, activations quantized on the fly, by ``backend``: ``"torch.ao"`` (its
    eager dynamic quantization, on CPU), ``"torchao"`` (``quantize_``, CPU and CUDA) or
    ``"auto"`` (the fastest of those this torch has whose outputs stay close to the float
    model's); the modules named in ``skip`` (and everything inside them) stay in float."""

    skip: tuple[str, ...] = ()
    backend: str = "auto"

    def validate(self) -> None:
        if self.backend not in INT8_BACKENDS:
            hint = did_you_mean(str(self.backend), INT8_BACKENDS)
            raise ConfigError(
                f"unknown quant_backend {self.backend!r}{hint}; known: {', '.join(INT8_BACKENDS)}"
            )


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
class Finetune:
    """A fine-tune step: ``share`` of the fine-tune budget (``prune_steps=N`` splits it among
    N fine-tunes), with soft pruning's schedule (``soft``: zero the selection at each report),
    fake quantization (``qat``) and the teacher's outputs in the loss (``distill``)."""

    share: float = 1.0
    soft: SoftPruning | None = None
    qat: bool = False
    distill: bool = False

    def validate(self) -> None:
        """Nothing to check: the plan builds it from checked options."""


@dataclass(frozen=True)
class Transfer:
    """Replace the model by ``student``, a smaller architecture the fine-tune trains from
    the original model (as its teacher)."""

    student: Any

    def validate(self) -> None:
        from torch import nn

        if not isinstance(self.student, nn.Module):
            raise ConfigError(
                f"student= must be a torch.nn.Module (the smaller model to train), got "
                f"{type(self.student).__name__}"
            )


@dataclass(frozen=True)
class Export:
    """Write the model to ``path`` (``.pt2``: ``torch.export``; ``.onnx``: the ONNX
    exporter), load it back and compare its outputs with the model's on the example."""

    path: str

    def validate(self) -> None:
        """The suffix picked the format; the folder is checked before any work."""


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
        "soft",
        SoftPruning,
        "nbopt.compress._soft:prune_soft",
        "nbopt.compress._soft:check_soft",
        "soft filter pruning: zeroed channels keep training during the fine-tune, removed at "
        "its end (needs a fine-tune)",
    )
)
# The last step of soft pruning, after the fine-tune: not a prune_mode of its own.
SOFT_REMOVAL = Backend("remove", SoftPruning, "nbopt.compress._soft:remove_soft")
TRANSFER = Backend(
    "student",
    Transfer,
    "nbopt.compress._transfer:transfer",
    "nbopt.compress._transfer:check_transfer",
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
        "nbopt.compress._cast:cast",
        "nbopt.compress._cast:check_cast",
        "cast to float16",
        {"dtype": "float16"},
    )
)
QUANTIZATION.add(
    Backend(
        "bf16",
        Cast,
        "nbopt.compress._cast:cast",
        "nbopt.compress._cast:check_cast",
        "cast to bfloat16",
        {"dtype": "bfloat16"},
    )
)

EXPORT = Registry("export format")
EXPORT.add(
    Backend(
        ".pt2",
        Export,
        "nbopt.compress._export:export_program",
        "nbopt.compress._export:check_export",
        "torch.export's ExportedProgram (torch.export.load)",
    )
)
EXPORT.add(
    Backend(
        ".onnx",
        Export,
        "nbopt.compress._export:export_onnx",
        "nbopt.compress._export:check_onnx",
        "ONNX, through torch.onnx's exporter (needs nbopt[onnx])",
    )
)
