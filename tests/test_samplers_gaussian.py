"""Every sampler in common/diffusion/samplers.py, run with the *exact* denoiser of Gaussian data.

For x0 ~ N(mu, Sigma) and x = x0 + s n, E[x0 | x] = mu + Sigma (Sigma + s^2 I)^-1 (x - mu), so a correct
sampler must return N(mu, Sigma) up to its discretisation error. That error is not zero at finite step
counts, and it is not small for every sampler here, so the tests are in two parts:

* exact analysis (no sampling error): the deterministic samplers (Euler, Heun, DDIM) are affine maps for
  a linear denoiser, so their output covariance is computed exactly by pushing basis vectors through
  them. Compared with the exact probability-flow ODE solution from the same prior, the error must shrink
  at the sampler's order (1st: Euler, DDIM; 2nd: Heun) -- this pins both correctness and the size of the
  discretisation error each configuration has.
* end to end: 20000 samples from `prior(...)`, through each sampler (stochastic ones included), whose
  sample mean and covariance must match mu and Sigma within sampling error plus that discretisation
  budget (see `CASES`).

Sigma has eigenvalues 0.21, 0.91, 1.62 (not diagonal); d = 3. Samples are (B, d): the samplers are
elementwise apart from the denoiser call, so no image shape is needed.
"""
from __future__ import annotations

import math

import pytest
import torch

from common.diffusion import samplers
from common.diffusion.ddpm import DDPMConfig, DDPMSchedule
from common.diffusion.edm import karras_sigmas

F64 = torch.float64
MU = torch.tensor([0.5, -0.3, 0.2], dtype=F64)
_L = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [-0.3, 0.4, 0.7]], dtype=F64)
SIGMA = _L @ _L.T
LAM, U = torch.linalg.eigh(SIGMA)
N = 20_000
GRID = DDPMSchedule(DDPMConfig(schedule="linear")).sigmas  # sigma_t of the 1000-step DDPM grid (0.01 .. 157)
SMIN, SMAX = 0.002, 80.0  # EDM's Karras range


class GaussianDenoiser:
    """Exact D(x; sigma) for N(mu, Sigma), per-sample sigma (B,), computed in the eigenbasis of Sigma."""

    def __init__(self, mu: torch.Tensor = MU):
        self.mu, self.calls = mu, 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        assert x.ndim == 2 and sigma.shape == (x.shape[0],), (x.shape, sigma.shape)
        s2 = sigma.to(F64)[:, None] ** 2
        y = ((x.to(F64) - self.mu) @ U) * (LAM / (LAM + s2))
        return (self.mu + y @ U.T).to(x.dtype)


def test_denoiser_is_the_posterior_mean():
    """The eigenbasis form equals mu + Sigma (Sigma + s^2 I)^-1 (x - mu)."""
    x = torch.randn(5, 3, dtype=F64)
    for s in (0.01, 0.7, 30.0):
        want = MU + (x - MU) @ torch.linalg.solve(SIGMA + s ** 2 * torch.eye(3, dtype=F64), SIGMA).T
        torch.testing.assert_close(GaussianDenoiser()(x, torch.full((5,), s, dtype=F64)), want)


# ------------------------------------------------------------------ exact analysis of the ODE samplers
def _affine_moments(run, sigmas: torch.Tensor, prior_std: float):
    """Mean and covariance of run(D, x, sigmas) for x ~ N(0, prior_std^2 I), exactly: run is affine in x."""
    basis = torch.cat([torch.zeros(1, 3, dtype=F64), torch.eye(3, dtype=F64)])
    y = run(GaussianDenoiser(), basis, sigmas.to(F64))
    b, M = y[0], (y[1:] - y[0]).T  # run(x) = b + M x
    return b, prior_std ** 2 * M @ M.T


def _ode_moments(sigma_max: float, prior_std: float):
    """The exact PF-ODE maps x - mu at sigma_max to sqrt(lam / (lam + sigma_max^2)) (x - mu) at 0 in the
    eigenbasis (x - mu grows like sqrt(lam + sigma^2)); push the prior N(0, prior_std^2 I) through it."""
    g = (LAM / (LAM + sigma_max ** 2)).sqrt()
    mean = MU - U @ (g * (U.T @ MU))
    return mean, prior_std ** 2 * (U * g ** 2) @ U.T


