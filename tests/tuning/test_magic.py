"""``%tune`` and ``%%tune`` in an in-process IPython shell (layer 2)."""

from __future__ import annotations

import textwrap

import pytest
from IPython.core.error import UsageError

from nbopt import ConfigError, TuneError
from nbopt.tuning import TuneResult

QUIET = "progress=none logdir=none"

SETUP = """
from nbopt import choice, loguniform, randint, uniform
calls = []

def train(lr, layers):
    calls.append({"lr": lr, "layers": layers})
    return (lr - 0.05) ** 2 + layers

def train_dict(config):
    calls.append(dict(config))
    return config["lr"] * config["layers"]

def train_kw(lr, epochs, layers=1):
    calls.append({"lr": lr, "epochs": epochs, "layers": layers})
    return lr * epochs
"""


@pytest.fixture
def nb(ip, run_cell):
    """The shell with a notebook's usual definitions; returns a cell runner."""
    run_cell(ip, SETUP)

    def run(source: str):
        return run_cell(ip, textwrap.dedent(source).strip("\n"))

    return run


# --- line form -------------------------------------------------------------------------------


def test_line_form_calls_the_function_with_keyword_parameters(ip, nb) -> None:
    """``%tune train lr=... layers=...`` calls train(lr=..., layers=...) max_evals times."""
    result = nb(
        f"%tune train lr=loguniform(1e-4, 1e-1) layers=choice(1, 2, 3) max_evals=5 seed=0 {QUIET}"
    )
    assert isinstance(result, TuneResult)
    calls = ip.user_ns["calls"]
    assert len(calls) == 5
    assert calls == [t.params for t in result.trials]
    assert all(1e-4 <= c["lr"] <= 1e-1 and c["layers"] in (1, 2, 3) for c in calls)
    assert ip.user_ns["_nbopt"] == result


def test_line_form_with_a_dict_parameter(ip, nb) -> None:
    """A function of one parameter receives the configuration as a dict."""
    result = nb(f"%tune train_dict lr=uniform(0, 1) layers=randint(1, 4) max_evals=4 {QUIET}")
    calls = ip.user_ns["calls"]
    assert len(calls) == 4
    assert all(set(c) == {"lr", "layers"} and isinstance(c["layers"], int) for c in calls)
    assert result.best_params in calls


def test_constants_are_fixed_parameters(ip, nb) -> None:
    """A key=value that is not a dimension is passed unchanged to every trial."""
    result = nb(f"%tune train_kw lr=uniform(0, 1) epochs=3 layers=2 max_evals=3 {QUIET}")
    calls = ip.user_ns["calls"]
    assert [(c["epochs"], c["layers"]) for c in calls] == [(3, 2)] * 3
    assert all(t.params["epochs"] == 3 for t in result.trials)


def test_expressions_see_notebook_variables(ip, nb) -> None:
    """Dimension expressions are evaluated in the notebook namespace."""
    nb("sizes = [1, 4]")
    nb(f"%tune train lr=uniform(0, 1) layers=choice(*sizes) max_evals=6 seed=0 {QUIET}")
    assert {c["layers"] for c in ip.user_ns["calls"]} <= {1, 4}


def test_space_name_with_a_dict_space(ip, nb) -> None:
    """``space=NAME`` takes a dict space from the notebook; extra dimensions are merged in."""
    nb("space = {'lr': uniform(0, 1), 'layers': choice(5, 6)}")
    nb(f"%tune train space=space max_evals=3 {QUIET}")
    assert {c["layers"] for c in ip.user_ns["calls"]} <= {5, 6}
    ip.user_ns["calls"].clear()
    nb(f"%tune train space=space layers=choice(7) max_evals=2 {QUIET}")
    assert [c["layers"] for c in ip.user_ns["calls"]] == [7, 7]


