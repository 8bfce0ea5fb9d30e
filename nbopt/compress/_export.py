"""Export, the last step: write the model to a file another runtime loads, load it back, and
check that it computes what the model does on the example.

``.pt2``: ``torch.export`` (an ``ExportedProgram``, loaded with ``torch.export.load``), with
the batch dimension left free. ``.onnx``: torch's ONNX exporter (``dynamo=True``), checked
with ONNX Runtime; both come with the ``onnx`` extra.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils import _pytree as pytree

from nbopt._imports import optional_import
from nbopt.compress._guard import guarded_step
from nbopt.compress._inputs import batch_dynamic_shapes, call, export_arguments
from nbopt.compress._registry import Export, StepContext, StepOutcome
from nbopt.compress._undisturbed import undisturbed
from nbopt.errors import ConfigError

# The loaded file's outputs may differ from the model's by this much, relative to the
# largest output (kernels fused or ordered differently round differently).
RELATIVE_TOLERANCE = 1e-3
_ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")


def check_export(model: nn.Module, config: Export, context: StepContext) -> None:
    """Before any work: an example to export with, and a file path that can be written."""
    if context.example is None:
        raise ConfigError("export= needs example=: the input the model is exported and checked on")
    path = Path(config.path)
    if path.is_dir():
        raise ConfigError(f"export=: {config.path} is a folder; give a file name ending .pt2")
    if path.parent != Path() and path.parent.exists() and not path.parent.is_dir():
        raise ConfigError(f"export=: {path.parent} is not a folder")


def check_onnx(model: nn.Module, config: Export, context: StepContext) -> None:
    check_export(model, config, context)
    for package in _ONNX_PACKAGES:
        optional_import(package, "onnx", "export=*.onnx")


@guarded_step("export=.pt2", "export before quantizing (no quant=), or to .onnx")
def export_program(model: nn.Module, config: Export, context: StepContext) -> StepOutcome:
    """``torch.export`` the model, save it, load it back and compare."""
    path = _prepared(config.path)
    args, kwargs = export_arguments(context.example)
    program, notes = _exported(model, args, kwargs)
    torch.export.save(program, path)
    loaded = torch.export.load(path).module()
    difference = _difference(model, lambda inputs: call(loaded, inputs), context.example)
    return _outcome(model, path, difference, notes)


@guarded_step("export=.onnx", "export to .pt2, or before quantizing (no quant=)")
def export_onnx(model: nn.Module, config: Export, context: StepContext) -> StepOutcome:
    """Export with ``torch.onnx.export(dynamo=True)``, save, run it with ONNX Runtime."""
    import onnxruntime

    path = _prepared(config.path)
    args, kwargs = export_arguments(context.example)
    with undisturbed(model), torch.no_grad(), _quiet_onnx():
        torch.onnx.export(
            model,
            args,
            str(path),
            kwargs=kwargs or None,
            dynamo=True,
            dynamic_shapes=batch_dynamic_shapes(args, kwargs),
            verbose=False,
        )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [item.name for item in session.get_inputs()]

    def run(inputs: Any) -> Any:
        leaves = [t for t in pytree.tree_leaves(export_arguments(inputs)) if torch.is_tensor(t)]
        feed = {name: t.detach().cpu().numpy() for name, t in zip(names, leaves, strict=False)}
        return [torch.from_numpy(array) for array in session.run(None, feed)]

    difference = _difference(model, run, context.example)
    return _outcome(model, path, difference, [])


@contextlib.contextmanager
def _quiet_onnx() -> Iterator[None]:
    """The exporter's log lines ("torchvision is not installed. Skipping torchvision::nms")
    and warnings, which say nothing about the user's model, silenced for the block."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _prepared(path: str) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _exported(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The exported program, with a free batch dimension where export allows it."""
    with undisturbed(model), torch.no_grad():
        try:
            dynamic = batch_dynamic_shapes(args, kwargs)
            return torch.export.export(model, args, kwargs, dynamic_shapes=dynamic), []
        except Exception:
            program = torch.export.export(model, args, kwargs)
    return program, [
        "the exported program takes only the example's shapes: export could not leave the "
        "batch dimension free for this model"
    ]


def _difference(model: nn.Module, loaded: Any, example: Any) -> float:
    """The largest difference between the model's outputs and the loaded file's, relative to
    the largest output; ConfigError beyond :data:`RELATIVE_TOLERANCE`."""
    with undisturbed(model), torch.no_grad():
        expected = [t for t in pytree.tree_leaves(call(model, example)) if torch.is_tensor(t)]
    got = [t for t in pytree.tree_leaves(loaded(example)) if torch.is_tensor(t)]
    if len(got) < len(expected) or any(
        tuple(a.shape) != tuple(b.shape) for a, b in zip(expected, got, strict=False)
    ):
        raise ConfigError(
            "export=: the file, loaded back, does not return outputs of the model's shapes"
        )
    scale = max((float(t.abs().max()) for t in expected if t.numel()), default=0.0) or 1.0
    worst = max(
        (
            float((a.float() - b.float().to(a.device)).abs().max()) / scale
            for a, b in zip(expected, got, strict=False)
            if a.numel() and a.is_floating_point()
        ),
        default=0.0,
    )
    if not math.isfinite(worst) or worst > RELATIVE_TOLERANCE:
        raise ConfigError(
            f"export=: the file, loaded back, computes outputs {worst:.2g} away from the "
            "model's (relative to its largest output); the file is kept, but do not use it"
        )
    return worst


def _outcome(model: nn.Module, path: Path, difference: float, notes: list[str]) -> StepOutcome:
    size = path.stat().st_size
    return StepOutcome(
        model,
        f"wrote {path} ({_megabytes(size)}); loaded back, its outputs match the model's "
        f"within {difference:.1g} of their scale",
        notes=notes,
        info={"path": str(path), "file_bytes": size, "difference": difference},
    )


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.3g} MB" if size >= 1e5 else f"{size / 1e3:.3g} kB"
