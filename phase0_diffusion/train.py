"""Train a phase 0 diffusion model (EDM or DDPM, unconditional or class-conditional).

    python -m phase0_diffusion.train profile=smoke                   # seconds, synthetic data
    python -m phase0_diffusion.train profile=cpu                     # Fashion-MNIST, EDM, 2 CPU cores
    python -m phase0_diffusion.train profile=cpu diffusion.process=ddpm model.unet.noise_embedding=sinusoidal
    python -m phase0_diffusion.train profile=cpu_cond                # class-conditional, for guidance
    python -m phase0_diffusion.train profile=full                    # CIFAR-10, DDPM's UNet layout (GPU)
    torchrun --nproc_per_node=2 -m phase0_diffusion.train profile=smoke   # data parallel

Any key can be overridden (`train.lr=1e-4`); `--cfg` prints the composed config. Results land in
outputs/phase0/<run.name>/; `run.resume=true run.name=<name>` continues a run.
"""
from __future__ import annotations

import time

from common.config import ConfigError, cli, to_dict
from common.errors import command
from common.nn.unet import count_parameters
from common.trainer import Hook, Trainer, setup_run
from phase0_diffusion.config import Phase0Config
from phase0_diffusion.data import ImageTensorDataset, build_split
from phase0_diffusion.fid import fid_hook
from phase0_diffusion.model import ImageDiffusion
from phase0_diffusion.sampling import sample_grid


@command
def main(argv: list[str] | None = None) -> dict:
    cfg = cli(Phase0Config, "phase0/train", argv, __doc__)
    unet = cfg.model.unet
    if unet.out_channels != unet.in_channels:
        raise ConfigError("model.unet.out_channels", unet.out_channels, "must equal model.unet.in_channels",
                          {"model.unet.in_channels": unet.in_channels})
    data = build_split(cfg.data, unet.in_channels)
    ctx = setup_run("phase0", cfg.run, to_dict(cfg))
    model = ImageDiffusion(unet, cfg.diffusion, data.num_classes)
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
        hook = fid_hook(cfg.eval.classifier, cfg.data, cfg.sample, cfg.eval.num_samples, data.shape, data.num_classes,
                        cfg.run.root, cfg.sample.seed)
        hooks.append(Hook(cfg.eval.every, hook, "fid_proxy"))
    trainer = Trainer(ctx, model, ImageTensorDataset(data), cfg.train, cfg.log, hooks)
    t0 = time.perf_counter()
    last = trainer.fit()
    meta = {"dataset": data.name, "shape": list(data.shape), "num_classes": data.num_classes,  # for the loader
            "classes": data.classes, "train_images": len(data.images), "data": data.identity("train")}
    return trainer.finish("data", meta, last, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
