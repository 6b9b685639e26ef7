"""Train the frozen video tokenizer (a small diffusers AutoencoderKL) on the demonstrations' frames.

    python -m phase3_vla.collect                                   # phase 3's demonstrations, if not there yet
    python -m phase4_uwm.train_tokenizer profile=smoke data.demos=smoke    # seconds (tests)
    python -m phase4_uwm.train_tokenizer profile=cpu                # 64 px, both cameras, base + new demos
    python -m phase4_uwm.train_tokenizer profile=full               # GPU sizes

Trains on every frame of both cameras of the base and new training demonstrations (never on evaluation episodes,
which start from LIBERO's fixed states and are played, not stored); reports the reconstruction PSNR (of the mean
MSE, 8-bit frames) on the validation demonstrations (base_val, new_val) as `val/psnr`, with copy-free floors
for reference: the PSNR of predicting every pixel as the validation mean (`val/psnr_mean_image`). At the end the
latent scale is measured on training frames and the weights exported with it to export/ (marker tokenizer.json).
"""
from __future__ import annotations

import math
import time

import torch

from common.config import cli, to_dict
from common.errors import command
from common.images import to_uint8
from common.trainer import Hook, Trainer, setup_run
from phase4_uwm.config import TokenizerTrainConfig
from phase4_uwm.data import Demos, cache_dir, demo_folder, evenly_spaced, load_demos
from phase4_uwm.tokenizer import Tokenizer, to_unit


class FrameSet(torch.utils.data.Dataset):
    """Every frame of every view of some Demos, one item each."""

    def __init__(self, *demos: Demos):
        self.frames = torch.cat([d.frames.flatten(0, 1) for d in demos])  # (N * V, 3, S, S)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> dict:
        return {"frames": self.frames[i]}


def psnr_of(model: Tokenizer, frames: torch.Tensor, batch: int = 64) -> float:
    """PSNR (dB, 8-bit) of the mean squared error of the rounded reconstructions of `frames` (N, 3, S, S) uint8."""
    se, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(frames), batch):
            x = frames[i:i + batch]
            rec = to_uint8(model.decode(model.encode(x))).float()
            se += float(((rec - x.float()) ** 2).sum())
            n += x.numel()
    return 10 * math.log10(255.0 ** 2 / max(se / n, 1e-12))


def reconstruction_hook(val: torch.Tensor, every: int) -> Hook:
    mean_image = val.float().mean(0, keepdim=True)
    floor = 10 * math.log10(255.0 ** 2 / float(((val.float() - mean_image) ** 2).mean()))

    def fn(trainer: Trainer) -> dict:
        m = trainer.eval_model
        was = m.training
        m.eval()
        p = psnr_of(m, val)
        m.train(was)
        return {"val/psnr": p, "val/psnr_mean_image": floor}
    return Hook(every, fn, "reconstruction")


@command
def main(argv: list[str] | None = None) -> dict:
    cfg = cli(TokenizerTrainConfig, "phase4/train_tokenizer", argv, __doc__, profile_group="tokenizer_profile")
    size, cache = cfg.tokenizer.image_size, cache_dir(cfg.run.root)
    train_sets = [load_demos(demo_folder(cfg, s), size, cache) for s in ("base", "new")]
    val_sets = []
    for s in ("base_val", "new_val"):
        try:
            val_sets.append(load_demos(demo_folder(cfg, s), size, cache))
        except FileNotFoundError:
            print(f"note: no {s} demonstrations; the reconstruction PSNR uses the others", flush=True)
    data = FrameSet(*train_sets)
    val_all = FrameSet(*val_sets).frames if val_sets else data.frames
    val = val_all[evenly_spaced(len(val_all), cfg.val_frames)]
    model = Tokenizer(cfg.tokenizer)
    ctx = setup_run("phase4", cfg.run, to_dict(cfg))
    if ctx.dist.is_main:
        from common.nn.unet import count_parameters
        print(f"phase4: tokenizer AutoencoderKL {count_parameters(model) / 1e6:.2f}M params, {size} px -> latents "
              f"{model.latent_shape}; {len(data)} training frames (both views), {len(val)} validation frames"
              + ("" if val_sets else " (none held out: training frames)") + f"; run {ctx.run.dir}", flush=True)
    every = max(1, cfg.train.max_steps // 4)
    trainer = Trainer(ctx, model, data, cfg.train, cfg.log, [reconstruction_hook(val, every)])
    t0 = time.perf_counter()
    last = trainer.fit()
    m = trainer.eval_model.eval()
    calib = data.frames[evenly_spaced(len(data), 2048)]
    scale = m.calibrate(calib)
    trainer.export()  # again, now with the latent scale
    psnr = psnr_of(m, val)
    meta = {"kind": cfg.tokenizer.kind, "latent_shape": list(m.latent_shape), "scale": scale, "val_psnr": psnr,
            "val_frames": len(val), "held_out": bool(val_sets), "trained_steps": trainer.step,
            "data": [d.identity for d in train_sets]}
    if ctx.dist.is_main:
        print(f"phase4: tokenizer reconstruction PSNR {psnr:.2f} dB on {len(val)} validation frames; latent scale "
              f"{scale:.4f}", flush=True)
    return trainer.finish("tokenizer", meta, {**last, "val/psnr": psnr}, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
