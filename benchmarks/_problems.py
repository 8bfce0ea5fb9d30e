"""The problems of ``bench_search.py``: one space, three ways to write it, and the objective.

Every problem is an objective of a params dict, an nbopt space (which nbopt and, converted with
``nbopt.space.to_hyperopt``, raw Hyperopt search), and the same space written as an Optuna
define-by-run function, so that every framework sees exactly the same parameters and values.

- ``branin``: Branin on [-5, 10] x [0, 15]; minimum 0.397887 (three global minima).
- ``hartmann6``: Hartmann6 on [0, 1]^6; minimum -3.32237 (a local one at -3.2032).
- ``mixed``: a made-up function of a continuous, a log-scaled, a stepped (``quniform``) and an
  integer (``randint``) parameter, a categorical one and a nested choice with a conditional
  parameter in each branch. Minimum 0, reached only at x=0.6, lr=1e-3, units=128, layers=4,
  act="gelu", opt={"name": "adam", "beta": 0.9}; lr and units interact.
- ``discrete``: 160 configurations (randint, quniform, two choices), minimum 0 at depth=3,
  width=128, lr_exp=-3, norm="layer", next best 0.05: repeats are likely here.
- ``mlp``: the digits MLP of ``_digits.py`` (learning rate, width, depth, weight decay, batch
  size, dropout), 4 epochs, fixed training seed; the value is the validation error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import nbopt


@dataclass(frozen=True)
class Problem:
    name: str
    space: dict[str, Any]
    objective: Callable[[dict[str, Any]], float]
    optuna_params: Callable[[Any], dict[str, Any]]
    optimum: float | None  # None: unknown (the MLP), the table then shows best values
    threshold: float  # regret (or value, when optimum is None) counted as "reached"


def branin(params: dict[str, Any]) -> float:
    x1, x2 = params["x1"], params["x2"]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_H_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_H_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)


def hartmann6(params: dict[str, Any]) -> float:
    x = np.array([params[f"x{i}"] for i in range(6)])
    return float(-(_H_ALPHA * np.exp(-(_H_A * (x - _H_P) ** 2).sum(axis=1))).sum())


_ACTIVATION_COST = {"relu": 0.2, "tanh": 0.5, "gelu": 0.0}


def mixed(params: dict[str, Any]) -> float:
    lr_offset = math.log10(params["lr"]) + 3
    width_offset = math.log2(params["units"] / 128)
    opt = params["opt"]
    if opt["name"] == "sgd":
        opt_cost = 0.3 + (opt["momentum"] - 0.9) ** 2
    else:
        opt_cost = 4 * (opt["beta"] - 0.9) ** 2
    return (
        (params["x"] - 0.6) ** 2
        + (lr_offset - 0.5 * width_offset) ** 2
        + 0.5 * width_offset**2
        + 0.1 * (params["layers"] - 4) ** 2
        + _ACTIVATION_COST[params["act"]]
        + opt_cost
    )


def discrete(params: dict[str, Any]) -> float:
    depth_offset = params["depth"] - 3
    width_offset = math.log2(params["width"] / 128)
    return (
        0.15 * depth_offset**2
        + 0.3 * (width_offset + 0.5 * depth_offset) ** 2
        + 0.2 * (params["lr_exp"] + 3 - 0.5 * width_offset) ** 2
        + (0.0 if params["norm"] == "layer" else 0.05)
    )


def mlp(params: dict[str, Any]) -> float:
    from _digits import train_mlp

    return train_mlp(epochs=4, seed=0, **params)


def _branin_optuna(trial: Any) -> dict[str, Any]:
    return {"x1": trial.suggest_float("x1", -5, 10), "x2": trial.suggest_float("x2", 0, 15)}


def _hartmann6_optuna(trial: Any) -> dict[str, Any]:
    return {f"x{i}": trial.suggest_float(f"x{i}", 0, 1) for i in range(6)}


def _mixed_optuna(trial: Any) -> dict[str, Any]:
    params = {
        "x": trial.suggest_float("x", -2, 2),
        "lr": trial.suggest_float("lr", 1e-5, 1.0, log=True),
        "units": trial.suggest_int("units", 16, 512, step=16),
        "layers": trial.suggest_int("layers", 1, 8),
        "act": trial.suggest_categorical("act", ["relu", "tanh", "gelu"]),
    }
    name = trial.suggest_categorical("opt", ["sgd", "adam"])
    if name == "sgd":
        params["opt"] = {"name": name, "momentum": trial.suggest_float("momentum", 0, 1)}
    else:
        params["opt"] = {"name": name, "beta": trial.suggest_float("beta", 0.5, 1.0)}
    return params


def _discrete_optuna(trial: Any) -> dict[str, Any]:
    return {
        "depth": trial.suggest_int("depth", 1, 4),
        "width": trial.suggest_categorical("width", [32, 64, 128, 256]),
        "lr_exp": trial.suggest_int("lr_exp", -5, -1),
        "norm": trial.suggest_categorical("norm", ["layer", "batch"]),
    }


def _mlp_optuna(trial: Any) -> dict[str, Any]:
    return {
        "lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True),
        "width": trial.suggest_int("width", 16, 256, step=16),
        "depth": trial.suggest_int("depth", 1, 3),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [16, 32, 64, 128, 256]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
    }


PROBLEMS: dict[str, Problem] = {
    "branin": Problem(
        "branin",
        {"x1": nbopt.uniform(-5, 10), "x2": nbopt.uniform(0, 15)},
        branin,
        _branin_optuna,
        optimum=0.397887,
        threshold=0.05,
    ),
    "hartmann6": Problem(
        "hartmann6",
        {f"x{i}": nbopt.uniform(0, 1) for i in range(6)},
        hartmann6,
        _hartmann6_optuna,
        optimum=-3.32237,
        threshold=0.1,
    ),
    "mixed": Problem(
        "mixed",
        {
            "x": nbopt.uniform(-2, 2),
            "lr": nbopt.loguniform(1e-5, 1.0),
            "units": nbopt.quniform(16, 512, 16),
            "layers": nbopt.randint(1, 9),
            "act": nbopt.choice("relu", "tanh", "gelu"),
            "opt": nbopt.choice(
                {"name": "sgd", "momentum": nbopt.uniform(0, 1)},
                {"name": "adam", "beta": nbopt.uniform(0.5, 1.0)},
            ),
        },
        mixed,
        _mixed_optuna,
        optimum=0.0,
        threshold=0.1,
    ),
    "discrete": Problem(
        "discrete",
        {
            "depth": nbopt.randint(1, 5),
            "width": nbopt.choice(32, 64, 128, 256),
            "lr_exp": nbopt.quniform(-5, -1, 1),
            "norm": nbopt.choice("layer", "batch"),
        },
        discrete,
        _discrete_optuna,
        optimum=0.0,
        threshold=1e-9,
    ),
    "mlp": Problem(
        "mlp",
        {
            "lr": nbopt.loguniform(1e-4, 1e-1),
            "width": nbopt.quniform(16, 256, 16),
            "depth": nbopt.randint(1, 4),
            "weight_decay": nbopt.loguniform(1e-6, 1e-1),
            "batch_size": nbopt.choice(16, 32, 64, 128, 256),
            "dropout": nbopt.uniform(0.0, 0.5),
        },
        mlp,
        _mlp_optuna,
        optimum=None,
        threshold=0.025,
    ),
}
