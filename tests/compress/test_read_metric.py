"""What ``eval=`` returns must be a finite number: NaN or inf cannot be compared."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nbopt.compress._measure import read_metric
from nbopt.errors import ConfigError


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, -math.inf, torch.tensor(math.nan), np.float32("inf")]
)
def test_a_metric_that_is_not_finite_is_one_clear_error(value: object) -> None:
    with pytest.raises(ConfigError, match=r"evaluate= returned (-?inf|nan), not a finite number"):
        read_metric(value)


def test_optimize_stops_on_a_nan_metric_before_touching_the_model() -> None:
    import nbopt

    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    with pytest.raises(ConfigError, match="not a finite number"):
        nbopt.optimize(
            model,
            prune=0.5,
            example=torch.randn(2, 4),
            evaluate=lambda m: math.nan,
            progress="none",
        )
    after = model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
