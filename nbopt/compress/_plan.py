"""What to do to a model: one :class:`Plan` type, which ``optimize`` builds from its arguments
and ``optimize_auto`` searches over, and the steps it becomes, in the one fixed order:
prune -> low-rank -> fine-tune -> quantize.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nbopt.compress._registry import LOWRANK, PRUNING, QUANTIZATION, Backend
from nbopt.errors import ConfigError


@dataclass(frozen=True)
class Plan:
    """One way to compress a model.

    Attributes:
        prune: Fraction of channels (``prune_mode="structured"``) or weights
            (``"unstructured"``) to remove; None for no pruning.
        prune_mode: A pruning method of ``nbopt.compress.methods()["prune_mode"]``.
        prune_keep: Modules left unpruned, with everything inside them.
        lowrank: Spectral energy kept when factorising large Linear layers; None for none.
        quant: A quantization mode of ``nbopt.compress.methods()["quant"]``, or None.
        quant_keep: Modules left in float by the quantization.

    Example:
        >>> Plan(prune=0.3, prune_keep=("fc",), quant="int8").label()
        'prune 0.3 (fc kept) + int8'
    """

    prune: float | None = None
    prune_mode: str = "structured"
    prune_keep: tuple[str, ...] = ()
    lowrank: float | None = None
    quant: str | None = None
    quant_keep: tuple[str, ...] = ()

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Plan:
        """The plan of a search trial's parameters (``{"prune": {"amount": 0.3, "keep": [...]},
        ...}``; a study gives lists where the space had tuples)."""
        prune = params.get("prune") or {}
        lowrank = params.get("lowrank") or {}
        quant = params.get("quant") or {}
        return cls(
            prune=_rounded(prune.get("amount")),
            prune_keep=tuple(prune.get("keep", ())),
            lowrank=_rounded(lowrank.get("energy")),
            quant=quant.get("mode"),
            quant_keep=tuple(quant.get("keep", ())),
        )

    @property
    def structure(self) -> Plan:
        """The part of the plan that changes the float model (what a cache of models keys on)."""
        return Plan(self.prune, self.prune_mode, self.prune_keep, self.lowrank)

    @property
    def changes_structure(self) -> bool:
        return self.prune is not None or self.lowrank is not None

    def label(self) -> str:
        """``prune 0.3 (block.conv1 kept) + int8 (fc1 in float)``, or ``no compression``."""
        parts = []
        if self.prune is not None:
            mode = "" if self.prune_mode == "structured" else f"{self.prune_mode} "
            parts.append(f"prune {mode}{self.prune:g}" + _kept(self.prune_keep, "kept"))
        if self.lowrank is not None:
            parts.append(f"low-rank {self.lowrank:g}")
        if self.quant is not None:
            parts.append(self.quant + _kept(self.quant_keep, "in float"))
        return " + ".join(parts) or "no compression"

    def steps(
        self,
        *,
        finetune: Callable[..., Any] | None = None,
        calib: Any = None,
        ignore: tuple[str, ...] = (),
    ) -> list[Step]:
        """The steps that carry out the plan, in their fixed order, each with its validated
        config. ``finetune`` runs after the steps that change the structure; ``calib`` is the
        calibration data of ``int8-static`` (unused by the other steps); ``ignore`` names
        modules never pruned besides ``prune_keep``.

        Raises:
            ConfigError: for an amount out of range, an unknown method, or options that do
                not go together; nothing has run.
        """
        steps = []
        if self.prune is not None:
            backend = PRUNING.get(self.prune_mode)
            config = backend.make_config(amount=self.prune, ignore=(*ignore, *self.prune_keep))
            steps.append(Step("prune", f"prune {self.prune_mode} {self.prune:g}", backend, config))
        elif self.prune_keep:
            raise ConfigError("prune_ignore= is given without prune=")
        if self.lowrank is not None:
            backend = LOWRANK.get("svd")
            config = backend.make_config(energy=self.lowrank)
            steps.append(Step("lowrank", f"low-rank {self.lowrank:g}", backend, config))
        if finetune is not None:
            if not callable(finetune):
                raise ConfigError(
                    f"finetune= must be a function of the model, got {type(finetune).__name__}"
                )
            steps.append(Step("finetune", f"finetune {function_name(finetune, 'finetune')}"))
        if self.quant is not None:
            backend = QUANTIZATION.get(self.quant)
            config = backend.make_config(calib=calib, skip=self.quant_keep)
            steps.append(Step("quant", f"quantize {self.quant}", backend, config))
        return steps


@dataclass(frozen=True)
class Step:
    """A planned step: its kind (``prune``, ``lowrank``, ``finetune``, ``quant``), its label,
    and the backend and validated config that apply it (none for ``finetune``, which each run
    calls in its own way)."""

    kind: str
    label: str
    backend: Backend | None = None
    config: Any = None


def function_name(function: Any, default: str) -> str:
    """A function's name for labels and reports; ``default`` for a lambda."""
    name = getattr(function, "__name__", default)
    return default if name == "<lambda>" else name


def _rounded(value: Any) -> float | None:
    # Hyperopt's quantized dimensions give 0.30000000000000004 for 0.3.
    return None if value is None else round(float(value), 4)


def _kept(names: tuple[str, ...], what: str) -> str:
    return f" ({', '.join(names)} {what})" if names else ""
