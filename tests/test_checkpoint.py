"""common.checkpoint: atomic writes that survive SIGKILL, loud failures on bad files, retention, RNG, export."""
from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, subprocess_env

from common.checkpoint import (CheckpointError, CheckpointManager, capture_rng, export_safetensors,
                               load_checkpoint, load_safetensors, restore_rng)


def _small_state(step: int) -> dict:
    return {"step": step, "model": {"w": torch.arange(6.0).reshape(2, 3) * step}, "note": f"s{step}"}


# ------------------------------------------------------------------ kill during a write
KILL_CHILD = textwrap.dedent("""
    import sys, torch
    from common.checkpoint import CheckpointManager
    m = CheckpointManager(sys.argv[1], keep_last=3)
    m.save({"step": 1, "model": {"w": torch.arange(6.0).reshape(2, 3)}, "note": "s1"}, 1)
    big = torch.ones(75_000_000)  # 300 MB: the write takes long enough to be caught half-way
    print("saving-2", flush=True)
    m.save({"step": 2, "model": {"w": big}}, 2)
    print("saved-2", flush=True)
""")


def test_kill_during_checkpoint_write_keeps_previous_checkpoint(tmp_path: Path):
    """SIGKILL while step 2 is being written leaves step 1 as the latest, loadable checkpoint.

    The child is killed as soon as `step_00000002.pt.tmp` appears, i.e. with step 2 half-written:
    no `step_00000002.pt` may exist, `latest()` is step 1 with its exact content, and the next save
    removes the stale `.tmp`.
    """
    ckpt_dir = tmp_path / "checkpoints"
    child = subprocess.Popen([sys.executable, "-c", KILL_CHILD, str(ckpt_dir)], cwd=REPO, env=subprocess_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tmp_file = ckpt_dir / "step_00000002.pt.tmp"
    deadline = time.monotonic() + 60
    try:
        while not tmp_file.exists():
            assert child.poll() is None, f"child exited early ({child.returncode}): {child.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "step_00000002.pt.tmp never appeared"
            time.sleep(0.001)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        out, err = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL, err[-2000:]
    assert "saved-2" not in out  # killed before the save of step 2 returned

    assert tmp_file.exists()  # the half-written file is really there...
    assert not (ckpt_dir / "step_00000002.pt").exists()  # ...and never got the final name
    manager = CheckpointManager(ckpt_dir, keep_last=3)
    assert [s for s, _ in manager.steps()] == [1]
    assert manager.latest() == ckpt_dir / "step_00000001.pt"
    state = load_checkpoint(manager.latest())
    assert state["step"] == 1 and state["note"] == "s1"
    assert torch.equal(state["model"]["w"], torch.arange(6.0).reshape(2, 3))

    manager.save(_small_state(3), 3)
    assert not list(ckpt_dir.glob("*.tmp")), "the stale .tmp survived the next save"
    assert [s for s, _ in manager.steps()] == [1, 3]


# ------------------------------------------------------------------ bad files fail loudly
def test_truncated_checkpoint_raises_naming_the_file(tmp_path: Path):
    """A truncated checkpoint raises CheckpointError (not a raw zip/pickle error) naming the file."""
    manager = CheckpointManager(tmp_path, keep_last=3)
    path = manager.save(_small_state(1), 1)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)
    garbage = tmp_path / "step_00000002.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="step_00000002.pt"):
        load_checkpoint(garbage)


