"""Autoregressive rollouts on held-out episodes: K real frames, then the model feeds on its own frames.

    real:       x_{t0-K+1} .. x_{t0}  |  x_{t0+1}  x_{t0+2} ...  x_{t0+h}
    generated:  (same K real frames)  |  x^_{t0+1} x^_{t0+2} ... x^_{t0+h}     x^_{t+1} ~ p(. | x^_{t-K+1..t}, a_{t-K+1..t})

The actions are the episode's real ones, so generated and real frames can be compared step by step.
Generated frames are rounded to uint8 before they become context, exactly like the real frames the model
was trained on.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from common.errors import DataError
from common.images import to_uint8
from phase1_world_model.dataset import AtariWorldModelDataset
from phase1_world_model.model import WorldModel


@dataclass
class RolloutBatch:
    """N rollouts: real context (N, K, 3, H, W), actions (N, K - 1 + h), real future (N, h, 3, H, W), all real."""

    context: torch.Tensor
    actions: torch.Tensor
    future: torch.Tensor
    starts: list[tuple[int, int]]  # (episode number, t0) of each rollout
    future_ram: np.ndarray | None = None  # (N, h, 128) the emulator's RAM of the real future, when recorded

    def __len__(self) -> int:
        return len(self.starts)


def start_points(ds: AtariWorldModelDataset, horizon: int, per_episode: int,
                 max_episodes: int = 0) -> list[tuple[int, int]]:
    """(episode position in the split, t0) pairs, `per_episode` spread evenly over each episode, with a full
    real context (t0 >= K - 1) and `horizon` real frames after t0. Episodes too short for one are skipped."""
    K, out = ds.context, []
    positions = range(len(ds.episodes)) if not max_episodes else range(min(max_episodes, len(ds.episodes)))
    for e in positions:
        lo, hi = K - 1, int(ds.lengths[e]) - horizon  # t0 + horizon <= T (frames run 0..T)
        if hi < lo:
            continue
        ts = np.unique(np.linspace(lo, hi, per_episode).round().astype(int))
        out += [(e, int(t)) for t in ts]
    if not out:
        raise DataError(f"no held-out episode of {ds.root} ({ds.split}) is longer than {horizon + K - 1} steps: "
                         f"use a shorter horizon or collect longer episodes")
    return out


def gather(ds: AtariWorldModelDataset, starts: list[tuple[int, int]], horizon: int) -> RolloutBatch:
    K = ds.context
    ctx, acts, fut = [], [], []
    for e, t0 in starts:
        ctx.append(ds.episode_frames(e, t0 - K + 1, t0 + 1)[0])
        acts.append(ds.episode_actions(e, t0 - K + 1, t0 + horizon)[0])
        fut.append(ds.episode_frames(e, t0 + 1, t0 + 1 + horizon)[0])
    ram = None if ds.ram is None else np.stack([ds.episode_ram(e, t0 + 1, t0 + 1 + horizon) for e, t0 in starts])
    return RolloutBatch(torch.from_numpy(np.stack(ctx)), torch.from_numpy(np.stack(acts).astype(np.int64)),
                        torch.from_numpy(np.stack(fut)), [(ds.episodes[e], t0) for e, t0 in starts], ram)


@torch.no_grad()
def rollout(model: WorldModel | None, context: torch.Tensor, actions: torch.Tensor, horizon: int,
            generator: torch.Generator | None = None, steps: int | None = None, solver: str | None = None,
            bf16: bool = False) -> torch.Tensor:
    """-> generated frames (N, horizon, 3, H, W) uint8. model=None is the copy-the-last-frame baseline."""
    N, K = context.shape[:2]
    if model is None:
        return context[:, -1:].expand(N, horizon, *context.shape[2:]).clone()
    device = next(model.parameters()).device
    frames = context.to(device)
    acts = actions.to(device)
    out = []
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for i in range(horizon):
            x = model.next_frame(frames[:, -K:], acts[:, i:i + K], generator=generator, steps=steps, solver=solver)
            nxt = to_uint8(x)
            out.append(nxt)
            frames = torch.cat([frames[:, 1:], nxt[:, None]], dim=1)
    return torch.stack(out, dim=1).cpu()


def batched_rollout(model, batch: RolloutBatch, horizon: int, size: int, seed: int, **kw) -> torch.Tensor:
    """`rollout` over the batch in chunks of `size`; chunk i's noise comes from seed + i (reproducible)."""
    outs = []
    for i in range(0, len(batch), size):
        device = next(model.parameters()).device if model is not None else "cpu"
        g = torch.Generator(device=device).manual_seed(seed + i)
        outs.append(rollout(model, batch.context[i:i + size], batch.actions[i:i + size], horizon, g, **kw))
    return torch.cat(outs)


def side_by_side(real: torch.Tensor, *generated: torch.Tensor, gap: int = 2) -> np.ndarray:
    """(h, 3, H, W) uint8 clips -> (h, H, W * n + gaps, 3) frames: real | each generated | |real - first|."""
    diff = (real.float() - generated[0].float()).abs().clamp(0, 255).to(torch.uint8)
    clips = [real, *generated, diff]
    h, C, H, W = real.shape
    canvas = torch.full((h, C, H, len(clips) * W + (len(clips) - 1) * gap), 255, dtype=torch.uint8)
    for j, c in enumerate(clips):
        canvas[..., j * (W + gap):j * (W + gap) + W] = c
    return canvas.permute(0, 2, 3, 1).numpy()
