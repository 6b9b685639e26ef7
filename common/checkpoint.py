"""Checkpoints that survive a kill: atomic writes, last-N + best retention, full RNG state, safetensors export.

A checkpoint is one `torch.save`d dict (model, EMA, optimizer, LR schedule, step, data position, RNG
states, config). It is written to `<name>.tmp` in the same folder, flushed and fsynced, then renamed
over the final name: rename is atomic on POSIX, so a kill at any moment leaves either the old file or
the new one, never half of one. Leftover `.tmp` files are ignored (and cleaned on the next save).
"""
from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.errors import UserError

_STEP_RE = re.compile(r"^step_(\d{8})\.pt$")


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file could not be read; the message names the file."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write_fn) -> None:
    """Call write_fn(file_object) on a temporary sibling, then atomically rename it to `path`."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write_fn(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def read_npz(path: str | Path, required: tuple[str, ...], error) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays of an .npz file and its JSON `meta` array, checked: `error(path, reason)` (an exception class
    naming the file) is raised for a missing or unreadable file, a missing array or a meta that is not JSON.
    Each member is read in full, which makes zipfile verify its CRC: a flipped byte anywhere is caught here."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise error(path, "the file is missing") from None
    except Exception as e:  # zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, ...
        raise error(path, f"unreadable ({type(e).__name__}: {e})") from None
    missing = [k for k in (*required, "meta") if k not in arrays]
    if missing:
        raise error(path, f"missing array(s) {', '.join(missing)}")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except ValueError as e:
        raise error(path, f"meta is not JSON ({e})") from None
    return arrays, meta


def atomic_torch_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # torch raises several types for truncated/corrupt zip archives
        raise CheckpointError(
            f"checkpoint {path} is corrupt or unreadable ({type(e).__name__}: {str(e).splitlines()[0]}). "
            f"Delete it to fall back to an earlier checkpoint in {path.parent}, or pass another run.") from e
    if not isinstance(obj, dict) or "step" not in obj:
        raise CheckpointError(f"checkpoint {path} is not a training checkpoint of this project (no 'step')")
    return obj


def capture_rng() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointManager:
    """Writes `step_XXXXXXXX.pt`, keeps the last `keep_last` of them plus `best.pt`."""

    def __init__(self, directory: Path, keep_last: int = 3):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.keep_last = keep_last
        self._best_file = self.dir / "best.json"

    def steps(self) -> list[tuple[int, Path]]:
        found = [(int(m.group(1)), p) for p in self.dir.iterdir() if (m := _STEP_RE.match(p.name))]
        return sorted(found)

    def latest(self) -> Path | None:
        steps = self.steps()
        return steps[-1][1] if steps else None

    def best_value(self) -> float | None:
        if self._best_file.exists():
            return json.loads(self._best_file.read_text())["value"]
        return None

    def save(self, state: dict, step: int, metric: float | None = None, mode: str = "min") -> Path:
        for stale in self.dir.glob("*.tmp"):
            stale.unlink(missing_ok=True)
        path = self.dir / f"step_{step:08d}.pt"
        atomic_torch_save(state, path)
        if metric is not None and self._improves(metric, mode):
            # best.pt is a hard link to the step file (no second copy on disk); linked via a temp
            # name and renamed, so best.pt is replaced atomically too.
            tmp = self.dir / "best.pt.tmp"
            tmp.unlink(missing_ok=True)
            os.link(path, tmp)
            os.replace(tmp, self.dir / "best.pt")
            atomic_write(self._best_file, lambda f: f.write(json.dumps({"step": step, "value": metric}).encode()))
        for _, old in self.steps()[:-self.keep_last] if self.keep_last > 0 else []:
            old.unlink(missing_ok=True)
        return path

    def _improves(self, metric: float, mode: str) -> bool:
        best = self.best_value()
        return best is None or (metric < best if mode == "min" else metric > best)


def export_safetensors(state_dict: dict[str, torch.Tensor], out_dir: Path, config: dict | None = None,
                       name: str = "model") -> Path:
    """Final weights as `<name>.safetensors` with the resolved config beside them (`config.yaml`)."""
    from omegaconf import OmegaConf
    from safetensors.torch import save as st_save

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    path = out_dir / f"{name}.safetensors"
    atomic_write(path, lambda f: f.write(st_save(tensors)))
    if config is not None:
        text = OmegaConf.to_yaml(OmegaConf.create(config))
        atomic_write(out_dir / "config.yaml", lambda f: f.write(text.encode()))
    return path


def load_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        return load_file(str(path))
    except Exception as e:
        raise CheckpointError(f"weights file {path} is corrupt or unreadable: {e}") from e
