"""The pieces of ``optimize_auto`` that need no search: the Pareto front, the tolerance, plans
and their encoding, the order of the cheap plans, and the plan builder's reuse of work."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from nbopt.compress._finetune import Trainer
from nbopt.compress._plan import Plan
from nbopt.compress._registry import StepContext
from nbopt.compress.auto._builder import FinetuneFailed, PlanBuilder
from nbopt.compress.auto._pareto import dominates, pareto_front
from nbopt.compress.auto._search import INFEASIBLE, PlanSpace, score
from nbopt.compress.auto._tolerance import Tolerance
from nbopt.errors import ConfigError
from nbopt.tuning._algorithms import get_algorithm, vals_key
from nbopt.tuning._proposer import Proposer

points = st.lists(
    st.tuples(
        st.floats(0.01, 2.0, allow_nan=False), st.floats(0.0, 1.0, allow_nan=False) | st.just(0.5)
    ),
    max_size=30,
)


@given(points, st.sampled_from(["max", "min"]))
def test_the_front_is_exactly_the_non_dominated_points(
    cloud: list[tuple[float, float]], mode: str
) -> None:
    front = pareto_front(cloud, mode)
    for index in front:
        assert not any(dominates(other, cloud[index], mode) for other in cloud)
    for index, point in enumerate(cloud):
        if index not in front:
            # Dominated, or the duplicate of a point on the front.
            assert any(dominates(other, point, mode) for other in cloud) or point in [
                cloud[i] for i in front
            ]
    assert [cloud[i][0] for i in front] == sorted(cloud[i][0] for i in front)


def test_the_front_follows_the_metric_direction_and_skips_nan() -> None:
    cloud = [(1.0, 0.9), (0.5, 0.8), (0.5, 0.7), (0.3, math.nan), (0.2, 0.1)]
    assert pareto_front(cloud, "max") == [4, 1, 0]
    # Lower is better: (0.5, 0.7) beats (0.5, 0.8) and (1.0, 0.9).
    assert pareto_front(cloud, "min") == [4]


@pytest.mark.parametrize(
    ("tolerance", "inside", "outside"),
    [
        (Tolerance(0.9, 0.01), 0.891, 0.8909),  # relative: 1% of 0.9 below
        (Tolerance(0.9, 0.02, "absolute"), 0.88, 0.8799),
        (Tolerance(2.0, 0.1, "relative", "min"), 2.2, 2.2001),  # a loss may rise 10%
        (Tolerance(0.0, 0.5, "relative"), 0.0, -1e-9),  # relative to zero: nothing
        (Tolerance(0.9, 0.0), 0.9, 0.8999999),
    ],
)
def test_tolerance(tolerance: Tolerance, inside: float, outside: float) -> None:
    assert tolerance.within(inside) and tolerance.shortfall(inside) == 0
    assert not tolerance.within(outside) and tolerance.shortfall(outside) > 0
    assert not tolerance.within(math.nan) and tolerance.shortfall(math.nan) == 10


def test_tolerance_says_what_it_allows_and_rejects_bad_settings() -> None:
    assert Tolerance(0.95, 0.01).describe("accuracy") == (
        "accuracy >= 0.9405 (at most 1% below 0.95)"
    )
    for bad in (
        {"tolerable_loss": -0.1},
        {"loss_mode": "percent"},
        {"mode": "up"},
        {"tolerable_loss": True},
    ):
        with pytest.raises(ConfigError):
            Tolerance(**{"baseline": 1.0, "tolerable_loss": 0.01, **bad})


def test_score_puts_every_plan_outside_the_tolerance_behind_every_plan_within_it() -> None:
    assert score(1.7, True, 0.0) == 1.7
    assert score(0.1, False, 0.0) == INFEASIBLE
    assert score(0.1, False, 0.2) > score(0.1, False, 0.01) > score(5.0, True, 0.0)


def test_plans_come_from_trial_parameters_and_say_what_they_do() -> None:
    params = {
        "prune": {"amount": 0.30000000000000004, "keep": ["block.conv2"]},
        "lowrank": None,
        "quant": {"mode": "int8", "keep": ("fc1", "fc2")},
    }
    plan = Plan.from_params(params)
    assert plan == Plan(
        prune=0.3, prune_keep=("block.conv2",), quant="int8", quant_keep=("fc1", "fc2")
    )
    assert plan.label() == "prune 0.3 (block.conv2 kept) + int8 (fc1, fc2 in float)"
    assert plan.structure == Plan(prune=0.3, prune_keep=("block.conv2",))
    assert Plan.from_params({"quant": None}).label() == "no compression"


def _space(**changes: Any) -> PlanSpace:
    settings: dict[str, Any] = {
        "prune_keeps": [(), ("fc1",)],
        "lowrank": True,
        "quant_modes": ["int8", "bf16"],
        "int8_keeps": [(), ("fc1",), ("fc1", "fc2")],
    }
    return PlanSpace(**{**settings, **changes})


def test_the_encoding_of_a_cheap_plan_is_the_plan_the_engine_decodes() -> None:
    space = _space()
    proposer = Proposer(
        space, algorithm=get_algorithm("rand"), max_evals=5, seed=0, deterministic=True, mode="min"
    )
    vals = space.encode(prune=(0.3, 1), lowrank=0.95, quant=("int8", 2))
    assert Plan.from_params(proposer.params(vals)) == Plan(
        prune=0.3, prune_keep=("fc1",), lowrank=0.95, quant="int8", quant_keep=("fc1", "fc2")
    )
    assert Plan.from_params(proposer.params(space.encode(quant=("bf16", 0)))) == Plan(quant="bf16")


def _walk(space: PlanSpace, scores: dict[str, float]) -> list[str]:
    """The cheap plans the space proposes when each evaluated one scores as in ``scores``."""
    proposer = Proposer(
        space, algorithm=get_algorithm("rand"), max_evals=5, seed=0, deterministic=True, mode="min"
    )
    outcome: dict[str, float] = {}
    labels = []
    while True:
        plan = next((p for p in space.cheap_plans(outcome) if vals_key(p) not in outcome), None)
        if plan is None:
            return labels
        label = Plan.from_params(proposer.params(plan)).label()
        labels.append(label)
        outcome[vals_key(plan)] = scores.get(label, 0.9)


def test_cheap_plans_start_with_int8_and_fall_back_layer_by_layer_like_inc() -> None:
    labels = _walk(
        _space(int8_start=1),
        {
            "int8 (fc1 in float)": INFEASIBLE + 0.1,  # still outside: keep one more in float
            "int8 (fc1, fc2 in float)": 0.4,
            "prune 0.3": 0.6,
            "prune 0.5": INFEASIBLE + 1,  # too far: no heavier pruning
        },
    )
    assert labels == [
        "int8 (fc1 in float)",  # starts with the layer that breaks alone in float
        "int8 (fc1, fc2 in float)",
        "bf16",
        "prune 0.3",
        "prune 0.3 + int8 (fc1, fc2 in float)",  # the best quantization on the pruned model
        "prune 0.5",
        "prune 0.5 + int8 (fc1, fc2 in float)",
        "low-rank 0.95",
        "low-rank 0.95 + int8 (fc1, fc2 in float)",
    ]


def test_a_quantization_that_gains_nothing_is_not_combined() -> None:
    labels = _walk(_space(quant_modes=["int8"]), {"int8": 1.05, "prune 0.3": INFEASIBLE + 1})
    assert labels == ["int8", "prune 0.3", "low-rank 0.95"]


def test_a_space_with_nothing_to_search_is_refused() -> None:
    with pytest.raises(ConfigError, match="nothing to search"):
        PlanSpace(prune_keeps=None, lowrank=False, quant_modes=[])


def test_the_builder_shares_a_pruned_fine_tuned_model_between_quantizations(
    mlp: nn.Module, state_of, same_state, quantized
) -> None:
    saved = state_of(mlp)
    tuned: list[int] = []
    builder = PlanBuilder(
        mlp,
        StepContext(torch.randn(4, 64), torch.device("cpu")),
        trainer=Trainer(function=lambda model: tuned.append(model.fc1.out_features)),
    )
    pruned, reused = builder.build(Plan(prune=0.5))
    int8, reused_again = builder.build(Plan(prune=0.5, quant="int8", quant_keep=("fc1",)))
    assert (reused, reused_again) == (False, True)
    assert tuned == [64]  # fine-tuned once, for both plans
    assert isinstance(pruned.fc2, nn.Linear)  # the cached float model was not quantized
    assert not quantized(int8.fc1) and quantized(int8.fc2)
    assert builder.build(Plan(quant="int8"))[0].fc1.out_features == 128  # from the original
    assert same_state(mlp, saved)


def test_the_finetune_budget_stops_the_function_at_the_reported_step(mlp: nn.Module) -> None:
    import nbopt

    reached: list[int] = []

    def finetune(model: nn.Module) -> None:
        for step in range(100):
            reached.append(step)
            nbopt.report(step, 1.0 / (step + 1))

    seen: list[int] = []
    builder = PlanBuilder(
        mlp,
        StepContext(torch.randn(4, 64), torch.device("cpu")),
        trainer=Trainer(function=finetune, steps=7),
        on_report=lambda step, value, metrics: seen.append(step),
    )
    model, _ = builder.build(Plan(prune=0.25))
    assert reached[-1] == 7 and seen == list(range(8))
    assert not model.training


def test_an_error_in_finetune_is_told_apart_from_a_failing_plan(mlp: nn.Module) -> None:
    def finetune(model: nn.Module) -> None:
        raise KeyError("lr")

    builder = PlanBuilder(
        mlp, StepContext(torch.randn(4, 64), torch.device("cpu")), trainer=Trainer(finetune)
    )
    with pytest.raises(FinetuneFailed) as raised:
        builder.build(Plan(prune=0.5))
    assert isinstance(raised.value.error, KeyError)


def test_the_choice_prefers_the_simpler_plan_within_a_latency_tie() -> None:
    """A plan with an extra step wins only if it is clearly faster (latency is noisy); for an
    exact target (size, MACs) the lowest ratio wins outright."""
    from nbopt.compress._plan import Plan
    from nbopt.compress.auto._result import PlanTrial
    from nbopt.compress.auto._run import _contenders, _simplest_of_the_best

    pruned = PlanTrial(1, Plan(prune=0.5), ratio=0.46, metric=0.98, within=True)
    pruned_cast = PlanTrial(2, Plan(prune=0.5, quant="bf16"), ratio=0.44, metric=0.98, within=True)
    much_faster = PlanTrial(3, Plan(prune=0.7, quant="int8"), ratio=0.30, metric=0.98, within=True)
    assert _simplest_of_the_best([pruned_cast, pruned], tie=0.10) is pruned
    assert _simplest_of_the_best([pruned_cast, pruned], tie=0.0) is pruned_cast
    assert _simplest_of_the_best([pruned, pruned_cast, much_faster], tie=0.10) is much_faster
    assert _simplest_of_the_best([], tie=0.10) is None
    # Plans within tolerance measured close to the best are timed again with the front.
    far = PlanTrial(4, Plan(quant="int8"), ratio=0.9, metric=0.99, within=True)
    outside = PlanTrial(5, Plan(prune=0.9), ratio=0.1, metric=0.5, within=False)
    chosen = _contenders([pruned_cast], [pruned, pruned_cast, far, outside])
    assert {p.number for p in chosen} == {1, 2}