def test_space_name_with_a_raw_hyperopt_space(ip, nb) -> None:
    """A space built with ``hyperopt.hp`` is used as it is."""
    nb("""
        from hyperopt import hp
        raw = hp.choice("model", [{"kind": "a", "lr": hp.uniform("lr_a", 0, 1)}, {"kind": "b"}])
        seen = []
        def objective(params):
            seen.append(params)
            return params.get("lr", 0.5)
        mixed = {"lr": hp.uniform("lr", 0, 1), "layers": choice(1, 2)}
    """)
    result = nb(f"%tune objective space=raw max_evals=5 seed=0 {QUIET}")
    seen = ip.user_ns["seen"]
    assert len(seen) == 5 == len(result.trials)
    assert all(p["kind"] in ("a", "b") for p in seen)
    nb(f"%tune train space=mixed max_evals=3 {QUIET}")
    assert all(0 <= c["lr"] <= 1 and c["layers"] in (1, 2) for c in ip.user_ns["calls"])


def test_dict_result_with_metric_and_mode_max(ip, nb) -> None:
    """metric= picks the value of a dict result and mode=max maximises it."""
    nb("""
        def fit(width):
            return {"val_acc": width / 100, "loss": 1 - width / 100}
    """)
    result = nb(f"%tune fit width=choice(10, 50, 90) metric=val_acc mode=max algo=grid {QUIET}")
    assert result.best_params == {"width": 90}
    assert result.best_value == pytest.approx(0.9)
    assert result.metric == "val_acc"
    assert result.trials[0].metrics["loss"] == pytest.approx(1 - result.trials[0].value)


def test_out_stores_the_result(ip, nb) -> None:
    """out=NAME and _nbopt hold the very result object the magic returns."""
    result = nb(f"%tune train lr=uniform(0, 1) layers=choice(1, 2) max_evals=2 out=search {QUIET}")
    assert ip.user_ns["search"] is result
    assert ip.user_ns["_nbopt"] is result
    assert result.status == "done"


def test_grid_and_study_options(ip, nb, in_tmp_dir) -> None:
    """algo=grid covers the space; study= saves it and a re-run resumes it."""
    first = nb(
        f"%tune train lr=choice(0.1, 0.2) layers=choice(1, 2) algo=grid study=runs/s.json {QUIET}"
    )
    assert len(first.trials) == 4
    assert (in_tmp_dir / "runs" / "s.json").exists()
    ip.user_ns["calls"].clear()
    again = nb(
        f"%tune train lr=choice(0.1, 0.2) layers=choice(1, 2) algo=grid study=runs/s.json {QUIET}"
    )
    assert ip.user_ns["calls"] == []
    assert len(again.trials) == 4
    nb(
        f"%tune train lr=choice(0.1, 0.2) layers=choice(1, 2) algo=grid study=runs/s.json "
        f"restart {QUIET}"
    )
    assert len(ip.user_ns["calls"]) == 4


# --- cell form -------------------------------------------------------------------------------

MODEL = """
class Model:
    def __init__(self, lr, hidden):
        self.lr, self.hidden = lr, hidden
"""


def test_cell_form_with_metric_puts_the_best_trial_into_the_notebook(ip, nb) -> None:
    """Placeholders are the dimensions; afterwards the best trial's values and the objects it
    assigned (a model) are notebook variables."""
    nb(MODEL)
    result = nb(f"""
        %%tune max_evals=8 metric=val_loss seed=1 {QUIET}
        lr = loguniform(1e-4, 1e-1)
        hidden = choice(32, 64, 128)
        model = Model(lr, hidden)
        val_loss = abs(lr - 0.01) + hidden / 1000
    """)
    assert len(result.trials) == 8
    assert set(result.best_params) == {"lr", "hidden"}
    assert result.metric == "val_loss"
    best = result.best_trial
    ns = ip.user_ns
    assert ns["lr"] == best.params["lr"]
    assert ns["hidden"] == best.params["hidden"]
    assert isinstance(ns["model"], ns["Model"])
    assert (ns["model"].lr, ns["model"].hidden) == (best.params["lr"], best.params["hidden"])
    assert ns["val_loss"] == best.value
    assert ns["_nbopt"] == result


