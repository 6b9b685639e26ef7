"""The Unified World Model (Zhu et al., RSS 2025): one diffusion transformer over an action chunk and future-frame
tokens, each modality with its own noise level, so that the levels chosen at inference select the mode.

    tokens  [chunk action tokens | V*(h/p)*(w/p) future video tokens | R registers] + learned positions
    cond    c = MLP([emb(t_action), emb(t_video)]) + Linear(obs_encoder(current frames)) + task_embedding
    blocks  DiT blocks, AdaLN-Zero on c, full bidirectional attention
    heads   registers dropped; action tokens -> per-step MLP -> eps_action; video tokens -> linear -> eps_video

Shapes with the cpu profile (64 px frames, 16x16x4 latents, patch 4, 2 views, 2 future frames):
16 action tokens + 32 video tokens (each 2 frames x 4 channels x 4 x 4 = 128 numbers) + 8 registers = 56 tokens.

Training (`forward(batch, rng)`, the Trainer's contract): t_action and t_video drawn independently and uniformly
from {0..T-1}; eps-prediction; loss = MSE(eps_action) over real (unpadded) action steps + MSE(eps_video), each logged
on its own. Action-free samples (`has_action` False) get t_action = T-1 and no action loss.

`objective` makes the same network a single-purpose model for the "does joint training help?" ablation, trained
exactly in the condition its mode is used in: policy = action loss only, the video input always pure noise at
t_video = T-1 (a diffusion policy); dynamics = video loss only, the actions always given clean at t_action = 0 (a
forward model). The joint model trains on every pair of levels, those two corners included.

The noise process is common's DDPMSchedule (100 steps, squared cosine, as the authors'); sampling is in
phase4_uwm/modes.py.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.diffusion.ddpm import DDPMSchedule
from common.nn.unet import SinusoidalEmbedding, count_parameters
from phase4_uwm.config import ClipConfig, TokenizerConfig, UWMConfig
from phase4_uwm.data import scale_from_unit, scale_to_unit
from phase4_uwm.tokenizer import patchify, to_unit, unpatchify


# ----------------------------------------------------------------------------- observation encoder
class BasicBlock(nn.Module):
    """ResNet basic block with GroupNorm in place of BatchNorm (the authors' ResNet-18 change)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        g = lambda c: nn.GroupNorm(min(8, c), c)
        self.conv1, self.n1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), g(cout)
        self.conv2, self.n2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), g(cout)
        self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), g(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.n1(self.conv1(x)))
        return F.relu(self.n2(self.conv2(h)) + self.skip(x))


class ObsEncoder(nn.Module):
    """Each current frame of each view -> a ResNet (shared weights) -> pooled feature -> obs_dim; the V x F features
    are concatenated in a fixed order (view-major), so position tells the view and the frame."""

    def __init__(self, channels: list[int], out_dim: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels[0], 3, 2, 1, bias=False),
                                  nn.GroupNorm(min(8, channels[0]), channels[0]), nn.ReLU())
        stages, cin = [], channels[0]
        for i, c in enumerate(channels):
            stages.append(BasicBlock(cin, c, 1 if i == 0 else 2))
            cin = c
        self.stages = nn.Sequential(*stages)
        self.proj = nn.Linear(cin, out_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, V, F, 3, S, S) uint8 or float in [-1, 1] -> (B, V * F * out_dim)."""
        B = obs.shape[0]
        x = to_unit(obs) if obs.dtype == torch.uint8 else obs
        x = self.stages(self.stem(x.flatten(0, 2)))
        return self.proj(x.mean((2, 3))).reshape(B, -1)


# ----------------------------------------------------------------------------- DiT
def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """x += gate_a * Attn(LN(x)(1 + scale_a) + shift_a); x += gate_m * MLP(LN(x)(1 + scale_m) + shift_m).
    The modulation is zero-initialised, so the block starts as the identity (AdaLN-Zero, Peebles & Xie)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.n1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.n2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        sa, ca, ga, sm, cm, gm = self.ada(c).chunk(6, dim=1)
        h = modulate(self.n1(x), sa, ca)
        x = x + ga[:, None] * self.attn(h, h, h, need_weights=False)[0]
        return x + gm[:, None] * self.mlp(modulate(self.n2(x), sm, cm))


