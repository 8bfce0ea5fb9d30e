"""The model zoo for the tests: the architectures users bring, tiny, with seeded random weights.

The models themselves are defined once, in ``benchmarks/_zoo.py`` (the benchmark scripts stay
independent of the test tree; the tests reach it through pytest's ``pythonpath``). This module
adds what the tests need: each step-level capability as ``optimize`` options, which pairs are
slow, and fresh copies of each model built once per session.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from typing import Any

import pytest
from _zoo import BUILDERS, ZooModel, build, call, primary

__all__ = [
    "CAPABILITIES",
    "MODELS",
    "ZooModel",
    "call",
    "capability_params",
    "fresh",
    "options_for",
    "primary",
]

MODELS = tuple(BUILDERS)

# Every step-level capability of ``optimize``, as its options.
CAPABILITIES: dict[str, dict[str, Any]] = {
    "prune-structured": {"prune": 0.5},
    "prune-unstructured": {"prune": 0.5, "prune_mode": "unstructured"},
    "lowrank": {"lowrank": 0.9},
    "int8": {"quant": "int8"},
    "int8-static": {"quant": "int8-static"},
    "fp16": {"quant": "fp16"},
    "bf16": {"quant": "bf16"},
}

# Pairs taking several seconds on two cores (exporting and calibrating the convolutional
# networks, pruning the largest graphs).
_SLOW = {
    ("resnet18", "int8-static"),
    ("mobilenet_v3", "int8-static"),
    ("mobilenet_v3", "prune-structured"),
    ("vit", "int8-static"),
    ("bert", "int8-static"),
    ("gpt2", "int8-static"),
    ("lstm2_bidirectional", "int8-static"),
    ("gru", "int8-static"),
}


@functools.cache
def _built(name: str) -> ZooModel:
    return build(name, "test")


def fresh(name: str) -> ZooModel:
    """The zoo's ``name``, test-sized, with its own copy of the model (the rest is shared)."""
    entry = _built(name)
    return dataclasses.replace(entry, model=copy.deepcopy(entry.model))


def options_for(entry: ZooModel, capability: str) -> dict[str, Any]:
    """``optimize`` options running ``capability`` on ``entry``."""
    options = dict(CAPABILITIES[capability])
    if capability == "int8-static":
        options["calib"] = entry.calib
    return options


def capability_params() -> list[Any]:
    """``pytest.param(model, capability)`` for every pair, the slow ones marked."""
    return [
        pytest.param(
            name,
            capability,
            id=f"{name}-{capability}",
            marks=[pytest.mark.slow] if (name, capability) in _SLOW else [],
        )
        for name in MODELS
        for capability in CAPABILITIES
    ]