def test_a_cell_that_never_assigns_its_metric_stops_at_the_first_trial(ip, nb) -> None:
    """metric=val_acc on a cell without val_acc is said after one trial, not after all."""
    with pytest.raises(UsageError, match=r"metric=val_acc: the cell ran but did not assign"):
        nb(f"""
            %%tune max_evals=20 metric=val_acc {QUIET}
            lr = uniform(0, 1)
            calls.append(lr)
            val_loss = lr
        """)
    assert len(ip.user_ns["calls"]) == 1
    assert len(ip.user_ns["_nbopt"].trials) == 1


def test_cell_form_last_expression_is_the_metric(ip, nb) -> None:
    """Without metric= the value of the cell's last expression is minimised."""
    result = nb(f"""
        %%tune max_evals=6 algo=grid {QUIET}
        x = choice(-2, -1, 0, 1, 2)
        y = x * 3
        (x - 1) ** 2
    """)
    assert result.best_params == {"x": 1}
    assert result.best_value == 0
    assert ip.user_ns["x"] == 1
    assert ip.user_ns["y"] == 3


def test_cell_form_mode_max_and_last_name(ip, nb) -> None:
    """A bare name as last expression is the metric; mode=max maximises it."""
    result = nb(f"""
        %%tune algo=grid mode=max {QUIET}
        width = choice(1, 5, 3)
        acc = width / 10
        acc
    """)
    assert result.best_params == {"width": 5}
    assert result.metric == "acc"
    assert ip.user_ns["acc"] == 0.5


def test_cell_trials_are_isolated(ip, nb) -> None:
    """Trials see neither each other's variables nor write to the notebook while running."""
    nb("observed = []")
    ip.user_ns["notebook"] = ip.user_ns
    nb(f"""
        %%tune max_evals=5 {QUIET}
        x = uniform(0, 1)
        observed.append(("leak" in globals(), "leak" in notebook, "x" in notebook))
        leak = x
        x
    """)
    assert ip.user_ns["observed"] == [(False, False, False)] * 5
    assert ip.user_ns["leak"] == ip.user_ns["x"] == ip.user_ns["_nbopt"].best_params["x"]


def test_cell_form_sees_notebook_variables_and_magics_transform(ip, nb) -> None:
    """The cell reads notebook variables and may use space functions with notebook values."""
    nb("offset = 10\nwidths = [2, 4]")
    result = nb(f"""
        %%tune algo=grid {QUIET}
        w = choice(*widths)
        w + offset
    """)
    assert [t.value for t in result.trials] == [12, 14]


# --- settings --------------------------------------------------------------------------------


def test_config_progress_text_takes_effect(ip, nb, capsys) -> None:
    """``%config NbOptMagics.progress = "text"`` makes %tune print its text view."""
    nb('%config NbOptMagics.progress = "text"')
    capsys.readouterr()
    nb("%tune train lr=uniform(0, 1) layers=choice(1, 2) max_evals=2 logdir=none")
    out = capsys.readouterr().out
    assert "[nbopt] tune · auto: 2 planned" in out
    assert "[nbopt] done: 2 trials" in out
    nb('%config NbOptMagics.progress = "none"')
    capsys.readouterr()
    nb("%tune train lr=uniform(0, 1) layers=choice(1, 2) max_evals=2 logdir=none")
    assert "[nbopt]" not in capsys.readouterr().out


def test_progress_option_overrides_config(ip, nb, capsys) -> None:
    """progress= on the line wins over %config."""
    nb('%config NbOptMagics.progress = "none"')
    capsys.readouterr()
    nb("%tune train lr=uniform(0, 1) layers=choice(1, 2) max_evals=2 logdir=none progress=text")
    assert "[nbopt] done: 2 trials" in capsys.readouterr().out


def test_logdir_config_and_default(ip, nb, in_tmp_dir) -> None:
    """Logs go to runs/nbopt by default, to %config NbOptMagics.logdir, or nowhere (none)."""
    nb("%tune train lr=uniform(0, 1) layers=choice(1, 2) max_evals=2 progress=none")
    assert len(list((in_tmp_dir / "runs" / "nbopt").iterdir())) == 1
    nb('%config NbOptMagics.logdir = "tb"')
    nb("%tune train lr=uniform(0, 1) layers=choice(1, 2) max_evals=2 progress=none study=exp.json")
    assert (in_tmp_dir / "tb" / "exp" / "trial-0001").is_dir()
    nb('%config NbOptMagics.logdir = "none"')
    nb("%tune train lr=uniform(0, 1) layers=choice(1, 2) max_evals=2 progress=none study=x.json")
    assert not (in_tmp_dir / "tb" / "x").exists()
    assert not (in_tmp_dir / "runs" / "nbopt" / "x").exists()


