"""Closed-form checks of common/diffusion/ddpm.py and of the DDPM <-> DDIM <-> VE-sampler equivalences.

Everything here is exact math, so it runs in float64 with tight tolerances; the only statistical test
(forward marginals) uses tolerances of 5 standard errors of the estimator.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from common.diffusion import samplers
from common.diffusion.ddpm import DDPMConfig, DDPMModel, DDPMSchedule, make_betas

F64 = torch.float64
SCHEDULES = ("linear", "cosine")


def sched(schedule: str = "linear", prediction: str = "eps") -> DDPMSchedule:
    cfg = DDPMConfig(schedule=schedule, prediction=prediction)
    cfg.check()
    return DDPMSchedule(cfg)


def vec(v: torch.Tensor, t: int, like: torch.Tensor) -> torch.Tensor:
    """Scalar schedule entry v[t] as a tensor broadcastable against `like` (B, ...)."""
    return v[t].to(like.dtype).reshape(1, *([1] * (like.ndim - 1)))


# ------------------------------------------------------------------ schedules and forward marginals
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_schedule_shape_and_monotone(schedule):
    s = sched(schedule)
    assert s.betas.dtype == F64 and s.betas.shape == (1000,)
    assert (s.betas > 0).all() and (s.betas <= 0.999).all()  # cosine is clipped at 0.999 (iDDPM eq. 17)
    assert (s.abar[1:] < s.abar[:-1]).all(), "abar must be strictly decreasing"
    assert 0 < s.abar[-1] < s.abar[0] < 1
    assert s.abar_prev[0] == 1 and torch.equal(s.abar_prev[1:], s.abar[:-1])
    torch.testing.assert_close(s.sigmas, ((1 - s.abar) / s.abar).sqrt(), rtol=0, atol=0)


def test_linear_betas_are_ddpm_values():
    b = make_betas(DDPMConfig())
    assert b[0].item() == pytest.approx(1e-4, abs=1e-15) and b[-1].item() == pytest.approx(0.02, abs=1e-15)
    torch.testing.assert_close(b[1:] - b[:-1], torch.full((999,), (0.02 - 1e-4) / 999, dtype=F64))


def test_cosine_abar_is_closed_form():
    """abar_t = f(t+1)/f(0) with f(u) = cos^2(((u/T + s)/(1 + s)) pi/2): exact wherever the clip is inactive."""
    s, T, off = sched("cosine"), 1000, 0.008
    f = lambda u: math.cos((u / T + off) / (1 + off) * math.pi / 2) ** 2
    clipped = s.betas >= 0.999
    assert clipped.sum() <= 1 and (not clipped.any() or clipped[-1])  # only the very last step clips
    ref = torch.tensor([f(t + 1) / f(0) for t in range(T - 1)], dtype=F64)
    torch.testing.assert_close(s.abar[:-1], ref, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_forward_marginals(schedule):
    """E[x_t] = sqrt(abar_t) x0 and Var[x_t] = 1 - abar_t over many noise draws (DDPM eq. 4)."""
    s = sched(schedule)
    g = torch.Generator().manual_seed(0)
    x0 = torch.tensor([1.5, -0.7, 0.0, 3.0], dtype=F64)
    n = 50_000
    for t in (0, 50, 500, 999):
        tt = torch.full((n,), t, dtype=torch.long)
        xt = s.q_sample(x0.expand(n, 4), tt, torch.randn(n, 4, generator=g, dtype=F64))
        a = s.abar[t].item()
        mean_se, var_se = math.sqrt((1 - a) / n), (1 - a) * math.sqrt(2 / n)  # standard errors
        torch.testing.assert_close(xt.mean(0), math.sqrt(a) * x0, rtol=0, atol=5 * mean_se)
        torch.testing.assert_close(xt.var(0), torch.full((4,), 1 - a, dtype=F64), rtol=0, atol=5 * var_se)


# ------------------------------------------------------------------ posterior q(x_{t-1} | x_t, x0)
def bayes_posterior(betas: np.ndarray, t: int, x0: np.ndarray, xt: np.ndarray):
    """Gaussian Bayes, independently of ddpm.py: q(x_{t-1}|x0) = N(sqrt(abar_{t-1}) x0, 1 - abar_{t-1}) times
    the likelihood q(x_t|x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t): precisions add, means are
    precision-weighted."""
    abar_prev = float(np.prod(1.0 - betas[:t]))
    beta = float(betas[t])
    alpha = 1.0 - beta
    prec = alpha / beta + 1.0 / (1.0 - abar_prev)
    var = 1.0 / prec
    mean = var * (math.sqrt(alpha) / beta * xt + math.sqrt(abar_prev) / (1.0 - abar_prev) * x0)
    return mean, var


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_posterior_matches_bayes_rule(schedule):
    s = sched(schedule)
    betas = s.betas.numpy()
    rng = np.random.default_rng(1)
    for t in (1, 2, 10, 300, 700, 998, 999):
        x0, xt = rng.normal(size=(3, 5)), rng.normal(size=(3, 5)) * 2
        mean_ref, var_ref = bayes_posterior(betas, t, x0, xt)
        tt = torch.full((3,), t, dtype=torch.long)
        for variance in ("small", "large"):
            mean, var = s.posterior(torch.from_numpy(x0), torch.from_numpy(xt), tt, variance)
            # "large" keeps the posterior mean and replaces beta_tilde_t by beta_t (DDPM section 3.2)
            np.testing.assert_allclose(mean.numpy(), mean_ref, rtol=1e-10, atol=1e-10)
            want = var_ref if variance == "small" else betas[t]
            np.testing.assert_allclose(var.numpy().reshape(-1), np.full(3, want), rtol=1e-10)
        assert s.post_var[t] <= s.betas[t]  # beta_tilde <= beta


def test_posterior_at_t0_is_x0():
    """t = 0: abar_{-1} = 1, so the posterior is a point mass at x0 (small variance 0)."""
    s = sched()
    x0, xt = torch.randn(2, 3, dtype=F64), torch.randn(2, 3, dtype=F64)
    mean, var = s.posterior(x0, xt, torch.zeros(2, dtype=torch.long))
    torch.testing.assert_close(mean, x0, rtol=0, atol=1e-12)  # beta_0 / (1 - abar_0) = 1 up to rounding
    assert (var == 0).all()


# ------------------------------------------------------------------ parameterisations
@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("prediction", ("eps", "x0", "v"))
def test_target_then_predict_x0_roundtrip(schedule, prediction):
    s = sched(schedule, prediction)
    g = torch.Generator().manual_seed(2)
    t = torch.tensor([0, 1, 10, 250, 500, 900, 998, 999])
    x0 = torch.randn(len(t), 3, 4, 4, generator=g, dtype=F64)
    noise = torch.randn(x0.shape, generator=g, dtype=F64)
    xt = s.q_sample(x0, t, noise)
    out = s.target(x0, noise, t)
    rec = s.predict_x0(out, xt, s.abar[t].reshape(-1, 1, 1, 1))
    torch.testing.assert_close(rec, x0, rtol=0, atol=1e-6)
    if prediction == "v":  # v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans & Ho 2022, eq. after 10)
        a = s.abar[t].reshape(-1, 1, 1, 1)
        torch.testing.assert_close(out, a.sqrt() * noise - (1 - a).sqrt() * x0)


# ------------------------------------------------------------------ DDIM(eta) in VE coordinates vs DDPM
def _oracle_step(s: DDPMSchedule, x0: torch.Tensor, x_vp: torch.Tensor, t: int, *, eta: float,
                 variance: str = "small", seed: int = 3) -> torch.Tensor:
    """One `ancestral` step sigma_t -> sigma_{t-1} with a denoiser that always returns x0, mapped back to
    VP coordinates (x_vp = x_ve sqrt(abar))."""
    sig = torch.stack([s.sigmas[t], s.sigmas[t - 1]])
    x_ve = x_vp / s.abar[t].sqrt()
    out = samplers.ancestral(lambda x, sigma: x0, x_ve, sig, eta=eta, variance=variance,
                             generator=torch.Generator().manual_seed(seed))
    return out * s.abar[t - 1].sqrt()


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("prediction", ("eps", "x0", "v"))
@pytest.mark.parametrize("variance", ("small", "large"))
def test_ancestral_eta1_is_ddpm_posterior_step(schedule, prediction, variance):
    """DDIM eq. 16 with eta = 1 is DDPM's p(x_{t-1}|x_t) (same noise z); 'large' swaps beta_tilde for beta."""
    s = sched(schedule, prediction)
    g = torch.Generator().manual_seed(4)
    for t in (1, 2, 50, 500, 999):
        x0 = torch.randn(6, 2, 3, 3, generator=g, dtype=F64)
        x_vp = s.q_sample(x0, torch.full((6,), t), torch.randn(x0.shape, generator=g, dtype=F64))
        x_vp = x_vp + 0.3 * torch.randn(x0.shape, generator=g, dtype=F64)  # x0 is not the truth for x_t
        ours = _oracle_step(s, x0, x_vp, t, eta=1.0, variance=variance, seed=t)
        # the network output that predicts exactly this x0 under each parameterisation
        a = s.abar[t]
        eps = (x_vp - a.sqrt() * x0) / (1 - a).sqrt()
        out = {"eps": eps, "x0": x0, "v": a.sqrt() * eps - (1 - a).sqrt() * x0}[prediction]
        z = torch.randn(x0.shape, generator=torch.Generator().manual_seed(t), dtype=F64)
        ref = s.p_step(out, x_vp, t, z, variance=variance)
        torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-9)