class FinalLayer(nn.Module):
    """LN modulated by c, then a linear map; the modulation zero-initialised, and the linear map too when `zero`
    (the video head: the model starts predicting eps = 0). The action head keeps its linear map random and
    zero-initialises the decoder MLP's last layer instead: two zero layers in a row would get no gradient."""

    def __init__(self, width: int, out: int, zero: bool = True):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.linear = nn.Linear(width, out)
        for m in (self.ada[1], self.linear) if zero else (self.ada[1],):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.ada(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm(x), shift, scale))


class UWM(nn.Module):
    """See the module docstring. `denoise` is the network; `forward` the training loss; modes.py samples."""

    def __init__(self, cfg: UWMConfig, clip: ClipConfig, tok: TokenizerConfig, action_dim: int, views: int = 2,
                 objective: str = "joint", pixel_size: int = 0):
        super().__init__()
        self.cfg, self.clip, self.tok_cfg, self.objective = cfg, clip, tok, objective
        self.action_dim, self.views = action_dim, views
        W, p = cfg.width, cfg.patch
        C = tok.channels
        side = pixel_size if tok.kind == "pixel" and pixel_size else tok.latent_side
        if side % p:
            raise ValueError(f"latent side {side} is not a multiple of model.patch={p}")
        self.latent = (C, side, side)
        self.obs_size = pixel_size if tok.kind == "pixel" and pixel_size else tok.image_size  # current frames' side
        self.n_video = views * (side // p) ** 2
        patch_dim = clip.future_frames * C * p * p
        self.schedule = DDPMSchedule(cfg.ddpm)
        # Inputs
        self.action_in = nn.Sequential(nn.Linear(action_dim, cfg.action_hidden), nn.Mish(),
                                       nn.Linear(cfg.action_hidden, W))
        self.video_in = nn.Linear(patch_dim, W)
        self.pos = nn.Parameter(torch.randn(1, clip.chunk + self.n_video, W) * 0.02)
        self.registers = nn.Parameter(torch.randn(1, cfg.registers, W) * 0.02)
        # Condition
        half = W // 2
        self.t_action_emb, self.t_video_emb = SinusoidalEmbedding(half), SinusoidalEmbedding(W - half)
        self.t_mlp = nn.Sequential(nn.Linear(W, W), nn.SiLU(), nn.Linear(W, W))
        self.obs = ObsEncoder(cfg.obs_channels, cfg.obs_dim)
        self.obs_proj = nn.Linear(views * clip.obs_frames * cfg.obs_dim, W)
        self.task_emb = nn.Embedding(cfg.num_tasks, W)
        nn.init.normal_(self.task_emb.weight, std=0.02)
        # Backbone and heads
        self.blocks = nn.ModuleList(DiTBlock(W, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.action_final = FinalLayer(W, cfg.action_hidden, zero=False)
        self.action_out = nn.Sequential(nn.Mish(), nn.Linear(cfg.action_hidden, action_dim))
        nn.init.zeros_(self.action_out[1].weight)
        nn.init.zeros_(self.action_out[1].bias)
        self.video_final = FinalLayer(W, patch_dim)
        # Action normalisation (min/max of the training actions), saved with the weights
        self.register_buffer("action_low", -torch.ones(action_dim))
        self.register_buffer("action_high", torch.ones(action_dim))

    # ------------------------------------------------------------------ pieces
    def describe(self) -> str:
        n = count_parameters(self)
        return (f"UWM {n / 1e6:.2f}M params (width {self.cfg.width}, depth {self.cfg.depth}, {self.cfg.heads} heads, "
                f"{self.cfg.registers} registers; tokens {self.clip.chunk} action + {self.n_video} video; obs encoder "
                f"{count_parameters(self.obs) / 1e6:.2f}M)")

    def set_action_stats(self, low, high) -> None:
        self.action_low.copy_(torch.as_tensor(low, dtype=torch.float32))
        self.action_high.copy_(torch.as_tensor(high, dtype=torch.float32))

    def normalize_actions(self, a: torch.Tensor) -> torch.Tensor:
        return scale_to_unit(a, self.action_low, self.action_high)

    def unnormalize_actions(self, a: torch.Tensor) -> torch.Tensor:
        return scale_from_unit(a, self.action_low, self.action_high)

    def condition(self, obs: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """The timestep-free part of c: current frames (B, V, F, 3, S, S) and task ids (B,) -> (B, W). Computed once
        per observation and reused by every denoising step (and every action proposal of it)."""
        return self.obs_proj(self.obs(obs)) + self.task_emb(task)

    def denoise(self, x_action: torch.Tensor, x_video: torch.Tensor, t_action: torch.Tensor, t_video: torch.Tensor,
                cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The network: noisy actions (B, chunk, A) and latents (B, V, F, C, h, w) at integer-valued levels (B,) ->
        predicted noise of each, same shapes."""
        B, p = x_action.shape[0], self.cfg.patch
        t = torch.cat([self.t_action_emb(t_action), self.t_video_emb(t_video)], dim=1)
        c = self.t_mlp(t) + cond
        x = torch.cat([self.action_in(x_action), self.video_in(patchify(x_video, p))], dim=1) + self.pos
        x = torch.cat([x, self.registers.expand(B, -1, -1)], dim=1)
        for blk in self.blocks:
            x = blk(x, c)
        n_a = self.clip.chunk
        eps_a = self.action_out(self.action_final(x[:, :n_a], c))
        eps_v = self.video_final(x[:, n_a:n_a + self.n_video], c)  # registers (the tail) are dropped here
        V, Fr, (C, h, w) = x_video.shape[1], x_video.shape[2], self.latent
        return eps_a, unpatchify(eps_v, V, Fr, C, h, w, p)

    # ------------------------------------------------------------------ training
    def draw_levels(self, rng, has_action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """t_action, t_video independent and uniform on {0..T-1}; action-free samples get t_action = T-1."""
        T = self.schedule.T
        u = rng.rand(2)  # (B, 2): this micro-batch's rows of the global draw
        t = (u * T).long().clamp(max=T - 1).to(has_action.device)
        t_a = torch.where(has_action, t[:, 0], torch.full_like(t[:, 0], T - 1))
        return t_a, t[:, 1]

    def forward(self, batch: dict, rng) -> tuple[torch.Tensor, dict]:
        a = batch["action"].float()
        v = batch["future"].float()
        B = a.shape[0]
        has = batch["has_action"].bool()
        t_a, t_v = self.draw_levels(rng, has)
        n_a = rng.randn(*a.shape[1:]).to(a)
        n_v = rng.randn(*v.shape[1:]).to(v)
        T = self.schedule.T
        if self.objective == "policy":  # video as in policy mode: pure noise labelled T-1
            t_v = torch.full_like(t_v, T - 1)
        if self.objective == "dynamics":  # actions as in forward mode: given clean at level 0
            t_a = torch.zeros_like(t_a)
        x_a = self.schedule.q_sample(a, t_a, n_a)
        x_a = torch.where(has[:, None, None], x_a, n_a)  # action-free: pure noise, whatever the (absent) actions
        x_v = self.schedule.q_sample(v, t_v, n_v)
        if self.objective == "policy":
            x_v = n_v
        if self.objective == "dynamics":
            x_a = a
        cond = self.condition(batch["obs"], batch["task"])
        eps_a, eps_v = self.denoise(x_a, x_v, t_a.float(), t_v.float(), cond)
        # Action loss over real steps of samples that have actions and are imitated; padded steps (past the
        # episode's end) excluded. Samples that are not imitated (played failures) still teach the video loss.
        imitate = batch.get("imitate", torch.ones_like(has)).bool()
        w = (~batch["action_is_pad"].bool() & (has & imitate)[:, None]).float()[..., None].expand_as(a)
        per_dim = (((eps_a.float() - n_a) ** 2) * w).sum((0, 1)) / w.sum((0, 1)).clamp_min(1)
        loss_a = (((eps_a.float() - n_a) ** 2) * w).sum() / w.sum().clamp_min(1)
        loss_v = ((eps_v.float() - n_v) ** 2).mean()
        loss = {"joint": loss_a + loss_v, "policy": loss_a, "dynamics": loss_v}[self.objective]
        logs = {"loss/action": loss_a.detach(), "loss/video": loss_v.detach()}
        logs.update({f"loss/action_dim{i}": per_dim[i].detach() for i in range(len(per_dim))})
        return loss, logs
