"""Our DDPM/DDIM against diffusers' schedulers, an independent implementation (diffusers==0.35.2, a dev
dependency), step for step with the same model outputs and the same noise.

diffusers works in VP coordinates with float32 schedules (betas by torch.linspace in float32, cumprod in
float32) and recomputes beta_t as 1 - abar_t / abar_{t-1}; ours keeps the schedule in float64 and samples
in VE coordinates. In float32 that recomputation cancels catastrophically at small t (beta_1 ~ 1e-4 from
two numbers ~1 with float32 rounding 6e-8: ~1e-3 relative), so the shipped diffusers step at t = 1 is off
by ~1.5e-4 while ours is not. The oracle is therefore diffusers' *code* run on its own tables promoted to
float64 (`promote`): its betas (float32 values) and cumprod redone in float64. That agrees to ~1e-7
per step; the shipped float32 scheduler is compared too, with the tolerance its rounding needs.

Noise: DDPMScheduler.step draws `randn_tensor(model_output.shape, generator=g, dtype=model_output.dtype)`,
which on CPU with one generator is exactly `torch.randn(shape, generator=g, dtype=dtype)`, once per step
with t > 0. `ancestral` draws the same `torch.randn(x.shape, generator=g, dtype=x.dtype)` once per step
whose target sigma is > 0, i.e. also for t = T-1 .. 1. So one seeded generator reproduces the draws.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

pytest.importorskip("diffusers")
from diffusers import DDIMScheduler, DDPMScheduler  # noqa: E402

from common.diffusion import samplers  # noqa: E402
from common.diffusion.ddpm import DDPMConfig, DDPMModel, DDPMSchedule  # noqa: E402
from phase0_diffusion.config import DiffusionConfig, SampleConfig  # noqa: E402
from phase0_diffusion.model import ImageDiffusion  # noqa: E402
from common.nn.unet import UNetConfig  # noqa: E402

F64 = torch.float64
SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}  # ours -> diffusers' beta_schedule
PREDICTIONS = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}
VARIANCES = {"small": "fixed_small", "large": "fixed_large"}
SHAPE = (2, 3, 4, 4)


def promote(sched):
    """Run a diffusers scheduler in float64: same betas (its float32 values), cumprod redone in float64."""
    sched.betas = sched.betas.double()
    sched.alphas = 1.0 - sched.betas
    sched.alphas_cumprod = torch.cumprod(sched.alphas, 0)
    sched.one = torch.tensor(1.0, dtype=F64)
    if hasattr(sched, "final_alpha_cumprod"):
        sched.final_alpha_cumprod = torch.tensor(1.0, dtype=F64)  # set_alpha_to_one=True
    return sched


def ddpm_pair(schedule="linear", prediction="eps", variance="small", float64=True):
    ours = DDPMSchedule(DDPMConfig(schedule=schedule, prediction=prediction))
    theirs = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
                           beta_schedule=SCHEDULES[schedule], clip_sample=False,
                           variance_type=VARIANCES[variance], prediction_type=PREDICTIONS[prediction])
    return ours, promote(theirs) if float64 else theirs


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_betas_and_alphas_cumprod_match(schedule):
    ours, theirs = ddpm_pair(schedule, float64=False)
    # diffusers: float32 linspace / float32 cast of the same float64 cosine formula (max_beta 0.999)
    torch.testing.assert_close(theirs.betas.double(), ours.betas, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(theirs.alphas_cumprod.double(), ours.abar, rtol=1e-5, atol=1e-10)
    assert theirs.betas.max().item() <= 0.999 + 1e-7


class FakeEps(nn.Module):
    """A fixed nonlinear 'network' net(x_t, t, cond); t may be an int, a 0-dim or a (B,) tensor."""

    def forward(self, x, t, cond=None):
        u = (torch.as_tensor(t, dtype=x.dtype) / 1000).reshape(-1, *([1] * (x.ndim - 1)))
        return u.sqrt() * x + 0.3 * (1 - u) * torch.sin(3 * x) + 0.05 * torch.cos(10 * u)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("variance", VARIANCES)
def test_ddpm_step_matches(schedule, prediction, variance):
    """DDPMScheduler.step(model_output, t, x_t, generator) == DDPMSchedule.p_step(out, x_t, t, noise), in
    float64. diffusers' "fixed_large" uses beta_t for every t > 0 (and adds no noise at t = 0), which is our
    variance='large'."""
    ours, theirs = ddpm_pair(schedule, prediction, variance)
    g = torch.Generator().manual_seed(0)
    for t in (999, 998, 700, 500, 100, 10, 1, 0):
        x = torch.randn(SHAPE, generator=g, dtype=F64)
        out = torch.randn(SHAPE, generator=g, dtype=F64)
        ref = theirs.step(out, t, x, generator=torch.Generator().manual_seed(t)).prev_sample
        noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(t), dtype=F64)
        got = ours.p_step(out, x, t, noise, variance=variance)
        # Remaining difference: diffusers' betas are float32 values (relative 6e-8). For cosine,
        # beta_999 = 0.999 makes 1 - beta_999 (and so abar_999) uncertain by ~6e-5 relative (abar's
        # max relative difference is 1.3e-5), and with eps-prediction x0 = x / sqrt(abar_999) is huge
        # (the step returns values ~100): observed 6e-6 relative there, <= 2e-7 everywhere else.
        tol = 5e-5 if (schedule, t) == ("cosine", 999) else 1e-6
        torch.testing.assert_close(got, ref, rtol=tol, atol=tol * max(1.0, ref.abs().max().item()))


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_ddpm_step_matches_shipped_float32(schedule):
    """The scheduler as shipped (float32 tables, float32 inputs): 1e-5 for t >= 100; at small t diffusers'
    float32 1 - abar_t/abar_{t-1} loses digits (t = 1: ~1.5e-4 off), so the bound there is 1e-3."""
    ours, theirs = ddpm_pair(schedule, float64=False)
    g = torch.Generator().manual_seed(0)
    for t in (999, 700, 500, 100, 10, 1, 0):
        x, out = torch.randn(SHAPE, generator=g), torch.randn(SHAPE, generator=g)
        ref = theirs.step(out, t, x, generator=torch.Generator().manual_seed(t)).prev_sample
        got = ours.p_step(out, x, t, torch.randn(SHAPE, generator=torch.Generator().manual_seed(t)))
        tol = 1e-5 if t >= 100 else 1e-3
        torch.testing.assert_close(got, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("variance", VARIANCES)
def test_full_ddpm_sampling_loop_matches(variance):
    """Our DDPM sampler (ancestral eta=1 on all 1000 VE sigmas of a DDPMModel, prior VP) == diffusers'
    DDPM loop x_T ~ N(0, I); for t: x = step(net(x, t), t, x, generator) with one shared generator."""
    cfg = DDPMConfig()
    model = DDPMModel(FakeEps(), cfg)
    _, sched = ddpm_pair(variance=variance)
    g = torch.Generator().manual_seed(42)
    x = torch.randn(SHAPE, generator=g).double()
    for t in sched.timesteps:
        x = sched.step(model.net(x, t), t, x, generator=g).prev_sample  # float64 noise draws
    assert x.abs().max() > 0.5
    # ddpm_sigmas returns float32 sigmas (as every sampler gets them): their rounding accumulates to
    # ~2e-5 over 1000 steps; with the float64 grid the difference is ~2e-7 (left: DDPMModel's float32
    # network output and diffusers' float32 betas).
    sig32 = samplers.ddpm_sigmas(model.schedule.sigmas, 1000)
    sig64 = torch.cat([model.schedule.sigmas.flip(0), torch.zeros(1, dtype=F64)])
    for sig, tol in ((sig64, 1e-6), (sig32, 1e-4)):
        g = torch.Generator().manual_seed(42)
        y = samplers.prior(SHAPE, float(sig[0]), g, variance_preserving=True).double()
        y = samplers.ancestral(model, y, sig, eta=1.0, variance=variance, generator=g)  # float64 draws too
        torch.testing.assert_close(y, x, rtol=tol, atol=tol)


# ------------------------------------------------------------------ DDIM
def ddim_scheduler(steps=50, float64=True):
    s = DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                      clip_sample=False, set_alpha_to_one=True, steps_offset=0, timestep_spacing="leading",
                      prediction_type="epsilon")
    s.set_timesteps(steps)
    return promote(s) if float64 else s


@pytest.mark.parametrize("steps", [10, 50, 30, 1000])
def test_ddim_timesteps_match_ddpm_sigmas(steps):
    """diffusers' 'leading' timesteps, as sigma(t) = sqrt((1 - abar_t)/abar_t), are our ddpm_sigmas."""
    sched = ddim_scheduler(steps)  # float64 tables: 1 - abar_0 in float32 would cancel (8e-5 off)
    ac = sched.alphas_cumprod[sched.timesteps]
    theirs = ((1 - ac) / ac).sqrt()
    ours = samplers.ddpm_sigmas(DDPMSchedule(DDPMConfig()).sigmas, steps)
    assert len(ours) == steps + 1 and ours[-1] == 0
    torch.testing.assert_close(ours[:-1].double(), theirs, rtol=1e-6, atol=0)  # ours are float32
    assert sched.timesteps.tolist() == [k * (1000 // steps) for k in reversed(range(steps))]


@pytest.mark.parametrize("steps", [50, 20])
def test_ddim_deterministic_loop_matches(steps):
    """A full eta=0 DDIM run: diffusers' DDIMScheduler in VP vs ancestral(eta=0) on a DDPMModel wrapping the
    same eps-network (VE), from the same initial noise."""
    model = DDPMModel(FakeEps(), DDPMConfig())
    for float64 in (True, False):  # diffusers promoted to float64, then as shipped (float32 throughout)
        sched = ddim_scheduler(steps, float64)
        dt = F64 if float64 else torch.float32
        g = torch.Generator().manual_seed(7)
        x = torch.randn(SHAPE, generator=g).to(dt)
        for t in sched.timesteps:
            x = sched.step(model.net(x, t), t, x, eta=0.0).prev_sample
        sig = samplers.ddpm_sigmas(model.schedule.sigmas, steps)
        g = torch.Generator().manual_seed(7)
        y = samplers.prior(SHAPE, float(sig[0]), g, variance_preserving=True).to(dt)
        y = samplers.ancestral(model, y, sig, eta=0.0)
        assert x.dtype == y.dtype == dt and x.abs().max() > 0.5  # a non-trivial result
        tol = 1e-5 if float64 else 1e-4
        torch.testing.assert_close(y, x, rtol=tol, atol=tol)


@pytest.mark.parametrize("t,t_prev", [(980, 960), (500, 480), (20, 0), (0, -20)])
def test_ddim_eta1_step_matches(t, t_prev):
    """One stochastic DDIM step with eta = 1 and the noise z given explicitly (variance_noise=z)."""
    model = DDPMModel(FakeEps(), DDPMConfig())
    s = model.schedule
    sched = ddim_scheduler(50)
    g = torch.Generator().manual_seed(t)
    x_vp = torch.randn(SHAPE, generator=g, dtype=F64)
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(99), dtype=F64)
    ref = sched.step(model.net(x_vp, t), t, x_vp, eta=1.0, variance_noise=z).prev_sample
    sig = torch.stack([s.sigmas[t], s.sigmas[t_prev] if t_prev >= 0 else torch.zeros((), dtype=F64)])
    x_ve = x_vp * math.sqrt(1 + float(sig[0]) ** 2)
    out = samplers.ancestral(model, x_ve, sig, eta=1.0, generator=torch.Generator().manual_seed(99))
    abar_prev = 1.0 / (1.0 + float(sig[1]) ** 2)
    torch.testing.assert_close(out * math.sqrt(abar_prev), ref, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ the phase 0 entry point, end to end
@pytest.mark.parametrize("sampler,steps", [("ddim", 50), ("ddpm", 1000)])
def test_image_diffusion_sample_matches_diffusers(sampler, steps):
    """ImageDiffusion.sample (sigmas_for, VP prior, ancestral) with its UNet swapped for FakeEps equals the
    diffusers pipeline loop with the same seed."""
    dcfg = DiffusionConfig(process="ddpm")
    ucfg = UNetConfig(in_channels=3, out_channels=3, channels=[8], num_res_blocks=1, attn_levels=[],
                      emb_dim=8, noise_embedding="sinusoidal", num_groups=4)
    model = ImageDiffusion(ucfg, dcfg)
    model.process.net = FakeEps()
    scfg = SampleConfig(sampler=sampler, steps=steps, eta=0.0)
    y = model.sample(SHAPE[0], SHAPE[1:], scfg, generator=torch.Generator().manual_seed(5))

    sched = ddim_scheduler(steps, float64=False) if sampler == "ddim" else ddpm_pair(float64=False)[1]
    g = torch.Generator().manual_seed(5)
    x = torch.randn(SHAPE, generator=g)
    for t in sched.timesteps:
        out = FakeEps()(x, t)
        x = (sched.step(out, t, x, eta=0.0) if sampler == "ddim" else sched.step(out, t, x, generator=g)).prev_sample
    torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-4)
