"""Crash and resume: a run killed mid-way and resumed ends bit-identical to one that never stopped.

The reference run is trained in-process (`main(argv)`); the crashed run is a real subprocess that
SIGKILLs itself after step 13 (`WM_FAULT_KILL_AT_STEP`), i.e. 3 steps after its last checkpoint, so
the resume must replay steps 11-13 with the same data order, noise, optimizer and EMA state.
"""
from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch
from conftest import subprocess_env

from common.checkpoint import CheckpointManager, load_checkpoint, load_safetensors
from phase0_diffusion.train import main

STEPS, CKPT_EVERY, KILL_AT = 20, 5, 13
COMMON = ["profile=smoke", f"train.max_steps={STEPS}", f"train.ckpt_every={CKPT_EVERY}"]


def _args(root: Path, name: str, *extra: str) -> list[str]:
    return [*COMMON, f"run.root={root}", f"run.name={name}", *extra]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted 20-step smoke run (in-process); returns its run folder."""
    root = tmp_path_factory.mktemp("resume_ref")
    out = main(_args(root, "full"))
    return Path(out["run_dir"])


def _assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str) -> None:
    assert a.keys() == b.keys(), f"{what}: different parameter names"
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{what}: {len(different)} tensors differ, e.g. {different[:3]}"


def test_killed_and_resumed_run_is_bitwise_identical(reference: Path, run_root: Path, train_cli):
    """SIGKILL after step 13 + `run.resume=true` gives exactly the uninterrupted run's final weights.

    Compared bitwise (torch.equal): the exported EMA weights (export/model.safetensors) and the raw
    model in the last checkpoint. Also: the crashed run left no export, and the resumed run's
    metrics.jsonl continues after the checkpoint step instead of starting over.
    """
    crashed = train_cli(*_args(run_root, "crash"), env=subprocess_env(WM_FAULT_KILL_AT_STEP=str(KILL_AT)))
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    run_dir = run_root / "phase0" / "crash"
    steps = [s for s, _ in CheckpointManager(run_dir / "checkpoints").steps()]
    assert steps[-1] == 10, steps  # the last checkpoint before the kill at 13
    assert not (run_dir / "export" / "model.safetensors").exists()

    resumed = train_cli(*_args(run_root, "crash", "run.resume=true"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed" in resumed.stdout and "step 10" in resumed.stdout, resumed.stdout

    _assert_same_state(load_safetensors(reference / "export" / "model.safetensors"),
                       load_safetensors(run_dir / "export" / "model.safetensors"), "exported EMA weights")
    name = f"step_{STEPS:08d}.pt"
    ref_ckpt = load_checkpoint(reference / "checkpoints" / name)
    new_ckpt = load_checkpoint(run_dir / "checkpoints" / name)
    assert new_ckpt["step"] == ref_ckpt["step"] == STEPS
    _assert_same_state(ref_ckpt["model"], new_ckpt["model"], "checkpoint model")
    _assert_same_state(ref_ckpt["ema"], new_ckpt["ema"], "checkpoint EMA")

    logged = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert logged[:2] == [5, 10], logged  # from the crashed process
    assert [s for s in logged if s > 10], f"resumed run logged nothing after step 10: {logged}"
    assert logged[-1] == STEPS
    train_losses = {}
    for path in (reference, run_dir):
        lines = [json.loads(l) for l in (path / "metrics.jsonl").read_text().splitlines()]
        train_losses[path] = {r["step"]: r["train/loss"] for r in lines if "train/loss" in r}
    assert train_losses[reference] == train_losses[run_dir]  # same loss at every logged step


def test_resume_without_checkpoint_names_the_command(run_root: Path, train_cli):
    """`run.resume=true` for a run with no checkpoint fails, saying which command starts one."""
    proc = train_cli("profile=smoke", f"run.root={run_root}", "run.name=never_started", "run.resume=true")
    assert proc.returncode != 0
    assert "python -m phase0_diffusion.train" in proc.stderr, proc.stderr[-2000:]
    assert "never_started" in proc.stderr
    assert not (run_root / "phase0" / "never_started").exists()  # nothing created by the failed attempt


def test_fresh_run_into_folder_with_checkpoints_is_refused(reference: Path, capsys):
    """Starting a new run where checkpoints already exist is refused (exit 2, one line pointing at
    run.resume=true), and the existing checkpoints are left untouched."""
    ckpts = {p.name: p.stat().st_mtime_ns for p in (reference / "checkpoints").iterdir()}
    with pytest.raises(SystemExit) as exit_info:
        main(_args(reference.parents[1], reference.name))
    assert exit_info.value.code == 2
    assert "run.resume=true" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in (reference / "checkpoints").iterdir()} == ckpts


def test_unnamed_runs_started_in_the_same_second_get_their_own_folders(tmp_path: Path, monkeypatch):
    """A script that trains a tokenizer and then the model on it can start both runs within one second: the second
    run must not land in (and be refused by) the first one's folder."""
    import datetime as dt

    from common import runs

    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return dt.datetime(2026, 12, 5, 19, 26, 37)

    monkeypatch.setattr(runs._dt, "datetime", Frozen)
    cfg = runs.TrainRunConfig(root=str(tmp_path))
    first, _ = runs.open_run("phase4", cfg)
    (first.ckpt_dir / "step_00000004.pt").write_bytes(b"")
    second, resuming = runs.open_run("phase4", cfg)
    assert (first.dir.name, second.dir.name, resuming) == ("20261205-192637", "20261205-192637-2", False)
