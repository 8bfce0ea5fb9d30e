"""The what-if explorer: real ipywidgets over a real search, and its text form."""

from __future__ import annotations

import ipywidgets as widgets
import pytest

import nbopt
from nbopt.tuning import TuneResult
from nbopt.ui import format as fmt

SPACE = {
    "lr": nbopt.loguniform(1e-4, 1e-1),
    "width": nbopt.quniform(16, 128, 16),
    "optim": nbopt.choice({"name": "sgd", "momentum": nbopt.uniform(0.0, 0.9)}, {"name": "adam"}),
}
CALLS: list[dict] = []


def loss(lr: float, width: int, optim: dict) -> float:
    import math

    CALLS.append({"lr": lr, "width": width, "optim": optim})
    return (math.log10(lr) + 2.0) ** 2 + width / 128 + optim.get("momentum", 0.4)


@pytest.fixture(scope="module")
def result() -> TuneResult:
    return nbopt.tune(loss, SPACE, max_evals=14, seed=0, progress="none", logdir=None)


def test_one_control_per_parameter_set_to_the_best_trial(result) -> None:
    explorer = result.whatif().widget()
    controls = explorer.controls
    assert isinstance(controls["lr"], widgets.FloatLogSlider)
    assert isinstance(controls["width"], widgets.IntSlider)
    assert controls["width"].step == 16
    assert isinstance(controls["optim"], widgets.Dropdown)
    assert [text for text, _ in controls["optim"].options] == ["{name='sgd'}", "{name='adam'}"]
    assert isinstance(controls["optim[0].momentum"], widgets.FloatSlider)
    best = result.best_trial
    assert controls["optim"].value == best.vals["optim"]
    assert controls["width"].value == best.params["width"]
    mean, sd = result.predict(best.params)
    assert f"<b>{fmt.number(mean)}</b> ± {fmt.number(sd, 2)}" in explorer.prediction.value
    assert bytes(explorer.plot.value).startswith(b"\x89PNG")
    assert explorer.box.children[-1] is explorer.plot


def test_moving_a_control_predicts_again_and_follows_the_choices(result) -> None:
    explorer = result.whatif().widget()
    explorer.controls["optim"].value = 0
    assert not explorer.controls["optim[0].momentum"].disabled
    explorer.controls["optim"].value = 1
    assert explorer.controls["optim[0].momentum"].disabled
    explorer.controls["lr"].value = 1e-4
    explorer.controls["width"].value = 128
    adam = {"lr": 1e-4, "width": 128, "optim": {"name": "adam"}}
    mean, sd = result.predict(adam)
    assert f"<b>{fmt.number(mean)}</b> ± {fmt.number(sd, 2)}" in explorer.prediction.value
    assert explorer.predicted == pytest.approx((mean, sd))


def test_the_button_runs_the_setting_as_one_more_trial() -> None:
    result = nbopt.tune(loss, SPACE, max_evals=8, seed=3, progress="none", logdir=None)
    explorer = result.whatif().widget()
    assert not explorer.run.disabled
    explorer.controls["optim"].value = 1
    explorer.controls["width"].value = 32
    explorer.controls["lr"].value = 1e-2
    CALLS.clear()
    explorer.run.click()
    assert len(CALLS) == 1
    assert CALLS[0]["optim"] == {"name": "adam"} and CALLS[0]["width"] == 32
    assert CALLS[0]["lr"] == pytest.approx(1e-2)
    trial = result.trials[-1]
    assert trial.number == 8 and trial.value == pytest.approx(0.65)
    assert f"trial 8: {fmt.number(trial.value)}" in explorer.status.value
    assert "model of 9 trials" in explorer.prediction.value


def test_without_the_objective_the_button_is_off(result) -> None:
    copy = TuneResult(result.trials, result.metric, result.mode, "done", space=SPACE)
    explorer = copy.whatif().widget()
    assert explorer.run.disabled
    assert "not available" in explorer.run.tooltip