# --- usage errors ----------------------------------------------------------------------------

BAD_LINES = [
    ("%tune train lr=uniform(0, 1) layers=choice(1, 2) max_eval=3", "did you mean max_evals?"),
    ("%tune train lr=uniform(0, 1) layers=choice(1, 2) mod=max", "did you mean mode?"),
    ("%tune train lr=uniform(0, 1) layers=choice(1, 2) max_evals=0", "max_evals=: expected"),
    ("%tune train lr=uniform(0, 1) layers=choice(1, 2) algo=tpee", "did you mean tpe?"),
    ("%tune train lr=uniform(0, 1) layers=choice(1, 2) algo=bayes", "expected one of"),
    (
        "%tune train lr=uniform(0, 1) layers=choice(1, 2) timeout=5x",
        "timeout=: expected a duration",
    ),
    ("%tune trian lr=uniform(0, 1) layers=choice(1, 2)", "'trian' is not defined"),
    ("%tune not_callable lr=uniform(0, 1)", "'not_callable' is not callable"),
    ("%tune train lr=uniform(0, 1) layers=choice(1, 2) algo=grid", "which is continuous"),
    ("%tune train lr=uniform(1, 0) layers=choice(1, 2)", "low < high"),
    ("%tune train lr=nope(1) layers=choice(1, 2)", "cannot evaluate"),
    ("%tune train", "give the search space"),
    ("%tune lr=uniform(0, 1)", "name the function to tune"),
    ("%tune train lr=uniform(0, 1) layer=choice(1, 2)", "did you mean layers?"),
    ("%tune train space=missing", "'missing' is not defined"),
    ("%tune train space=not_callable", "space must be a dict"),
    ("%tune train lr=uniform(0, 1) layers=choice(1, 2) out=1x", "not a valid Python name"),
    ("%tune train lr=uniform(0, 1) layers=choice(1, 2) progress=fancy", "expected one of"),
    ("%tune train lr=(1, 2", "unclosed"),
    ("%tune train train lr=uniform(0, 1)", "unexpected 'train'"),
    ("%tune train lr=uniform(0, 1) layers=choice(1, 2) seed=-1", "seed=: expected"),
    ("%%tune max_evals=3\nx = 1\nx", "found no search dimension"),
    ("%%tune max_evals=3\nx = uniform(0, 1)\ny = x", "needs the metric"),
    ("%%tune max_evals=3\nx = uniform(0, 1)\nx +", "not valid Python"),
    ("%%tune max_evals=3\nx = uniform(1, 0)\nx", "cannot evaluate the dimension x"),
    ("%%tune max_evals=3 lr=uniform(0, 1)\nx = uniform(0, 1)\nx", "put the dimensions in the cell"),
    ("%%tune max_evals=3 metrc=x\nx = uniform(0, 1)\nx", "did you mean metric?"),
    ("%%tune train\nx = uniform(0, 1)\nx", "the cell is the objective"),
    ("%%tune algo=grid\nx = uniform(0, 1)\nx", "which is continuous"),
]


@pytest.mark.parametrize(("line", "fragment"), BAD_LINES, ids=[f for _, f in BAD_LINES])
def test_bad_input_is_a_one_line_usage_error_and_runs_nothing(ip, nb, line, fragment) -> None:
    """Every bad option is a one-line UsageError raised before any trial runs."""
    nb("not_callable = 5\nleak = []")
    with pytest.raises(UsageError) as info:
        nb(line.replace("\nx", "\nleak.append(1)\nx", 1) if line.startswith("%%") else line)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    assert message.startswith(("%tune", "%%tune"))
    assert ip.user_ns["calls"] == []
    assert ip.user_ns["leak"] == []
    assert "_nbopt" not in ip.user_ns


