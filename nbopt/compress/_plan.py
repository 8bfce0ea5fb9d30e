"""What to do to a model: one :class:`Plan` type, which ``optimize`` builds from its arguments
and ``optimize_auto`` searches over, and the steps it becomes, in the one fixed order:
transfer -> prune -> low-rank -> fine-tune -> (soft pruning's removal) -> quantize -> export.

Iterative pruning (``prune_steps=N``) repeats the pruning step N times with a fine-tune after
each increment but the last, whose fine-tune is the one after low-rank. The whole run trains
as long as a one-shot plan does: the fine-tune after the last increment gets
:data:`FINAL_SHARE` of the budget, the others share the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbopt.compress._registry import (
    EXPORT,
    LOWRANK,
    PRUNING,
    QUANTIZATION,
    SOFT_REMOVAL,
    TRANSFER,
    Backend,
    Finetune,
)
from nbopt.errors import ConfigError

# The share of the fine-tune budget that iterative pruning gives the fine-tune after its last
# increment: the final architecture is the one to recover; the fine-tunes between increments
# only keep the network working for the next cut. On a digits CNN (3 epochs in all, five
# increments), equal shares left the last fine-tune 12 steps and lost 15 points of accuracy
# where one-shot pruning lost 2.
FINAL_SHARE = 0.5


@dataclass(frozen=True)
class Plan:
    """One way to compress a model.

    Attributes:
        prune: Fraction of channels (``prune_mode="structured"`` or ``"soft"``) or weights
            (``"unstructured"``) to remove; None for no pruning.
        prune_mode: A pruning method of ``nbopt.compress.methods()["prune_mode"]``.
        prune_keep: Modules left unpruned, with everything inside them.
        prune_steps: Reach ``prune`` in this many increments, fine-tuning after each.
        lowrank: Spectral energy kept when factorising large Linear layers; None for none.
        quant: A quantization mode of ``nbopt.compress.methods()["quant"]``, or None.
        quant_keep: Modules left in float by the quantization.
        quant_backend: For ``int8``: ``"auto"``, ``"torchao"`` or ``"torch.ao"``.
        qat: Fine-tune with int8 fake quantization before quantizing (needs a fine-tune).
        distill: Fine-tune on the teacher's outputs too (knowledge distillation).

    Example:
        >>> Plan(prune=0.3, prune_keep=("fc",), quant="int8").label()
        'prune 0.3 (fc kept) + int8'
    """

    prune: float | None = None
    prune_mode: str = "structured"
    prune_keep: tuple[str, ...] = ()
    prune_steps: int = 1
    lowrank: float | None = None
    quant: str | None = None
    quant_keep: tuple[str, ...] = ()
    quant_backend: str = "auto"
    qat: bool = False
    distill: bool = False

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Plan:
        """The plan of a search trial's parameters (``{"prune": {"amount": 0.3, "keep": [...],
        "mode": "soft"}, ...}``; a study gives lists where the space had tuples)."""
        prune = params.get("prune") or {}
        lowrank = params.get("lowrank") or {}
        quant = params.get("quant") or {}
        return cls(
            prune=_rounded(prune.get("amount")),
            prune_mode=prune.get("mode", "structured"),
            prune_keep=tuple(prune.get("keep", ())),
            lowrank=_rounded(lowrank.get("energy")),
            quant=quant.get("mode"),
            quant_keep=tuple(quant.get("keep", ())),
            distill=bool(params.get("distill", False)),
        )

    @property
    def structure(self) -> Plan:
        """The part of the plan that changes the float model (what a cache of models keys on)."""
        return Plan(
            self.prune,
            self.prune_mode,
            self.prune_keep,
            self.prune_steps,
            self.lowrank,
            qat=self.qat,
            distill=self.distill,
        )

    @property
    def changes_structure(self) -> bool:
        return self.prune is not None or self.lowrank is not None

    def label(self) -> str:
        """``prune 0.3 (block.conv1 kept) + int8 (fc1 in float)``, or ``no compression``."""
        parts = []
        if self.prune is not None:
            mode = "" if self.prune_mode == "structured" else f"{self.prune_mode} "
            steps = f" in {self.prune_steps} steps" if self.prune_steps > 1 else ""
            parts.append(f"prune {mode}{self.prune:g}{steps}" + _kept(self.prune_keep, "kept"))
        if self.lowrank is not None:
            parts.append(f"low-rank {self.lowrank:g}")
        if self.distill and self.changes_structure:
            parts.append("distill")
        if self.quant is not None:
            backend = f" [{self.quant_backend}]" if self.quant_backend != "auto" else ""
            qat = " QAT" if self.qat else ""
            parts.append(self.quant + qat + backend + _kept(self.quant_keep, "in float"))
        return " + ".join(parts) or "no compression"

    def steps(
        self,
        *,
        finetune: Any = None,
        calib: Any = None,
        ignore: tuple[str, ...] = (),
        student: Any = None,
        export: str | None = None,
    ) -> list[Step]:
        """The steps that carry out the plan, in their fixed order, each with its validated
        config. ``finetune`` (a function of the model, or the built-in loop) runs after the
        steps that change the structure; ``calib`` is the calibration data of
        ``int8-static``; ``ignore`` names modules never pruned besides ``prune_keep``;
        ``student`` replaces the model first; ``export`` is the file written last.

        Raises:
            ConfigError: for an amount out of range, an unknown method, or options that do
                not go together; nothing has run.
        """
        trained = finetune is not None
        label = _finetune_label(finetune)
        self._check(trained, student)
        steps = []
        if student is not None:
            config = TRANSFER.make_config(student=student)
            steps.append(Step("transfer", f"student {type(student).__name__}", TRANSFER, config))
        steps += self._prune_steps(label, ignore)
        if self.lowrank is not None:
            backend = LOWRANK.get("svd")
            config = backend.make_config(energy=self.lowrank)
            steps.append(Step("lowrank", f"low-rank {self.lowrank:g}", backend, config))
        soft = None
        if self.prune is not None and self.prune_mode == "soft":
            soft = PRUNING.get("soft").make_config(
                amount=self.prune, ignore=(*ignore, *self.prune_keep)
            )
        if trained:
            share = FINAL_SHARE if self.prune is not None and self.prune_steps > 1 else 1.0
            config = Finetune(share=share, soft=soft, qat=self.qat, distill=self.distill)
            steps.append(Step("finetune", _finetune_step_label(label, config), None, config))
        if soft is not None:
            steps.append(Step("prune", "remove soft-pruned channels", SOFT_REMOVAL, soft))
        if self.quant is not None:
            backend = QUANTIZATION.get(self.quant)
            # QAT trained for torchao's numerics, and torch.export cannot trace torch.ao's
            # packed int8 weights: either way auto means torchao's kernels.
            to_pt2 = export is not None and Path(str(export)).suffix.lower() == ".pt2"
            kernels = self.quant_backend
            if kernels == "auto" and (self.qat or to_pt2):
                kernels = "torchao"
            if kernels == "torch.ao" and to_pt2:
                raise ConfigError(
                    "export=.pt2 cannot hold torch.ao's int8 layers (torch.export does not "
                    "trace them): use quant_backend=torchao (or auto)"
                )
            config = backend.make_config(calib=calib, skip=self.quant_keep, backend=kernels)
            steps.append(Step("quant", f"quantize {self.quant}", backend, config))
        if export is not None:
            suffix = Path(str(export)).suffix.lower()
            backend = EXPORT.get(suffix or str(export))
            config = backend.make_config(path=str(export))
            steps.append(Step("export", f"export {Path(str(export)).name}", backend, config))
        return steps

    def _check(self, trained: bool, student: Any) -> None:
        """Options that do not go together, with what to do instead."""
        if self.prune is None:
            if self.prune_keep:
                raise ConfigError("prune_ignore= is given without prune=")
            if self.prune_steps != 1:
                raise ConfigError("prune_steps= is given without prune=")
        if isinstance(self.prune_steps, bool) or not isinstance(self.prune_steps, int):
            raise ConfigError(f"prune_steps must be an int >= 1, got {self.prune_steps!r}")
        if self.prune_steps < 1:
            raise ConfigError(f"prune_steps must be an int >= 1, got {self.prune_steps!r}")
        if self.prune is not None and self.prune_steps > 1:
            if self.prune_mode == "soft":
                raise ConfigError(
                    "prune_steps= does not go with prune_mode=soft: soft pruning already "
                    "re-selects its channels throughout the fine-tune"
                )
            if not trained:
                raise ConfigError(
                    "prune_steps= needs a fine-tune between its increments: give data= (the "
                    "built-in loop) or finetune="
                )
        if self.prune is not None and self.prune_mode == "soft" and not trained:
            raise ConfigError(
                "prune_mode=soft needs a fine-tune, during which the zeroed channels keep "
                "training: give data= (the built-in loop) or finetune="
            )
        if self.qat:
            if self.quant != "int8":
                raise ConfigError(f"qat=True needs quant=int8, got quant={self.quant}")
            if not trained:
                raise ConfigError(
                    "qat=True needs a fine-tune to train with fake quantization: give data= "
                    "(the built-in loop) or finetune="
                )
        if self.quant_backend != "auto" and self.quant != "int8":
            raise ConfigError(f"quant_backend= only applies with quant=int8, got {self.quant}")
        if (self.distill or student is not None) and not trained:
            what = "student=" if student is not None else "distill="
            raise ConfigError(
                f"{what} needs a fine-tune to train with the teacher: give data= (the "
                "built-in loop) or finetune=FN with a teacher argument"
            )

    def _prune_steps(self, finetune_label: str, ignore: tuple[str, ...]) -> list[Step]:
        if self.prune is None:
            return []
        backend = PRUNING.get(self.prune_mode)
        ignored = (*ignore, *self.prune_keep)
        if self.prune_steps == 1:
            config = backend.make_config(amount=self.prune, ignore=ignored)
            label = f"prune {self.prune_mode} {self.prune:g}"
            return [Step("prune", label, backend, config)]
        steps = []
        share = (1 - FINAL_SHARE) / (self.prune_steps - 1)
        for index, amount in enumerate(increments(backend, self.prune, self.prune_steps), 1):
            config = backend.make_config(amount=amount, ignore=ignored, of_original=True)
            reached = self.prune * index / self.prune_steps
            label = f"prune {self.prune_mode} {reached:.3g} ({index}/{self.prune_steps})"
            steps.append(Step("prune", label, backend, config))
            if index < self.prune_steps:
                config = Finetune(share=share, qat=False, distill=self.distill)
                label = _finetune_step_label(
                    f"{finetune_label} ({index}/{self.prune_steps})", config
                )
                steps.append(Step("finetune", label, None, config))
        return steps


def increments(backend: Backend, amount: float, steps: int) -> list[float]:
    """The amount each of ``steps`` pruning steps reaches, so that together they remove
    ``amount`` in equal increments of the original (Torch-Pruning's linear schedule): each
    step is given the total it reaches. Unstructured pruning ranks every weight, zeros
    included, so a total is what it takes; structured pruning counts it against the widths
    the model had at its first increment (``of_original``).
    """
    return [amount * k / steps for k in range(1, steps + 1)]


@dataclass(frozen=True)
class Step:
    """A planned step: its kind (``transfer``, ``prune``, ``lowrank``, ``finetune``,
    ``quant``, ``export``), its label, and the backend and validated config that apply it
    (a fine-tune's config is a :class:`~nbopt.compress._registry.Finetune`, which the run's
    trainer carries out)."""

    kind: str
    label: str
    backend: Backend | None = None
    config: Any = None


def function_name(function: Any, default: str) -> str:
    """A function's name for labels and reports; ``default`` for a lambda."""
    name = getattr(function, "__name__", default)
    return default if name == "<lambda>" else name


def _finetune_label(finetune: Any) -> str:
    if finetune is None:
        return "finetune"
    label = getattr(finetune, "label", None)
    if isinstance(label, str):
        return label
    if not callable(finetune):
        raise ConfigError(
            f"finetune= must be a function of the model, got {type(finetune).__name__}"
        )
    return f"finetune {function_name(finetune, 'finetune')}"


def _finetune_step_label(label: str, config: Finetune) -> str:
    extras = [
        name
        for name, on in (
            ("soft pruning", config.soft is not None),
            ("distillation", config.distill),
            ("QAT", config.qat),
        )
        if on
    ]
    return f"{label} ({', '.join(extras)})" if extras else label


def _rounded(value: Any) -> float | None:
    # Hyperopt's quantized dimensions give 0.30000000000000004 for 0.3.
    return None if value is None else round(float(value), 4)


def _kept(names: tuple[str, ...], what: str) -> str:
    return f" ({', '.join(names)} {what})" if names else ""
