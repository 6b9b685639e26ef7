"""Images between storage and the model: uint8 [0, 255] <-> float [-1, 1], the one convention of every phase."""
from __future__ import annotations

import torch


def to_model_range(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return x_uint8.to(torch.float32) / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] (clamped; computed in float32 whatever x's dtype) -> uint8 [0, 255], rounded: the exact inverse
    of to_model_range, and what a generated frame becomes before it is shown or fed back as context."""
    return ((x.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
