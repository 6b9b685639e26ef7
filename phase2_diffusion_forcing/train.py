"""Train a Diffusion Forcing world model (or the full-sequence baseline) on phase 1's Atari data.

    python -m phase1_world_model.collect                                   # phase 1's data set, if not there yet
    python -m phase2_diffusion_forcing.train profile=smoke                # seconds (tests; needs a smoke data set)
    python -m phase2_diffusion_forcing.train profile=cpu                  # DF, warm-started from phase 1 (2 CPU cores)
    python -m phase2_diffusion_forcing.train profile=cpu model.objective=full_sequence run.name=cpu_full_sequence
    python -m phase2_diffusion_forcing.train profile=full                 # GPU sizes
    torchrun --nproc_per_node=2 -m phase2_diffusion_forcing.train profile=full

Runs land in outputs/phase2/<run.name>/ (checkpoints, metrics, videos of held-out rollouts in media/, final
EMA weights in export/ beside `<objective>.json`); `run.resume=true run.name=<name>` continues.
"""
from __future__ import annotations

import time

import torch

from common.config import ConfigError, cli, to_dict
from common.errors import command
from common.trainer import Hook, Trainer, setup_run
from phase1_world_model.dataset import AtariWorldModelDataset
from phase1_world_model.storage import dataset_identity
from phase1_world_model.loading import dataset_folder, load_trained as load_phase1
from phase2_diffusion_forcing.config import Phase2Config, SamplerConfig
from phase2_diffusion_forcing.data import WindowDataset
from phase2_diffusion_forcing.model import DFWorldModel


def warm_start(model: DFWorldModel, spec: str, root: str) -> str:
    """Load a phase 1 diffusion run's weights into the per-frame denoiser (architectures must match)."""
    tm = load_phase1(spec, "diffusion", root)
    state = {k: v for k, v in tm.model.state_dict().items() if not k.startswith("head.")}
    missing, unexpected = model.frame.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.startswith("head.")]:
        raise ConfigError("init_from", spec, f"{tm.run.dir}'s model does not match model.frame "
                                             f"(missing {missing[:3]}, unexpected {unexpected[:3]}): "
                                             f"set model.frame to the phase 1 run's model config, or init_from=''")
    return str(tm.run.dir)


def monitor_hook(cfg: Phase2Config, test: AtariWorldModelDataset):
    """Short held-out rollouts under the DF autoregressive schedule: PSNR at 1x and 2x the window, and a video."""
    from phase1_world_model.metrics import psnr_curve
    from phase1_world_model.rollout import gather, side_by_side, start_points
    from phase2_diffusion_forcing.sampler import rollout

    H = 2 * cfg.model.window
    starts = start_points(test, H, 1)[:8]
    batch = gather(test, starts, H)

    def fn(trainer: Trainer) -> dict:
        t0 = time.perf_counter()
        g = torch.Generator(device=trainer.device).manual_seed(0)
        gen = rollout(trainer.eval_model, batch.context, batch.actions, H, SamplerConfig(stabilization=0.05), g,
                      bf16=trainer.ctx.precision.bf16)
        p = psnr_curve(gen, batch.future)  # PSNR of the mean MSE per horizon
        trainer.logger.log_video("rollout", side_by_side(batch.future[0], gen[0]), trainer.step)
        L = cfg.model.window
        return {f"rollout/psnr_h{L}": float(p[L - 1]), f"rollout/psnr_h{H}": float(p[-1]),
                "rollout/seconds": time.perf_counter() - t0}
    return fn


@command
def main(argv: list[str] | None = None) -> dict:
    cfg = cli(Phase2Config, "phase2/train", argv, __doc__)
    K = cfg.model.frame.context
    folder = dataset_folder(cfg.data, cfg.run.root)
    base = AtariWorldModelDataset(folder, split="train", context=K)
    test = AtariWorldModelDataset(folder, split="test", context=K)
    train = WindowDataset(base, cfg.model.window)
    model = DFWorldModel(cfg.model, base.num_actions, tuple(base.frames.shape[1:]))
    init = warm_start(model, cfg.init_from, cfg.run.root) if cfg.init_from else ""
    ctx = setup_run("phase2", cfg.run, to_dict(cfg))
    if ctx.dist.is_main:
        print(f"phase2: {len(train)} windows of {cfg.model.window} (+{K} context) frames from {base!r}; "
              f"{model.describe()}; " + (f"warm start from {init}; " if init else "from scratch; ")
              + f"run {ctx.run.dir}")
    hooks = [Hook(cfg.monitor_every or cfg.train.max_steps, monitor_hook(cfg, test), "rollout")]
    trainer = Trainer(ctx, model, train, cfg.train, cfg.log, hooks)
    t0 = time.perf_counter()
    last = trainer.fit()
    meta = {"objective": cfg.model.objective, "game": base.game, "num_actions": base.num_actions,
            "action_meanings": base.action_meanings, "frame_shape": list(base.frames.shape[1:]),
            "window": cfg.model.window, "context": K, "warm_start": init, "trained_steps": trainer.step,
            "data": dataset_identity(folder)}
    return trainer.finish(cfg.model.objective, meta, last, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
