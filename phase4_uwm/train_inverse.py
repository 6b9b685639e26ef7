"""Train the plain inverse-dynamics regressor: the baseline of the UWM's inverse-dynamics mode.

    python -m phase4_uwm.train_inverse profile=smoke data.demos=smoke     # seconds (tests)
    python -m phase4_uwm.train_inverse profile=cpu                       # base + new demonstrations, 64 px
    python -m phase4_uwm.evaluate inverse_regressor=<this run>           # its action error beside the UWM's modes

Current frames and the real future frames (the 2 frames the chunk reaches) of both cameras, through the UWM's
observation-encoder class, and the task embedding -> an MLP -> the 16 actions, trained by MSE over the real
(unpadded) steps on actions scaled to [-1, 1]. Exports to export/ with marker inverse_regressor.json.
"""
from __future__ import annotations

import time

import torch

from common.config import cli, to_dict
from common.errors import command
from common.trainer import Trainer, setup_run
from phase4_uwm.baselines import InverseRegressor
from phase4_uwm.config import InverseTrainConfig
from phase4_uwm.data import ActionStats, Clips, cache_dir, concat_demos, demo_folder, load_demos


@command
def main(argv: list[str] | None = None) -> dict:
    cfg = cli(InverseTrainConfig, "phase4/train_inverse", argv, __doc__, profile_group="inverse_profile")
    demos = concat_demos(*[load_demos(demo_folder(cfg, s), cfg.image_size, cache_dir(cfg.run.root)) for s in cfg.splits])
    stats = ActionStats.of(demos.actions)
    data = Clips(demos, cfg.clip, stats)
    model = InverseRegressor(cfg.model, cfg.clip, demos.actions.shape[1], demos.frames.shape[1])
    model.action_low.copy_(torch.tensor(stats.low))
    model.action_high.copy_(torch.tensor(stats.high))
    ctx = setup_run("phase4", cfg.run, to_dict(cfg))
    if ctx.dist.is_main:
        n = sum(p.numel() for p in model.parameters())
        print(f"phase4: inverse-dynamics regressor {n / 1e6:.2f}M params on {len(data)} clips of "
              f"{demos.num_episodes} demonstrations ({'+'.join(cfg.splits)}); run {ctx.run.dir}", flush=True)
    trainer = Trainer(ctx, model, data, cfg.train, cfg.log, [])
    t0 = time.perf_counter()
    last = trainer.fit()
    meta = {"kind": "inverse_regressor", "action_dim": int(demos.actions.shape[1]), "views": int(demos.frames.shape[1]),
            "image_size": cfg.image_size, "action_low": stats.low, "action_high": stats.high,
            "trained_steps": trainer.step, "data": demos.identity}
    return trainer.finish("inverse_regressor", meta, last, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
