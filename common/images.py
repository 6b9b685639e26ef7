"""Images between storage and the model: uint8 [0, 255] <-> float [-1, 1], the one convention of every phase; and
`join`, which lays (H, W, 3) uint8 images out side by side or stacked for the READMEs' figures."""
from __future__ import annotations

import numpy as np
import torch


def to_model_range(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return x_uint8.to(torch.float32) / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] (clamped; computed in float32 whatever x's dtype) -> uint8 [0, 255], rounded: the exact inverse
    of to_model_range, and what a generated frame becomes before it is shown or fed back as context."""
    return ((x.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)


def join(images: list[np.ndarray], axis: int, gap: int = 4) -> np.ndarray:
    """Images side by side (axis 1) or stacked (axis 0) with white gaps; shorter ones padded with white."""
    other = 1 - axis
    size = max(im.shape[other] for im in images)
    padded = [np.pad(im, [(0, size - im.shape[other]) if a == other else (0, 0) for a in range(3)],
                     constant_values=255) for im in images]
    white = np.full([gap if a == axis else (size if a == other else 3) for a in range(3)], 255, np.uint8)
    return np.concatenate([x for im in padded for x in (im, white)][:-1], axis=axis)
