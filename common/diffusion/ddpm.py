"""DDPM (Ho et al. 2020): beta schedules, the forward process, the posterior, and three parameterisations.

Forward process (DDPM eq. 4):  q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)
Posterior (DDPM eqs. 6-7):     q(x_{t-1} | x_t, x_0) = N(mu_t, beta_tilde_t I),
    mu_t = beta_t sqrt(abar_{t-1}) / (1 - abar_t) x_0 + (1 - abar_{t-1}) sqrt(alpha_t) / (1 - abar_t) x_t
    beta_tilde_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t       ("small"; "large" uses beta_t)

For sampling, a DDPM network is wrapped as a denoiser D(x; sigma) in the variance-exploding coordinates
the EDM samplers use: x_ve = x_vp / sqrt(abar), sigma = sqrt((1 - abar) / abar). Then DDPM-1000, DDIM-N
and EDM-Heun are the same calls as for an EDM-trained model (see `samplers.py`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from common.config import choice, require, require_together


@dataclass
class DDPMConfig:
    """The discrete-time process and what the network predicts."""

    num_timesteps: int = 1000  # T: discrete noise levels t = 0..T-1 (the grid the ddpm and ddim samplers walk)
    schedule: str = "linear"  # linear (DDPM) | cosine (Nichol & Dhariwal 2021)
    beta_start: float = 1e-4  # linear schedule: beta at t = 0 (DDPM: 1e-4); cosine ignores it
    beta_end: float = 0.02  # linear schedule: beta at t = T-1 (DDPM: 0.02); cosine ignores it
    prediction: str = "eps"  # eps | x0 | v   (what the network outputs)

    def check(self) -> None:
        require(self.num_timesteps >= 2, "num_timesteps", self.num_timesteps, "must be >= 2")
        require(self.beta_start > 0, "beta_start", self.beta_start, "must be > 0 (need 0 < beta_start < beta_end < 1)")
        require(self.beta_end < 1, "beta_end", self.beta_end, "must be < 1 (need 0 < beta_start < beta_end < 1)")
        require_together(self.beta_start < self.beta_end, {"beta_start": self.beta_start, "beta_end": self.beta_end},
                         "need 0 < beta_start < beta_end < 1")
        choice("schedule", self.schedule, ("linear", "cosine"))
        choice("prediction", self.prediction, ("eps", "x0", "v"))


def make_betas(cfg: DDPMConfig) -> torch.Tensor:
    T = cfg.num_timesteps
    if cfg.schedule == "linear":
        return torch.linspace(cfg.beta_start, cfg.beta_end, T, dtype=torch.float64)
    # Cosine: abar(t) = cos^2(((t/T + s)/(1 + s)) * pi/2), betas clipped at 0.999 (improved DDPM eq. 17).
    s = 0.008
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    return torch.tensor([min(1 - f(t + 1) / f(t), 0.999) for t in range(T)], dtype=torch.float64)


class DDPMSchedule(nn.Module):
    """All per-timestep constants, in float64 for exactness, indexed by integer t in [0, T)."""

    def __init__(self, cfg: DDPMConfig):
        super().__init__()
        self.cfg = cfg
        betas = make_betas(cfg)
        alphas = 1.0 - betas
        abar = torch.cumprod(alphas, 0)
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        for name, v in dict(betas=betas, alphas=alphas, abar=abar, abar_prev=abar_prev,
                            sigmas=((1 - abar) / abar).sqrt(),
                            post_var=betas * (1 - abar_prev) / (1 - abar),
                            post_c0=betas * abar_prev.sqrt() / (1 - abar),
                            post_ct=(1 - abar_prev) * alphas.sqrt() / (1 - abar)).items():
            self.register_buffer(name, v, persistent=False)

    @property
    def T(self) -> int:
        return self.cfg.num_timesteps

    def _at(self, v: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return v[t].to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps   (DDPM eq. 4)."""
        return self._at(self.abar.sqrt(), t, x0) * x0 + self._at((1 - self.abar).sqrt(), t, x0) * noise

    def posterior(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, variance: str = "small"):
        """Mean and variance of q(x_{t-1} | x_t, x_0) (DDPM eqs. 6-7); 'large' uses beta_t instead."""
        mean = self._at(self.post_c0, t, xt) * x0 + self._at(self.post_ct, t, xt) * xt
        var = self._at(self.post_var if variance == "small" else self.betas, t, xt)
        return mean, var

    # Parameterisations: what the network predicts and how to get x0 back from it.
    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        p = self.cfg.prediction
        if p == "eps":
            return noise
        if p == "x0":
            return x0
        a, s = self._at(self.abar.sqrt(), t, x0), self._at((1 - self.abar).sqrt(), t, x0)
        return a * noise - s * x0  # v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans & Ho 2022)

    def predict_x0(self, out: torch.Tensor, xt: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
        """x0 from the network output at x_t, given abar (a tensor broadcastable to xt)."""
        p = self.cfg.prediction
        if p == "eps":
            return (xt - (1 - abar).sqrt() * out) / abar.sqrt()
        if p == "x0":
            return out
        return abar.sqrt() * xt - (1 - abar).sqrt() * out  # from v

    def p_step(self, out: torch.Tensor, xt: torch.Tensor, t: int, noise: torch.Tensor,
               variance: str = "small") -> torch.Tensor:
        """One ancestral step x_t -> x_{t-1} in DDPM's own coordinates (reference for tests)."""
        tt = torch.full((xt.shape[0],), t, dtype=torch.long, device=xt.device)
        x0 = self.predict_x0(out, xt, self._at(self.abar, tt, xt))
        mean, var = self.posterior(x0, xt, tt, variance)
        return mean if t == 0 else mean + var.sqrt() * noise


class DDPMModel(nn.Module):
    """A DDPM network `net(x_t, t, cond)` with its schedule; a denoiser D(x; sigma) for the samplers."""

    def __init__(self, net: nn.Module, cfg: DDPMConfig):
        super().__init__()
        self.net = net
        self.schedule = DDPMSchedule(cfg)

    def loss(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, cond: torch.Tensor | None = None):
        """Per-sample MSE to the parameterisation's target: L_simple (DDPM eq. 14) for eps."""
        out = self.net(self.schedule.q_sample(x0, t, noise), t.float(), cond)
        return ((out.float() - self.schedule.target(x0, noise, t)) ** 2).flatten(1).mean(1)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Denoiser view: x = x0 + sigma * n (VE). The (fractional) timestep is found by interpolating
        log sigma on the schedule's grid, so any sigma in range works, not only the training ones."""
        sigma = sigma.reshape(-1).to(torch.float64).expand(x.shape[0])
        log_s = self.schedule.sigmas.log()
        s = sigma.clamp(self.schedule.sigmas[0], self.schedule.sigmas[-1]).log()
        i = torch.searchsorted(log_s, s).clamp(1, self.schedule.T - 1)
        w = (s - log_s[i - 1]) / (log_s[i] - log_s[i - 1])
        t = (i - 1 + w).float()
        abar = (1.0 / (1.0 + sigma ** 2)).to(x.dtype)[:, None, None, None]
        xt = x * abar.sqrt()  # VE -> VP coordinates
        out = self.net(xt, t, cond).float()
        return self.schedule.predict_x0(out, xt, abar)
