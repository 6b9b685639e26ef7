"""Shared test setup: headless, offline, single-threaded subprocesses, and a CLI runner.

Environment variables are set here (at import, before any test) so that both in-process code and every
subprocess a test starts inherit them: no display needed, wandb and the Hugging Face hub never contacted,
one thread per process (the test machine has 2 cores shared with other jobs).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["WANDB_MODE"] = "disabled"
os.environ["HF_HUB_OFFLINE"] = "1"  # the hub is never contacted, whichever module imports huggingface_hub first
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def subprocess_env(**extra: str) -> dict[str, str]:
    """The current environment plus `extra`, with the repo importable and no fault injection leaking in."""
    env = dict(os.environ)
    env.pop("WM_FAULT_KILL_AT_STEP", None)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH", "")] if p])
    env.update(extra)
    return env


def run_module(module: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120,
               python_args: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """`python [python_args] -m module args...` from the repo root; returns the finished process."""
    return subprocess.run([sys.executable, *python_args, "-m", module, *args], cwd=REPO,
                          env=env or subprocess_env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def run_root(tmp_path: Path) -> Path:
    """A fresh outputs root for runs started by one test (`run.root=<run_root>`)."""
    return tmp_path


@pytest.fixture
def train_cli():
    """Run `python -m phase0_diffusion.train <overrides>` as a subprocess; returns CompletedProcess."""
    def run(*overrides: str, env: dict[str, str] | None = None, timeout: float = 120):
        return run_module("phase0_diffusion.train", *overrides, env=env, timeout=timeout)
    return run
