"""Train DIAMOND-lite on LIBERO: phase 1's world model class on the demonstrations, the baseline of the UWM's
forward-dynamics mode.

    python -m phase4_uwm.train_diamond profile=smoke data.demos=smoke     # seconds (tests)
    python -m phase4_uwm.train_diamond profile=cpu                       # base + new demonstrations, 64 px
    python -m phase4_uwm.evaluate forward_baseline=<this run>            # its 16-step rollouts beside forward mode

Phase 1's EDM next-frame denoiser (DIAMOND's training noise, K = 4 past frames and actions) with the two cameras
stacked as 6 channels and the 7-d actions through a per-position linear embedding; no reward/end head. Exports to
export/ with marker diamond_lite.json.
"""
from __future__ import annotations

import time

from common.config import cli, to_dict
from common.errors import command
from common.trainer import Trainer, setup_run
from phase1_world_model.config import FrameSamplerConfig
from phase1_world_model.model import WorldModel
from phase4_uwm.config import DiamondTrainConfig
from phase4_uwm.data import ActionStats, cache_dir, concat_demos, demo_folder, load_demos
from phase4_uwm.diamond import DiamondClips


@command
def main(argv: list[str] | None = None) -> dict:
    cfg = cli(DiamondTrainConfig, "phase4/train_diamond", argv, __doc__, profile_group="diamond_profile")
    demos = concat_demos(*[load_demos(demo_folder(cfg, s), cfg.image_size, cache_dir(cfg.run.root)) for s in cfg.splits])
    stats = ActionStats.of(demos.actions)
    data = DiamondClips(demos, cfg.model.context, stats)
    V = demos.frames.shape[1]
    shape = (3 * V, cfg.image_size, cfg.image_size)
    model = WorldModel(cfg.model, 0, shape, FrameSamplerConfig(steps=cfg.sampler_steps), action_size=demos.actions.shape[1])
    ctx = setup_run("phase4", cfg.run, to_dict(cfg))
    if ctx.dist.is_main:
        print(f"phase4: DIAMOND-lite {model.describe()} on {len(data)} transitions of {demos.num_episodes} "
              f"demonstrations ({'+'.join(cfg.splits)}), frames {shape}; run {ctx.run.dir}", flush=True)
    trainer = Trainer(ctx, model, data, cfg.train, cfg.log, [])
    t0 = time.perf_counter()
    last = trainer.fit()
    meta = {"kind": "diamond_lite", "frame_shape": list(shape), "action_size": int(demos.actions.shape[1]),
            "image_size": cfg.image_size, "action_low": stats.low, "action_high": stats.high,
            "trained_steps": trainer.step, "data": demos.identity}
    return trainer.finish("diamond_lite", meta, last, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
