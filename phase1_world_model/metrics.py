"""Frame metrics for rollouts. Every function takes uint8 (or [0, 255] float) frames (..., 3, H, W) and
returns one value per frame (the leading dimensions), computed on [0, 1] intensities.

- `mse`, `psnr`: pixel error; PSNR = 10 log10(1 / MSE), capped at 60 dB for identical frames.
- `ssim`: Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5), K1 0.01, K2 0.03, averaged over
  channels and valid positions (no padding), which is what scikit-image's `structural_similarity(...,
  gaussian_weights=True, use_sample_covariance=False, data_range=1)` computes. At 64x64 the valid area is
  54x54. The tests check it against an independent SciPy implementation.
- `color_tv`: total-variation distance between the two frames' per-channel intensity histograms (16 bins),
  in [0, 1]. Blind to where things are, so it measures drift of the picture's statistics (colours washing
  out, noise, saturation) rather than a misplaced ball.
- `sharpness`: mean squared response of the 3x3 Laplacian, the high-frequency energy a blurry model loses.
  Reported as a ratio generated / real, so 1.0 means "as sharp as the real frames" and < 1 means blur.
"""
from __future__ import annotations

import math

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
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1).reshape(lead)


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
    """All metrics for (N, h, 3, H, W) clips -> each (N, h). sharpness_ratio is per frame: gen / real."""
    return {"mse": mse(generated, real), "psnr": psnr(generated, real), "ssim": ssim(generated, real),
            "sharpness_ratio": sharpness(generated) / sharpness(real).clamp_min(1e-8)}


def summarize(values: torch.Tensor) -> tuple[float, float]:
    """Mean and its standard error over the first dimension (rollouts)."""
    v = values.double()
    n = v.shape[0]
    return float(v.mean()), float(v.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan")


def fmt(mean_se: list[float] | tuple[float, float], metric: str) -> str:
    """'mean ± s.e.' with as many digits as the metric needs (4 for MSE, 3 for ratios, 2 for dB)."""
    mean, se = mean_se
    d = 4 if metric == "mse" else 3 if metric in ("ssim", "sharpness_ratio", "drift") else 2
    return f"{mean:.{d}f} ± {se:.{d}f}" if math.isfinite(se) else f"{mean:.{d}f}"
