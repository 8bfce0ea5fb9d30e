"""``%tune_whatif`` in an in-process IPython shell: the explorer of the last or a named result."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from nbopt.magics import NbOptMagics
from nbopt.ui.interactive import WhatIfExplorer

QUIET = "progress=none logdir=none"
SETUP = """
from nbopt import uniform
def bowl(x, y):
    return (x - 1) ** 2 + (y + 1) ** 2
def two(x, y):
    return {"loss": bowl(x, y), "cost": x + 2 * y}
"""


@pytest.fixture
def nb(ip, run_cell):
    run_cell(ip, SETUP)
    return lambda source: run_cell(ip, source)


def test_without_a_name_it_explores_the_last_tune_of_the_session(ip, nb) -> None:
    """The last %tune wins, even after another cell replaced _nbopt; a name picks any."""
    nb(f"%tune bowl x=uniform(-2, 2) y=uniform(-2, 2) max_evals=6 seed=0 {QUIET} out=first")
    nb(f"%tune bowl x=uniform(0, 2) y=uniform(-2, 0) max_evals=7 seed=1 {QUIET} out=second")
    nb("_nbopt = None")
    explorer = nb("%tune_whatif")
    assert isinstance(explorer, WhatIfExplorer)
    assert explorer.result is ip.user_ns["second"]
    assert nb("%tune_whatif first").result is ip.user_ns["first"]
    text = repr(explorer)
    assert text.startswith("what-if model of value: a Gaussian process on 7 trials")
    assert "\n  x: " in text and "\n  y: " in text


def test_a_cell_search_is_the_last_result_too(ip, nb) -> None:
    nb(f"%%tune max_evals=5 seed=0 {QUIET}\nx = uniform(-2, 2)\n(x - 1) ** 2")
    explorer = nb("%tune_whatif")
    assert explorer.result is ip.user_ns["_nbopt"]
    trial = explorer.widget().evaluate()
    assert trial.number == 5 and len(explorer.result.trials) == 6


def test_several_objectives_show_every_metric(nb) -> None:
    nb(
        f"%tune two x=uniform(-2, 2) y=uniform(-2, 2) metric=loss,cost mode=min,min "
        f"max_evals=8 seed=0 {QUIET}"
    )
    text = repr(nb("%tune_whatif"))
    assert text.startswith("what-if models of loss (min), cost (min):")
    assert "partial dependence of cost (min)" in text


def test_before_any_tune_it_says_so(nb) -> None:
    with pytest.raises(UsageError, match=r"^%tune_whatif: no %tune has run in this session"):
        nb("%tune_whatif")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("%tune_whatif resutl", r"^%tune_whatif: name 'resutl' is not defined .*result\?"),
        ("%tune_whatif number", r"^%tune_whatif: 'number' is an int, not a TuneResult"),
        ("%tune_whatif result extra", r"^%tune_whatif: unexpected 'extra'"),
        ("%tune_whatif few", r"^%tune_whatif: the what-if model of value needs at least 3"),
    ],
)
def test_bad_input_is_one_usage_error(nb, line: str, message: str) -> None:
    nb(f"%tune bowl x=uniform(-2, 2) y=uniform(-2, 2) max_evals=2 seed=0 {QUIET} out=few")
    nb("number = 3\nresult = few")
    with pytest.raises(UsageError, match=message):
        nb(line)


def test_a_search_stopped_by_bad_input_leaves_the_last_result(ip, nb) -> None:
    nb(f"%tune bowl x=uniform(-2, 2) y=uniform(-2, 2) max_evals=4 seed=0 {QUIET} out=kept")
    with pytest.raises(UsageError):
        nb(f"%tune bowl x=uniform(-2, 2) y=uniform(-2, 2) max_evals=0 {QUIET}")
    assert nb("%tune_whatif").result is ip.user_ns["kept"]


def test_the_help_says_how_to_name_a_result() -> None:
    doc = NbOptMagics.tune_whatif.__doc__
    assert "%tune_whatif result" in doc and "run this configuration" in doc
