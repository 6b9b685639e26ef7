"""Data parallelism and gradient accumulation do not change what is learned.

With the same global batch (16), these three runs see the same samples with the same noise at every
step (StepBatchSampler + StepRNG), so their weights after 20 steps agree up to float summation order:
- 1 process, batch 16 (the reference, in-process);
- 1 process, 2 accumulation steps of micro-batch 8 (in-process);
- 2 processes x 8 launched by torchrun on CPU with the gloo backend (subprocess, loopback only).
"""
from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
from conftest import run_module, subprocess_env

from common.checkpoint import load_checkpoint
from phase0_diffusion.train import main

STEPS = 20
COMMON = ["profile=smoke", f"train.max_steps={STEPS}", "train.batch_size=16", "run.threads=1"]
ATOL = 1e-5


def _final_model(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / f"step_{STEPS:08d}.pt")["model"]


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[float, str]:
    assert a.keys() == b.keys()
    worst = max(a, key=lambda k: (a[k].float() - b[k].float()).abs().max().item())
    return (a[worst].float() - b[worst].float()).abs().max().item(), worst


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    """The reference: one process, batch 16, no accumulation."""
    root = tmp_path_factory.mktemp("single")
    return Path(main([*COMMON, f"run.root={root}", "run.name=single"])["run_dir"])


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gradient_accumulation_matches_full_batch(single: Path, run_root: Path):
    """micro_batch_size=8 (2 accumulation steps) ends within 1e-5 of the batch-16 run, and actually
    trained (the weights moved away from the initialisation)."""
    acc = Path(main([*COMMON, "train.micro_batch_size=8", f"run.root={run_root}", "run.name=accum"])["run_dir"])
    ref, got = _final_model(single), _final_model(acc)
    diff, key = _max_diff(ref, got)
    assert diff <= ATOL, f"accumulation differs from the full batch by {diff:.3g} at {key}"
    first = load_checkpoint(single / "checkpoints" / "step_00000010.pt")["model"]
    assert _max_diff(first, ref)[0] > 1e-3  # the comparison is not between two untrained models


@pytest.mark.slow
@pytest.mark.enable_socket  # only to pick a free loopback port for torchrun's rendezvous
def test_two_process_gloo_matches_single_process(single: Path, run_root: Path):
    """torchrun --nproc_per_node=2 (CPU, gloo, 8 samples per process) ends within 1e-5 of one process
    with batch 16; only rank 0 writes the run folder, and it logs the same losses."""
    env = subprocess_env(OMP_NUM_THREADS="1")
    for attempt in range(2):  # the free port may be taken between choosing and binding it
        port = _free_loopback_port()
        proc = run_module("phase0_diffusion.train", *COMMON, f"run.root={run_root}", "run.name=ddp",
                          python_args=("-m", "torch.distributed.run", "--nproc_per_node=2",
                                       "--master_addr=127.0.0.1", f"--master_port={port}"),
                          env=env, timeout=180)
        if proc.returncode == 0 or "address already in use" not in proc.stderr.lower():
            break
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "2 process(es)" in proc.stdout

    run_dir = run_root / "phase0" / "ddp"
    diff, key = _max_diff(_final_model(single), _final_model(run_dir))
    assert diff <= ATOL, f"2-process run differs from 1 process by {diff:.3g} at {key}"
    assert (run_dir / "export" / "model.safetensors").exists()

    import json
    losses = [{r["step"]: r["train/loss"] for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())
               if "train/loss" in r} for d in (single, run_dir)]
    assert losses[0].keys() == losses[1].keys()
    for step in losses[0]:
        assert losses[1][step] == pytest.approx(losses[0][step], rel=1e-5, abs=1e-6), step