def test_dict_without_step_raises_naming_the_file(tmp_path: Path):
    """A valid torch file that is not a training checkpoint (no 'step') is rejected by name."""
    path = tmp_path / "weights_only.pt"
    torch.save({"model": {"w": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and "step" in str(err.value)
    missing = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError, match="nope.pt"):
        load_checkpoint(missing)


def test_resume_from_corrupt_latest_checkpoint_fails_naming_it(run_root: Path, capsys):
    """Resuming a run whose newest checkpoint is corrupt stops with an error naming that file;
    it does not silently fall back to an older checkpoint (or start from scratch)."""
    from phase0_diffusion.train import main

    args = ["profile=smoke", f"run.root={run_root}", "run.name=corrupt", "train.max_steps=10",
            "train.ckpt_every=5"]
    out = main(args)
    ckpt_dir = Path(out["run_dir"]) / "checkpoints"
    latest = ckpt_dir / "step_00000010.pt"
    assert sorted(p.name for p in ckpt_dir.glob("step_*.pt")) == ["step_00000005.pt", latest.name]
    latest.write_bytes(latest.read_bytes()[:1000])
    with pytest.raises(SystemExit) as exit_info:  # the entry point prints the CheckpointError, exits 2
        main([*args, "train.max_steps=15", "run.resume=true"])
    assert exit_info.value.code == 2
    assert str(latest) in capsys.readouterr().err
    assert sorted(p.name for p in ckpt_dir.glob("step_*.pt")) == ["step_00000005.pt", latest.name]


# ------------------------------------------------------------------ retention
def test_keep_last_and_best(tmp_path: Path):
    """keep_last=2 keeps the 2 newest step files; best.pt (mode min) is the step with the lowest
    metric (step 4 of metrics [5, 3, 4, 1, 2]) even though later steps were saved, and best.json says so."""
    import json

    manager = CheckpointManager(tmp_path, keep_last=2)
    for step, metric in zip(range(1, 6), [5.0, 3.0, 4.0, 1.0, 2.0]):
        manager.save(_small_state(step), step, metric=metric, mode="min")
    assert [s for s, _ in manager.steps()] == [4, 5]
    best = load_checkpoint(tmp_path / "best.pt")
    step4 = load_checkpoint(tmp_path / "step_00000004.pt")
    assert best["step"] == 4 and best["note"] == step4["note"]
    assert torch.equal(best["model"]["w"], step4["model"]["w"])
    assert json.loads((tmp_path / "best.json").read_text()) == {"step": 4, "value": 1.0}
    assert manager.best_value() == 1.0
    assert not list(tmp_path.glob("*.tmp"))


def test_best_mode_max(tmp_path: Path):
    """mode=max keeps the highest metric; best.pt survives its step file being rotated out."""
    manager = CheckpointManager(tmp_path, keep_last=1)
    for step, metric in zip(range(1, 4), [1.0, 9.0, 5.0]):
        manager.save(_small_state(step), step, metric=metric, mode="max")
    assert [s for s, _ in manager.steps()] == [3]
    assert load_checkpoint(tmp_path / "best.pt")["step"] == 2


# ------------------------------------------------------------------ RNG and export
def test_rng_capture_restore_round_trip():
    """capture_rng/restore_rng reproduce the next draws of Python, NumPy and torch exactly,
    including after the state passed through a torch.save/torch.load checkpoint."""
    import io

    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.random(), np.random.rand(), torch.rand(1)  # move away from the seeded state

    state = capture_rng()
    buf = io.BytesIO()
    torch.save(state, buf)

    def draw():
        return random.random(), np.random.rand(5).tolist(), torch.randn(5)

    first = draw()
    draw()  # advance further
    buf.seek(0)
    restore_rng(torch.load(buf, weights_only=False))
    again = draw()
    assert first[0] == again[0] and first[1] == again[1] and torch.equal(first[2], again[2])


def test_export_safetensors_round_trip(tmp_path: Path):
    """export_safetensors writes model.safetensors (loaded back bit-exact, contiguous, on CPU) and the
    config as config.yaml beside it; a missing or corrupt weights file raises CheckpointError."""
    from omegaconf import OmegaConf

    sd = {"a.weight": torch.randn(3, 4), "a.bias": torch.randn(4),
          "b.t": torch.randn(4, 3).t(),  # non-contiguous
          "n": torch.tensor(7, dtype=torch.long), "h": torch.randn(2).to(torch.bfloat16)}
    config = {"train": {"lr": 1e-3}, "model": {"channels": [16, 32]}, "profile": "smoke"}
    path = export_safetensors(sd, tmp_path / "export", config)
    assert path == tmp_path / "export" / "model.safetensors"
    loaded = load_safetensors(path)
    assert loaded.keys() == sd.keys()
    for k in sd:
        assert loaded[k].dtype == sd[k].dtype and torch.equal(loaded[k], sd[k]), k
    assert OmegaConf.to_container(OmegaConf.load(tmp_path / "export" / "config.yaml")) == config
    assert not list((tmp_path / "export").glob("*.tmp"))

    with pytest.raises(CheckpointError, match="missing.safetensors"):
        load_safetensors(tmp_path / "missing.safetensors")
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_safetensors(path)