def test_outside_a_notebook_the_explorer_is_text(result) -> None:
    explorer = result.whatif()
    assert explorer._repr_mimebundle_() == {}
    text = repr(explorer)
    best = result.best_trial
    assert f"best trial {best.number}: measured {fmt.number(best.value)}" in text
    for label in ("lr", "width", "optim", "optim[0].momentum"):
        assert f"\n  {label}: " in text
    assert "{name='adam'}: " in text
    assert "result.evaluate(params) runs one as a new trial\n" not in text


def two_metrics(lr: float, width: int, optim: dict) -> dict[str, float]:
    return {"loss": loss(lr, width, optim), "width": float(width)}


@pytest.fixture(scope="module")
def several() -> TuneResult:
    return nbopt.tune(
        two_metrics,
        SPACE,
        metric=["loss", "width"],
        mode=["min", "max"],
        max_evals=14,
        seed=0,
        progress="none",
        logdir=None,
    )


def test_several_objectives_show_every_metric_from_the_front(several) -> None:
    """The explorer starts at the front's trial best on the first metric and shows each
    metric's prediction there, as result.predict gives it."""
    explorer = several.whatif().widget()
    start = min(several.front, key=lambda t: (t.value, t.number))
    assert explorer.controls["width"].value == start.params["width"]
    predicted = several.predict(start.params)
    assert explorer.predicted == predicted
    for name, mode in (("loss", "min"), ("width", "max")):
        mean, sd = predicted[name]
        assert (
            f"predicted {name} ({mode}): <b>{fmt.number(mean)}</b> ± {fmt.number(sd, 2)}"
            in explorer.prediction.value
        )
    explorer.controls["width"].value = 128
    moved = several.predict({**start.params, "width": 128})
    assert explorer.predicted == moved
    assert f"<b>{fmt.number(moved['width'].mean)}</b>" in explorer.prediction.value


def test_several_objectives_draw_a_row_of_panels_per_metric(several) -> None:
    from nbopt.ui.plots.tuning import plot_whatif

    models = several.model()
    parameters = [p for p in models["loss"].parameters if p.label != "optim[0].momentum"]
    curves = {name: [m.curve(p.label) for p in parameters] for name, m in models.items()}
    figure = plot_whatif(curves, parameters, {"lr": 1e-3, "width": 64, "optim": 1})
    drawn = [ax for ax in figure.axes if ax.axison]
    assert len(drawn) == 2 * len(parameters)
    assert [ax.get_ylabel() for ax in drawn] == ["loss"] * 3 + ["width"] * 3
    assert [ax.get_title() for ax in drawn] == [p.label for p in parameters] * 2


def test_several_objectives_the_button_reports_every_metric() -> None:
    result = nbopt.tune(
        two_metrics,
        SPACE,
        metric=["loss", "width"],
        mode=["min", "max"],
        max_evals=8,
        seed=3,
        progress="none",
        logdir=None,
    )
    explorer = result.whatif().widget()
    explorer.controls["optim"].value = 1
    explorer.controls["width"].value = 32
    predicted = explorer.predicted
    explorer.run.click()
    trial = result.trials[-1]
    assert trial.number == 8 and trial.metrics == {"width": 32.0}
    status = explorer.status.value
    assert status.startswith(f"trial 8: loss {fmt.number(trial.value)} (predicted ")
    width = predicted["width"]
    assert f"width 32 (predicted {fmt.number(width.mean)} ± {fmt.number(width.sd, 2)})" in status
    assert explorer.prediction.value.count("(model of 9 trials)") == 2


def test_several_objectives_as_text(several) -> None:
    text = repr(several.whatif())
    assert text.startswith("what-if models of loss (min), width (max): a Gaussian process per")
    assert "on 14 trials each" in text
    start = min(several.front, key=lambda t: (t.value, t.number))
    assert f"front trial {start.number}: loss measured {fmt.number(start.value)}, " in text
    assert f"; width measured {fmt.number(start.metrics['width'])}, predicted " in text
    first = text.index("partial dependence of loss (min)")
    second = text.index("partial dependence of width (max)")
    for label in ("lr", "width", "optim", "optim[0].momentum"):
        assert f"\n  {label}: " in text[first:second]
        assert f"\n  {label}: " in text[second:]