def _euler(D, x, s):
    return samplers.euler(D, x, s)


def _heun(D, x, s):
    return samplers.heun(D, x, s)


def _ddim(D, x, s):
    return samplers.ancestral(D, x, s, eta=0.0)


ODE_CASES = {  # name: (sampler, sigmas for n steps, prior std, step counts, order)
    "euler": (_euler, lambda n: karras_sigmas(n, SMIN, SMAX), lambda s: s, (100, 200, 400), 1),
    "heun": (_heun, lambda n: karras_sigmas(n, SMIN, SMAX), lambda s: s, (20, 40, 80), 2),
    "ddim": (_ddim, lambda n: samplers.ddpm_sigmas(GRID, n), lambda s: math.sqrt(1 + s * s), (50, 100, 200), 1),
}


@pytest.mark.parametrize("name", ODE_CASES)
def test_ode_samplers_converge_at_their_order(name):
    run, sigmas_for, prior_std, steps, order = ODE_CASES[name]
    errs = []
    for n in steps:
        sig = sigmas_for(n)
        p = prior_std(float(sig[0]))
        mean, cov = _affine_moments(run, sig, p)
        mean_ref, cov_ref = _ode_moments(float(sig[0]), p)
        errs.append(max((mean - mean_ref).abs().max().item(), (cov - cov_ref).abs().max().item()))
    # doubling the steps divides the error by ~2^order (observed: euler 1.98, heun 4.3-4.5, ddim 1.96)
    for e0, e1 in zip(errs, errs[1:]):
        assert e0 / e1 > 0.85 * 2 ** order, (name, errs)
    assert errs[-1] < 0.02, (name, errs)


def test_heun_18_discretisation_error_is_known():
    """EDM's default (18 Karras steps, 35 evaluations) overestimates each eigenvalue of Sigma by 9-12 %
    (relative), i.e. up to 0.09 absolute in the entries here; 40 steps: ~2 %. Exact, not sampled."""
    for n, lo, hi in ((18, 0.07, 0.13), (40, 0.01, 0.025)):
        sig = karras_sigmas(n, SMIN, SMAX)
        _, cov = _affine_moments(_heun, sig, SMAX)
        lam_out = torch.diagonal(U.T @ cov @ U)
        _, cov_ref = _ode_moments(SMAX, SMAX)
        rel = lam_out / torch.diagonal(U.T @ cov_ref @ U) - 1
        assert ((rel > lo) & (rel < hi)).all(), (n, rel)


# ------------------------------------------------------------------ end to end, with sampling error
def _grid(n):
    return samplers.ddpm_sigmas(GRID, n)


# name: (sampler call, sigmas, variance-preserving prior, discretisation budget on covariance entries).
# The budgets are the exact errors of the deterministic configurations (test above), rounded up; for the
# stochastic ones they come from the same exact variance recursion done by hand (DDPM-1000 0.012,
# eta=0.5 on 200 steps 0.034, Heun-80 with churn 10 0.018, all on eigenvalues).
CASES = {
    "euler-200": (lambda D, x, s, g: samplers.euler(D, x, s), karras_sigmas(200, SMIN, SMAX), False, 0.03),
    "heun-18": (lambda D, x, s, g: samplers.heun(D, x, s), karras_sigmas(18, SMIN, SMAX), False, 0.10),
    "heun-40": (lambda D, x, s, g: samplers.heun(D, x, s), karras_sigmas(40, SMIN, SMAX), False, 0.02),
    "heun-80-churn": (lambda D, x, s, g: samplers.heun(D, x, s, s_churn=10.0, generator=g),
                      karras_sigmas(80, SMIN, SMAX), False, 0.02),
    "ddim-100": (lambda D, x, s, g: samplers.ancestral(D, x, s, eta=0.0), _grid(100), True, 0.04),
    "ddim-eta0.5-200": (lambda D, x, s, g: samplers.ancestral(D, x, s, eta=0.5, generator=g), _grid(200), True,
                        0.035),
    "ddpm-1000": (lambda D, x, s, g: samplers.ancestral(D, x, s, eta=1.0, generator=g), _grid(1000), True, 0.015),
    "ddpm-1000-large": (lambda D, x, s, g: samplers.ancestral(D, x, s, eta=1.0, variance="large", generator=g),
                        _grid(1000), True, 0.015),
}
# Sampling error for N = 20000: the standard error of a mean entry is <= sqrt(1/N) = 0.0071 and of a
# covariance entry <= sqrt((Sigma_ii Sigma_jj + Sigma_ij^2)/N) <= 0.010; allow ~5 of each. The prior's
# zero mean (the true noisy marginal has mean mu) leaves a bias <= sqrt(lam_max)/sigma_max |mu| < 0.01.
MEAN_TOL = 5 * math.sqrt(1 / N) + 0.01  # 0.045
COV_SAMPLING_TOL = 0.05


