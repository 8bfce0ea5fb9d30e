"""How far the user's metric may move: ``tolerable_loss`` against the baseline."""

from __future__ import annotations

import math
from dataclasses import dataclass

from nbopt.errors import ConfigError

LOSS_MODES = ("relative", "absolute")
METRIC_MODES = ("max", "min")
# The shortfall of a plan outside the tolerance is capped: a destroyed model (NaN, or a metric
# off by orders of magnitude) is no more informative than a merely broken one.
MAX_SHORTFALL = 10.0


@dataclass(frozen=True)
class Tolerance:
    """The metric's baseline and how much worse a compressed model may be.

    Args:
        baseline: The original model's metric.
        tolerable_loss: How much worse it may get: a fraction of ``|baseline|``
            (``relative``) or an amount in the metric's units (``absolute``).
        loss_mode: ``"relative"`` or ``"absolute"``.
        mode: ``"max"`` when higher is better (accuracy), ``"min"`` when lower is (a loss).
    """

    baseline: float
    tolerable_loss: float
    loss_mode: str = "relative"
    mode: str = "max"

    def __post_init__(self) -> None:
        if self.loss_mode not in LOSS_MODES:
            raise ConfigError(f"loss_mode must be relative or absolute, got {self.loss_mode!r}")
        if self.mode not in METRIC_MODES:
            raise ConfigError(f"mode must be max or min, got {self.mode!r}")
        value = self.tolerable_loss
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ConfigError(f"tolerable_loss must be a number >= 0, got {value!r}")
        if not math.isfinite(self.baseline):
            raise ConfigError(f"evaluate= returned {self.baseline} for the original model")

    @property
    def allowance(self) -> float:
        """How much worse than the baseline a metric may be, in the metric's units."""
        if self.loss_mode == "absolute":
            return self.tolerable_loss
        return self.tolerable_loss * abs(self.baseline)

    @property
    def allowed(self) -> float:
        """The worst metric still within the tolerance."""
        sign = 1.0 if self.mode == "max" else -1.0
        return self.baseline - sign * self.allowance

    def loss(self, metric: float) -> float:
        """How much worse than the baseline ``metric`` is (negative: better); inf for NaN."""
        if math.isnan(metric):
            return math.inf
        return (self.baseline - metric) if self.mode == "max" else (metric - self.baseline)

    def within(self, metric: float) -> bool:
        # The allowance is computed in floating point: a metric equal to it up to rounding is in.
        slack = 1e-12 * max(1.0, abs(self.baseline))
        return self.loss(metric) <= self.allowance + slack

    def shortfall(self, metric: float) -> float:
        """How far past the tolerance ``metric`` is, in units of ``|baseline|`` (of 1 for a zero
        baseline), capped at ``MAX_SHORTFALL``; 0 within the tolerance."""
        if self.within(metric):
            return 0.0
        excess = self.loss(metric) - self.allowance
        scale = abs(self.baseline) or 1.0
        return min(max(excess / scale, 0.0), MAX_SHORTFALL)

    def describe(self, metric_name: str) -> str:
        """``accuracy >= 0.9651 (at most 1% below 0.9749)``."""
        relation = ">=" if self.mode == "max" else "<="
        direction = "below" if self.mode == "max" else "above"
        if self.loss_mode == "absolute":
            amount = f"{self.tolerable_loss:.4g}"
        else:
            amount = f"{100 * self.tolerable_loss:.4g}%"
        return (
            f"{metric_name} {relation} {self.allowed:.4g} "
            f"(at most {amount} {direction} {self.baseline:.4g})"
        )
