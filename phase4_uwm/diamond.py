"""DIAMOND-lite on LIBERO: phase 1's world model class (an EDM next-frame denoiser conditioned on K past frames and
actions) trained on the same demonstrations, the baseline of the UWM's forward-dynamics mode.

    data = DiamondClips(demos, context=4, stats)           # phase 1's sample layout on LIBERO frames
    model = phase1_world_model.model.WorldModel(cfg, 0, (6, 64, 64), action_size=7)   # two cameras as 6 channels
    frames = rollout(model, demos, rows, stats, horizon=16)  # (B, 16, 6, S, S) uint8: frames t+1 .. t+16

The two cameras are stacked as channels (one "frame" = agent view + wrist, 6 x 64 x 64), the 7-d actions enter
through phase 1's `VectorActionEmbedding`, and there is no reward/end head. To predict what the UWM predicts (the
frames 16 steps ahead), it rolls the chunk's 16 real actions out one frame at a time, feeding back its own frames:
16 x `steps` network evaluations per prediction, against the UWM's 10 for the whole chunk.
"""
from __future__ import annotations

import torch

from common.images import to_uint8
from phase4_uwm.data import ActionStats, Demos, episode_bounds


def stacked(frames: torch.Tensor) -> torch.Tensor:
    """(..., V, 3, S, S) -> (..., V*3, S, S): the cameras as channels."""
    return frames.flatten(-4, -3)


class DiamondClips(torch.utils.data.Dataset):
    """Phase 1's training sample on LIBERO: frames t-K+1..t (K, 6, S, S) uint8, actions a_{t-K+1..t} (K, 7)
    scaled to [-1, 1], `mask` False where a position falls before the episode's start (its frame is the first one
    repeated, its action the learned "no action"), and the next frame t+1. One sample per t whose t+1 exists."""

    def __init__(self, demos: Demos, context: int, stats: ActionStats):
        self.demos, self.K = demos, context
        lo, hi = episode_bounds(demos.episode)
        self.rows = torch.nonzero(torch.arange(len(demos)) < hi).flatten()  # t with t + 1 in its episode
        self.lo = lo
        self.actions = stats.normalize(demos.actions)

    def __len__(self) -> int:
        return len(self.rows)

    def window(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        pos = t - self.K + 1 + torch.arange(self.K)
        mask = pos >= self.lo[t]
        return torch.where(mask, pos, self.lo[t]), mask

    def __getitem__(self, i: int) -> dict:
        t = int(self.rows[i])
        pos, mask = self.window(t)
        return {"obs": stacked(self.demos.frames[pos]), "act": self.actions[pos], "mask": mask,
                "next_obs": stacked(self.demos.frames[t + 1])}


@torch.no_grad()
def rollout(model, demos: Demos, rows: list[int], stats: ActionStats, horizon: int, steps: int | None = None,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """From real frames up to t (for each t in `rows`), play the real actions a_t .. a_{t+horizon-1} (clamped to
    the episode's last action past its end, as the UWM's clips are) through the world model, feeding back its own
    frames: -> (B, horizon, 6, S, S) uint8, frames t+1 .. t+horizon."""
    K = model.cfg.context
    lo, hi = episode_bounds(demos.episode)
    acts = stats.normalize(demos.actions)
    rows_t = torch.as_tensor(rows)
    pos = rows_t[:, None] - K + 1 + torch.arange(K)[None]
    mask = pos >= lo[rows_t][:, None]
    pos = torch.where(mask, pos, lo[rows_t][:, None])
    dev = next(model.parameters()).device
    frames = (stacked(demos.frames[pos]).float() / 127.5 - 1).to(dev)  # (B, K, 6, S, S) in [-1, 1]
    act = acts[pos].to(dev)
    future = torch.minimum(rows_t[:, None] + torch.arange(horizon)[None], hi[rows_t][:, None])
    fut_act = acts[future].to(dev)  # (B, horizon, 7)
    mask = mask.to(dev)
    out = []
    for j in range(horizon):
        if j:  # the window moves one frame on; its last action is the one taken at its last frame, a_{t+j}
            act = torch.cat([act[:, 1:], fut_act[:, j:j + 1]], dim=1)
        nxt = model.next_frame(frames, act, mask, generator=generator, steps=steps)
        out.append(nxt)
        frames = torch.cat([frames[:, 1:], nxt[:, None]], dim=1)
        mask = torch.cat([mask[:, 1:], torch.ones_like(mask[:, :1])], dim=1)
    return to_uint8(torch.stack(out, dim=1))
