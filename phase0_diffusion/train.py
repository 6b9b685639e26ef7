"""Train a phase 0 diffusion model (EDM or DDPM, unconditional or class-conditional).

    python -m phase0_diffusion.train profile=smoke                   # seconds, synthetic data
    python -m phase0_diffusion.train profile=cpu                     # Fashion-MNIST, EDM, 2 CPU cores
    python -m phase0_diffusion.train profile=cpu diffusion.process=ddpm model.noise_embedding=sinusoidal
    python -m phase0_diffusion.train profile=cpu_cond                # class-conditional, for guidance
    python -m phase0_diffusion.train profile=full                    # CIFAR-10, DDPM's UNet layout (GPU)
    torchrun --nproc_per_node=2 -m phase0_diffusion.train profile=smoke   # data parallel

Any key can be overridden (`train.lr=1e-4`); `--cfg` prints the composed config. Results land in
outputs/phase0/<run.name>/; `run.resume=true run.name=<name>` continues a run.
"""
from __future__ import annotations

import json
import sys
import time

import torch
from torch.utils.data import Dataset

from common.checkpoint import CheckpointError, atomic_write
from common.config import ConfigError, cli, to_dict
from common.nn.unet import count_parameters
from common.trainer import Hook, Trainer, setup_run
from common.runs import ArtifactNotFoundError
from phase0_diffusion.config import DataConfig, Phase0Config
from phase0_diffusion.data import DataNotFoundError, ImageData, load_images, pad_to, synthetic_images
from phase0_diffusion.model import ImageDiffusion


class ImageTensorDataset(Dataset):
    def __init__(self, data: ImageData):
        self.images, self.labels = data.images, data.labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], self.labels[i]


def build_data_for(d: DataConfig, channels: int, split: str = "train") -> ImageData:
    """Load (or generate) a split, pad and limit it, and check it has `channels` channels."""
    if d.name == "synthetic":
        data = synthetic_images(d.synthetic_count, d.synthetic_size, channels, seed=0 if split == "train" else 1)
    else:
        data = load_images(d.name, split, root=d.root or None, download=d.download)
    if d.pad_to:
        data.images = pad_to(data.images, d.pad_to)
    if d.limit and split == "train":
        data.images, data.labels = data.images[:d.limit], data.labels[:d.limit]
    if data.shape[0] != channels:
        raise ConfigError("model.in_channels", channels, f"{d.name} images have {data.shape[0]} channel(s): "
                          f"set model.in_channels={data.shape[0]} model.out_channels={data.shape[0]}")
    return data


def build_data(cfg: Phase0Config, split: str = "train") -> ImageData:
    if cfg.model.out_channels != cfg.model.in_channels:
        raise ConfigError("model.out_channels", cfg.model.out_channels, "must equal model.in_channels")
    return build_data_for(cfg.data, cfg.model.in_channels, split)


def build_model(cfg: Phase0Config, num_classes: int) -> ImageDiffusion:
    return ImageDiffusion(cfg.model, cfg.diffusion, num_classes)


def grid_labels(n: int, num_classes: int, device) -> torch.Tensor:
    """Labels for a grid of n images with one row per class (n // num_classes images per row)."""
    per_row = max(1, n // num_classes)
    return (torch.arange(n, device=device) // per_row).clamp(max=num_classes - 1)


def sample_grid(model: ImageDiffusion, cfg: Phase0Config, shape, num_classes: int, device) -> torch.Tensor:
    import torchvision

    g = torch.Generator(device=device).manual_seed(cfg.sample.seed)
    labels = grid_labels(cfg.sample.num, num_classes, device) if model.classes is not None else None
    x = model.sample(cfg.sample.num, shape, cfg.sample, labels, g, device)
    nrow = max(1, cfg.sample.num // num_classes) if labels is not None else int(cfg.sample.num ** 0.5)
    return torchvision.utils.make_grid((x.clamp(-1, 1) + 1) / 2, nrow=nrow, padding=1)


def main(argv: list[str] | None = None) -> dict:
    cfg = cli(Phase0Config, "phase0/train", argv, __doc__)
    try:
        data = build_data(cfg)
        ctx = setup_run("phase0", cfg.run, to_dict(cfg))
    except (ConfigError, DataNotFoundError, ArtifactNotFoundError, FileExistsError) as e:
        print(e, file=sys.stderr)
        sys.exit(2)
    model = build_model(cfg, data.num_classes)
    if ctx.dist.is_main:
        print(f"phase0: {data.name} {tuple(data.images.shape)} from {data.source}; "
              f"{cfg.diffusion.process} UNet {count_parameters(model.process.net) / 1e6:.2f}M params; "
              f"device {ctx.device}, {ctx.threads} threads, {ctx.dist.world_size} process(es); run {ctx.run.dir}")

    def grid_hook(trainer: Trainer) -> dict:
        t0 = time.perf_counter()
        grid = sample_grid(trainer.eval_model, cfg, data.shape, data.num_classes, ctx.device)
        trainer.logger.log_image("samples", grid, trainer.step)
        return {"sample/seconds": time.perf_counter() - t0}

    hooks = [Hook(cfg.sample.every or cfg.train.max_steps, grid_hook, "samples")]
    if cfg.eval.every:
        from phase0_diffusion.eval import fid_hook
        hooks.append(Hook(cfg.eval.every, fid_hook(cfg, data), "fid_proxy"))
    try:
        trainer = Trainer(ctx, model, ImageTensorDataset(data), cfg.train, cfg.log, hooks)
    except CheckpointError as e:
        print(e, file=sys.stderr)
        sys.exit(2)
    t0 = time.perf_counter()
    last = trainer.fit()
    if ctx.dist.is_main:  # what a loader needs besides the config: the image shape and the classes
        atomic_write(ctx.run.export_dir / "data.json", lambda f: f.write(json.dumps(
            {"dataset": data.name, "shape": list(data.shape), "num_classes": data.num_classes,
             "classes": data.classes, "train_images": len(data.images), "data": data.identity("train")},
            indent=2).encode()))
        print(f"phase0: done in {time.perf_counter() - t0:.0f} s at step {trainer.step}; "
              f"final loss {last.get('train/loss', float('nan')):.4f}; results in {ctx.run.dir}")
    return {"run_dir": str(ctx.run.dir), **last}


if __name__ == "__main__":
    main()
