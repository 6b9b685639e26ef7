"""Train the phase 1 world model (or its deterministic baseline) on a collected Atari data set.

    python -m phase1_world_model.collect                                   # the data first (Breakout, 100 episodes)
    python -m phase1_world_model.train profile=smoke                      # seconds (tests; needs a smoke data set)
    python -m phase1_world_model.train profile=cpu                        # DIAMOND-lite on 2 CPU cores (~1 h)
    python -m phase1_world_model.train profile=cpu model.kind=regressor   # the same UNet as an MSE regressor
    python -m phase1_world_model.train profile=full                       # DIAMOND's sizes (GPU)
    python -m phase1_world_model.train data.game=Pong                     # any collected game
    torchrun --nproc_per_node=2 -m phase1_world_model.train profile=full  # data parallel

Results land in outputs/phase1/<run.name>/ (checkpoints, metrics, rollout videos in media/, final EMA
weights in export/); `run.resume=true run.name=<name>` continues a run. `--cfg` prints every key.
"""
from __future__ import annotations

import time

from common.config import cli, to_dict
from common.errors import command
from common.trainer import Hook, Trainer, setup_run
from phase1_world_model.config import Phase1Config
from phase1_world_model.dataset import AtariWorldModelDataset
from phase1_world_model.loading import load_split
from phase1_world_model.metrics import psnr_curve
from phase1_world_model.model import WorldModel
from phase1_world_model.rollout import batched_rollout, gather, side_by_side, start_points
from phase1_world_model.storage import dataset_identity


def monitor_hook(cfg: Phase1Config, test: AtariWorldModelDataset):
    """Short rollouts on held-out episodes during training: PSNR at the first and last step, and a video."""
    m = cfg.monitor
    starts = start_points(test, m.horizon, max(1, m.rollouts // max(1, len(test.episodes))))[:m.rollouts]
    batch = gather(test, starts, m.horizon)

    def fn(trainer: Trainer) -> dict:
        t0 = time.perf_counter()
        gen = batched_rollout(trainer.eval_model, batch, m.horizon, size=len(batch), seed=0,
                              bf16=trainer.ctx.precision.bf16)
        p = psnr_curve(gen, batch.future)  # PSNR of the mean MSE per horizon
        trainer.logger.log_video("rollout", side_by_side(batch.future[0], gen[0]), trainer.step)
        return {"rollout/psnr_h1": float(p[0]), f"rollout/psnr_h{m.horizon}": float(p[-1]),
                "rollout/seconds": time.perf_counter() - t0}
    return fn


@command
def main(argv: list[str] | None = None) -> dict:
    cfg = cli(Phase1Config, "phase1/train", argv, __doc__)
    train = load_split(cfg.data, cfg.run.root, "train", cfg.model.context)
    test = load_split(cfg.data, cfg.run.root, "test", cfg.model.context)
    ctx = setup_run("phase1", cfg.run, to_dict(cfg))
    frame_shape = tuple(train.frames.shape[1:])
    model = WorldModel(cfg.model, train.num_actions, frame_shape, cfg.sampler)
    if model.head is not None:
        model.head.set_class_weights(*train.class_counts())
    if ctx.dist.is_main:
        print(f"phase1: {train!r}; {model.describe()}; device {ctx.device}, {ctx.threads} threads, "
              f"{ctx.dist.world_size} process(es); run {ctx.run.dir}")
    hooks = [Hook(cfg.monitor.every or cfg.train.max_steps, monitor_hook(cfg, test), "rollout")]
    trainer = Trainer(ctx, model, train, cfg.train, cfg.log, hooks)
    t0 = time.perf_counter()
    last = trainer.fit()
    # what a loader needs besides the config: the game, its actions, the frame shape
    meta = {"kind": cfg.model.kind, "game": train.game, "num_actions": train.num_actions,
            "action_meanings": train.action_meanings, "frame_shape": list(frame_shape),
            "dataset": str(train.root), "train_transitions": len(train), "test_episodes": test.episodes,
            "trained_steps": trainer.step, "data": dataset_identity(train.root)}
    return trainer.finish(cfg.model.kind, meta, last, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
