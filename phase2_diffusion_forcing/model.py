"""The Diffusion Forcing world model: phase 1's denoiser, with every frame at its own noise level.

Frame t is denoised from its noisy self x_t + σ_t n_t and the K frames before it, each at its own level σ_j:

    context frames x_{t-K..t-1} + σ_j n_j ──► scaled by σ_d / sqrt(σ_j² + σ_d²) ──► stacked as channels ─┐
    noisy frame x_t + σ_t n_t ──► c_in(σ_t) ───────────────────────────────────────────────────────────────┤ UNet
    actions a_{t-K..t-1} ──► phase 1's ActionEmbedding ─────────────────┐                                    │
    context levels c_noise(σ_j), j = 1..K ──► Fourier ──► Linear (zero-init) ──► (+) ──► cond ──► AdaGroupNorm

Causality is structural: frame t's input holds frames t-K..t only (a banded causal mask of width K+1 over
time, realised by stacking), so no later frame can reach it; `tests/test_phase2.py` checks it. The context
scaling is 1 at σ = 0, so with clean context the network computes exactly what phase 1's does, and a phase
1 run can warm-start it (the level embedding starts at zero).

Training (`forward`, Diffusion Forcing, Chen et al. 2024, Algorithm 1 in EDM's parametrisation): draw a
window of K + L frames, an independent σ for every frame (`objective=diffusion_forcing`) or one σ shared by
the L window frames with clean context (`objective=full_sequence`, the baseline), noise them all once, and
take the EDM-weighted loss of every window frame given its noisy predecessors. The same noisy frame is the
target of its own loss and the context of the next K frames' losses.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from common.diffusion.edm import karras_sigmas, lognormal_sigma, training_noise
from common.images import to_model_range
from common.nn.unet import FourierEmbedding, count_parameters
from phase1_world_model.config import RewardEndConfig, WorldModelConfig
from phase1_world_model.model import WorldModel
from phase2_diffusion_forcing.config import DFConfig


class DFWorldModel(nn.Module):
    def __init__(self, cfg: DFConfig, num_actions: int, frame_shape: tuple[int, int, int] = (3, 64, 64)):
        super().__init__()
        frame_cfg = WorldModelConfig.of(copy.deepcopy(cfg.frame), kind="diffusion",
                                        reward_end=RewardEndConfig(enabled=False))
        self.cfg, self.num_actions, self.frame_shape = cfg, num_actions, tuple(frame_shape)
        self.K = frame_cfg.context
        self.frame = WorldModel(frame_cfg, num_actions, frame_shape)  # denoiser + action embedding
        D = frame_cfg.unet.emb_dim
        self.level_features = FourierEmbedding(cfg.level_dim)
        self.level_proj = nn.Linear(self.K * cfg.level_dim, D)
        nn.init.zeros_(self.level_proj.weight)  # starts as phase 1's model: context levels add nothing yet
        nn.init.zeros_(self.level_proj.bias)

    @property
    def edm(self):
        return self.frame.cfg.edm

    def describe(self) -> str:
        return (f"{self.cfg.objective} world model, UNet {count_parameters(self.frame.frame_net) / 1e6:.2f}M params "
                f"(channels {list(self.frame.cfg.unet.channels)}), K={self.K}, window L={self.cfg.window}")

    # ----------------------------------------------------------------- the per-frame denoiser
    def condition(self, ctx: torch.Tensor, ctx_sigma: torch.Tensor, act: torch.Tensor,
                  mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Noisy context (N, K, 3, H, W) at levels ctx_sigma (N, K), the actions taken on it (N, K) and its
        padding mask (N, K) -> (cond (N, emb_dim), context channels (N, 3K, H, W)) for the EDM denoiser.

        Context frames are scaled by σ_d / sqrt(σ² + σ_d²): unit-ish variance at any level, and exactly 1 at
        σ = 0, where the input is phase 1's clean context."""
        N, sd = ctx.shape[0], self.edm.sigma_data
        scale = sd / (ctx_sigma ** 2 + sd ** 2).sqrt()  # (N, K)
        context = (ctx * scale[:, :, None, None, None]).flatten(1, 2)  # (N, K, 3, H, W) -> (N, 3K, H, W)
        c_noise = ctx_sigma.clamp_min(self.edm.sigma_min).log() / 4  # EDM's c_noise of each context level
        lev = self.level_features(c_noise.reshape(-1)).reshape(N, -1)  # (N*K, level_dim) -> (N, K * level_dim)
        return self.frame.actions(act, mask) + self.level_proj(lev), context

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, ctx: torch.Tensor, ctx_sigma: torch.Tensor,
                act: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """D(x; σ | context): x (N, 3, H, W) at σ (N,), the rest as in `condition`."""
        cond, context = self.condition(ctx, ctx_sigma, act, mask)
        return self.frame.denoiser(x, sigma, cond, context)

    def sample_sigma(self, u: torch.Tensor) -> torch.Tensor:
        """Training noise levels from uniform u (noise_dist=schedule_uniform) or standard normal u (lognormal)."""
        f = self.frame.cfg
        top = self.cfg.level_max or f.sigma_max_train
        if self.cfg.noise_dist == "lognormal":
            return lognormal_sigma(u, self.edm.p_mean, self.edm.p_std, f.sigma_min_train, top)
        rho = self.edm.rho
        hi, lo = top ** (1 / rho), f.sigma_min_train ** (1 / rho)
        return (hi + u * (lo - hi)) ** rho  # EDM eq. 5 with a continuous step index u in [0, 1]

    def sigmas(self, steps: int, device="cpu") -> torch.Tensor:
        """The S + 1 sampling levels from σ_max down to 0 (Karras schedule, phase 1's sampling range)."""
        return karras_sigmas(steps, self.edm.sigma_min, self.edm.sigma_max, self.edm.rho, device=device)

    # ----------------------------------------------------------------- training
    def draw_levels(self, B: int, K: int, L: int, rng, device) -> torch.Tensor:
        """Training noise levels (B, K + L): diffusion_forcing draws each frame's independently (a clean_context
        fraction of windows with their K context frames at 0); teacher_forced each window frame's (its context is
        the clean frames, see forward); full_sequence one per window for its L frames, its K context frames clean."""
        draw = rng.rand if self.cfg.noise_dist == "schedule_uniform" else rng.randn
        if self.cfg.objective == "full_sequence":
            return torch.cat([torch.zeros(B, K, device=device), self.sample_sigma(draw(1)).expand(B, L)], 1)
        sigma = self.sample_sigma(draw(K + L))
        if self.cfg.objective == "diffusion_forcing" and self.cfg.clean_context > 0:
            clean = rng.rand(1)[:, 0] < self.cfg.clean_context  # (B,)
            sigma = torch.cat([torch.where(clean[:, None], 0.0, sigma[:, :K]), sigma[:, K:]], 1)
        return sigma

    def denoise_windows(self, noisy: torch.Tensor, sigma: torch.Tensor, actions: torch.Tensor,
                        mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Noisy windows (B, K+L, 3, H, W) at levels (B, K+L) -> (cond, context, x) for each of the L window
        frames, flattened to B*L: window frame K+j is denoised from positions j .. j+K-1, never later ones."""
        K, L = self.K, noisy.shape[1] - self.K
        idx = torch.arange(L, device=noisy.device)[:, None] + torch.arange(K, device=noisy.device)[None]  # (L, K)
        flat = lambda t: t.flatten(0, 1)  # (B, L, ...) -> (B*L, ...)
        cond, context = self.condition(flat(noisy[:, idx]), flat(sigma[:, idx]), flat(actions[:, idx]),
                                       flat(mask[:, idx]))  # context gathered as (B, L, K, ...)
        return cond, context, flat(noisy[:, K:])

    def forward(self, batch: dict, rng) -> tuple[torch.Tensor, dict]:
        frames, actions, mask = batch["frames"], batch["actions"], batch["mask"]
        B, KL = frames.shape[:2]
        K, L = self.K, KL - self.K
        x0 = to_model_range(frames)  # (B, K+L, 3, H, W)
        sigma = self.draw_levels(B, K, L, rng, x0.device)
        f = self.frame.cfg
        noise = training_noise(rng.randn, (KL, *x0.shape[2:]), f.noise_offset, f.noise_offset_form, sigma)
        sigma = torch.where(mask, sigma, torch.zeros_like(sigma))  # padding is black frames at "level 0"
        noisy = torch.where(mask[..., None, None, None], x0 + sigma[..., None, None, None] * noise, x0)
        if self.cfg.objective == "teacher_forced":  # context = the clean real frames; targets noisy as drawn
            cond, context, _ = self.denoise_windows(x0, torch.zeros_like(sigma), actions, mask)
        else:
            cond, context, _ = self.denoise_windows(noisy, sigma, actions, mask)
        # common's EDM loss noises each target with the same noise that made it context for the next frames.
        tgt_sigma = sigma[:, K:].flatten(0, 1)
        loss = self.frame.denoiser.loss(x0[:, K:].flatten(0, 1), tgt_sigma, noise[:, K:].flatten(0, 1), cond,
                                        context).mean()
        return loss, {"frame_loss": float(loss.detach()), "log_sigma_mean": float(tgt_sigma.log().mean())}
