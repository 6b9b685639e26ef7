"""Scheduling matrices: which noise level every frame of a chunk is at, at every denoising step.

A matrix M has shape (R + 1, F) for a chunk of F frames and holds integer levels in [0, S]: S is full noise
(σ_max), 0 is clean, level k is σ_k = karras_sigmas(S)[S - k]. Row r is the state before step r; the sampler
moves every frame whose level drops between rows r and r+1 (one Euler step from σ_{M[r,j]} to σ_{M[r+1,j]})
and leaves the others as they are. Diffusion Forcing's schedules (Chen et al. 2024, section 3.3):

    full_sequence     every column the same: all frames share a level      (R = S)
    autoregressive    frame j goes S -> 0 while the others wait; j+1 starts when j is clean   (R = F S)
    pyramid(u)        frame j starts u rows after frame j-1, so the future stays noisier   (R = S + (F-1) u)
                      u = 0 is full_sequence, u >= S is autoregressive

Any matrix a user supplies (`from_file`) is checked by `validate`: integer levels in [0, S], every column
non-increasing, first row all S, last row all 0.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from common.errors import UserError


class ScheduleError(UserError, ValueError):
    """A scheduling matrix is malformed; the message says which rule it breaks and where."""


def pyramid(frames: int, steps: int, uncertainty: int) -> np.ndarray:
    """Frame j's level at row r is S - clip(r - j u, 0, S)."""
    R = steps + (frames - 1) * uncertainty
    r = np.arange(R + 1)[:, None]
    j = np.arange(frames)[None]
    return (steps - np.clip(r - j * uncertainty, 0, steps)).astype(np.int64)


def full_sequence(frames: int, steps: int) -> np.ndarray:
    return pyramid(frames, steps, 0)


def autoregressive(frames: int, steps: int) -> np.ndarray:
    return pyramid(frames, steps, steps)


def validate(m: np.ndarray, steps: int, frames: int | None = None, source: str = "matrix") -> np.ndarray:
    m = np.asarray(m)
    if m.ndim != 2 or m.shape[0] < 2:
        raise ScheduleError(f"{source}: needs 2 dimensions (rows = steps + 1, columns = frames), got shape {m.shape}")
    if frames is not None and m.shape[1] != frames:
        raise ScheduleError(f"{source}: has {m.shape[1]} columns but the chunk has {frames} frames")
    if not np.issubdtype(m.dtype, np.integer):
        if not np.all(np.equal(np.mod(m, 1), 0)):
            raise ScheduleError(f"{source}: levels must be integers in [0, {steps}]")
        m = m.astype(np.int64)
    if m.min() < 0 or m.max() > steps:
        raise ScheduleError(f"{source}: levels must lie in [0, {steps}] (S = sampler.steps = full noise); "
                            f"found {m.min()}..{m.max()}")
    up = np.argwhere(np.diff(m, axis=0) > 0)
    if len(up):
        r, j = up[0]
        raise ScheduleError(f"{source}: frame {j} gets noisier from row {r} to {r + 1} ({m[r, j]} -> {m[r + 1, j]}); "
                            f"every column must be non-increasing")
    if (m[0] != steps).any() or (m[-1] != 0).any():
        raise ScheduleError(f"{source}: the first row must be all {steps} (full noise) and the last all 0 (clean)")
    return m


def from_file(path: str | Path, steps: int, frames: int) -> np.ndarray:
    """A matrix from .npy, .json (a list of rows) or whitespace/comma-separated text."""
    path = Path(path)
    if not path.exists():
        raise ScheduleError(f"matrix file {path} does not exist")
    try:
        if path.suffix == ".npy":
            m = np.load(path)
        elif path.suffix == ".json":
            m = np.array(json.loads(path.read_text()))
        else:
            m = np.loadtxt(path, delimiter="," if "," in path.read_text() else None, ndmin=2)
    except Exception as e:
        raise ScheduleError(f"matrix file {path} could not be read: {e}") from e
    return validate(m, steps, frames, str(path))


def make(kind: str, frames: int, steps: int, uncertainty: int = 1, matrix_file: str = "") -> np.ndarray:
    if kind == "full_sequence":
        return full_sequence(frames, steps)
    if kind == "autoregressive":
        return autoregressive(frames, steps)
    if kind == "pyramid":
        return pyramid(frames, steps, uncertainty)
    if kind == "file":
        return from_file(matrix_file, steps, frames)
    raise ScheduleError(f"unknown schedule {kind!r}: autoregressive, pyramid, full_sequence or file")
