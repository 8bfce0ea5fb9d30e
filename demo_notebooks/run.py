"""Run a demo notebook headless and keep what it showed.

    python demo_notebooks/run.py demo_notebooks/01_tune_quickstart.ipynb

executes the notebook in a real kernel, writes the executed notebook (outputs and widget state
included) and an HTML page of it under ``runs/notebooks/``, and prints the lines of the cells
tagged ``summary`` (the notebook's result in one line) and where to open the files. A failing
cell stops the run with the cell's error, as in the test suite.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--out", type=Path, default=Path("runs/notebooks"))
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    arguments = parser.parse_args()

    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from nbconvert import HTMLExporter

    notebook = nbformat.read(arguments.notebook, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=arguments.timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(arguments.notebook.parent)}},
        store_widget_state=True,
    )
    arguments.out.mkdir(parents=True, exist_ok=True)
    executed = arguments.out / arguments.notebook.name
    try:
        client.execute()
    except CellExecutionError as error:
        nbformat.write(notebook, executed)
        print(f"{arguments.notebook} failed; its outputs so far are in {executed}", file=sys.stderr)
        print(error, file=sys.stderr)
        return 1
    nbformat.write(notebook, executed)
    page, _ = HTMLExporter().from_notebook_node(notebook)
    html = executed.with_suffix(".html")
    html.write_text(page, encoding="utf-8")
    for line in summary_lines(notebook):
        print(line)
    print(f"executed notebook: {executed} (open it in Jupyter to see the widgets)")
    print(f"as a web page:     {html}")
    return 0


def summary_lines(notebook: object) -> list[str]:
    """What the cells tagged ``summary`` printed."""
    lines = []
    for cell in notebook.cells:  # type: ignore[attr-defined]
        if "summary" not in cell.get("metadata", {}).get("tags", []):
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                lines.extend(output.get("text", "").splitlines())
    return lines


if __name__ == "__main__":
    sys.exit(main())
