"""EDM (Karras et al. 2022): preconditioning, loss weighting, noise-level sampling and the Karras schedule.

The sampling-facing object is a *denoiser* D(x; sigma) that predicts the clean image from
x = x0 + sigma * n. Every sampler in `samplers.py` only ever calls D, so any network wrapped here (or a
DDPM model wrapped in `ddpm.py`) can be sampled by every sampler.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from common.config import require, require_together


@dataclass
class EDMConfig:
    """EDM hyperparameters (defaults: EDM Table 1)."""

    sigma_data: float = 0.5  # std of the data (images in [-1, 1] have ~0.5)
    p_mean: float = -1.2  # training: ln(sigma) ~ N(p_mean, p_std^2)
    p_std: float = 1.2  # training: std of ln(sigma) (see p_mean)
    sigma_min: float = 0.002  # sampling: lowest level of the Karras schedule (a last step then goes to 0)
    sigma_max: float = 80.0  # sampling: highest level of the Karras schedule (the std of the starting noise)
    rho: float = 7.0  # Karras schedule curvature (levels uniform in sigma^(1/rho))

    def check(self) -> None:
        require(self.sigma_data > 0, "sigma_data", self.sigma_data, "must be > 0")
        require(self.p_std > 0, "p_std", self.p_std, "must be > 0")
        require(self.sigma_min > 0, "sigma_min", self.sigma_min, "must be > 0 (need 0 < sigma_min < sigma_max)")
        require_together(self.sigma_min < self.sigma_max, {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max},
                         "need 0 < sigma_min < sigma_max")
        require(self.rho > 0, "rho", self.rho, "must be > 0")


def edm_scalings(sigma: torch.Tensor, sigma_data: float) -> tuple[torch.Tensor, ...]:
    """c_skip, c_out, c_in, c_noise of EDM Table 1 (the 'preconditioning')."""
    s2, sd2 = sigma ** 2, sigma_data ** 2
    c_skip = sd2 / (s2 + sd2)
    c_out = sigma * sigma_data / (s2 + sd2).sqrt()
    c_in = 1.0 / (s2 + sd2).sqrt()
    c_noise = sigma.log() / 4.0
    return c_skip, c_out, c_in, c_noise


def edm_loss_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma * sigma_data)^2, which makes the effective
    target of F_theta unit-variance at every noise level (EDM eq. 8 and Table 1)."""
    return (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2


class EDMDenoiser(nn.Module):
    """D(x; sigma) = c_skip x + c_out F(c_in x; c_noise, cond)   (EDM eq. 7).

    `net(x, c_noise, cond)` is the raw network (e.g. `UNet`). Extra input channels that are not noisy
    (e.g. phase 1's clean context frames) are passed as `context` and concatenated after scaling.
    """

    def __init__(self, net: nn.Module, cfg: EDMConfig):
        super().__init__()
        self.net, self.cfg = net, cfg

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor | None = None,
                context: torch.Tensor | None = None) -> torch.Tensor:
        sigma = sigma.reshape(-1).to(torch.float32).expand(x.shape[0])
        c_skip, c_out, c_in, c_noise = (c[:, None, None, None] for c in edm_scalings(sigma, self.cfg.sigma_data))
        inp = c_in * x
        if context is not None:
            inp = torch.cat([context, inp], dim=1)  # (B, C_ctx + C, H, W)
        F_x = self.net(inp, c_noise.reshape(-1), cond)
        return c_skip * x + c_out * F_x.float()

    def sample_sigma(self, u: torch.Tensor) -> torch.Tensor:
        """Map standard normals u to training noise levels: ln(sigma) = p_mean + p_std * u."""
        return lognormal_sigma(u, self.cfg.p_mean, self.cfg.p_std)

    def loss(self, x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor, cond: torch.Tensor | None = None,
             context: torch.Tensor | None = None) -> torch.Tensor:
        """Weighted denoising loss of each sample (EDM eq. 2 with lambda from Table 1): a (B,) tensor, so callers
        can average it or report it by noise level. The noisy input is x0 + sigma * noise."""
        s = sigma[:, None, None, None]
        D = self(x0 + s * noise, sigma, cond, context)
        w = edm_loss_weight(sigma, self.cfg.sigma_data)
        return w * ((D - x0) ** 2).flatten(1).mean(1)


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """EDM eq. 5: n noise levels from sigma_max down to sigma_min, spaced uniformly in sigma^(1/rho),
    followed by a final 0 (so the result has n + 1 entries and a sampler takes n steps)."""
    if n == 1:
        return torch.tensor([sigma_max, 0.0], device=device)
    i = torch.arange(n, dtype=torch.float64)
    inv = sigma_max ** (1 / rho) + i / (n - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))
    return torch.cat([inv ** rho, torch.zeros(1, dtype=torch.float64)]).float().to(device)


def lognormal_sigma(u: torch.Tensor, p_mean: float, p_std: float, lo: float | None = None,
                    hi: float | None = None) -> torch.Tensor:
    """EDM's training noise levels from standard normals u: ln(sigma) = p_mean + p_std * u, clipped to [lo, hi]
    when given (DIAMOND clips to [2e-3, 20])."""
    sigma = (p_mean + p_std * u).exp()
    return sigma.clamp(lo, hi) if lo is not None or hi is not None else sigma


OFFSET_FORMS = ("scaled", "diamond")


def training_noise(randn, shape: tuple[int, ...], offset: float = 0.0, form: str = "scaled",
                   sigma: torch.Tensor | None = None) -> torch.Tensor:
    """The noise n of a training input x0 + sigma * n: standard normal, plus per-channel offset noise.

    `randn(*shape)` draws standard normals of the given per-sample shape (..., C, H, W) - a StepRNG's randn, so the
    draws are a function of (seed, step) - and the offset term shares one normal per channel across H and W:
        form "scaled":  n = eps + offset * eps_c               (x0 + sigma * eps + sigma * offset * eps_c)
        form "diamond": n = eps + (offset / sigma) * eps_c     (x0 + sigma * eps + offset * eps_c: DIAMOND's
                        `apply_noise`, whose offset does not shrink with sigma; frames at sigma = 0 get none)
    `sigma` (the levels, broadcastable to the leading dims of the result) is needed for "diamond" only.
    Both draw the same two tensors in the same order, so the forms differ only in how the offset is scaled."""
    eps = randn(*shape)
    eps_c = randn(*shape[:-2], 1, 1)
    if form == "scaled":
        return eps + offset * eps_c
    if form != "diamond":
        raise ValueError(f"offset noise form {form!r}; allowed: {', '.join(OFFSET_FORMS)}")
    s = sigma.reshape(*sigma.shape, 1, 1, 1)
    scale = torch.where(s > 0, offset / s.clamp_min(1e-12), torch.zeros_like(s))
    return eps + scale * eps_c

