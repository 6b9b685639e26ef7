"""Numeric precision chosen from the hardware: bf16 autocast only where the device computes bf16 natively.

`run.precision` is `auto` (the default in every command), `bf16` or `fp32`:

- CUDA: auto = bf16 when `torch.cuda.is_bf16_supported()` (Ampere and newer), else fp32.
- CPU: auto = a measured probe at start-up. A 256x256 matmul is timed in fp32 and under bf16 autocast with the
  process's thread count; bf16 is chosen when it is at least `BF16_MIN_SPEEDUP` times faster. Why measure
  instead of reading the CPU's flags: the flags say what the silicon has, not what this torch build dispatches
  to (oneDNN can be capped with ONEDNN_MAX_CPU_ISA, a VM can hide AVX-512), and the two kinds of CPU are far
  apart, so a 20 ms probe cannot misjudge them. With AMX or AVX-512 BF16 a bf16 matmul runs ~4x faster than
  fp32; with only AVX2 it is emulated and runs ~100-200x *slower* (0.8-1 GFLOP/s against 130-200 in fp32).
  The flags are still read and reported, so the start-up line says why.
- Anything else (mps, ...): fp32.

Weights and optimizer state always stay fp32; bf16 only changes the forward passes run inside `autocast()`.
Every command prints `describe()` at start-up and records `as_dict()` with its results.
"""
from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass
from pathlib import Path

import torch

PRECISIONS = ("auto", "bf16", "fp32")
BF16_MIN_SPEEDUP = 1.3  # bf16 must beat fp32 by this factor to be worth its lost mantissa bits
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile", "avx512f", "avx2")


@dataclass(frozen=True)
class Probe:
    """Matmul throughput of this CPU in both precisions, at the thread count of the process."""

    fp32_gflops: float
    bf16_gflops: float
    threads: int

    @property
    def speedup(self) -> float:
        return self.bf16_gflops / max(self.fp32_gflops, 1e-9)


@dataclass(frozen=True)
class Precision:
    """The precision a command runs in, and why."""

    name: str  # bf16 | fp32
    reason: str  # one line: the setting and the evidence
    device_type: str = "cpu"

    @property
    def bf16(self) -> bool:
        return self.name == "bf16"

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast for the forward passes, or a no-op in fp32."""
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=torch.bfloat16)

    def describe(self) -> str:
        return f"precision {self.name} ({self.reason})"

    def as_dict(self) -> dict:
        return {"precision": self.name, "precision_reason": self.reason}


def cpu_flags() -> list[str]:
    """The bf16-relevant ISA flags the kernel reports for this CPU (Linux); [] where it cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    line = next((l for l in text.splitlines() if l.startswith("flags")), "")
    have = set(line.split(":", 1)[-1].split())
    return [f for f in _CPU_BF16_FLAGS if f in have]


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what `platform` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()


def _matmul_gflops(bf16: bool, n: int = 256, min_seconds: float = 0.01, max_seconds: float = 0.1) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        a @ b  # warm-up: the first call picks and may JIT a kernel
        reps, t0 = 0, time.perf_counter()
        while True:
            a @ b
            reps += 1
            dt = time.perf_counter() - t0
            if dt >= min_seconds and (reps >= 3 or dt >= max_seconds):
                break
    return 2 * n ** 3 * reps / dt / 1e9


PROBE_ROUNDS = (3, 20)  # alternating fp32/bf16 trials: at least 3, at most 20 (until the ratio is clear)


@functools.lru_cache(maxsize=None)
def _probe(threads: int) -> Probe:
    """The best throughput of short alternating trials of each precision. Another process on the machine can only
    slow a trial down, so the best trial is the machine's speed, and a trial of a few milliseconds often runs
    uninterrupted even on a busy machine; alternating keeps a busy spell from landing on one precision only. After
    3 rounds it stops as soon as one precision is clearly (2x) faster, else it goes on to 20. (On this project's
    2-core machine with two other processes busy, single 0.1 s trials put the ratio anywhere from 0.1x to 10x.)"""
    fp32, bf16 = [], []
    for r in range(PROBE_ROUNDS[1]):
        fp32.append(_matmul_gflops(False, min_seconds=0.002, max_seconds=0.01))
        bf16.append(_matmul_gflops(True, min_seconds=0.002, max_seconds=0.01))
        ratio = max(bf16) / max(fp32)
        if r + 1 >= PROBE_ROUNDS[0] and not 0.5 < ratio < 2.0:
            break
    return Probe(max(fp32), max(bf16), threads)


def probe_cpu() -> Probe:
    """Measure once per process and thread count (tens of ms; ~0.1 s where bf16 is emulated)."""
    return _probe(torch.get_num_threads())


def _cpu_evidence(p: Probe) -> str:
    flags = " ".join(cpu_flags()) or "flags unknown"
    return (f"bf16 matmul {p.bf16_gflops:.1f} vs fp32 {p.fp32_gflops:.1f} GFLOP/s at {p.threads} thread(s), "
            f"{p.speedup:.2f}x; CPU flags: {flags}")


def resolve_precision(setting: str, device: torch.device | str) -> Precision:
    """`auto` | `bf16` | `fp32` -> the Precision to run in on `device` (see the module docstring)."""
    device = torch.device(device)
    if setting not in PRECISIONS:
        from common.config import ConfigError
        raise ConfigError("run.precision", setting, f"allowed values: {', '.join(PRECISIONS)}")
    kind = device.type
    if setting == "fp32":
        return Precision("fp32", "run.precision=fp32", kind)
    if setting == "bf16":
        reason = "run.precision=bf16"
        if kind == "cpu":
            p = probe_cpu()
            if p.speedup < 1.0:
                reason += f"; WARNING: this CPU is slower in bf16 ({_cpu_evidence(p)}), consider run.precision=auto"
        return Precision("bf16", reason, kind)
    if kind == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return Precision("bf16" if ok else "fp32",
                         f"auto: CUDA device {'supports' if ok else 'lacks'} bf16 "
                         f"({torch.cuda.get_device_name(device)})", kind)
    if kind == "cpu":
        p = probe_cpu()
        fast = p.speedup >= BF16_MIN_SPEEDUP
        return Precision("bf16" if fast else "fp32",
                         f"auto: {_cpu_evidence(p)}; bf16 needs >= {BF16_MIN_SPEEDUP}x", kind)
    return Precision("fp32", f"auto: fp32 on {kind}", kind)


def machine_summary() -> str:
    """One line for benchmark output: the CPU, its bf16-relevant flags, any ISA cap, the probe and auto's choice."""
    import os
    p = probe_cpu()
    caps = ", ".join(f"{k}={os.environ[k]}" for k in ("ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
                     if os.environ.get(k))
    return (f"CPU {cpu_name()} [{' '.join(cpu_flags()) or 'flags unknown'}]"
            + (f" capped by {caps}" if caps else "") + f"; torch {torch.__version__}, {p.threads} thread(s); "
            f"probe: bf16 {p.bf16_gflops:.1f} vs fp32 {p.fp32_gflops:.1f} GFLOP/s -> auto picks "
            f"{'bf16' if p.speedup >= BF16_MIN_SPEEDUP else 'fp32'}")
