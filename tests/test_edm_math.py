"""Closed-form checks of common/diffusion/edm.py: the EDM design conditions behind the preconditioning
(Karras et al. 2022, Appendix B.6 and Table 1), the Karras schedule (eq. 5) and the denoiser wrapper (eq. 7)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from common.diffusion.edm import (EDMConfig, EDMDenoiser, edm_loss_weight, edm_scalings, karras_sigmas,
                                  lognormal_sigma, training_noise)
from common.diffusion.samplers import euler_step
from common.stepwise import StepRNG

F64 = torch.float64
SIGMAS = torch.tensor([0.002, 0.01, 0.1, 0.5, 1.0, 2.0, 10.0, 80.0, 200.0], dtype=F64)


@pytest.mark.parametrize("sd", [0.5, 1.0, 0.25])
def test_preconditioning_design_conditions(sd):
    c_skip, c_out, c_in, c_noise = edm_scalings(SIGMAS, sd)
    s2, sd2 = SIGMAS ** 2, sd ** 2
    one = torch.ones_like(SIGMAS)
    # network input has unit variance: Var[c_in (x0 + s n)] = c_in^2 (sd^2 + s^2) = 1
    torch.testing.assert_close(c_in ** 2 * (sd2 + s2), one, rtol=1e-12, atol=0)
    # training target F* = (x0 - c_skip x) / c_out has unit variance for x0 with std sd:
    # Var = (sd^2 (1 - c_skip)^2 + c_skip^2 s^2) / c_out^2 = 1
    torch.testing.assert_close((sd2 * (1 - c_skip) ** 2 + c_skip ** 2 * s2) / c_out ** 2, one, rtol=1e-12, atol=0)
    # c_skip minimises that variance: d/dc [sd^2 (1 - c)^2 + c^2 s^2] = 0  <=>  c = sd^2 / (sd^2 + s^2)
    torch.testing.assert_close(-2 * sd2 * (1 - c_skip) + 2 * c_skip * s2, torch.zeros_like(SIGMAS), rtol=0, atol=1e-12)
    # lambda(sigma) = 1 / c_out^2: the effective weight on F's error is 1 at every noise level
    torch.testing.assert_close(edm_loss_weight(SIGMAS, sd) * c_out ** 2, one, rtol=1e-12, atol=0)
    torch.testing.assert_close(c_noise, SIGMAS.log() / 4, rtol=0, atol=0)
    # limits: pure skip at sigma -> 0, pure network at sigma -> inf
    assert c_skip[0] > 0.999 and c_skip[-1] < 1e-4


def test_target_variance_monte_carlo():
    """The same condition, sampled: x0 ~ N(0, sd^2), x = x0 + s n; Var[(x0 - c_skip x)/c_out] ~ 1."""
    g = torch.Generator().manual_seed(0)
    sd, n = 0.5, 200_000
    x0 = sd * torch.randn(n, generator=g, dtype=F64)
    noise = torch.randn(n, generator=g, dtype=F64)
    for s in (0.05, 0.5, 5.0):
        c_skip, c_out, c_in, _ = edm_scalings(torch.tensor(s, dtype=F64), sd)
        x = x0 + s * noise
        assert ((x0 - c_skip * x) / c_out).var().item() == pytest.approx(1.0, abs=5 * math.sqrt(2 / n))
        assert (c_in * x).var().item() == pytest.approx(1.0, abs=5 * math.sqrt(2 / n))


@pytest.mark.parametrize("n", [1, 2, 18, 40])
def test_karras_sigmas(n):
    smin, smax, rho = 0.002, 80.0, 7.0
    s = karras_sigmas(n, smin, smax, rho)
    assert s.shape == (n + 1,) and s[-1] == 0
    assert s[0].item() == pytest.approx(smax, rel=1e-6)
    if n > 1:
        assert s[-2].item() == pytest.approx(smin, rel=1e-5)
    assert (s[1:] < s[:-1]).all(), "strictly decreasing"
    if n >= 3:  # EDM eq. 5 at an interior index i: (smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho
        i = n // 2
        want = (smax ** (1 / rho) + i / (n - 1) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
        assert s[i].item() == pytest.approx(want, rel=1e-6)
        # uniform in sigma^(1/rho)
        inv = s[:-1].double() ** (1 / rho)
        torch.testing.assert_close(inv[1:] - inv[:-1], torch.full((n - 1,), (inv[1] - inv[0]).item(), dtype=F64),
                                   rtol=1e-5, atol=1e-7)


class Recorder(nn.Module):
    """A network F(inp, c_noise, cond) that returns `value` (default 0) and records its inputs."""

    def __init__(self, value: float = 0.0):
        super().__init__()
        self.value, self.calls = value, []

    def forward(self, inp, c_noise, cond):
        self.calls.append((inp, c_noise, cond))
        return torch.full_like(inp[:, -3:], self.value)


def test_denoiser_with_zero_net_is_c_skip_x():
    cfg = EDMConfig()
    net = Recorder()
    D = EDMDenoiser(net, cfg)
    x = torch.randn(4, 3, 5, 5)
    sigma = torch.tensor([0.01, 0.5, 3.0, 80.0])
    c_skip, _, c_in, c_noise = edm_scalings(sigma, cfg.sigma_data)
    out = D(x, sigma)
    torch.testing.assert_close(out, c_skip[:, None, None, None] * x)
    inp, cn, cond = net.calls[0]
    torch.testing.assert_close(inp, c_in[:, None, None, None] * x)  # the network sees c_in x
    torch.testing.assert_close(cn, c_noise)  # and c_noise = ln(sigma)/4
    assert cond is None
    # a scalar sigma broadcasts over the batch
    torch.testing.assert_close(D(x, torch.tensor(0.5)), D(x, torch.full((4,), 0.5)))


def test_denoiser_formula_and_context():
    """D = c_skip x + c_out F(c_in x); clean context channels are concatenated in front, unscaled."""
    cfg = EDMConfig(sigma_data=0.5)
    net = Recorder(value=0.7)
    D = EDMDenoiser(net, cfg)
    x, ctx = torch.randn(2, 3, 4, 4), torch.randn(2, 6, 4, 4)
    sigma = torch.tensor([0.2, 5.0])
    c_skip, c_out, c_in, _ = (c[:, None, None, None] for c in edm_scalings(sigma, cfg.sigma_data))
    torch.testing.assert_close(D(x, sigma, context=ctx), c_skip * x + c_out * 0.7)
    inp = net.calls[-1][0]
    assert inp.shape == (2, 9, 4, 4)
    torch.testing.assert_close(inp[:, :6], ctx)
    torch.testing.assert_close(inp[:, 6:], c_in * x)


def test_loss_is_zero_for_the_ideal_network_and_weighted_otherwise():
    """If F outputs F* = (x0 - c_skip x)/c_out, D = x0 and the loss is 0; for F = 0 the loss is
    lambda * mean((c_skip x - x0)^2) = mean(F*^2) (the weight turns D-error into F-error)."""
    cfg = EDMConfig()
    g = torch.Generator().manual_seed(1)
    x0 = 0.5 * torch.randn(3, 3, 4, 4, generator=g)
    noise = torch.randn(x0.shape, generator=g)
    sigma = torch.tensor([0.05, 1.0, 20.0])
    c_skip, c_out, _, _ = (c[:, None, None, None] for c in edm_scalings(sigma, cfg.sigma_data))
    x = x0 + sigma[:, None, None, None] * noise
    f_star = (x0 - c_skip * x) / c_out

    class Ideal(nn.Module):
        def forward(self, inp, c_noise, cond):
            return f_star

    torch.testing.assert_close(EDMDenoiser(Ideal(), cfg).loss(x0, sigma, noise), torch.zeros(3), rtol=0, atol=1e-5)
    loss0 = EDMDenoiser(Recorder(), cfg).loss(x0, sigma, noise)
    torch.testing.assert_close(loss0, (f_star ** 2).flatten(1).mean(1), rtol=1e-4, atol=1e-6)


def test_sample_sigma_is_lognormal():
    cfg = EDMConfig(p_mean=-1.2, p_std=1.2)
    D = EDMDenoiser(Recorder(), cfg)
    u = torch.tensor([-1.0, 0.0, 2.0])
    torch.testing.assert_close(D.sample_sigma(u).log(), -1.2 + 1.2 * u)


def _rng(seed=0):
    return StepRNG(seed, step=3, offset=0, count=5, total=5, device=torch.device("cpu"))


def test_lognormal_sigma_is_the_edm_draw_and_clips():
    u = torch.linspace(-4, 4, 9)
    assert torch.equal(lognormal_sigma(u, -0.4, 1.2), (-0.4 + 1.2 * u).exp())
    s = lognormal_sigma(u, -0.4, 1.2, 2e-3, 20.0)
    assert s.min() >= 2e-3 and s.max() <= 20.0 and torch.equal(s, (-0.4 + 1.2 * u).exp().clamp(2e-3, 20.0))


def test_training_noise_forms():
    """scaled: the expression phase 1 trained with (same draws, same order); diamond: x0 + sigma*n equals
    DIAMOND's x0 + sigma*eps + offset*eps_c, and a frame at sigma = 0 gets no offset."""
    shape, offset = (3, 8, 8), 0.3
    a, b = _rng(), _rng()
    old = a.randn(*shape) + offset * a.randn(shape[0], 1, 1)
    assert torch.equal(training_noise(b.randn, shape, offset, "scaled"), old)
    r = _rng()
    eps, eps_c = r.randn(*shape), r.randn(shape[0], 1, 1)
    sigma = torch.tensor([0.0, 0.01, 0.5, 2.0, 20.0])
    n = training_noise(_rng().randn, shape, offset, "diamond", sigma)
    x0 = torch.zeros(5, *shape)
    want = x0 + sigma[:, None, None, None] * eps + offset * eps_c
    got = x0 + sigma[:, None, None, None] * n
    assert torch.allclose(got[1:], want[1:], atol=1e-6) and torch.equal(got[0], x0[0])
    with pytest.raises(ValueError, match="offset noise form"):
        training_noise(_rng().randn, shape, offset, "other", sigma)


def test_euler_step_is_the_pf_ode_step():
    """Per-sample levels; with the exact denoiser of a point mass at 0 (D = 0) the ODE solution is x * s'/s."""
    x = torch.randn(4, 2)
    s, s_next = torch.tensor([[1.0], [2.0], [5.0], [0.5]]), torch.tensor([[0.5], [1.0], [0.0], [0.1]])
    assert torch.allclose(euler_step(x, torch.zeros_like(x), s, s_next), x * s_next / s, atol=1e-6)