@pytest.mark.parametrize("name", CASES)
def test_samples_match_gaussian(name):
    run, sigmas, vp, budget = CASES[name]
    g = torch.Generator().manual_seed(1234)
    x = samplers.prior((N, 3), float(sigmas[0]), g, variance_preserving=vp)
    assert x.dtype == torch.float32 and x.std().item() == pytest.approx(
        math.sqrt(1 + float(sigmas[0]) ** 2) if vp else float(sigmas[0]), rel=0.02)
    D = GaussianDenoiser()
    y = run(D, x, sigmas, g).to(F64)
    assert y.shape == (N, 3) and torch.isfinite(y).all()
    mean_err = (y.mean(0) - MU).abs().max().item()
    cov_err = (torch.cov(y.T) - SIGMA).abs().max().item()
    assert mean_err < MEAN_TOL, (name, mean_err)
    assert cov_err < COV_SAMPLING_TOL + budget, (name, cov_err)


def test_samplers_are_deterministic_given_the_generator():
    sig = _grid(50)
    outs = []
    for _ in range(2):
        g = torch.Generator().manual_seed(7)
        x = samplers.prior((64, 3), float(sig[0]), g, variance_preserving=True)
        outs.append(samplers.ancestral(GaussianDenoiser(), x, sig, eta=1.0, generator=g))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


def test_sampler_evaluation_counts():
    """Heun on n steps costs 2n - 1 evaluations (the last step is Euler); Euler and ancestral cost n."""
    sig = karras_sigmas(18, SMIN, SMAX)
    x = torch.zeros(4, 3)
    for fn, want in ((samplers.heun, 35), (samplers.euler, 18)):
        D = GaussianDenoiser()
        fn(D, x, sig)
        assert D.calls == want
    D = GaussianDenoiser()
    samplers.ancestral(D, x, _grid(25), eta=0.0)
    assert D.calls == 25


# ------------------------------------------------------------------ DDIM inversion
@pytest.mark.parametrize("grid", ["karras", "ddpm"])
def test_ddim_inversion_round_trip(grid):
    """ddim_invert, then ancestral(eta=0) on the same sigmas (+ a final 0), returns the points. DDIM is
    1st order and the round trip shrinks x - mu by prod_i (lam + s_i s_{i+1})^2 / ((lam + s_i^2)(lam + s_{i+1}^2))
    < 1, so the error is O(1/steps): at 200 steps <= 3 % of |x0 - mu| (0.09 absolute worst case), at 1000
    steps <= 0.7 %, which is what is tested."""
    g = torch.Generator().manual_seed(3)
    x0 = MU + torch.randn(500, 3, generator=g, dtype=F64) @ _L.T
    sig = (karras_sigmas(1000, SMIN, SMAX)[:-1] if grid == "karras" else _grid(1000)[:-1]).to(F64)
    D = GaussianDenoiser()
    xT = samplers.ddim_invert(D, x0, sig)
    # the latents are distributed like the noisy marginal N(mu, Sigma + sigma_max^2 I), std ~ sigma_max
    assert xT.std(0).min().item() > 0.9 * float(sig[0]) and xT.std(0).max().item() < 1.1 * float(sig[0])
    back = samplers.ancestral(D, xT, torch.cat([sig, torch.zeros(1, dtype=F64)]), eta=0.0)
    rel = ((back - x0).norm(dim=1) / (x0 - MU).norm(dim=1)).max().item()
    assert rel < 0.01, rel
    assert (back - x0).abs().max().item() < 0.03
    assert (back - x0).abs().mean().item() < 0.006


