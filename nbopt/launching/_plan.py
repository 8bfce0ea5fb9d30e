"""What a job will be: checked before anything is forked, so bad input changes nothing."""

from __future__ import annotations

import multiprocessing
import os
import socket
from dataclasses import dataclass

from nbopt.errors import ConfigError
from nbopt.launching._worker import RANK_VARIABLE

MIXED_PRECISIONS = ("no", "fp16", "bf16")
DEFAULT_CPU_PROCESSES = 2

FP16_ON_CPU = (
    "mixed_precision=fp16 needs GPUs: on CPU processes Accelerate silently computes in fp32 "
    "although accelerator.mixed_precision says fp16; use bf16 on CPU"
)
CUDA_ALREADY_INITIALISED = (
    "CUDA is already initialised in this process (something ran on a GPU before the launch), "
    "and forked ranks cannot use it: restart the kernel and keep every GPU call inside the "
    "launched code (build the model and data on the CPU; accelerator.prepare() moves them), "
    "or pass cpu=True for CPU processes"
)


@dataclass(frozen=True)
class JobPlan:
    """A validated job: how many ranks, on what, with which precision and time limit."""

    num_processes: int
    device: str  # "cpu" (gloo on loopback) or "cuda" (NCCL, one GPU per rank)
    mixed_precision: str = "no"
    timeout: float | None = None
    all_ranks: bool = False
    nccl_p2p_ok: bool = True

    @property
    def title(self) -> str:
        units = "CPU processes" if self.device == "cpu" else "GPUs"
        if self.num_processes == 1:
            units = units[:-1] if self.device == "cuda" else "CPU process"
        precision = "" if self.mixed_precision == "no" else f" · {self.mixed_precision}"
        return f"accelerate · {self.num_processes} {units}{precision}"

    def environment(self, rank: int, port: int) -> dict[str, str]:
        """The variables a rank sets before the user's code runs.

        They are those ``accelerate launch`` sets: with them a plain ``Accelerator()`` finds a
        world of ``num_processes`` ranks (``MULTI_CPU`` with gloo, or ``MULTI_GPU``) and the
        requested mixed precision, which ``Accelerator`` reads from
        ``ACCELERATE_MIXED_PRECISION``.
        """
        size = str(self.num_processes)
        environment = {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "WORLD_SIZE": size,
            "LOCAL_WORLD_SIZE": size,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "NODE_RANK": "0",
            "ACCELERATE_MIXED_PRECISION": self.mixed_precision,
            "ACCELERATE_USE_CPU": "true" if self.device == "cpu" else "false",
            # As notebook_launcher sets it: Accelerate then leaves the process group alone
            # in end_training().
            "FORK_LAUNCHED": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            RANK_VARIABLE: str(rank),
        }
        if self.device == "cpu":
            environment["CUDA_VISIBLE_DEVICES"] = ""
            loopback = _loopback_interface()
            if loopback and "GLOO_SOCKET_IFNAME" not in os.environ:
                # Otherwise gloo picks an interface from the host name, which fails on some
                # machines (containers, CI runners) although everything is local.
                environment["GLOO_SOCKET_IFNAME"] = loopback
        elif not self.nccl_p2p_ok:
            environment["NCCL_P2P_DISABLE"] = "1"
            environment["NCCL_IB_DISABLE"] = "1"
        return environment


def plan_job(
    num_processes: int | None = None,
    mixed_precision: str = "no",
    cpu: bool = False,
    timeout: float | None = None,
    all_ranks: bool = False,
) -> JobPlan:
    """Check the options and the notebook's state; raise :class:`ConfigError` on a problem."""
    rank = os.environ.get(RANK_VARIABLE)
    if rank is not None:
        raise ConfigError(f"launches cannot be nested: this code already runs as rank {rank}")
    if "fork" not in multiprocessing.get_all_start_methods():
        raise ConfigError("launching forks the notebook's process, which this platform cannot do")
    if mixed_precision not in MIXED_PRECISIONS:
        raise ConfigError(
            f"mixed_precision must be one of {', '.join(MIXED_PRECISIONS)}, got {mixed_precision!r}"
        )
    if num_processes is not None and (
        isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1
    ):
        raise ConfigError(f"num_processes must be a positive integer, got {num_processes!r}")
    if timeout is not None and not timeout > 0:
        raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")

    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        raise ConfigError(
            "a torch.distributed process group already exists in this process and every rank "
            "would inherit it: call torch.distributed.destroy_process_group() first"
        )
    if not cpu and torch.cuda.is_initialized():
        raise ConfigError(CUDA_ALREADY_INITIALISED)
    # NVML-based: counting GPUs this way does not initialise CUDA, so forking stays possible.
    gpus = 0 if cpu else torch.cuda.device_count()
    if not gpus:
        if mixed_precision == "fp16":
            raise ConfigError(FP16_ON_CPU)
        return JobPlan(
            num_processes or DEFAULT_CPU_PROCESSES, "cpu", mixed_precision, timeout, all_ranks
        )
    if num_processes is not None and num_processes > gpus:
        raise ConfigError(
            f"num_processes={num_processes} but {gpus} GPU(s) are visible: one rank runs per GPU; "
            "use cpu=True for CPU processes"
        )
    from accelerate.utils import check_cuda_p2p_ib_support

    return JobPlan(
        num_processes or gpus,
        "cuda",
        mixed_precision,
        timeout,
        all_ranks,
        nccl_p2p_ok=check_cuda_p2p_ib_support(),
    )


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now, for rank 0's store."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _loopback_interface() -> str | None:
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        return None
    return next((name for name in names if name.startswith("lo")), None)
