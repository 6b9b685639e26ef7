"""The five modes of a UWM: the same network, different noise levels per modality (no guidance, no retraining).

    from phase4_uwm.modes import run_mode
    out = run_mode(model, "policy", obs, task)                       # out.actions (B, chunk, A), data set units
    out = run_mode(model, "forward", obs, task, actions=a)           # out.future (B, V, F, C, h, w) latents
    out = run_mode(model, "inverse", obs, task, future=z)            # actions from current and real future
    out = run_mode(model, "video", obs, task)                        # future without actions
    out = run_mode(model, "joint", obs, task)                        # both at once

    mode      actions                          future video
    policy    denoised from noise              pure noise, labelled t = T-1, never updated
    forward   given, clean (t = 0)             denoised from noise
    inverse   denoised from noise              given (real future, encoded), clean (t = 0)
    video     pure noise, labelled t = T-1     denoised from noise
    joint     denoised from noise              denoised from noise (the same timesteps)

Sampling is DDIM (eta = 0) on the DDPM grid, with "trailing" timesteps T-1, T-1-T/N, ... (the first step at the
level pure noise was trained at) or the authors' "leading" ones T - T/N, ..., 0 (model.cfg.timestep_spacing),
written as common's Euler step in variance-exploding coordinates (x_ve = x_vp / sqrt(abar),
sigma = sqrt((1 - abar) / abar)), which is DDIM exactly. Each step's clean estimate is clipped (model.cfg.clip_actions, clip_latents), as the authors' DDIMScheduler(clip_sample=True) does: at
t = T-1 an eps error is multiplied by 1 / sqrt(abar) = 2000. Everything is batched: to score K action proposals
of one observation, repeat the observation K times (or pass `cond` computed once).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from common.diffusion.samplers import euler_step
from phase4_uwm.config import MODES


@dataclass
class ModeOutput:
    """What a mode returns: the denoised (or given) action chunk and future latents; None for a half not asked for."""

    actions: torch.Tensor | None  # (B, chunk, A) in the data set's units (given actions are returned as given)
    future: torch.Tensor | None  # (B, V, F, C, h, w) latents (given futures are returned as given)


def trailing_timesteps(T: int, steps: int) -> list[int]:
    """DDIM's timesteps with "trailing" spacing (diffusers): round(T - i T/N) - 1 for i = 0..N-1, e.g. T=100, N=10:
    99, 89, ..., 9; N = T gives every step."""
    return [int(round(T - i * T / steps)) - 1 for i in range(steps)]


def leading_timesteps(T: int, steps: int) -> list[int]:
    """"Leading" spacing (diffusers' DDIM default, the authors' setting): (N-1-i) * (T // N), e.g. T=100, N=10:
    90, 80, ..., 0 (the first step is not at pure noise's level, the last is at t = 0)."""
    return [(steps - 1 - i) * (T // steps) for i in range(steps)]


def sample_timesteps(T: int, steps: int, spacing: str) -> list[int]:
    """The `steps` DDIM timesteps out of T, descending, with "trailing" or "leading" spacing."""
    return trailing_timesteps(T, steps) if spacing == "trailing" else leading_timesteps(T, steps)


def _ddim(model, x: torch.Tensor, eps: torch.Tensor, t: int, t_next: int | None, clip: float = 0.0) -> torch.Tensor:
    """One deterministic DDIM step of a VP sample x at timestep t to t_next (None = clean), given the predicted eps;
    the clean estimate clipped to [-clip, clip] first (clip > 0), as diffusers' DDIMScheduler(clip_sample=True)."""
    s = model.schedule
    abar = s.abar[t].to(x.dtype)
    x0 = s.predict_x0(eps.to(x.dtype), x, abar)
    if clip > 0:
        x0 = x0.clamp(-clip, clip)
    if t_next is None:
        return x0
    abar_next = s.abar[t_next].to(x.dtype)
    sig, sig_next = ((1 - abar) / abar).sqrt(), ((1 - abar_next) / abar_next).sqrt()
    x_ve = euler_step(x / abar.sqrt(), x0, sig, sig_next)
    return x_ve * abar_next.sqrt()


@torch.no_grad()
def run_mode(model, mode: str, obs: torch.Tensor | None, task: torch.Tensor | None, *,
             actions: torch.Tensor | None = None, future: torch.Tensor | None = None, steps: int = 0,
             generator: torch.Generator | None = None, cond: torch.Tensor | None = None) -> ModeOutput:
    """Sample one mode. obs (B, V, F, 3, S, S) uint8 and task (B,), or `cond` = model.condition(obs, task).
    `actions` (raw units) is required by forward, `future` (latents) by inverse."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: allowed values: {', '.join(MODES)}")
    if mode == "forward" and actions is None:
        raise ValueError("mode=forward needs the actions to imagine (actions=...)")
    if mode == "inverse" and future is None:
        raise ValueError("mode=inverse needs the real future latents (future=...)")
    if cond is None:
        cond = model.condition(obs, task)
    B, dev = cond.shape[0], cond.device
    T = model.schedule.T
    a_shape = (B, model.clip.chunk, model.action_dim)
    v_shape = (B, model.views, model.clip.future_frames, *model.latent)
    x_a = torch.randn(a_shape, generator=generator, device=dev)
    x_v = torch.randn(v_shape, generator=generator, device=dev)
    denoise_a = mode in ("policy", "inverse", "joint")
    denoise_v = mode in ("forward", "video", "joint")
    if mode == "forward":
        x_a = model.normalize_actions(actions.to(dev).float())
    if mode == "inverse":
        x_v = future.to(dev).float()
    fixed_a = torch.full((B,), 0 if mode == "forward" else T - 1, device=dev, dtype=torch.float32)
    fixed_v = torch.full((B,), 0 if mode == "inverse" else T - 1, device=dev, dtype=torch.float32)
    ts = sample_timesteps(T, steps or model.cfg.sample_steps, model.cfg.timestep_spacing)
    for i, t in enumerate(ts):
        t_next = ts[i + 1] if i + 1 < len(ts) else None
        tt = torch.full((B,), float(t), device=dev)
        eps_a, eps_v = model.denoise(x_a, x_v, tt if denoise_a else fixed_a, tt if denoise_v else fixed_v, cond)
        if denoise_a:
            x_a = _ddim(model, x_a, eps_a.float(), t, t_next, model.cfg.clip_actions)
        if denoise_v:
            x_v = _ddim(model, x_v, eps_v.float(), t, t_next, model.cfg.clip_latents)
    out_a = model.unnormalize_actions(x_a) if denoise_a else actions
    out_v = x_v if denoise_v else future
    return ModeOutput(out_a, out_v)
