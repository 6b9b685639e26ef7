"""Samplers: pure functions of (denoiser, x, sigmas).

`denoiser(x, sigma) -> x0_hat` works in variance-exploding coordinates x = x0 + sigma * n (EDM's view);
`sigmas` is a decreasing 1-D tensor ending in 0, and x starts as noise at sigmas[0]. Conditioning and
classifier-free guidance are folded into the denoiser with `functools.partial` / `guided`, so every
sampler supports them without knowing about them.

    ancestral(eta=1) on the 1000 DDPM sigmas        = DDPM's ancestral sampler (small or large variance)
    ancestral(eta=0) on N DDPM sigmas               = DDIM-N (deterministic), eta in (0, 1] in between
    heun on karras_sigmas(18)                       = EDM's 2nd-order sampler, 35 evaluations
    euler                                           = 1st-order ODE (DIAMOND uses 1-3 steps of it)
"""
from __future__ import annotations

import math
from typing import Callable

import torch

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _sig(s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return s.to(x.dtype).expand(x.shape[0])


def prior(shape: tuple[int, ...], sigma_max: float, generator: torch.Generator | None = None,
          device: torch.device | str = "cpu", variance_preserving: bool = False) -> torch.Tensor:
    """Initial noise. A VP model's x_T = x_vp / sqrt(abar_T) has variance 1 + sigma_T^2, not sigma_T^2."""
    std = math.sqrt(1 + sigma_max ** 2) if variance_preserving else sigma_max
    return torch.randn(shape, generator=generator, device=device) * std


def guided(denoiser: Callable, cond: torch.Tensor, null_cond: torch.Tensor, scale: float) -> Denoiser:
    """Classifier-free guidance (Ho & Salimans 2022): D = D_u + s (D_c - D_u).

    s = 0 is unconditional, s = 1 conditional without guidance, s > 1 extrapolates (s = 1 + w in the
    paper's eps = (1 + w) eps_c - w eps_u). One batched call evaluates both branches.
    """
    if scale == 1.0:
        return lambda x, s: denoiser(x, s, cond)
    if scale == 0.0:
        return lambda x, s: denoiser(x, s, null_cond)

    def D(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        both = denoiser(torch.cat([x, x]), torch.cat([_sig(sigma, x)] * 2), torch.cat([cond, null_cond]))
        d_c, d_u = both.chunk(2)
        return d_u + scale * (d_c - d_u)
    return D


def euler_step(x: torch.Tensor, denoised: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
    """One Euler step of the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma (EDM eq. 4) from sigma to
    sigma_next, given denoised = D(x; sigma). sigma and sigma_next broadcast against x, so every sample (or every
    frame of a Diffusion Forcing chunk) may be at its own level."""
    return x + (sigma_next - sigma) * (x - denoised) / sigma


@torch.no_grad()
def euler(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, s_churn: float = 0.0,
          s_tmin: float = 0.0, s_tmax: float = float("inf"), s_noise: float = 1.0,
          generator: torch.Generator | None = None) -> torch.Tensor:
    """Euler steps of the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma (EDM eq. 4),
    with optional stochastic churn (EDM Algorithm 2 lines 4-6)."""
    return _edm_solver(denoiser, x, sigmas, second_order=False, s_churn=s_churn, s_tmin=s_tmin,
                       s_tmax=s_tmax, s_noise=s_noise, generator=generator)


@torch.no_grad()
def heun(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, s_churn: float = 0.0,
         s_tmin: float = 0.0, s_tmax: float = float("inf"), s_noise: float = 1.0,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """EDM Algorithm 2: Heun's 2nd-order method; the last step (to sigma = 0) is Euler."""
    return _edm_solver(denoiser, x, sigmas, second_order=True, s_churn=s_churn, s_tmin=s_tmin,
                       s_tmax=s_tmax, s_noise=s_noise, generator=generator)


def _edm_solver(denoiser, x, sigmas, second_order, s_churn, s_tmin, s_tmax, s_noise, generator):
    n = len(sigmas) - 1
    for i in range(n):
        s_cur, s_next = sigmas[i], sigmas[i + 1]
        # Churn: raise the noise level from s_cur to s_hat by adding fresh noise (Algorithm 2 l.5-6).
        gamma = min(s_churn / n, math.sqrt(2) - 1) if s_tmin <= float(s_cur) <= s_tmax else 0.0
        s_hat = s_cur * (1 + gamma)
        if gamma > 0:
            eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + (s_hat ** 2 - s_cur ** 2).sqrt() * s_noise * eps
        d = (x - denoiser(x, _sig(s_hat, x))) / s_hat  # EDM eq. 4: dx/dsigma
        x_next = x + (s_next - s_hat) * d
        if second_order and float(s_next) > 0:  # 2nd-order correction (Algorithm 2 l.9-11)
            d_next = (x_next - denoiser(x_next, _sig(s_next, x))) / s_next
            x_next = x + (s_next - s_hat) * 0.5 * (d + d_next)
        x = x_next
    return x


@torch.no_grad()
def ancestral(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, eta: float = 1.0,
              variance: str = "small", generator: torch.Generator | None = None) -> torch.Tensor:
    """DDIM with stochasticity eta (DDIM eq. 12 and 16), written in VE coordinates.

    From sigma to sigma', with x0 = D(x; sigma) and eps = (x - x0) / sigma:
        sigma_up   = eta * sigma' * sqrt(sigma^2 - sigma'^2) / sigma       (DDIM's sigma_t, rescaled)
        sigma_down = sqrt(sigma'^2 - sigma_up^2)
        x'         = x0 + sigma_down * eps + sigma_up * z
    eta = 0 is deterministic DDIM; eta = 1 is exactly DDPM's posterior q(x_{t-1} | x_t, x0) with the
    'small' variance beta_tilde. variance='large' (eta = 1 only) keeps the posterior mean but uses
    beta_t: sigma_up^2 = (1 + sigma'^2)(sigma^2 - sigma'^2) / (1 + sigma^2).
    """
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        x0 = denoiser(x, _sig(s, x))
        if float(s_next) == 0:
            x = x0
            continue
        eps = (x - x0) / s
        if variance == "large":
            if eta != 1.0:
                raise ValueError("variance='large' is DDPM's sampler and needs eta=1")
            up = ((1 + s_next ** 2) * (s ** 2 - s_next ** 2) / (1 + s ** 2)).sqrt()
            down = s_next ** 2 / s  # the posterior mean's coefficient on eps, unchanged
        else:
            up = eta * s_next * (s ** 2 - s_next ** 2).clamp(min=0).sqrt() / s
            down = (s_next ** 2 - up ** 2).clamp(min=0).sqrt()
        x = x0 + down * eps
        if eta > 0:
            x = x + up * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x


@torch.no_grad()
def ddim_invert(denoiser: Denoiser, x0: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Deterministic DDIM run backwards: image at sigmas[-1] (small, > 0) to noise at sigmas[0].

    `sigmas` is the same decreasing schedule (without the final 0) used to generate; regenerating with
    `ancestral(eta=0)` on `sigmas` (with a 0 appended) maps the result back to (nearly) x0.
    """
    x = x0
    rev = sigmas.flip(0)
    for i in range(len(rev) - 1):
        s, s_next = rev[i], rev[i + 1]
        x_hat = denoiser(x, _sig(s, x))
        x = x_hat + s_next * (x - x_hat) / s
    return x


def ddpm_sigmas(discrete_sigmas: torch.Tensor, steps: int) -> torch.Tensor:
    """VE sigmas of DDIM-N on a T-step DDPM grid: timesteps 0, T/N, 2T/N, ... ("leading" spacing, as in
    the DDIM paper and diffusers), from high to low, followed by 0. steps = T gives DDPM's full chain."""
    T = len(discrete_sigmas)
    ts = (torch.arange(steps) * (T // steps)).flip(0)
    return torch.cat([discrete_sigmas[ts].float(), torch.zeros(1)])