def test_ancestral_t0_step_returns_x0():
    """The last DDPM step (t = 0, sigma_0 -> 0) adds no noise and returns the prediction."""
    s = sched(prediction="x0")
    x0, x = torch.randn(4, 3, dtype=F64), torch.randn(4, 3, dtype=F64)
    out = samplers.ancestral(lambda x, sigma: x0, x, torch.stack([s.sigmas[0], torch.zeros((), dtype=F64)]),
                             eta=1.0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x0, rtol=0, atol=0)
    torch.testing.assert_close(s.p_step(x0, x * s.abar[0].sqrt(), 0, torch.randn(4, 3, dtype=F64)),
                               x0, rtol=0, atol=1e-12)  # p_step(t=0) also returns the mean = x0


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_ancestral_eta0_is_deterministic_ddim(schedule):
    """eta = 0: x_{t'} = sqrt(abar') x0 + sqrt(1 - abar') eps with eps = (x_t - sqrt(abar) x0)/sqrt(1 - abar)
    (DDIM eq. 12 with sigma_t = 0), for a jump of several timesteps."""
    s = sched(schedule)
    g = torch.Generator().manual_seed(5)
    for t, t_next in ((999, 979), (500, 480), (20, 0), (1, 0), (700, 1)):
        x0 = torch.randn(5, 3, generator=g, dtype=F64)
        x_vp = torch.randn(5, 3, generator=g, dtype=F64)
        sig = torch.stack([s.sigmas[t], s.sigmas[t_next]])
        out = samplers.ancestral(lambda x, sigma: x0, x_vp / s.abar[t].sqrt(), sig, eta=0.0)
        out = out * s.abar[t_next].sqrt()
        a, a_next = s.abar[t], s.abar[t_next]
        eps = (x_vp - a.sqrt() * x0) / (1 - a).sqrt()
        torch.testing.assert_close(out, a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps, rtol=1e-10, atol=1e-10)


