"""Generation with a scheduling matrix, and sliding-window rollouts far past the training window.

`sample_chunk` denoises a chunk of F frames after K known history frames (schedules.py says what the matrix
means). At every row it takes, in one batched call, an Euler step of the probability-flow ODE (EDM eq. 4)
for each frame whose level drops, conditioned on its K predecessors as they are at that row: history
frames at their levels, chunk frames at their current noise levels. A chunk frame that is finished (level 0)
is shown to its successors at the stabilization level σ_stab (noised once with fixed noise), which is how
Diffusion Forcing keeps its own small errors from being taken as ground truth.

`rollout` slides that window: history = the K real frames, then chunks of F frames; after each chunk
the last K frames (rounded to uint8, as real frames are) become the history, generated ones at σ_stab.

    frames = rollout(model, context, actions, horizon=64, sampler=SamplerConfig(schedule="pyramid", stabilization=0.05))
"""
from __future__ import annotations

import numpy as np
import torch

from common.diffusion import samplers
from common.images import to_model_range, to_uint8
from phase2_diffusion_forcing import schedules
from phase2_diffusion_forcing.config import SamplerConfig
from phase2_diffusion_forcing.model import DFWorldModel


@torch.no_grad()
def sample_chunk(model: DFWorldModel, history: torch.Tensor, history_sigma: torch.Tensor, actions: torch.Tensor,
                 matrix: np.ndarray, steps: int, stabilization: float = 0.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """history (B, K, 3, H, W) in [-1, 1] (already noisy at history_sigma (B, K)); actions (B, K + F - 1): the
    action taken on each of the K + F - 1 frames that precede a chunk frame; matrix (R + 1, F) -> (B, F, 3, H, W)."""
    B, K = history.shape[:2]
    F = matrix.shape[1]
    dev = history.device
    levels = model.sigmas(steps, dev).flip(0)  # levels[k] = σ of level k: levels[0] = 0, levels[S] = σ_max
    M = torch.as_tensor(matrix, device=dev)
    shape = (B, F, *history.shape[2:])
    x = torch.randn(shape, generator=generator, device=dev) * levels[M[0]].view(1, F, 1, 1, 1)
    stab_noise = torch.randn(shape, generator=generator, device=dev) * stabilization
    idx = torch.arange(F, device=dev)[:, None] + torch.arange(K, device=dev)[None]  # (F, K) context positions
    for r in range(M.shape[0] - 1):
        move = torch.nonzero(M[r + 1] < M[r]).flatten()  # frames that take a step at this row
        if len(move) == 0:
            continue
        s_cur, s_next = levels[M[r]], levels[M[r + 1]]  # (F,)
        # What each chunk frame looks like as context now: finished frames at the stabilization level.
        done = (M[r] == 0).view(1, F, 1, 1, 1)
        shown = torch.where(done, x + stab_noise, x)
        shown_sigma = torch.where(M[r] == 0, torch.full_like(s_cur, stabilization), s_cur)
        seq = torch.cat([history, shown], 1)  # (B, K + F, ...)
        seq_sigma = torch.cat([history_sigma, shown_sigma.expand(B, F)], 1)  # (B, K + F)
        n = len(move)
        ctx = seq[:, idx[move]].flatten(0, 1)  # (B, n, K, 3, H, W) -> (B n, K, 3, H, W)
        ctx_sigma = seq_sigma[:, idx[move]].flatten(0, 1)  # (B n, K)
        act = actions[:, idx[move]].flatten(0, 1)  # (B n, K)
        xm = x[:, move].flatten(0, 1)  # (B n, 3, H, W)
        sc = s_cur[move].repeat(B)  # (B n,)
        D = model.denoise(xm, sc, ctx, ctx_sigma, act).float()
        sn = s_next[move].repeat(B)[:, None, None, None]
        x_new = samplers.euler_step(xm, D, sc[:, None, None, None], sn)
        x = x.clone()
        x[:, move] = x_new.reshape(B, n, *x.shape[2:]).to(x.dtype)
    return x.clamp(-1, 1)


def history_levels(frames: torch.Tensor, generated: torch.Tensor, stabilization: float,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 history frames (B, K, 3, H, W) and which of them the model generated (B, K) -> the history as the
    denoiser sees it, in [-1, 1], generated frames noised at the stabilization level, and its levels (B, K)."""
    hist = to_model_range(frames)
    hist_sigma = torch.where(generated, stabilization, 0.0)
    if stabilization > 0:
        hist = hist + hist_sigma[..., None, None, None] * torch.randn(hist.shape, generator=generator,
                                                                      device=hist.device)
    return hist, hist_sigma


@torch.no_grad()
def next_frame(model: DFWorldModel, frames: torch.Tensor, actions: torch.Tensor, generated: torch.Tensor,
               sampler: SamplerConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """One frame after K history frames (B, K, 3, H, W) uint8, `actions[:, i]` (B, K) taken on frame i, `generated`
    (B, K) marking the model's own frames -> (B, 3, H, W) uint8: one window of `rollout` with sampler.chunk = 1
    (the same random draws in the same order). Only the autoregressive schedule means anything for one frame."""
    hist, hist_sigma = history_levels(frames, generated, sampler.stabilization, generator)
    matrix = schedules.make(sampler.schedule, 1, sampler.steps, sampler.uncertainty, sampler.matrix_file)
    return to_uint8(sample_chunk(model, hist, hist_sigma, actions, matrix, sampler.steps, sampler.stabilization,
                                 generator))[:, 0]


@torch.no_grad()
def rollout(model: DFWorldModel, context: torch.Tensor, actions: torch.Tensor, horizon: int,
            sampler: SamplerConfig, generator: torch.Generator | None = None, bf16: bool = False) -> torch.Tensor:
    """context (N, K, 3, H, W) uint8 real frames, actions (N, K - 1 + horizon) (actions[:, i] taken on frame i of
    [context, generated...]) -> generated frames (N, horizon, 3, H, W) uint8, in chunks of sampler.chunk."""
    device = next(model.parameters()).device
    N, K = context.shape[:2]
    F = sampler.chunk or model.cfg.window
    frames = context.to(device)  # uint8 history so far
    generated = torch.zeros(N, K, dtype=torch.bool, device=device)  # which history frames are the model's
    acts = actions.to(device)
    # One matrix for a full chunk; a shorter last chunk uses its first columns (the rows after its last frame
    # finishes move nothing and are skipped).
    matrix = schedules.make(sampler.schedule, F, sampler.steps, sampler.uncertainty, sampler.matrix_file)
    out = []
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        while sum(o.shape[1] for o in out) < horizon:
            done = sum(o.shape[1] for o in out)
            f = min(F, horizon - done)
            hist, hist_sigma = history_levels(frames[:, -K:], generated[:, -K:], sampler.stabilization, generator)
            chunk = sample_chunk(model, hist, hist_sigma, acts[:, done:done + K + f - 1], matrix[:, :f], sampler.steps,
                                 sampler.stabilization, generator)
            chunk = to_uint8(chunk)
            out.append(chunk)
            frames = torch.cat([frames, chunk], 1)[:, -K:]
            generated = torch.cat([generated, torch.ones(N, f, dtype=torch.bool, device=device)], 1)[:, -K:]
    return torch.cat(out, 1).cpu()
