"""The rows of ``gpu_check.py``: each proves one CUDA path of nbopt and returns a :class:`Row`.

Every row takes the device to run on. On a GPU it is ``cuda``; on a CPU machine the tests call
each row with ``cpu`` so that its code runs up to the point where CUDA is required, where
:func:`need_cuda` raises :class:`NeedsCuda`. Nothing of nbopt is faked: on CPU the only
stand-in is a model that raises ``torch.OutOfMemoryError`` above a batch size (a fault, which
is all a CPU cannot produce), so that ``%batchsize mode=max`` meets an out-of-memory error there
too.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from _zoo import ZooModel, build, call, primary
from torch import nn

import nbopt
from nbopt.batching import find_batch_size, is_oom_error
from nbopt.compress import optimize, optimize_auto
from nbopt.errors import ConfigError

# Steps a probe or search may try: far above what a step of the models below fits on any GPU.
MAX_BATCH = 1 << 14


class NeedsCuda(Exception):
    """The row reached a part that only a CUDA device can run."""


@dataclass
class Row:
    """One line of the table.

    Attributes:
        name: What path the row proves.
        status: ``"pass"``, ``"fail"`` or ``"needs CUDA"``.
        figure: The measured figure, as text.
        detail: The checks behind the status, or what failed.
    """

    name: str
    status: str
    figure: str
    detail: str = ""


@dataclass
class Checks:
    """The named pass/fail checks a row makes; a row passes when it made some and all held."""

    results: dict[str, bool] = field(default_factory=dict)

    def check(self, label: str, passed: bool) -> None:
        self.results[label] = bool(passed)

    def row(self, name: str, figure: str) -> Row:
        failed = [label for label, passed in self.results.items() if not passed]
        status = "fail" if failed or not self.results else "pass"
        detail = "failed: " + "; ".join(failed) if failed else "; ".join(self.results)
        return Row(name, status, figure, detail)


def need_cuda(device: torch.device, what: str) -> None:
    if device.type != "cuda":
        raise NeedsCuda(what)


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(value, device) for value in batch)
    return batch.to(device) if isinstance(batch, torch.Tensor) else batch


def zoo_on(name: str, device: torch.device) -> tuple[ZooModel, Any, list[Any]]:
    """The zoo's model ``name`` on ``device`` (bench size on a GPU), with its example and
    calibration batches there."""
    entry = build(name, "bench" if device.type == "cuda" else "test")
    entry.model.to(device)
    return entry, to_device(entry.example, device), [to_device(b, device) for b in entry.calib]


def agreement(model: nn.Module, batch: Any) -> Callable[[nn.Module], float]:
    """Cosine similarity of a candidate's outputs with ``model``'s on ``batch``, computed in
    float64 (1.0 for the model itself)."""
    with torch.no_grad():
        reference = primary(call(model, batch)).double().flatten(1)

    def score(candidate: nn.Module) -> float:
        with torch.no_grad():
            output = primary(call(candidate, batch)).double().flatten(1)
        return torch.nn.functional.cosine_similarity(output, reference).mean().item()

    return score


def ratio(result: Any, quantity: str) -> float:
    change = result.report[quantity]
    return change.after / change.before if change.before else math.nan


# ----- %batchsize mode=max against a manual probe -----


class WideConv(nn.Module):
    """Convolutions at full resolution: activation memory grows fast with the batch."""

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )
        self.head = nn.Linear(channels, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(images).mean(dim=(2, 3)))


class FaultAbove(nn.Module):
    """Raises the out-of-memory error a GPU would above ``limit`` samples (CPU stand-in)."""

    def __init__(self, inner: nn.Module, limit: int) -> None:
        super().__init__()
        self.inner, self.limit = inner, limit

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[0] > self.limit:
            raise torch.OutOfMemoryError(f"out of memory: batch {images.shape[0]} (injected)")
        return self.inner(images)


def _fits(model: nn.Module, image: torch.Tensor, batch: int) -> bool:
    """Whether one Adam training step at ``batch`` runs: the manual probe a user would write."""
    trial = copy.deepcopy(model)
    optimizer = torch.optim.Adam(trial.parameters())
    try:
        images = image.expand(batch, *image.shape[1:]).contiguous()
        trial(images).sum().backward()
        optimizer.step()
        return True
    except (torch.OutOfMemoryError, RuntimeError) as error:
        # cuDNN says "not supported" for a batch too large for it: that batch does not run either.
        if is_oom_error(error):
            return False
        raise
    finally:
        del trial, optimizer
        if image.device.type == "cuda":
            torch.cuda.empty_cache()


def largest_fitting(model: nn.Module, image: torch.Tensor) -> int:
    """The largest batch that :func:`_fits`, by doubling then bisection."""
    low, high = 0, 1
    while high <= MAX_BATCH and _fits(model, image, high):
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if _fits(model, image, middle) else (low, middle)
    return low


def batchsize_max(device: torch.device, checks: Checks) -> str:
    if device.type == "cuda":
        model, side = WideConv().to(device), 256
    else:
        model, side = FaultAbove(WideConv(8), limit=37), 16
    image = torch.randn(1, 3, side, side, device=device)
    probe = largest_fitting(model, image)
    before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    result = find_batch_size(
        model,
        image,
        mode="max",
        train=True,
        max_batch_size=MAX_BATCH,
        progress="none",
        logdir=None,
    )
    found = result.batch_size or 0
    checks.check(
        "an out-of-memory error was met", any(m.status == "oom" for m in result.measurements)
    )
    checks.check("found batch fits (<= probe)", 0 < found <= probe)
    checks.check("found batch >= 0.9 x probe", found >= 0.9 * probe)
    figure = f"found {found} / probe {probe}"
    if device.type == "cuda":
        after = torch.cuda.memory_allocated(device)
        checks.check("allocated memory back to its start", after == before)
        figure += f", allocated {before} -> {after} B"
    return figure


# ----- %%optimize quant= on the device -----

# Cosine of the outputs with the original's: static int8 also rounds every activation.
FIDELITY = {"int8": 0.98, "int8-static": 0.95, "fp16": 0.99, "bf16": 0.98}


def _quantized(quant: str, device: torch.device, zoo: str, checks: Checks) -> str:
    entry, example, calib = zoo_on(zoo, device)
    score = agreement(entry.model, example)
    result = optimize(
        entry.model,
        quant=quant,
        example=example,
        calib=calib if quant == "int8-static" else None,
        progress="none",
        logdir=None,
    )
    size, latency, fidelity = (
        ratio(result, "size_bytes"),
        ratio(result, "latency_s"),
        score(result.model),
    )
    checks.check("ran on the device", result.device.startswith(device.type))
    checks.check("size ratio < 0.6", size < 0.6)
    checks.check("latency measured", math.isfinite(latency))
    floor = FIDELITY[quant]
    checks.check(f"output cosine >= {floor}", fidelity >= floor)
    return f"size {size:.2f}x, latency {latency:.2f}x, cosine {fidelity:.4f}"


def int8_dynamic(device: torch.device, checks: Checks) -> str:
    return _quantized("int8", device, "bert", checks)


def int8_static(device: torch.device, checks: Checks) -> str:
    return _quantized("int8-static", device, "resnet18", checks)


def fp16(device: torch.device, checks: Checks) -> str:
    return _quantized("fp16", device, "bert", checks)


def bf16(device: torch.device, checks: Checks) -> str:
    return _quantized("bf16", device, "bert", checks)


# ----- %%optimize auto target=latency -----


def _auto(zoo: str, device: torch.device, checks: Checks) -> str:
    entry, example, calib = zoo_on(zoo, device)
    result = optimize_auto(
        entry.model,
        evaluate=agreement(entry.model, example),
        tolerable_loss=0.02,
        target="latency",
        example=example,
        calib=calib,
        max_trials=8 if device.type == "cuda" else 4,
        seed=0,
        progress="none",
        logdir=None,
    )
    checks.check("some plan ran", any(t.status == "ok" for t in result.trials))
    checks.check(
        "chosen within the tolerance", result.chosen.metric >= 0.98 * result.original.metric
    )
    checks.check("chosen latency <= original", result.chosen.ratio <= 1.0)
    if device.type == "cuda":
        casts = {t.plan.quant for t in result.trials} & {"fp16", "bf16"}
        checks.check("GPU-only plans (fp16/bf16 casts) searched", bool(casts))
    return f"latency {result.chosen.ratio:.2f}x with {result.chosen.plan.label()}"


def auto_bert(device: torch.device, checks: Checks) -> str:
    return _auto("bert", device, checks)


def auto_resnet(device: torch.device, checks: Checks) -> str:
    return _auto("resnet18", device, checks)


# ----- %%accelerate in a real IPython shell -----

DDP_CELL = """
import torch
from accelerate import Accelerator
accelerator = Accelerator()
net = torch.nn.Linear(8, 2)
optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
net, optimizer = accelerator.prepare(net, optimizer)
loss = net(torch.randn(16, 8, device=accelerator.device)).pow(2).mean()
accelerator.backward(loss)
optimizer.step()
world = accelerator.num_processes
wrapper = type(net).__name__
weights = accelerator.unwrap_model(net).weight.detach()
"""


def _shell() -> Any:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbopt")
    return shell


def accelerate_per_gpu(device: torch.device, checks: Checks) -> str:
    expected = torch.cuda.device_count() if device.type == "cuda" else 2
    checks.check("CUDA not initialised in the kernel", not torch.cuda.is_initialized())
    shell = _shell()
    outcome = shell.run_cell(
        "%%accelerate out=job copy_back=world,wrapper,weights progress=none logdir=none\n"
        + DDP_CELL
    )
    checks.check("cell ran", outcome.success)
    job, names = shell.user_ns.get("job"), shell.user_ns
    if job is None or not outcome.success:
        return f"error: {outcome.error_in_exec or outcome.error_before_exec}"
    checks.check(f"{expected} ranks on {device.type}", job.num_processes == expected)
    checks.check("ranks on the device", job.device == device.type)
    checks.check("world size seen in the cell", names.get("world") == expected)
    if expected > 1:
        checks.check("a DDP step", names.get("wrapper") == "DistributedDataParallel")
    checks.check("copy_back= arrives on the CPU", names["weights"].device.type == "cpu")
    return f"world {names.get('world')}, {names.get('wrapper')}, {job.seconds:.1f} s"


def accelerate_refuses_cuda_parent(device: torch.device, checks: Checks) -> str:
    shell = _shell()
    need_cuda(device, "initialising CUDA in the kernel")
    torch.zeros(1, device=device)
    outcome = shell.run_cell("%%accelerate progress=none logdir=none\nx = 1\n")
    message = str(outcome.error_in_exec or outcome.error_before_exec or "")
    checks.check("refused", not outcome.success)
    checks.check("the message names CUDA", "CUDA" in message)
    checks.check("one line", "\n" not in message.strip())
    return message.strip()[:80] or "(no error)"


# ----- %tune with a CUDA objective and parallel workers -----


def tune_parallel(device: torch.device, checks: Checks) -> str:
    kind = device.type

    def objective(x: float) -> float:
        # Each worker must see the device; on CUDA this initialises it there, not here.
        target = torch.device(kind)
        values = torch.full((256, 256), float(x), device=target)
        return float((values @ values).mean().item() / 256.0 - x)

    result = nbopt.tune(
        objective,
        {"x": nbopt.uniform(-1.0, 1.0)},
        max_evals=6,
        parallel=2,
        progress="none",
        logdir=None,
        seed=0,
    )
    finished = [t for t in result.trials if t.status == "ok"]
    checks.check("every trial finished on the device", len(finished) == 6)
    checks.check("no CUDA initialised in the kernel", not torch.cuda.is_initialized())
    return f"{len(finished)}/6 trials ok, best loss {result.best_value:.3f}"


ROWS: dict[str, tuple[str, Callable[[torch.device, Checks], str]]] = {
    "batchsize-max": ("%batchsize mode=max reaches a real OOM", batchsize_max),
    "int8": ("%%optimize quant=int8 (BERT, torchao)", int8_dynamic),
    "int8-static": ("%%optimize quant=int8-static (ResNet-18)", int8_static),
    "fp16": ("%%optimize quant=fp16 (BERT)", fp16),
    "bf16": ("%%optimize quant=bf16 (BERT)", bf16),
    "auto-bert": ("%%optimize auto target=latency (BERT)", auto_bert),
    "auto-resnet": ("%%optimize auto target=latency (ResNet-18)", auto_resnet),
    "accelerate": ("%%accelerate, one process per GPU", accelerate_per_gpu),
    "accelerate-refusal": ("%%accelerate after CUDA in the kernel", accelerate_refuses_cuda_parent),
    "tune-parallel": ("%tune parallel=2, a CUDA objective", tune_parallel),
}


def run_row(key: str, device: torch.device) -> Row:
    """Row ``key`` on ``device``. Reaching a part that needs CUDA on a CPU, nbopt's refusal and
    any error are the row's status: one row's failure never ends the check."""
    title, prove = ROWS[key]
    checks = Checks()
    try:
        figure = prove(device, checks)
    except NeedsCuda as needed:
        return Row(title, "needs CUDA", "", f"reached: {needed}")
    except ConfigError as error:
        return Row(title, "fail", "", f"nbopt refused: {error}")
    except Exception as error:
        return Row(title, "fail", "", f"{type(error).__name__}: {error}")
    return checks.row(title, figure)
