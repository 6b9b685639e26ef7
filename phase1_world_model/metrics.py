"""Frame metrics for rollouts, shared by phase 1's evaluate and phase 2's compare.

Per frame (`frame_metrics`; uint8 or [0, 255] float frames (..., 3, H, W), computed on [0, 1] intensities):
- `mse`: mean squared pixel error. `psnr` = 10 log10(1 / MSE), capped at 60 dB for identical frames (used only
  for the median below: a mean of capped per-frame PSNRs is dominated by the cap whenever a deterministic method
  reproduces static frames exactly).
- `ssim`: Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5), K1 0.01, K2 0.03, averaged over channels
  and valid positions (no padding): scikit-image's `structural_similarity(..., gaussian_weights=True,
  use_sample_covariance=False, data_range=1)`, which the tests check it against. On Atari's black background
  its luminance term (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1) collapses for a shift of one or two grey levels
  (mu = 0 against 1/255: 0.87 per window), so a one-level background bias costs more SSIM than a missing ball.
- `ssim_cs`: the background-robust alternative, SSIM's contrast-structure term alone (the map MS-SSIM uses at
  its finer scales): invariant to a uniform intensity offset, blind to flat colour errors (which MSE sees).
- `color_tv`: total-variation distance between the two frames' per-channel intensity histograms (16 bins),
  in [0, 1]: drift of the picture's statistics (washing out, noise, saturation), blind to where things are.
- `sharpness`: mean squared response of the 3x3 Laplacian, the high-frequency energy a blurry model loses;
  reported as a ratio generated / real (1.0 = as sharp as the real frames, < 1 = blur).

Over rollouts (`aggregate`; every value is [estimate, low, high], a 95% interval):
- `psnr`: the PSNR of the mean MSE, with a percentile bootstrap interval over rollouts;
- `psnr_median`: the median per-frame PSNR (bootstrap interval); `exact`: the fraction of bit-exact frames
  (Wilson interval), which says how much of a method's score comes from reproducing frames exactly;
- everything else: the mean with mean +- 1.96 standard errors.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255.0


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((_unit(a) - _unit(b)) ** 2).flatten(-3).mean(-1)


def psnr(a: torch.Tensor, b: torch.Tensor, cap: float = 60.0) -> torch.Tensor:
    return (10 * torch.log10(1.0 / mse(a, b).clamp_min(10 ** (-cap / 10)))).clamp(max=cap)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return (g / g.sum()).float()


def ssim(a: torch.Tensor, b: torch.Tensor, size: int = 11, sigma: float = 1.5, k1: float = 0.01,
         k2: float = 0.03) -> torch.Tensor:
    luminance, cs, lead = _ssim_maps(a, b, size, sigma, k1, k2)
    return (luminance * cs).flatten(1).mean(1).reshape(lead)


def ssim_cs(a: torch.Tensor, b: torch.Tensor, size: int = 11, sigma: float = 1.5, k2: float = 0.03) -> torch.Tensor:
    """SSIM without its luminance term: (2 s_xy + C2) / (s_x^2 + s_y^2 + C2), averaged like `ssim`."""
    _, cs, lead = _ssim_maps(a, b, size, sigma, 0.01, k2)
    return cs.flatten(1).mean(1).reshape(lead)


def _ssim_maps(a: torch.Tensor, b: torch.Tensor, size: int, sigma: float, k1: float, k2: float):
    """SSIM's luminance and contrast-structure maps over valid window positions, (N, C, H', W') each."""
    lead, (C, H, W) = a.shape[:-3], a.shape[-3:]
    x, y = _unit(a).reshape(-1, C, H, W), _unit(b).reshape(-1, C, H, W)
    g = _gaussian_window(size, sigma).to(x.device)
    wx = g.view(1, 1, 1, -1).repeat(C, 1, 1, 1)
    wy = g.view(1, 1, -1, 1).repeat(C, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:  # separable Gaussian, valid region only
        return F.conv2d(F.conv2d(t, wx, groups=C), wy, groups=C)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    c1, c2 = k1 ** 2, k2 ** 2
    return (2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1), (2 * cxy + c2) / (vx + vy + c2), lead


_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def sharpness(a: torch.Tensor) -> torch.Tensor:
    """Mean squared Laplacian response per frame (channels averaged)."""
    lead, (C, H, W) = a.shape[:-3], a.shape[-3:]
    x = _unit(a).reshape(-1, C, H, W)
    k = _LAPLACIAN.to(x.device).view(1, 1, 3, 3).repeat(C, 1, 1, 1)
    return (F.conv2d(x, k, groups=C) ** 2).flatten(1).mean(1).reshape(lead)


def color_tv(a: torch.Tensor, b: torch.Tensor, bins: int = 16) -> torch.Tensor:
    lead, C = a.shape[:-3], a.shape[-3]

    def hist(x: torch.Tensor) -> torch.Tensor:  # (..., C, H, W) uint8 -> (N, C, bins) normalised
        q = (x.reshape(-1, C, x.shape[-2] * x.shape[-1]).long() * bins) // 256
        h = torch.zeros(q.shape[0], C, bins, device=x.device).scatter_add_(2, q, torch.ones_like(q, dtype=torch.float))
        return h / q.shape[-1]

    return (0.5 * (hist(a) - hist(b)).abs().sum(-1)).mean(-1).reshape(lead)


def frame_metrics(generated: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
    """All per-frame metrics for (N, h, 3, H, W) clips -> each (N, h). sharpness_ratio is per frame: gen / real."""
    return {"mse": mse(generated, real), "psnr": psnr(generated, real), "ssim": ssim(generated, real),
            "ssim_cs": ssim_cs(generated, real),
            "sharpness_ratio": sharpness(generated) / sharpness(real).clamp_min(1e-8)}


Z95 = 1.959963984540054  # the standard normal's 97.5% quantile
BOOTSTRAP = 2000  # resamples of the rollouts for the PSNR intervals (fixed seed: the same data give the same interval)
PSNR_CAP = 60.0


def psnr_of_mse(m: float | np.ndarray, cap: float = PSNR_CAP):
    """10 log10(1 / m), capped (an exact reproduction of every frame has m = 0)."""
    return np.minimum(10 * np.log10(1.0 / np.maximum(m, 10 ** (-cap / 10))), cap)


def psnr_curve(generated: torch.Tensor, real: torch.Tensor) -> np.ndarray:
    """(N, h, 3, H, W) rollouts -> (h,): the PSNR of the mean MSE over the N rollouts at each horizon."""
    return psnr_of_mse(mse(generated, real).double().mean(0).cpu().numpy())


def bootstrap(values: np.ndarray, stat, n: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of stat(values) over the first dimension (rollouts)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, len(values), size=(n, len(values)))
    lo, hi = np.percentile(stat(values[idx]), [2.5, 97.5])
    return float(lo), float(hi)


def mean_interval(values) -> list[float]:
    """[mean, mean - 1.96 s.e., mean + 1.96 s.e.] over rollouts (nan bounds for a single rollout)."""
    v = np.asarray(values, dtype=np.float64)
    m = float(v.mean())
    if len(v) < 2:
        return [m, float("nan"), float("nan")]
    half = Z95 * float(v.std(ddof=1)) / math.sqrt(len(v))
    return [m, m - half, m + half]


def aggregate(per_frame: dict[str, torch.Tensor]) -> dict[str, list[float]]:
    """Per-frame metrics of N rollouts at one horizon, {name: (N,)} -> {name: [estimate, low, high]} (module doc).
    Needs `mse` (and `psnr` for the median); the other keys are averaged."""
    from common.stats import wilson

    out = {}
    for k, v in per_frame.items():
        v = v.double().cpu().numpy()
        if k == "mse":
            out["psnr"] = [float(psnr_of_mse(v.mean())), *bootstrap(v, lambda x: psnr_of_mse(x.mean(-1)))]
            exact = int((v == 0).sum())
            out["exact"] = [exact / len(v), *wilson(exact, len(v))]
            out["mse"] = mean_interval(v)
        elif k == "psnr":
            out["psnr_median"] = [float(np.median(v)), *bootstrap(v, lambda x: np.median(x, axis=-1))]
        else:
            out[k] = mean_interval(v)
    return out


def score(generated: torch.Tensor, real: torch.Tensor, horizons: list[int], extra=None) -> dict:
    """(N, h, 3, H, W) rollouts -> {metric: {horizon: [estimate, low, high]}} at the given horizons (1-based).
    extra(generated, real) -> {name: (N, h)} adds per-frame metrics (phase 2's drift)."""
    m = frame_metrics(generated, real)
    if extra is not None:
        m.update(extra(generated, real))
    at = {h: aggregate({k: v[:, h - 1] for k, v in m.items()}) for h in horizons}
    return {k: {h: at[h][k] for h in horizons} for k in at[horizons[0]]}


DIGITS = {"mse": 4, "latent_mse": 3, "ssim": 3, "ssim_cs": 3, "sharpness_ratio": 3, "drift": 3, "exact": 2}


def fmt(estimate: list[float] | tuple[float, ...], metric: str) -> str:
    """'estimate [low, high]' with as many digits as the metric needs (4 for MSE, 3 for ratios, 2 for dB)."""
    value, lo, hi = estimate
    d = DIGITS.get(metric, 2)
    return f"{value:.{d}f} [{lo:.{d}f}, {hi:.{d}f}]" if math.isfinite(lo) else f"{value:.{d}f}"
