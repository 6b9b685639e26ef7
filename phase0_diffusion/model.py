"""Phase 0 models: the diffusion model (the shared UNet + an optional class embedding + an EDM or DDPM
process), the small classifier whose features define the FID-proxy, and loading a trained one.

`forward(batch, rng)` is the training loss (the Trainer's contract); `denoise(x, sigma, labels)` is the
denoiser every sampler calls; `sample(...)` draws images with any sampler.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from common.diffusion import samplers
from common.diffusion.ddpm import DDPMModel
from common.diffusion.edm import EDMDenoiser, karras_sigmas
from common.images import to_model_range
from common.nn.unet import UNet, UNetConfig
from common.runs import Exported, load_exported
from phase0_diffusion.config import DiffusionConfig, Phase0Config, SampleConfig


class ClassEmbedding(nn.Module):
    """Label -> conditioning vector; index `num_classes` is the null class used for guidance."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes + 1, dim)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.embed(labels)

    def null(self, n: int, device) -> torch.Tensor:
        return torch.full((n,), self.num_classes, dtype=torch.long, device=device)


class ImageDiffusion(nn.Module):
    def __init__(self, unet_cfg: UNetConfig, cfg: DiffusionConfig, num_classes: int = 0):
        super().__init__()
        self.cfg = cfg
        net = UNet(unet_cfg)
        self.process = EDMDenoiser(net, cfg.edm) if cfg.process == "edm" else DDPMModel(net, cfg.ddpm)
        self.classes = ClassEmbedding(num_classes, unet_cfg.emb_dim) if cfg.class_conditional else None

    def _cond(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        return None if self.classes is None or labels is None else self.classes(labels)

    def forward(self, batch, rng) -> tuple[torch.Tensor, dict]:
        images, labels = batch
        x0 = to_model_range(images)
        B = x0.shape[0]
        noise = rng.randn(*x0.shape[1:])
        cond = None
        if self.classes is not None:
            drop = rng.rand() < self.cfg.label_dropout  # CFG: train the unconditional branch too
            labels = torch.where(drop, self.classes.null(B, x0.device), labels)
            cond = self.classes(labels)
        if self.cfg.process == "edm":
            sigma = self.process.sample_sigma(rng.randn())
            per_sample = self.process.loss(x0, sigma, noise, cond)
        else:
            t = (rng.rand() * self.process.schedule.T).long().clamp(max=self.process.schedule.T - 1)
            per_sample = self.process.loss(x0, t, noise, cond)
        loss = per_sample.mean()
        return loss, {}

    # ----------------------------------------------------------------- sampling
    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.process(x, sigma, self._cond(labels))

    @property
    def variance_preserving(self) -> bool:
        return self.cfg.process == "ddpm"

    def sigmas_for(self, sampler: str, steps: int, device) -> torch.Tensor:
        """The noise levels each sampler walks. DDPM/DDIM use the discrete training grid (for an EDM
        model, the linear-beta DDPM grid of DiffusionConfig.ddpm); Euler/Heun use Karras' schedule."""
        if sampler in ("ddpm", "ddim"):
            grid = (self.process.schedule.sigmas if self.cfg.process == "ddpm"
                    else _ddpm_grid(self.cfg))
            return samplers.ddpm_sigmas(grid, len(grid) if sampler == "ddpm" else steps).to(device)
        e = self.cfg.edm
        smax = e.sigma_max if self.cfg.process == "edm" else float(self.process.schedule.sigmas[-1])
        smin = e.sigma_min if self.cfg.process == "edm" else float(self.process.schedule.sigmas[0])
        return karras_sigmas(steps, smin, smax, e.rho, device=device)

    @torch.no_grad()
    def sample(self, n: int, shape: tuple[int, int, int], scfg: SampleConfig, labels: torch.Tensor | None = None,
               generator: torch.Generator | None = None, device="cpu") -> torch.Tensor:
        """Draw n images in [-1, 1] with the configured sampler, steps and guidance."""
        sigmas = self.sigmas_for(scfg.sampler, scfg.steps, device)
        x = samplers.prior((n, *shape), float(sigmas[0]), generator, device, self.variance_preserving)
        if self.classes is not None and labels is not None:
            D = samplers.guided(self.denoise, labels, self.classes.null(n, device), scfg.guidance)
        else:
            D = partial(self.denoise, labels=None)
        if scfg.sampler == "ddpm":
            return samplers.ancestral(D, x, sigmas, eta=1.0, generator=generator)
        if scfg.sampler == "ddim":
            return samplers.ancestral(D, x, sigmas, eta=scfg.eta, generator=generator)
        solver = samplers.heun if scfg.sampler == "heun" else samplers.euler
        return solver(D, x, sigmas, generator=generator)


_GRIDS: dict = {}


def _ddpm_grid(cfg: DiffusionConfig) -> torch.Tensor:
    from common.diffusion.ddpm import DDPMSchedule
    key = (cfg.ddpm.num_timesteps, cfg.ddpm.schedule, cfg.ddpm.beta_start, cfg.ddpm.beta_end)
    if key not in _GRIDS:
        _GRIDS[key] = DDPMSchedule(cfg.ddpm).sigmas
    return _GRIDS[key]


def load_trained(spec: str = "latest", root: str = "outputs", device="cpu") -> Exported:
    """A finished phase 0 diffusion run (its EMA weights, in eval mode): .model (ImageDiffusion), .cfg
    (Phase0Config), .meta (export/data.json: shape, classes, data identity), .run.

    spec: a run folder, "latest" (the newest local run, else the release), "release" or "release:<name>"."""
    return load_exported("phase0", spec, root, "data.json", Phase0Config,
                         lambda cfg, meta: ImageDiffusion(cfg.model.unet, cfg.diffusion, meta["num_classes"]),
                         "", device)


class SmallCNN(nn.Module):
    """The FID-proxy's classifier: conv-conv-pool x3 -> global average pool -> features (4*width) -> logits."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32):
        super().__init__()
        w = width

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU(),
                                 nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU())
        self.blocks = nn.ModuleList([block(in_channels, w), block(w, 2 * w), block(2 * w, 4 * w)])
        self.head = nn.Linear(4 * w, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x in [-1, 1], (B, C, H, W) -> (B, 4*width)."""
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i < len(self.blocks) - 1:
                x = F.avg_pool2d(x, 2)
        return x.mean(dim=(2, 3))

    def forward(self, batch, rng=None):
        images, labels = batch
        logits = self.head(self.features(to_model_range(images)))
        loss = F.cross_entropy(logits, labels)
        return loss, {"acc": (logits.argmax(1) == labels).float().mean().item()}

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
