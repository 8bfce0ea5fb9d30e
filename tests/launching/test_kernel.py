"""``%%accelerate`` in a real Jupyter kernel (nbclient): forking an ipykernel process works, and
what rank 0 prints or displays (a tqdm.auto widget bar) reaches the cell."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

JOB = """\
%%accelerate num_processes=2 progress=widget logdir=none timeout=120
import nbopt
accelerator = Accelerator()
for step in tqdm(range(3)):
    nbopt.report(step, loss=1.0 / (step + 1))
print(f"hello from rank {accelerator.process_index}")
world = accelerator.num_processes
"""


@pytest.mark.slow
def test_a_job_in_a_kernel_shows_rank_zero_output_and_widgets(tmp_path) -> None:
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "%load_ext nbopt\nfrom accelerate import Accelerator\nfrom tqdm.auto import tqdm"
            ),
            nbformat.v4.new_code_cell(JOB),
        ]
    )
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    ).execute()
    outputs = notebook.cells[1].outputs
    stdout = "".join(o.get("text", "") for o in outputs if o.get("name") == "stdout")
    assert "hello from rank 0\n" in stdout
    assert "rank 1" not in stdout  # hidden without all_ranks
    displays = [o["data"] for o in outputs if o["output_type"] == "display_data"]
    assert displays[0]["text/plain"].startswith("nbopt accelerate · 2 CPU processes")
    # One widget per progress bar: nbopt's own view, and rank 0's tqdm bar, sent from the
    # forked rank through ipykernel's IOPub pipe (rank 1's bar is dropped with its output).
    bars = [d for d in displays[1:] if "application/vnd.jupyter.widget-view+json" in d]
    assert len(bars) == 1 and "0/3" in bars[0]["text/plain"]
    assert not any(o["output_type"] == "error" for o in outputs)
