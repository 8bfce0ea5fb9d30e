"""nbopt's own runs of a model leave no trace on it.

Checking that ``example=`` runs, counting MACs and timing latency call a model hundreds of
times. Those calls are nbopt's, not the user's: the user's forward hooks (a function that
appends to a notebook list, say) must not fire for them, and a buffer that forward updates (a
call counter, running statistics) must read afterwards what it read before. Hooks that come
with the libraries a model is built from (torch's own ``spectral_norm``, Accelerate's device
hooks, ...) stay on: the model's output depends on them.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

# Packages whose hooks are part of how a model computes (or how nbopt measures it), not the
# user's observers.
LIBRARY_PACKAGES = ("torch", "torchao", "torch_pruning", "transformers", "accelerate", "nbopt")
_HOOK_TABLES = ("_forward_hooks", "_forward_pre_hooks")


@contextlib.contextmanager
def undisturbed(*models: Any, restore_buffers: bool = True) -> Iterator[None]:
    """Within the block, the user's forward hooks of ``models`` are suspended; after it, the
    hooks are back and (with ``restore_buffers``) every buffer holds the value it had before
    the block. A step that reshapes buffers (pruning) leaves ``restore_buffers`` off."""
    tables: list[tuple[dict[int, Any], dict[int, Any]]] = []
    buffers: list[tuple[nn.Module, str, torch.Tensor, torch.Tensor]] = []
    for model in models:
        if not isinstance(model, nn.Module):
            continue
        for module in model.modules():
            for table_name in _HOOK_TABLES:
                table = getattr(module, table_name, None)
                if not table:
                    continue
                kept = dict(table)
                for key in [key for key, hook in table.items() if not _from_library(hook)]:
                    del table[key]
                tables.append((table, kept))
            for name, tensor in module._buffers.items() if restore_buffers else ():
                if tensor is not None:
                    buffers.append((module, name, tensor, tensor.detach().clone()))
    try:
        yield
    finally:
        for table, kept in tables:
            table.clear()
            table.update(kept)
        with torch.no_grad():
            for module, name, tensor, saved in buffers:
                if module._buffers.get(name) is tensor and tensor.shape == saved.shape:
                    tensor.copy_(saved)
                else:
                    module._buffers[name] = saved


def _from_library(hook: Any) -> bool:
    """Whether ``hook`` was defined in a library of :data:`LIBRARY_PACKAGES`."""
    target = hook.func if isinstance(hook, functools.partial) else hook
    module = getattr(target, "__module__", None) or type(target).__module__ or ""
    return module.split(".")[0] in LIBRARY_PACKAGES
