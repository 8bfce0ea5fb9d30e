"""``%%accelerate`` in an in-process IPython shell: the cell runs as a two-rank job."""

from __future__ import annotations

import pytest
import torch
from IPython.core.error import UsageError

from nbopt.launching import LaunchError

DATA = """
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
x = torch.randn(64, 8)
y = (x.sum(dim=1) > 0).long()
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
before = [p.detach().clone() for p in model.parameters()]
"""

TRAIN = """
%%accelerate num_processes=2 copy_back=model,ranks,weights out=job timeout=120
accelerator = Accelerator()
optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
for epoch in range(3):
    for xb, yb in loader:
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
flat = torch.cat([p.detach().flatten() for p in model.parameters()])
weights = accelerator.gather(flat[None])
ranks = (accelerator.process_index, accelerator.num_processes)
scratch = "assigned by the job"
"""


def test_the_cell_trains_with_ddp_and_copy_back_brings_back_the_trained_model(cell, shell) -> None:
    cell(DATA)
    cell(TRAIN)
    ns = shell.user_ns
    job = ns["job"]
    assert ns["_nbopt"] is job and job.status == "done" and job.num_processes == 2
    assert [rank.status for rank in job.ranks] == ["done", "done"]
    assert set(job.variables) == {"model", "ranks", "weights"}
    assert ns["ranks"] == (0, 2)  # from rank 0, in a world of two
    assert torch.equal(ns["weights"][0], ns["weights"][1])  # DDP kept the ranks in step
    model = ns["model"]
    assert type(model) is torch.nn.Sequential  # unwrapped from DistributedDataParallel
    trained = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert torch.equal(trained, ns["weights"][0])
    untouched = torch.cat([p.flatten() for p in ns["before"]])
    assert not torch.allclose(trained, untouched)
    assert "scratch" not in ns  # only copy_back= names come back
    accuracy = (model(ns["x"]).argmax(1) == ns["y"]).float().mean().item()
    assert accuracy > 0.8


def test_the_notebook_object_is_not_changed_by_the_job(cell, shell) -> None:
    """The ranks train their copies; the notebook's model changes only by copy_back= replacing
    it."""
    cell(DATA)
    original = shell.user_ns["model"]
    cell(TRAIN.replace("copy_back=model,ranks,weights", "copy_back=ranks"))
    assert shell.user_ns["model"] is original
    now = torch.cat([p.detach().flatten() for p in original.parameters()])
    assert torch.equal(now, torch.cat([p.flatten() for p in shell.user_ns["before"]]))


def test_an_error_in_a_rank_fails_the_cell_with_that_ranks_traceback(cell) -> None:
    cell("from accelerate import Accelerator")
    with pytest.raises(LaunchError) as caught:
        cell(
            """
            %%accelerate num_processes=2 timeout=120
            accelerator = Accelerator()
            if accelerator.process_index == 1:
                raise KeyError("missing column")
            accelerator.wait_for_everyone()
            """
        )
    error = caught.value
    assert error.rank == 1
    lines = error._render_traceback_()
    assert lines[0] == "Traceback of rank 1 (most recent call last):"
    assert '  File "<%%accelerate cell>", line 3, in <module>' in lines
    assert '    raise KeyError("missing column")' in lines
    # Then, usually: "; then rank 0 raised RuntimeError" (gloo: connection closed by peer).
    assert lines[-1].startswith("LaunchError: rank 1 of 2 raised KeyError: 'missing column'")


def test_a_class_defined_by_the_cell_cannot_come_back_and_says_why(cell) -> None:
    with pytest.raises(LaunchError, match="defined inside the job is unknown to the notebook"):
        cell(
            """
            %%accelerate num_processes=1 copy_back=box timeout=120
            class Box:
                pass
            box = Box()
            """
        )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("num_processes=0", "%accelerate num_processes=: expected a value >= 1, got 0"),
        ("mixed_precision=fp8", "expected one of no|fp16|bf16"),
        ("mixed_precision=fp16", "%accelerate: mixed_precision=fp16 needs GPUs"),
        (
            "copy_back=nowhere",
            "name 'nowhere' is not defined in the notebook nor assigned by the cell",
        ),
        ("nodes=2", "nodes= only apply with export=PATH"),
        ("main_process_ip=10.0.0.1 machine_rank=1", "machine_rank=, main_process_ip= only apply"),
        ("progres=text", "unknown option 'progres' (did you mean progress?)"),
    ],
)
def test_bad_input_is_a_one_line_usage_error_and_runs_nothing(cell, shell, line, message) -> None:
    cell("ran = 0")
    with pytest.raises(UsageError) as caught:
        cell(f"%%accelerate {line}\nran = 1")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert shell.user_ns["ran"] == 0


def test_a_cuda_context_is_a_usage_error_with_what_to_do(cell, monkeypatch) -> None:
    """Faked: this machine has no GPU."""
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with pytest.raises(UsageError, match="restart the kernel"):
        cell("%%accelerate num_processes=2\nx = 1")


def test_help_lists_every_option(shell) -> None:
    help_text = shell.find_cell_magic("accelerate").__doc__
    for option in ("num_processes", "mixed_precision", "out", "timeout", "all_ranks", "export"):
        assert option in help_text


def test_the_old_out_spelling_still_copies_back_with_a_warning(cell, shell) -> None:
    """``out=a,b`` meant "copy these back" before ``out=`` stored the result in every magic:
    it keeps working for one release, saying what to write instead."""
    with pytest.warns(FutureWarning, match="that is now copy_back=world,rank"):
        cell(
            "%%accelerate num_processes=2 out=world,rank timeout=120\n"
            "from accelerate import Accelerator\n"
            "accelerator = Accelerator()\n"
            "world, rank = accelerator.num_processes, accelerator.process_index"
        )
    assert (shell.user_ns["world"], shell.user_ns["rank"]) == (2, 0)
    assert shell.user_ns["_nbopt"].status == "done"
