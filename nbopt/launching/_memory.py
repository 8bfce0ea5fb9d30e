"""Telling a rank killed for memory from one killed otherwise, from what Linux shows.

A rank that the kernel's OOM killer ends dies of SIGKILL like any other SIGKILL. Two signs can
be read without privileges: the OOM kills its memory cgroup has counted (cgroup v2
``memory.events``, v1 ``memory.oom_control``), which rise when the OOM killer ends a process
of the cgroup (the ranks share the notebook's cgroup); and how much memory the ranks held
shortly before (sampled from ``/proc`` while the job runs) against what the cgroup, or the
machine, allows. The kernel's own log would be certain but is rarely readable.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

_CGROUP_ROOT = Path("/sys/fs/cgroup")
# Seconds between two samples of the ranks' memory.
SAMPLE_INTERVAL = 1.0
# The ranks held at least this share of the memory allowed: a SIGKILL is likely the OOM killer.
LIKELY_SHARE = 0.75


def _memory_cgroups() -> list[Path]:
    """Directories of this process's memory cgroup (v2 and v1), most specific first."""
    found = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        relative = path.lstrip("/")
        if controllers == "":
            found += [_CGROUP_ROOT / relative, _CGROUP_ROOT / "unified" / relative]
        elif "memory" in controllers.split(","):
            found += [_CGROUP_ROOT / "memory" / relative, _CGROUP_ROOT / "memory"]
    return [path for path in found if path.is_dir()]


def oom_kills() -> int | None:
    """How many processes the OOM killer ended in this process's memory cgroup (None: unknown)."""
    for directory in _memory_cgroups():
        for name in ("memory.events", "memory.oom_control"):
            try:
                text = (directory / name).read_text()
            except OSError:
                continue
            for line in text.splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and value.strip().isdigit():
                    return int(value)
    return None


def memory_limit() -> int | None:
    """Bytes this process's cgroup may use, or the machine's memory if less (None: unknown)."""
    limits = []
    for directory in _memory_cgroups():
        for name in ("memory.max", "memory.limit_in_bytes"):
            try:
                text = (directory / name).read_text().strip()
            except OSError:
                continue
            if text.isdigit():
                limits.append(int(text))
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                limits.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    return min(limits) if limits else None


def resident(pid: int) -> int | None:
    """Memory process ``pid`` holds, in bytes (None once it is gone): its proportional set size
    where Linux gives it, so that pages forked ranks share are counted once in a sum, else
    its resident set size."""
    directory = Path("/proc") / str(pid)
    try:
        for line in (directory / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        pages = int((directory / "statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


@dataclass
class MemoryWatch:
    """What a job's ranks held, sampled while it runs, and the OOM kills counted before."""

    oom_before: int | None = field(default_factory=lambda: oom_kills())
    limit: int | None = field(default_factory=lambda: memory_limit())
    held: dict[int, int] = field(default_factory=dict)  # rank -> bytes, at the last sample
    _sampled_at: float = 0.0

    def sample(self, pids: dict[int, int]) -> None:
        """Sample the memory of the running ranks (``rank -> pid``), at most once a second."""
        now = time.monotonic()
        if now - self._sampled_at < SAMPLE_INTERVAL:
            return
        self._sampled_at = now
        for rank, pid in pids.items():
            size = resident(pid)
            if size is not None:
                self.held[rank] = size

    def explain_sigkill(self, rank: int) -> str:
        """Why a rank that nbopt did not stop may have died of SIGKILL, as far as can be seen."""
        after = oom_kills()
        if self.oom_before is not None and after is not None and after > self.oom_before:
            return (
                "out of memory: the kernel's OOM killer ended it (this memory cgroup's OOM-kill "
                f"count went from {self.oom_before} to {after})"
            )
        held, total = self.held.get(rank), sum(self.held.values())
        if held is None or not self.limit:
            return "by another process or the kernel's OOM killer (nothing here shows which)"
        usage = f"it held {_size(held)}, the ranks {_size(total)} of {_size(self.limit)} allowed"
        if total >= LIKELY_SHARE * self.limit:
            return f"likely out of memory: {usage}, shortly before"
        return f"not by nbopt, and not clearly for memory: {usage}, shortly before"


def _size(count: int) -> str:
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 else f"{count / 2**20:.0f} MiB"
