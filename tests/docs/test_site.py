"""The documentation site: the options hook, the pages' markers, and a strict build."""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import subprocess
import sys
import textwrap

import pytest
from _doc_pages import DOCS, EXECUTED_BLOCK, ROOT, page_sessions
from mkdocs.exceptions import PluginError

from nbopt.magics import NbOptMagics


def _load_hook(name):
    path = DOCS / "hooks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def hook():
    return _load_hook("options")


def _table_options(table):
    return re.findall(r"^\| `(\w+)` \|", table, re.MULTILINE)


@pytest.mark.parametrize(
    "magic", ["tune", "optimize", "optimize auto", "batchsize", "lr_find", "accelerate"]
)
def test_table_lists_every_option_of_the_schema_in_order(hook, magic):
    schema = hook.resolve(hook.OPTIONS[magic])
    assert _table_options(hook.options_table(magic)) == list(schema.options)


def test_each_optimize_form_has_the_table_of_its_own_schema(hook):
    from nbopt.magics import optimize, optimize_auto

    plain = set(_table_options(hook.options_table("optimize")))
    auto = set(_table_options(hook.options_table("optimize auto")))
    assert plain == set(optimize.SCHEMA.options) and auto == set(optimize_auto.SCHEMA.options)
    assert "tolerable_loss" in auto - plain and "inplace" in plain - auto
    assert {"eval", "example", "finetune", "calib", "prune_ignore", "out"} <= plain & auto


def test_table_rows_show_type_default_and_meaning(hook):
    table = hook.options_table("tune")
    algo = "| `algo` | auto\\|tpe\\|rand\\|anneal\\|atpe\\|grid | `auto` | search algorithm |"
    assert algo in table
    assert "(a bare `restart` means `restart=True`)" in table


def test_help_is_what_the_magic_prints(hook):
    block = hook.help_text("tune")
    assert block.startswith('??? info "What `%tune?` prints"')
    body = textwrap.dedent(block.split("```text\n", 1)[1].rsplit("\n    ```", 1)[0])
    assert body == inspect.cleandoc(NbOptMagics.tune.__doc__)


def test_unknown_magic_or_option_fails_the_build(hook, monkeypatch):
    with pytest.raises(PluginError, match="no magic 'tuned'"):
        hook.options_table("tuned")
    monkeypatch.setitem(hook.OPTIONS, "tune", "nbopt.magics.tune:MISSING")
    with pytest.raises(PluginError, match=r"cannot find nbopt\.magics\.tune:MISSING"):
        hook.options_table("tune")


def test_markers_are_replaced_and_other_text_kept(hook):
    page = "Intro\n\n<!-- options: batchsize -->\n\n<!-- help: batchsize -->\n\nEnd\n"
    out = hook.on_page_markdown(page, page=None, config=None, files=None)
    assert out.startswith("Intro\n\n| option | type | default | meaning |")
    assert "`set`" in out and "What `%batchsize?` prints" in out and out.endswith("End\n")


@pytest.mark.parametrize(
    ("page", "magic"),
    [
        ("magics/tune.md", "tune"),
        ("magics/optimize.md", "optimize"),
        ("magics/optimize-auto.md", "optimize auto"),
        ("magics/batchsize.md", "batchsize"),
        ("magics/lr-find.md", "lr_find"),
        ("magics/accelerate.md", "accelerate"),
    ],
)
def test_each_magic_page_has_its_options_table(page, magic):
    assert f"<!-- options: {magic} -->" in (DOCS / page).read_text(encoding="utf-8")


def test_every_methods_page_computes_its_examples_in_sessions():
    for path in sorted((DOCS / "methods").glob("*.md")):
        if path.name == "index.md":
            continue
        blocks = list(EXECUTED_BLOCK.finditer(path.read_text(encoding="utf-8")))
        assert blocks, f"{path.name} has no worked example"
        assert all('session="' in block["options"] for block in blocks), path.name


# Refuse every outgoing connection, then build: a build that downloads anything fails.
_OFFLINE_BUILD = """
import socket, sys

def refuse(*args, **kwargs):
    raise OSError("the documentation build tried to use the network")

socket.socket.connect = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
from mkdocs.__main__ import cli
sys.argv = ["mkdocs", "build", "--strict", "--site-dir", sys.argv[1]]
cli()
"""


@pytest.mark.slow
def test_site_builds_strictly_offline_with_generated_tables_and_computed_examples(tmp_path):
    site = tmp_path / "site"
    environment = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    build = subprocess.run(
        [sys.executable, "-c", _OFFLINE_BUILD, str(site)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout + build.stderr

    tune = (site / "magics" / "tune" / "index.html").read_text(encoding="utf-8")
    assert "<td><code>stop_min_trials</code></td>" in tune
    assert "What <code>%tune?</code> prints" in tune

    random_search = (site / "methods" / "random-and-grid" / "index.html").read_text(
        encoding="utf-8"
    )
    needed = page_sessions("methods/random-and-grid.md")["random"]["needed"]
    assert f"draws needed for 95% confidence: {needed}" in random_search
    assert 'class="arithmatex"' in random_search

    for page in site.rglob("*.html"):
        assert "Traceback (most recent call last)" not in page.read_text(encoding="utf-8"), page

    for notebook in (ROOT / "demo_notebooks").glob("*.ipynb"):
        assert (site / "demo_notebooks" / notebook.stem / "index.html").exists()
    assert (site / "api" / "index.html").read_text(encoding="utf-8").count('id="nbopt.') >= 20
