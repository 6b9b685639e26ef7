"""Draw a grid of samples from a trained phase 0 model with any sampler.

    python -m phase0_diffusion.sample                                   # latest run (or the release)
    python -m phase0_diffusion.sample load=outputs/phase0/<run> sample.sampler=ddpm
    python -m phase0_diffusion.sample sample.sampler=ddim sample.steps=50 sample.eta=0 sample.guidance=3

Class-conditional models get one row per class. Writes <run>/media/sample_<sampler>-....png (for the
release: <run.root>/phase0/release-<name>/media/).
"""
from __future__ import annotations

import time

import torch
import torchvision

from common.config import cli
from common.errors import command
from common.runs import writable_dir
from phase0_diffusion.config import EvalRunConfig
from phase0_diffusion.sampling import grid_labels, open_trained, tag


@command
def main(argv: list[str] | None = None) -> str:
    cfg = cli(EvalRunConfig, "phase0/sample", argv, __doc__)
    tm, rt = open_trained(cfg, "sample")
    run, model, info = tm.run, tm.model, tm.meta
    device = rt.device
    g = torch.Generator(device=device).manual_seed(cfg.run.seed)
    n, k = cfg.sample.num, info["num_classes"]
    labels = grid_labels(n, k, device) if model.classes is not None else None
    t0 = time.perf_counter()
    with rt.precision.autocast():
        x = model.sample(n, tuple(info["shape"]), cfg.sample, labels, g, device).float()
    seconds = time.perf_counter() - t0
    nrow = max(1, n // k) if labels is not None else int(n ** 0.5)
    out = writable_dir(run, cfg.run.root) / "media" / f"sample_{tag(cfg.sample)}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    torchvision.utils.save_image((x.clamp(-1, 1) + 1) / 2, out, nrow=nrow, padding=1)
    print(f"sample: {n} images in {seconds:.1f} s ({seconds / n:.3f} s each) -> {out}")
    return str(out)


if __name__ == "__main__":
    main()
