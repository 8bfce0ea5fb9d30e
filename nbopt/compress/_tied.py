"""Tied parameters: one tensor held by several modules, as a language model's token embedding
and its output layer share one table (GPT-2's ``wte`` and ``lm_head``).

A step that rebuilds a parameter (Torch-Pruning's ``index_select``, ``prune.remove``) gives each
holder a new tensor of its own: the model would silently store the table twice, and training
one use would no longer train the other. :class:`Ties` records who shares what before a step
and ties them again after it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nbopt.errors import ConfigError


@dataclass(frozen=True)
class Tie:
    """One shared parameter: the tensor, and each ``(module name, attribute)`` holding it."""

    tensor: torch.Tensor
    holders: tuple[tuple[str, str], ...]


class Ties:
    """The tied parameters of ``model`` when created; :meth:`restore` ties them again."""

    def __init__(self, model: nn.Module) -> None:
        holders: dict[int, list[tuple[str, str]]] = {}
        tensors: dict[int, torch.Tensor] = {}
        for name, module in model.named_modules(remove_duplicate=False):
            for attribute, parameter in module.named_parameters(recurse=False):
                holders.setdefault(id(parameter), []).append((name, attribute))
                tensors[id(parameter)] = parameter
        self.ties = [
            Tie(tensors[key], tuple(dict.fromkeys(places)))
            for key, places in holders.items()
            if len(dict.fromkeys(places)) > 1
        ]

    def __bool__(self) -> bool:
        return bool(self.ties)

    def module_names(self) -> set[str]:
        """Names of the modules holding a tied parameter."""
        return {name for tie in self.ties for name, _ in tie.holders}

    def holder_modules(self, model: nn.Module) -> list[set[nn.Module]]:
        """For each tie, the modules holding it."""
        return [{model.get_submodule(name) for name, _ in tie.holders} for tie in self.ties]

    def describe(self) -> str:
        """``transformer.wte.weight = lm_head.weight``, for each tie."""
        return "; ".join(
            " = ".join(
                f"{name}.{attribute}" if name else attribute for name, attribute in tie.holders
            )
            for tie in self.ties
        )

    def restore(self, model: nn.Module) -> None:
        """Give every holder of a tied parameter the same tensor again: the one a step made
        (all the holders a step rebuilt must agree on it), or the original if none changed.

        A holder the step removed (a layer replaced by another) is skipped.
        """
        for tie in self.ties:
            places = [
                (module, attribute)
                for name, attribute in tie.holders
                if (module := _find(model, name)) is not None
            ]
            current = [getattr(module, attribute) for module, attribute in places]
            rebuilt = [tensor for tensor in current if tensor is not tie.tensor]
            if not rebuilt:
                continue
            source = rebuilt[0]
            if any(
                tensor.shape != source.shape or not torch.equal(tensor, source)
                for tensor in rebuilt[1:]
            ):
                raise ConfigError(
                    f"the tied parameters {self._names(tie)} were changed differently and "
                    "cannot stay tied; leave one of their layers out of this step"
                )
            for module, attribute in places:
                if getattr(module, attribute) is not source:
                    setattr(module, attribute, source)

    @staticmethod
    def _names(tie: Tie) -> str:
        return " and ".join(f"{name}.{attribute}" for name, attribute in tie.holders)


def _find(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name) if name else model
    except AttributeError:
        return None
