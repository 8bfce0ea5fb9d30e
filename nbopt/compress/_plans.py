"""Compression plans: how much to prune, how much spectral energy to keep, which quantization
to apply, and which layers to leave alone. :mod:`nbopt.compress._builder` makes a plan's model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Plan:
    """One way to compress a model.

    Attributes:
        prune: Fraction of channels removed by structured pruning (None: no pruning).
        prune_keep: Layers whose group of channels is left unpruned.
        lowrank: Spectral energy kept when factorising large Linear layers (None: none).
        quant: Quantization mode (``"int8"``, ``"int8-static"``, ``"fp16"``, ``"bf16"``).
        quant_keep: Layers left in float by the quantization.
    """

    prune: float | None = None
    prune_keep: tuple[str, ...] = ()
    lowrank: float | None = None
    quant: str | None = None
    quant_keep: tuple[str, ...] = ()

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Plan:
        """The plan of a trial's parameters (``{"prune": {"amount": 0.3, "keep": [...]}, ...}``;
        a study gives lists where the space had tuples)."""
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
        """The part of the plan that changes the float model: the cache key."""
        return Plan(self.prune, self.prune_keep, self.lowrank)

    @property
    def changes_structure(self) -> bool:
        return self.prune is not None or self.lowrank is not None

    def label(self) -> str:
        """``prune 0.3 (block.conv1 kept) + int8 (fc1 in float)``, or ``no compression``."""
        parts = []
        if self.prune is not None:
            parts.append(f"prune {self.prune:g}" + _kept(self.prune_keep, "kept"))
        if self.lowrank is not None:
            parts.append(f"low-rank {self.lowrank:g}")
        if self.quant is not None:
            parts.append(self.quant + _kept(self.quant_keep, "in float"))
        return " + ".join(parts) or "no compression"


def _rounded(value: Any) -> float | None:
    # Hyperopt's quantized dimensions give 0.30000000000000004 for 0.3.
    return None if value is None else round(float(value), 4)


def _kept(names: tuple[str, ...], what: str) -> str:
    return f" ({', '.join(names)} {what})" if names else ""
