"""A conditional UNet shared by every diffusion model in the project.

    x (B, C_in, H, W) --conv--> [ResBlock x n (+Attn)] -> Down -> ... -> Mid(Res, Attn, Res) -> ... Up
    noise level c_noise (B,) --Fourier/sinusoidal--> MLP --> emb (B, D)  <-- + cond (B, D) from outside
    emb drives adaptive GroupNorm in every ResBlock:  h = GN(h) * (1 + scale) + shift

The conditioning vector `cond` is whatever the caller embeds: a class embedding (phase 0), the past
actions (phase 1), ... The UNet never knows which: it adds `cond` to the noise-level embedding.
Image sizes must be divisible by 2 ** (len(channels) - 1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from common.config import choice, require, require_together


@dataclass
class UNetConfig:
    """Architecture. Channel widths are per resolution level, from full resolution down."""

    in_channels: int = 1  # input channels: 1 grey, 3 RGB (phases 1-2 set it themselves: frame + K context frames)
    out_channels: int = 1  # output channels; phase 0: must equal in_channels (phases 1-2 set it to the frame's)
    channels: list[int] = field(default_factory=lambda: [64, 128, 128])  # width per level
    num_res_blocks: int = 2  # residual blocks per level
    attn_levels: list[int] = field(default_factory=lambda: [1])  # levels with self-attention (0 = full resolution)
    attn_head_dim: int = 32  # channels per attention head
    emb_dim: int = 256  # width of the noise-level (+ conditioning) embedding
    noise_embedding: str = "fourier"  # fourier (random features, EDM) | sinusoidal (DDPM positional)
    dropout: float = 0.0  # dropout probability inside every residual block, in [0, 1); 0 = none
    num_groups: int = 32  # GroupNorm groups (clipped to divide the channel count)

    def check(self) -> None:
        require(len(self.channels) >= 1 and all(c > 0 for c in self.channels), "channels", self.channels,
                "a non-empty list of positive widths")
        require_together(all(0 <= i < len(self.channels) for i in self.attn_levels),
                         {"attn_levels": self.attn_levels, "channels": self.channels},
                         f"attn_levels must be level indices in [0, {len(self.channels) - 1}] (one per channels entry)")
        require(self.num_res_blocks >= 1, "num_res_blocks", self.num_res_blocks, "must be >= 1")
        require(0.0 <= self.dropout < 1.0, "dropout", self.dropout, "must be in [0, 1)")
        choice("noise_embedding", self.noise_embedding, ("fourier", "sinusoidal"))


def _groups(ch: int, wanted: int) -> int:
    g = min(wanted, ch)
    while ch % g:
        g -= 1
    return g


class FourierEmbedding(nn.Module):
    """Random Fourier features of a scalar (EDM's choice for c_noise = ln(sigma)/4)."""

    def __init__(self, dim: int, scale: float = 16.0):
        super().__init__()
        self.register_buffer("freqs", torch.randn(dim // 2) * scale)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        x = 2 * math.pi * t.float()[:, None] * self.freqs[None]  # (B, dim/2)
        return torch.cat([x.cos(), x.sin()], dim=1)


class SinusoidalEmbedding(nn.Module):
    """Transformer positional encoding of a scalar (DDPM's choice for the timestep t in [0, 1000))."""

    def __init__(self, dim: int, max_period: float = 10000.0):
        super().__init__()
        half = dim // 2
        self.register_buffer("freqs", torch.exp(-math.log(max_period) * torch.arange(half) / half))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        x = t.float()[:, None] * self.freqs[None]  # (B, dim/2)
        return torch.cat([x.cos(), x.sin()], dim=1)


class AdaGroupNorm(nn.Module):
    """GroupNorm without its own affine; scale and shift come from the embedding."""

    def __init__(self, ch: int, emb_dim: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(ch, groups), ch, affine=False)
        self.proj = nn.Linear(emb_dim, 2 * ch)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.proj(emb)[:, :, None, None].chunk(2, dim=1)  # (B, C, 1, 1) each
        return self.norm(x) * (1 + scale) + shift


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = AdaGroupNorm(cin, emb_dim, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = AdaGroupNorm(cout, emb_dim, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity: stabler early training
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x, emb)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h, emb))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    def __init__(self, ch: int, head_dim: int, groups: int):
        super().__init__()
        self.heads = max(1, ch // head_dim)
        self.norm = nn.GroupNorm(_groups(ch, groups), ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.out = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        qkv = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # each (B, heads, HW, C/heads)
        h = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, C/heads)
        h = h.transpose(-1, -2).reshape(B, C, H, W)
        return x + self.out(h)


class Level(nn.Module):
    """ResBlocks (each optionally followed by attention) at one resolution."""

    def __init__(self, chans: list[tuple[int, int]], emb_dim: int, groups: int, dropout: float,
                 attn: bool, head_dim: int):
        super().__init__()
        self.res = nn.ModuleList(ResBlock(i, o, emb_dim, groups, dropout) for i, o in chans)
        self.attn = nn.ModuleList(SelfAttention(o, head_dim, groups) if attn else nn.Identity()
                                  for _, o in chans)


class UNet(nn.Module):
    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        ch, D, G = list(cfg.channels), cfg.emb_dim, cfg.num_groups
        embed = FourierEmbedding if cfg.noise_embedding == "fourier" else SinusoidalEmbedding
        self.noise_embed = nn.Sequential(embed(D), nn.Linear(D, D), nn.SiLU(), nn.Linear(D, D))
        self.cond_mlp = nn.Sequential(nn.SiLU(), nn.Linear(D, D))  # applied after adding `cond`
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)

        # Encoder: every block's output is kept as a skip (DDPM layout), plus the one before each Down.
        self.down, self.downsample, skips, c = nn.ModuleList(), nn.ModuleList(), [ch[0]], ch[0]
        for i, w in enumerate(ch):
            pairs = []
            for _ in range(cfg.num_res_blocks):
                pairs.append((c, w))
                c = w
                skips.append(c)
            self.down.append(Level(pairs, D, G, cfg.dropout, i in cfg.attn_levels, cfg.attn_head_dim))
            last = i == len(ch) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(c, c, 3, stride=2, padding=1))
            if not last:
                skips.append(c)
        self.mid = Level([(c, c), (c, c)], D, G, cfg.dropout, attn=True, head_dim=cfg.attn_head_dim)
        self.mid.attn[1] = nn.Identity()  # Res, Attn, Res

        # Decoder mirrors the encoder, consuming one skip per block (num_res_blocks + 1 per level).
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, w in reversed(list(enumerate(ch))):
            pairs = []
            for _ in range(cfg.num_res_blocks + 1):
                pairs.append((c + skips.pop(), w))
                c = w
            self.up.append(Level(pairs, D, G, cfg.dropout, i in cfg.attn_levels, cfg.attn_head_dim))
            self.upsample.append(nn.Identity() if i == 0 else nn.Sequential(
                nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c, 3, padding=1)))
        self.norm_out = nn.GroupNorm(_groups(c, G), c)
        self.conv_out = nn.Conv2d(c, cfg.out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # the network starts by predicting 0
        nn.init.zeros_(self.conv_out.bias)

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self.cfg.channels) - 1)

    def forward(self, x: torch.Tensor, noise_level: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C_in, H, W); noise_level (B,) e.g. EDM's c_noise or DDPM's t; cond (B, emb_dim) or None."""
        if x.shape[-1] % self.downsampling or x.shape[-2] % self.downsampling:
            raise ValueError(f"UNet input {tuple(x.shape[-2:])} must be divisible by {self.downsampling} "
                             f"(2 ** (len(channels) - 1)); pad the images or use fewer levels")
        emb = self.noise_embed(noise_level.reshape(-1).expand(x.shape[0]))
        if cond is not None:
            emb = emb + cond
        emb = self.cond_mlp(emb)  # (B, D)

        h = self.conv_in(x)
        hs = [h]
        for level, down in zip(self.down, self.downsample):
            for res, attn in zip(level.res, level.attn):
                h = attn(res(h, emb))
                hs.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)
                hs.append(h)
        h = self.mid.attn[0](self.mid.res[0](h, emb))
        h = self.mid.res[1](h, emb)
        for level, up in zip(self.up, self.upsample):
            for res, attn in zip(level.res, level.attn):
                h = attn(res(torch.cat([h, hs.pop()], dim=1), emb))
            h = up(h)
        return self.conv_out(F.silu(self.norm_out(h)))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
