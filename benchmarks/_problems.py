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

Problems no search of nbopt was tuned against (multimodal, higher-dimensional, log-scaled,
mixed), with optima away from the centre of their boxes:

- ``ackley10``: Ackley in 10 dimensions on [-5, 10]^10; minimum 0 at the origin.
- ``levy10``: Levy in 10 dimensions on [-10, 10]^10; minimum 0 at (1, ..., 1).
- ``rastrigin6``: Rastrigin in 6 dimensions on [-4, 6]^6; minimum 0 at the origin, a local
  minimum at every integer point.
- ``styblinski20``: Styblinski-Tang in 20 dimensions on [-5, 5]^20; minimum -39.166166 per
  dimension at -2.903534, a local one near 2.7468 in each.
- ``hartmann6_20d``: Hartmann6 of the first 6 of 20 parameters (14 do nothing).
- ``logscale``: five log-uniform parameters spanning 4 to 7 decades (a learning rate,
  1 - momentum, weight decay, epsilon, a clipping norm) whose optima depend on each other in
  log space, and a loss that grows exponentially once the effective step lr / (1 - momentum)
  is too large, as training diverges. Minimum 0.
- ``mixedint``: 8 parameters, integer (layers 1-12, warm-up 0-20), stepped (units 32-1024),
  ordinal (heads 1-16), categorical (activation, normalisation), continuous (dropout,
  log-scaled learning rate): the best depth depends on the activation, the best learning rate
  on the normalisation, the best width on the depth and the best dropout on the width.
  Minimum 0 at layers=8, units=512, heads=4, act="gelu", norm="layer", dropout=0.2, lr=1e-3,
  warmup=8.
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


def _vector(params: dict[str, Any], dims: int) -> np.ndarray:
    return np.array([params[f"x{i}"] for i in range(dims)])


def ackley(params: dict[str, Any], dims: int = 10) -> float:
    x = _vector(params, dims)
    spread = -20.0 * math.exp(-0.2 * math.sqrt(float(np.mean(x**2))))
    return spread - math.exp(float(np.mean(np.cos(2 * math.pi * x)))) + 20.0 + math.e


def levy(params: dict[str, Any], dims: int = 10) -> float:
    w = 1.0 + (_vector(params, dims) - 1.0) / 4.0
    inner = (w[:-1] - 1) ** 2 * (1 + 10 * np.sin(math.pi * w[:-1] + 1) ** 2)
    last = (w[-1] - 1) ** 2 * (1 + np.sin(2 * math.pi * w[-1]) ** 2)
    return float(np.sin(math.pi * w[0]) ** 2 + inner.sum() + last)


def rastrigin(params: dict[str, Any], dims: int = 6) -> float:
    x = _vector(params, dims)
    return float(10 * dims + np.sum(x**2 - 10 * np.cos(2 * math.pi * x)))


def styblinski_tang(params: dict[str, Any], dims: int = 20) -> float:
    x = _vector(params, dims)
    return float(0.5 * np.sum(x**4 - 16 * x**2 + 5 * x))


def logscale(params: dict[str, Any]) -> float:
    lr, momentum = math.log10(params["lr"]), math.log10(params["one_minus_momentum"])
    decay, eps = math.log10(params["weight_decay"]), math.log10(params["eps"])
    step = lr - momentum  # log10 of the effective step lr / (1 - momentum)
    loss = 0.5 * (step + 2) ** 2 + 0.3 * (momentum + 1.5) ** 2 + 0.2 * (decay - lr + 2) ** 2
    loss += 0.02 * (eps + 8) ** 2 + 0.1 * math.log10(params["clip"]) ** 2
    if step > -0.5:  # diverging: the loss explodes
        loss += math.expm1(3 * (step + 0.5))
    return loss


_BEST_LR = {"batch": -2.5, "layer": -3.0, "none": -3.8}
_BEST_DEPTH = {"relu": 4, "gelu": 8, "silu": 6, "tanh": 3}
_ACT_COST = {"relu": 0.15, "gelu": 0.0, "silu": 0.05, "tanh": 0.4}
_NORM_COST = {"batch": 0.1, "layer": 0.0, "none": 0.3}