def test_ancestral_large_needs_eta1():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="eta=1"):
        samplers.ancestral(lambda x, s: x, x, torch.tensor([1.0, 0.5, 0.0]), eta=0.5, variance="large")


# ------------------------------------------------------------------ whole chain through DDPMModel
class FakeEpsNet(nn.Module):
    """A fixed, nonlinear 'eps-prediction network' net(x_t, t, cond) (t may be fractional)."""

    def forward(self, x, t, cond=None):
        u = (t.to(x.dtype) / 1000).reshape(-1, *([1] * (x.ndim - 1)))
        return u.sqrt() * x + 0.3 * (1 - u) * torch.sin(3 * x) + 0.05 * torch.cos(10 * u)


@pytest.mark.parametrize("variance", ("small", "large"))
def test_full_ddpm_chain_equals_p_step_loop(variance):
    """ancestral(eta=1) over all 1000 sigmas of a DDPMModel (VE) == the textbook loop x_t -> x_{t-1} with
    p_step in VP coordinates, draw for draw (same generator, same draw order)."""
    cfg = DDPMConfig()
    model = DDPMModel(FakeEpsNet(), cfg)
    s = model.schedule
    shape = (3, 2, 4, 4)
    # ours: VE, starting from prior(variance_preserving) = z * sqrt(1 + sigma_T^2) = z / sqrt(abar_T)
    g = torch.Generator().manual_seed(11)
    sig = torch.cat([s.sigmas.flip(0), torch.zeros(1, dtype=F64)])
    x = samplers.prior(shape, float(sig[0]), g, variance_preserving=True).to(F64)
    ours = samplers.ancestral(model, x, sig, eta=1.0, variance=variance, generator=g)
    # reference: VP, x_T ~ N(0, I); one noise draw per step t = T-1 .. 1 (none at t = 0)
    g = torch.Generator().manual_seed(11)
    x = torch.randn(shape, generator=g).to(F64)
    for t in reversed(range(cfg.num_timesteps)):
        out = model.net(x, torch.full((shape[0],), float(t)))
        z = torch.randn(shape, generator=g, dtype=F64) if t > 0 else None
        x = s.p_step(out, x, t, z, variance=variance)
    # DDPMModel casts the network output to float32 (.float()): ~2e-8 observed here, not 1e-15.
    torch.testing.assert_close(ours, x, rtol=1e-6, atol=1e-6)