# ------------------------------------------------------------------ classifier-free guidance
class CondDummy:
    """denoiser(x, sigma, cond) = x * sigma + 10 * cond, recording batch sizes."""

    def __init__(self):
        self.batches = []

    def __call__(self, x, sigma, cond):
        self.batches.append(x.shape[0])
        return x * sigma[:, None] + 10.0 * cond


def test_guided_scales():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, generator=g)
    sigma = torch.full((4,), 0.7)
    cond, null = torch.randn(4, 3, generator=g), torch.zeros(4, 3)
    base = CondDummy()
    d_c, d_u = base(x, sigma, cond), base(x, sigma, null)
    for scale, want in ((0.0, d_u), (1.0, d_c), (2.5, d_u + 2.5 * (d_c - d_u)), (0.3, d_u + 0.3 * (d_c - d_u))):
        dummy = CondDummy()
        out = samplers.guided(dummy, cond, null, scale)(x, sigma)
        torch.testing.assert_close(out, want)
        # s = 0 / 1 need one plain evaluation; otherwise one batched call evaluates both branches
        assert dummy.batches == ([4] if scale in (0.0, 1.0) else [8])


def test_guided_gaussian_sampling_shifts_the_mean_linearly():
    """With class means mu_c, mu_u and a shared Sigma, D_u + w (D_c - D_u) is exactly the denoiser of
    N(mu_u + w (mu_c - mu_u), Sigma), so guided Heun must land there (and keep Sigma)."""
    mu_c, mu_u = torch.tensor([1.0, 0.0, -0.5], dtype=F64), torch.tensor([-0.5, 0.5, 0.0], dtype=F64)

    def D(x, sigma, cond):  # cond: (B,) 1 = class, 0 = null
        mu = torch.where(cond[:, None].bool(), mu_c, mu_u)
        s2 = sigma.to(F64)[:, None] ** 2
        y = ((x.to(F64) - mu) @ U) * (LAM / (LAM + s2))
        return (mu + y @ U.T).to(x.dtype)

    n = 4000
    sig = karras_sigmas(40, SMIN, SMAX)
    for w in (0.0, 1.0, 3.0):
        g = torch.Generator().manual_seed(5)
        x = samplers.prior((n, 3), SMAX, g)
        y = samplers.heun(samplers.guided(D, torch.ones(n), torch.zeros(n), w), x, sig).to(F64)
        want = mu_u + w * (mu_c - mu_u)
        # SE of the mean <= sqrt(1.62/4000) = 0.02; prior-mean bias <= sqrt(1.62)/80 |want| < 0.04
        assert (y.mean(0) - want).abs().max().item() < 0.1 + 0.016 * want.abs().max().item(), (w, y.mean(0))
        assert (torch.cov(y.T) - SIGMA).abs().max().item() < 0.15


def test_sampler_variance_bias_with_an_exact_denoiser():
    """benchmarks/sampler_bias.py's numbers: with the exact denoiser of N(0, s^2) data, Heun-18 inflates the sample
    variance (by ~10%), DDIM-50 on DDPM's leading-spacing grid shrinks it, and both converge (Heun-40, DDIM-1000)."""
    from benchmarks.sampler_bias import variance_ratio
    from common.diffusion import samplers
    from common.diffusion.ddpm import DDPMConfig, DDPMSchedule
    from common.diffusion.edm import EDMConfig, karras_sigmas

    edm, grid = EDMConfig(), DDPMSchedule(DDPMConfig()).sigmas
    heun = {k: variance_ratio(karras_sigmas(k, edm.sigma_min, edm.sigma_max, edm.rho), 0.5, samplers.heun,
                              edm.sigma_max ** 2) for k in (18, 40)}
    ddim = lambda d, x, sg, **kw: samplers.ancestral(d, x, sg, eta=0.0)  # noqa: E731
    dd = {k: variance_ratio(samplers.ddpm_sigmas(grid, k), 0.5, ddim, 1 + float(samplers.ddpm_sigmas(grid, k)[0]) ** 2)
          for k in (50, 1000)}
    assert 1.08 < heun[18] < 1.15 and abs(heun[40] - 1) < 0.03
    assert 0.85 < dd[50] < 0.93 and abs(dd[1000] - 1) < 0.01
