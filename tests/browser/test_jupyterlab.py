"""JupyterLab in headless Chromium: the %%tune widget renders and finishes in a real browser,
and the what-if explorer of its result answers its controls and runs one more trial.

Needs Debian's ``chromium`` (``.ci/run`` installs it) and the Playwright Python package, which
drives the system browser through ``executable_path``; nothing is downloaded at run time.
Run it alone with ``python -m pytest -m browser``; skip it with ``-m "not browser"``.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
from _servers import alive, free_port, server

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
MAX_EVALS = 8

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def write_notebook(path: Path) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("%load_ext nbopt"),
        nbformat.v4.new_code_cell(
            textwrap.dedent(
                f"""\
                %%tune max_evals={MAX_EVALS} seed=0 logdir=none
                import time
                x = uniform(-2, 2)
                k = choice(0, 1)
                time.sleep(0.3)
                (x - 0.5) ** 2 + k"""
            )
        ),
        nbformat.v4.new_code_cell("%tune_whatif"),
        # Run again after the explorer's button: the kernel's result holds one more trial.
        nbformat.v4.new_code_cell('f"trials in the result: {len(_nbopt.trials)}"'),
    ]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(notebook, path)


def check_whatif(page) -> None:
    """Move the explorer's dropdown and slider: the prediction changes each time; its button
    runs one more trial, which the kernel's result then holds."""
    explorer = page.locator(".nbopt-whatif").first
    explorer.wait_for(timeout=120_000)
    counted = page.get_by_text(f"trials in the result: {MAX_EVALS}")
    counted.wait_for(timeout=60_000)
    prediction = explorer.locator(".nbopt-whatif-prediction")
    assert explorer.locator("select").count() == 1  # k
    assert explorer.locator(".widget-readout").count() == 1  # x
    before = prediction.inner_text()
    assert before.startswith("predicted value: ") and "model of 8 trials" in before

    def changed_from(text: str) -> str:
        page.wait_for_function(
            "([el, old]) => el.innerText !== old",
            arg=[prediction.element_handle(), text],
            timeout=60_000,
        )
        return prediction.inner_text()

    select = explorer.locator("select")
    other = 1 - int(select.input_value())
    select.select_option(value=str(other))
    after_choice = changed_from(before)
    readout = explorer.locator(".widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("1.75")
    page.keyboard.press("Enter")
    after_slider = changed_from(after_choice)
    assert float(readout.inner_text()) == 1.75
    assert after_slider.startswith("predicted value: ")
    explorer.get_by_role("button", name="run this configuration").click()
    status = explorer.locator(".nbopt-whatif-status")
    page.wait_for_function(
        "el => el.innerText.startsWith('trial ')", arg=status.element_handle(), timeout=60_000
    )
    assert status.inner_text().startswith(f"trial {MAX_EVALS}: ")
    assert "(predicted " in status.inner_text()
    page.wait_for_function(
        "el => el.innerText.includes('model of 9 trials')",
        arg=prediction.element_handle(),
        timeout=60_000,
    )
    # Run the last cell again: the kernel's result has the explorer's trial.
    counted.click()
    page.keyboard.press("Shift+Enter")
    page.get_by_text(f"trials in the result: {MAX_EVALS + 1}").wait_for(timeout=60_000)


def test_the_tune_widget_renders_and_finishes_in_jupyterlab(tmp_path):
    required = os.environ.get("NBOPT_REQUIRE_BROWSER") == "1"  # set by .ci/run
    if not Path(CHROMIUM).exists():
        message = "Debian's chromium is not installed (.ci/run installs it)"
        if required:
            pytest.fail(message)
        pytest.skip(message)
    from playwright import sync_api as playwright_api

    root = tmp_path / "root"
    root.mkdir()
    write_notebook(root / "tune.ipynb")
    port, token = free_port(), "nbopt-browser-test"
    base = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--ServerApp.open_browser=False", "--ServerApp.allow_root=True", "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "jupyterlab-tune-widget.png"
    lab = server(command, f"{base}/api/status?token={token}", tmp_path / "lab.log")
    with lab as pids, playwright_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        page = context.new_page()
        try:
            page.goto(f"{base}/lab/tree/tune.ipynb?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            # The status bar says "Python 3 (ipykernel) | Idle" once the kernel is ready.
            page.get_by_text("| Idle").wait_for(timeout=120_000)
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
            bar = page.locator(".widget-hprogress .progress-bar").first
            bar.wait_for(timeout=120_000)
            page.wait_for_function(
                """() => {
                    const bar = document.querySelector('.widget-hprogress .progress-bar');
                    return bar && bar.classList.contains('progress-bar-success');
                }""",
                timeout=180_000,
            )
            assert bar.evaluate("el => el.style.width") == "100%"
            widget_text = page.locator(".widget-vbox").first.inner_text()
            assert f"{MAX_EVALS}/{MAX_EVALS}" in widget_text
            assert "best " in widget_text and " at trial " in widget_text
            assert page.locator("text=TuneResult").first.is_visible()
            page.screenshot(path=str(screenshot), full_page=True)
            check_whatif(page)
            page.screenshot(path=str(ARTIFACTS / "jupyterlab-whatif.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "jupyterlab-tune-widget-failure.png"))
            raise
        finally:
            context.close()
    assert screenshot.stat().st_size > 10_000
    # ``server`` collected the server and its kernels (its child processes) before stopping it.
    assert len(pids) >= 2
    assert not any(alive(pid) for pid in pids), "JupyterLab and its kernels are gone"