def test_corrupt_study_is_a_usage_error_and_left_untouched(ip, nb, in_tmp_dir) -> None:
    """A study file that is not a study stops %tune before any trial; the file is unchanged."""
    path = in_tmp_dir / "broken.json"
    path.write_text('{"trials": [')
    with pytest.raises(UsageError, match="cannot be read as JSON"):
        nb(f"%tune train lr=uniform(0, 1) layers=choice(1, 2) study=broken.json {QUIET}")
    assert path.read_text() == '{"trials": ['
    assert ip.user_ns["calls"] == []
    assert "_nbopt" not in ip.user_ns


def test_a_study_write_failing_mid_search_keeps_every_finished_trial_in_nbopt(
    ip, nb, in_tmp_dir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk at the third trial's record: one line, and _nbopt holds the three trials."""
    import errno

    from nbopt.tuning import _journal
    from nbopt.tuning._errors import StudyWriteError

    real = _journal._write_all

    def write(fd: int, data: bytes) -> None:
        if b'"event":"finish","number":2' in data:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, data)

    monkeypatch.setattr(_journal, "_write_all", write)
    with pytest.raises(StudyWriteError) as info:
        nb(f"%tune train lr=uniform(0, 1) layers=choice(1, 2) max_evals=6 study=s.jsonl {QUIET}")
    assert "\n" not in str(info.value) and "no space left on device" in str(info.value)
    assert [t.number for t in ip.user_ns["_nbopt"].trials] == [0, 1, 2]
    assert len(ip.user_ns["calls"]) == 3


def test_help_lists_every_option() -> None:
    """``%tune?`` shows every option of the schema, with the space functions and an example."""
    from nbopt.magics import NbOptMagics
    from nbopt.magics.tune import SCHEMA

    doc = NbOptMagics.tune.__doc__
    for name, option in SCHEMA.options.items():
        assert f"  {name} " in doc
        assert option.type.description in doc
    assert "%%tune" in doc
    assert "loguniform" in doc


def test_help_is_what_the_magic_question_mark_shows(ip, run_cell, capsys) -> None:
    """``%tune?`` in the shell prints the option table."""
    run_cell(ip, "%tune?")
    out = capsys.readouterr().out
    assert "max_evals" in out and "deterministic" in out


# --- failures in user code -------------------------------------------------------------------


def test_all_trials_failing_is_a_tune_error_not_a_usage_error(ip, nb) -> None:
    """Errors in the user's function fail the cell with TuneError; the result is still kept."""
    nb("""
        from nbopt import ConfigError
        def broken(lr):
            raise ConfigError(f"the user's own error {lr:.2f}")
    """)
    with pytest.raises(TuneError) as info:
        nb(f"%tune broken lr=uniform(0, 1) max_evals=3 out=failed {QUIET}")
    assert not isinstance(info.value, UsageError)
    assert "the user's own error" in str(info.value)
    stored = ip.user_ns["_nbopt"]
    assert ip.user_ns["failed"] is stored
    assert [t.status for t in stored.trials] == ["failed"] * 3
    assert all(t.error.startswith("ConfigError: the user's own error") for t in stored.trials)


def test_failing_cell_trials_are_recorded(ip, nb) -> None:
    """A cell that fails for some configurations records those trials and goes on."""
    result = nb(f"""
        %%tune algo=grid {QUIET}
        x = choice(0, 1, 2)
        y = 1 / x
        y
    """)
    assert [t.status for t in result.trials] == ["failed", "ok", "ok"]
    assert "ZeroDivisionError" in result.trials[0].error
    assert "y = 1 / x" in result.trials[0].traceback  # the cell's own line is shown
    assert ip.user_ns["x"] == 2 and ip.user_ns["y"] == 0.5


