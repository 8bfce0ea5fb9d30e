"""Notebooks in a real kernel: every demo runs, widgets finish, failures fail the run.

Each notebook is executed by nbclient in a fresh ipykernel (the way papermill and CI run
notebooks), in a temporary directory so that its logs and studies stay out of the checkout.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[2]
DEMOS = sorted((ROOT / "demo_notebooks").glob("*.ipynb"))
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def execute(notebook: nbformat.NotebookNode, workdir: Path) -> nbformat.NotebookNode:
    client = NotebookClient(
        notebook,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()
    return notebook


def notebook_of(*sources: str) -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(textwrap.dedent(s).strip()) for s in sources]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    return notebook


def widget_models(notebook: nbformat.NotebookNode) -> dict[str, dict]:
    return notebook.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})


def progress_bars(model_id: str, models: dict[str, dict]) -> list[dict]:
    """The IntProgress states inside the widget tree rooted at ``model_id``."""
    model = models[model_id]
    found = [model["state"]] if model["model_name"] == "IntProgressModel" else []
    for child in model["state"].get("children", []):
        found += progress_bars(child.removeprefix("IPY_MODEL_"), models)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("path", DEMOS, ids=[p.stem for p in DEMOS])
def test_demo_notebook_runs_and_its_live_views_finish(path, tmp_path):
    notebook = execute(nbformat.read(path, as_version=4), tmp_path)
    models = widget_models(notebook)
    views = 0
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW not in data:
                continue
            assert data.get("text/plain"), "every widget has a plain-text fallback"
            if not data["text/plain"].startswith("nbopt "):
                continue  # a widget of the user's own (a tqdm bar, say)
            views += 1
            bars = progress_bars(data[WIDGET_VIEW]["model_id"], models)
            assert len(bars) == 1
            bar = bars[0]
            assert bar["value"] == bar["max"] >= 1, "the progress bar finished"
            assert bar["bar_style"] == "success"
            planned = re.search(r"max_evals=(\d+)", cell.source)
            if planned:
                assert bar["value"] == int(planned.group(1))
    assert views >= 1, "the notebook shows at least one nbopt live view"


@pytest.mark.slow
def test_a_magic_given_bad_options_fails_the_notebook_run(tmp_path):
    notebook = notebook_of(
        "%load_ext nbopt",
        "def f(x):\n    return x",
        "%tune f x=uniform(0, 1) max_eval=3",
        "reached = True",
    )
    with pytest.raises(CellExecutionError, match="UsageError") as error:
        execute(notebook, tmp_path)
    assert "did you mean max_evals?" in str(error.value)
    assert not notebook.cells[3].get("outputs") and notebook.cells[3].get("execution_count") is None


@pytest.mark.slow
def test_an_objective_that_always_fails_fails_the_notebook_run(tmp_path):
    notebook = notebook_of(
        "%load_ext nbopt",
        "def f(x):\n    raise RuntimeError('diverged')",
        "%tune f x=uniform(0, 1) max_evals=3 logdir=none",
    )
    with pytest.raises(CellExecutionError, match="AllTrialsFailed") as error:
        execute(notebook, tmp_path)
    assert "all 3 trials failed" in str(error.value)
    assert "RuntimeError: diverged" in str(error.value)


@pytest.mark.slow
def test_a_terminal_ipython_prints_text_progress_and_no_widget(tmp_path):
    script = tmp_path / "search.ipy"
    script.write_text(
        textwrap.dedent(
            """
            %load_ext nbopt
            def f(x, k):
                return (x - 0.5) ** 2 + k
            %tune f x=uniform(0, 1) k=choice(0, 1) max_evals=5 seed=0 logdir=none out=r
            assert len(r.trials) == 5
            """
        )
    )
    completed = subprocess.run(
        [sys.executable, "-m", "IPython", "--no-banner", "--colors=nocolor", str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    assert "[nbopt] tune · auto: 5 planned" in out
    assert re.search(r"trial +\d+ \[5/5\]", out)
    assert "[nbopt] done: 5 trials" in out
    for widget_text in ("VBox", "IntProgress", "widget", WIDGET_VIEW):
        assert widget_text not in out
