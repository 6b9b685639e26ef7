"""Device, threads, seeds and the process group: everything decided once at start-up.

Multi-process runs are launched by an existing engine, never by us:

    torchrun --nproc_per_node=2 -m phase0_diffusion.train profile=smoke      # 2 processes (CPU: gloo)
    accelerate launch --num_processes=8 -m phase0_diffusion.train ...        # 8 GPUs (nccl)

Both set RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR, which is all `init_distributed` reads.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.distributed as dist

from common.config import ConfigError

if TYPE_CHECKING:
    from common.precision import Precision


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def select_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    """`auto` picks cuda, then mps, then cpu. An explicit choice that is not available is an error."""
    if preference == "auto":
        if torch.cuda.is_available():
            preference = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            preference = "mps"
        else:
            preference = "cpu"
    if preference == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("run.device", "cuda", "no CUDA device is visible; use run.device=auto or cpu")
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if preference == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("run.device", "mps", "MPS is not available; use run.device=auto or cpu")
    return torch.device(preference)


def set_threads(threads: int, local_world_size: int = 1) -> int:
    """0 means: share the machine's cores evenly among the processes on this node.

    Set explicitly because torch's default oversubscribes when several processes share a node, and
    on a 2-core machine an oversubscribed run can be 10x slower.
    """
    if threads <= 0:
        threads = max(1, (os.cpu_count() or 1) // max(1, local_world_size))
    torch.set_num_threads(threads)
    return threads


def keep_freed_memory(pad_bytes: int = 256 << 20, trim_bytes: int = 1 << 30) -> bool:
    """Ask glibc's malloc to keep freed memory in the process (Linux only; elsewhere a no-op returning False).

    By default glibc returns the top of the heap to the OS whenever more than a few MB are free, and serves every
    block above 32 MB with its own mmap, unmapped when freed, so a loop that allocates and frees the same large
    activations (sampling, planning) page-faults the memory back in on every call: on a 2-core AVX2 machine half of
    a planning decision's time went to the kernel. A trim threshold of `trim_bytes`, a top pad of `pad_bytes` and no
    mmap'd blocks (every block from the heap, reused once freed) keep that memory (the process's peak, at most
    `trim_bytes` more). `python -m benchmarks.malloc_speed` measures the effect in one process."""
    import sys
    for name, v in (("pad_bytes", pad_bytes), ("trim_bytes", trim_bytes)):
        if not 0 <= v < 2**31:
            raise ValueError(f"keep_freed_memory: {name}={v} must be in [0, 2**31) (mallopt takes a C int)")
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4
    return all(bool(mallopt(k, v)) for k, v in ((M_TRIM_THRESHOLD, trim_bytes), (M_TOP_PAD, pad_bytes),
                                                 (M_MMAP_MAX, 0)))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def init_distributed(device: torch.device | None = None) -> DistInfo:
    """Join the process group when launched by torchrun/accelerate; a no-op for a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(
        rank=int(os.environ["RANK"]),
        world_size=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))),
    )
    if not dist.is_initialized():
        cuda = torch.cuda.is_available() and (device is None or device.type == "cuda")
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return info


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@dataclass(frozen=True)
class Runtime:
    """What a command runs on, decided once at start-up from its `run.*` keys."""

    device: torch.device
    threads: int
    precision: "Precision"

    def describe(self) -> str:
        return f"device {self.device}, {self.threads} thread(s), {self.precision.describe()}"

    def as_dict(self) -> dict:
        import platform
        from common.precision import cpu_flags, cpu_name
        return {"device": str(self.device), "threads": self.threads, **self.precision.as_dict(),
                "cpu": cpu_name(), "cpu_flags": cpu_flags(), "torch": torch.__version__,
                "python": platform.python_version()}


def start(run_cfg, local_rank: int = 0, local_world_size: int = 1, seed: bool = True) -> Runtime:
    """Threads, device, seeds and precision from a command's `run` section (common.runs.RunConfig).

    Threads come first: the precision probe measures at the thread count the command will use."""
    from common.precision import resolve_precision
    threads = set_threads(run_cfg.threads, local_world_size)
    keep_freed_memory()
    device = select_device(run_cfg.device, local_rank)
    if seed:
        seed_everything(run_cfg.seed)
    return Runtime(device, threads, resolve_precision(run_cfg.precision, device))


def git_state(repo=None) -> dict:
    """{"git_commit": sha, "git_dirty": bool} of the repo this code runs from; {} outside a git checkout."""
    import subprocess
    from common.config import REPO_ROOT
    try:
        run = lambda *a: subprocess.run(["git", *a], cwd=repo or REPO_ROOT, capture_output=True, text=True,
                                        timeout=10, check=True).stdout.strip()
        return {"git_commit": run("rev-parse", "HEAD"), "git_dirty": bool(run("status", "--porcelain", "-uno"))}
    except (OSError, subprocess.SubprocessError):
        return {}