def test_keyboard_interrupt_in_a_cell_trial_propagates_and_keeps_finished_trials(ip, nb) -> None:
    """An interrupt re-raises; _nbopt holds the finished trials and the run is marked."""
    nb("done = []")
    with pytest.raises(KeyboardInterrupt):
        nb(f"""
            %%tune max_evals=10 out=partial {QUIET}
            x = uniform(0, 1)
            if len(done) == 3:
                raise KeyboardInterrupt
            done.append(x)
            x
        """)
    stored = ip.user_ns["_nbopt"]
    assert ip.user_ns["partial"] is stored
    assert stored.status == "interrupted"
    assert [t.status for t in stored.trials] == ["ok", "ok", "ok", "interrupted"]
    assert [t.params["x"] for t in stored.trials[:3]] == ip.user_ns["done"]
    assert ip.user_ns["x"] == stored.best_params["x"]


def test_keyboard_interrupt_in_a_line_objective(ip, nb) -> None:
    """The line form re-raises an interrupt and keeps the finished trials too."""
    nb("""
        def slow(lr):
            calls.append(lr)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return lr
    """)
    with pytest.raises(KeyboardInterrupt):
        nb(f"%tune slow lr=uniform(0, 1) max_evals=5 {QUIET}")
    stored = ip.user_ns["_nbopt"]
    assert [t.status for t in stored.trials] == ["ok", "interrupted"]


# --- several objectives ----------------------------------------------------------------------

MULTI_SETUP = """
import math

def zdt(x1, x2):
    g = 1 + 9 * x2
    return {"f1": x1, "f2": g * (1 - math.sqrt(x1 / g)), "acc": 1 - x1}
"""


def test_line_form_with_several_metrics_and_modes(ip, nb) -> None:
    nb(MULTI_SETUP)
    q = QUIET
    result = nb(f"""
        %tune zdt x1=uniform(0,1) x2=uniform(0,1) metric=acc,f2 mode=max,min max_evals=10 seed=0 {q}
    """)
    assert ip.user_ns["_nbopt"] is result
    assert result.objectives == {"acc": "max", "f2": "min"}
    assert len(result.trials) == 10 and all("f2" in t.metrics for t in result.trials)
    assert result.front and result.pick(constraint="f2 <= 100") in result.front
    with pytest.raises(ConfigError, match=r"result\.front"):
        _ = result.best_params


def test_mode_of_the_wrong_length_is_a_usage_error_before_any_trial(ip, nb) -> None:
    nb(MULTI_SETUP)
    nb("zdt_calls = []\ndef counted(x1, x2):\n    zdt_calls.append(x1)\n    return zdt(x1, x2)")
    for line, message in [
        ("metric=f1,f2 mode=max,min,min", r"mode= gives 3 directions for 2 metrics \(f1, f2\)"),
        ("metric=f1,f2 mode=max,down", r"mode=: expected min\|max\[,\.\.\.\], got 'max,down'"),
    ]:
        with pytest.raises(UsageError, match=message) as info:
            nb(f"%tune counted x1=uniform(0, 1) x2=uniform(0, 1) {line} {QUIET}")
        assert str(info.value).startswith("%tune") and "\n" not in str(info.value)
    assert ip.user_ns["zdt_calls"] == []


def test_cell_form_with_several_metrics(ip, nb) -> None:
    result = nb(f"""
        %%tune max_evals=8 seed=0 metric=acc,size mode=max,min {QUIET}
        width = choice(8, 16, 32, 64)
        depth = randint(1, 4)
        size = width * depth
        acc = 1 - 1 / size
    """)
    assert result.objectives == {"acc": "max", "size": "min"}
    assert all(t.metrics["size"] == t.params["width"] * t.params["depth"] for t in result.trials)
    assert all(t.value == pytest.approx(1 - 1 / t.metrics["size"]) for t in result.trials)
    # No trial is the best: no trial's variables are put into the notebook.
    assert "size" not in ip.user_ns and "width" not in ip.user_ns


def test_a_cell_that_never_assigns_one_of_its_metrics_stops_at_the_first_trial(ip, nb) -> None:
    with pytest.raises(UsageError, match=r"metric=size: the cell ran but did not assign size"):
        nb(f"""
            %%tune max_evals=20 metric=acc,size {QUIET}
            lr = uniform(0, 1)
            calls.append(lr)
            acc = lr
        """)
    assert len(ip.user_ns["calls"]) == 1