def mixedint(params: dict[str, Any]) -> float:
    act, norm, layers = params["act"], params["norm"], params["layers"]
    width = math.log2(params["units"] / 32)
    return (
        0.5 * (math.log10(params["lr"]) - _BEST_LR[norm]) ** 2
        + 0.05 * (layers - _BEST_DEPTH[act]) ** 2
        + 0.3 * (width - 1 - 0.375 * layers) ** 2
        + 0.1 * (math.log2(params["heads"]) - 2) ** 2
        + 4.0 * (params["dropout"] - 0.05 * width) ** 2
        + 0.005 * (params["warmup"] - 8) ** 2
        + _ACT_COST[act]
        + _NORM_COST[norm]
    )


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


def _box_optuna(dims: int, low: float, high: float) -> Callable[[Any], dict[str, Any]]:
    def params(trial: Any) -> dict[str, Any]:
        return {f"x{i}": trial.suggest_float(f"x{i}", low, high) for i in range(dims)}

    return params


def _logscale_optuna(trial: Any) -> dict[str, Any]:
    return {
        "lr": trial.suggest_float("lr", 1e-6, 1.0, log=True),
        "one_minus_momentum": trial.suggest_float("one_minus_momentum", 1e-4, 0.5, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-7, 1e-1, log=True),
        "eps": trial.suggest_float("eps", 1e-10, 1e-3, log=True),
        "clip": trial.suggest_float("clip", 1e-2, 1e2, log=True),
    }


def _mixedint_optuna(trial: Any) -> dict[str, Any]:
    return {
        "layers": trial.suggest_int("layers", 1, 12),
        "units": trial.suggest_int("units", 32, 1024, step=32),
        "heads": trial.suggest_categorical("heads", [1, 2, 4, 8, 16]),
        "act": trial.suggest_categorical("act", ["relu", "gelu", "silu", "tanh"]),
        "norm": trial.suggest_categorical("norm", ["batch", "layer", "none"]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.6),
        "lr": trial.suggest_float("lr", 1e-5, 1e-1, log=True),
        "warmup": trial.suggest_int("warmup", 0, 20),
    }


def _box(
    name: str,
    objective: Callable[..., float],
    dims: int,
    low: float,
    high: float,
    optimum: float,
    threshold: float,
) -> Problem:
    """A problem of ``dims`` uniform parameters x0, x1, ... on [low, high]."""
    return Problem(
        name,
        {f"x{i}": nbopt.uniform(low, high) for i in range(dims)},
        lambda params: objective(params, dims),
        _box_optuna(dims, low, high),
        optimum=optimum,
        threshold=threshold,
    )


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
    "ackley10": _box("ackley10", ackley, 10, -5.0, 10.0, optimum=0.0, threshold=1.0),
    "levy10": _box("levy10", levy, 10, -10.0, 10.0, optimum=0.0, threshold=1.0),
    "rastrigin6": _box("rastrigin6", rastrigin, 6, -4.0, 6.0, optimum=0.0, threshold=5.0),
    "styblinski20": _box(
        "styblinski20", styblinski_tang, 20, -5.0, 5.0, optimum=-39.166166 * 20, threshold=40.0
    ),
    "hartmann6_20d": Problem(
        "hartmann6_20d",
        {f"x{i}": nbopt.uniform(0, 1) for i in range(20)},
        hartmann6,
        _box_optuna(20, 0.0, 1.0),
        optimum=-3.32237,
        threshold=0.1,
    ),
    "logscale": Problem(
        "logscale",
        {
            "lr": nbopt.loguniform(1e-6, 1.0),
            "one_minus_momentum": nbopt.loguniform(1e-4, 0.5),
            "weight_decay": nbopt.loguniform(1e-7, 1e-1),
            "eps": nbopt.loguniform(1e-10, 1e-3),
            "clip": nbopt.loguniform(1e-2, 1e2),
        },
        logscale,
        _logscale_optuna,
        optimum=0.0,
        threshold=0.05,
    ),
    "mixedint": Problem(
        "mixedint",
        {
            "layers": nbopt.randint(1, 13),
            "units": nbopt.quniform(32, 1024, 32),
            "heads": nbopt.choice(1, 2, 4, 8, 16),
            "act": nbopt.choice("relu", "gelu", "silu", "tanh"),
            "norm": nbopt.choice("batch", "layer", "none"),
            "dropout": nbopt.uniform(0.0, 0.6),
            "lr": nbopt.loguniform(1e-5, 1e-1),
            "warmup": nbopt.randint(0, 21),
        },
        mixedint,
        _mixedint_optuna,
        optimum=0.0,
        threshold=0.05,
    ),
}
