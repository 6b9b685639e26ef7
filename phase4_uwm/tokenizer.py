"""The frozen video tokenizer: frames <-> latents, and latents <-> patch tokens.

    tok = Tokenizer(TokenizerConfig())          # kind=vae: diffusers' AutoencoderKL built from the config
    z = tok.encode(frames_uint8)                # (..., 3, S, S) uint8 -> (..., C, S/d, S/d), unit variance
    x = tok.decode(z)                           # -> float frames in [-1, 1]
    tokens = patchify(z_clip, p)                # (B, V, F, C, h, w) -> (B, V*(h/p)*(w/p), F*C*p*p)

`vae` is diffusers' `AutoencoderKL` (the SD/SDXL VAE's architecture) at a small size, trained here on the
demonstrations' frames with an L1 + L2 reconstruction loss and a small KL term (no perceptual or adversarial loss:
their networks are hub weights). Latents are the posterior mean times `scale` = 1 / (their standard deviation on
the training frames), measured once after training and stored with the weights, so the diffusion model sees
unit-variance targets (the role of SD's 0.18215). `pixel` skips the autoencoder: frames scaled to [-1, 1] are
the "latents" (a pixel-patch tokenizer, for comparison).

Tokens follow the paper's Conv3d patchifier with patch (F frames, p, p): each token is the F future frames of one
p x p patch of one view, and views are concatenated along the sequence (tests check `unpatchify` inverts it).
"""
from __future__ import annotations

import torch
from torch import nn

from phase4_uwm.config import TokenizerConfig


def to_unit(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return frames.float() / 127.5 - 1.0


def build_vae(cfg: TokenizerConfig) -> nn.Module:
    """diffusers' AutoencoderKL built from the config (no hub weights): one down and one up block per entry of
    `block_channels`, so the latent side is image_size / 2^(n-1)."""
    from diffusers import AutoencoderKL

    n = len(cfg.block_channels)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                         up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=tuple(cfg.block_channels),
                         layers_per_block=cfg.layers_per_block, latent_channels=cfg.latent_channels,
                         norm_num_groups=cfg.norm_groups, sample_size=cfg.image_size)


class Tokenizer(nn.Module):
    """Frames <-> latents. `forward(batch, rng)` is the autoencoder's training loss (the Trainer's contract)."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.cfg = cfg
        self.vae = build_vae(cfg) if cfg.kind == "vae" else None
        self.register_buffer("scale", torch.ones(()))  # 1 / std of the training latents (set by `calibrate`)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of one frame's latent."""
        return (self.cfg.channels, self.cfg.latent_side, self.cfg.latent_side)

    def _flat(self, x: torch.Tensor, rank: int = 3) -> tuple[torch.Tensor, tuple]:
        lead = x.shape[:-rank]
        return x.reshape(-1, *x.shape[-rank:]), lead

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """(..., 3, S, S) uint8 -> (..., C, h, w) scaled posterior means (pixel: the frames in [-1, 1])."""
        x, lead = self._flat(to_unit(frames))
        if self.vae is None:
            return x.reshape(*lead, *x.shape[1:])
        z = self.vae.encode(x).latent_dist.mean * self.scale
        return z.reshape(*lead, *z.shape[1:])

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(..., C, h, w) -> (..., 3, S, S) float in [-1, 1]."""
        x, lead = self._flat(z)
        if self.vae is not None:
            x = self.vae.decode(x / self.scale).sample
        x = x.clamp(-1, 1)
        return x.reshape(*lead, *x.shape[1:])

    @torch.no_grad()
    def calibrate(self, frames: torch.Tensor, batch: int = 256) -> float:
        """Set `scale` so that the latents of these (training) frames have unit standard deviation."""
        if self.vae is None:
            return 1.0
        self.scale.fill_(1.0)
        zs = torch.cat([self.encode(frames[i:i + batch]) for i in range(0, len(frames), batch)])
        self.scale.fill_(1.0 / float(zs.float().std()))
        return float(self.scale)

    def forward(self, batch: dict, rng) -> tuple[torch.Tensor, dict]:
        """L1 + L2 reconstruction of frames sampled from the posterior, plus kl_weight x KL (per element)."""
        x = to_unit(batch["frames"])
        post = self.vae.encode(x).latent_dist
        z = post.mean + post.std * rng.randn(*post.mean.shape[1:]).to(post.mean)
        rec = self.vae.decode(z).sample.float()
        l1, l2 = (rec - x).abs().mean(), ((rec - x) ** 2).mean()
        kl = post.kl().mean() / post.mean[0].numel()
        loss = l1 + l2 + self.cfg.kl_weight * kl
        psnr = 10 * torch.log10(4.0 / l2.detach().clamp_min(1e-10))  # range [-1, 1]: peak-to-peak 2
        return loss, {"l1": l1.detach(), "mse": l2.detach(), "kl": kl.detach(), "psnr": psnr}


def patchify(z: torch.Tensor, p: int) -> torch.Tensor:
    """(B, V, F, C, h, w) -> (B, V * (h/p) * (w/p), F * C * p * p): one token per (view, patch), its F frames."""
    B, V, Fr, C, h, w = z.shape
    z = z.reshape(B, V, Fr, C, h // p, p, w // p, p)
    z = z.permute(0, 1, 4, 6, 2, 3, 5, 7)  # B, V, hp, wp, F, C, p, p
    return z.reshape(B, V * (h // p) * (w // p), Fr * C * p * p)


def unpatchify(tokens: torch.Tensor, V: int, Fr: int, C: int, h: int, w: int, p: int) -> torch.Tensor:
    """The inverse of `patchify`."""
    B = tokens.shape[0]
    z = tokens.reshape(B, V, h // p, w // p, Fr, C, p, p)
    z = z.permute(0, 1, 4, 5, 2, 6, 3, 7)  # B, V, F, C, hp, p, wp, p
    return z.reshape(B, V, Fr, C, h, w)
