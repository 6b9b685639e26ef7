"""How much do phase 0's samplers distort the data distribution with a perfect denoiser? (discretisation error alone)

    python -m benchmarks.sampler_bias

For Gaussian data x0 ~ N(0, s^2) the ideal denoiser is exact and linear, D(x; sigma) = x s^2 / (s^2 + sigma^2) (in
the VE coordinates every sampler of `common.diffusion.samplers` works in), so a deterministic sampler maps its
starting noise linearly and the variance of its samples is computed exactly: (gain)^2 x (variance of the start).
This prints the ratio of that variance to the data's s^2 (1 = no bias) for the samplers of phase 0's table, at
per-pixel standard deviations typical of images in [-1, 1]. The ancestral DDPM-1000 chain is stochastic; its
variance is measured on 200k samples. A sampler whose ratio is far from 1 differs from the converged one by
discretisation error even when the model is perfect, so FID gaps of that size between samplers are not model error.
"""
from __future__ import annotations

import torch

from common.diffusion import samplers
from common.diffusion.ddpm import DDPMConfig, DDPMSchedule
from common.diffusion.edm import EDMConfig, karras_sigmas

STDS = (0.25, 0.5, 0.75, 1.0)


def variance_ratio(sigmas: torch.Tensor, s: float, solver, start_var: float, n: int = 1) -> float:
    """Var(samples) / s^2 for data N(0, s^2) under the exact denoiser, starting from N(0, start_var)."""
    denoiser = lambda x, sig: x * s ** 2 / (s ** 2 + sig ** 2)  # noqa: E731
    if n == 1:  # deterministic and linear: push 1.0 through and square the gain
        gain = float(solver(denoiser, torch.ones(1, dtype=torch.float64), sigmas.double()))
        return gain ** 2 * start_var / s ** 2
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, dtype=torch.float64, generator=g) * start_var ** 0.5
    return float(solver(denoiser, x, sigmas.double(), generator=g).var()) / s ** 2


def main() -> dict:
    edm = EDMConfig()
    sched = DDPMSchedule(DDPMConfig())
    grid = sched.sigmas if hasattr(sched, "sigmas") else ((1 - sched.alphas_cumprod) / sched.alphas_cumprod).sqrt()
    rows = {}
    # Starting noise: EDM draws N(0, sigma_max^2); the DDPM-grid samplers draw the VP prior N(0, 1) at their first
    # timestep, which is N(0, 1 + sigma_t^2) in VE coordinates (leading spacing starts at t = T - T/N, not T - 1).
    ddim = lambda d, x, sg, **kw: samplers.ancestral(d, x, sg, eta=0.0)  # noqa: E731
    for name, sig, solver, start in (
            [(f"EDM-Heun-{k}", karras_sigmas(k, edm.sigma_min, edm.sigma_max, edm.rho), samplers.heun,
              edm.sigma_max ** 2) for k in (18, 40)]
            + [(f"DDIM-{k} (eta 0, leading)", samplers.ddpm_sigmas(grid, k), ddim,
                1 + float(samplers.ddpm_sigmas(grid, k)[0]) ** 2) for k in (10, 20, 50, 100, 1000)]):
        rows[name] = [variance_ratio(sig, s, solver, start) for s in STDS]
    full = samplers.ddpm_sigmas(grid, 1000)
    rows["DDPM-1000 ancestral (200k samples)"] = [
        variance_ratio(full, s, lambda d, x, sg, generator=None: samplers.ancestral(d, x, sg, eta=1.0,
                                                                                    generator=generator),
                       1 + float(full[0]) ** 2, n=200_000) for s in STDS]
    print("variance of the samples / variance of the data, exact denoiser, data N(0, s^2):")
    print(f"{'sampler':36s}" + "".join(f"  s={s:<5g}" for s in STDS))
    for name, r in rows.items():
        print(f"{name:36s}" + "".join(f"  {v:7.3f}" for v in r))
    return rows


if __name__ == "__main__":
    main()
