"""Train testbed 2's progress scorer: how far into a successful demonstration one frame is.

    python -m phase5_integration.train_scorer profile=smoke data.demos=smoke      # seconds (tests)
    python -m phase5_integration.train_scorer profile=cpu                        # task 9's demonstrations, minutes

Input: the latents of one frame of both cameras under phase 4's frozen tokenizer (the space the UWM imagines in);
target: t / (T - 1) within its episode; loss: BCE on that soft target. At the end the scorer is measured on the
split's held-out demonstrations (`<split>_val`, never trained on): Spearman's rank correlation between predicted and
true progress over all frames and within each episode, and the mean absolute error. They go to the run's
export/progress_scorer.json and the console. `python -m phase5_integration.choose` uses it.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from common.config import cli, to_dict
from common.errors import command
from common.trainer import Trainer, setup_run
from phase4_uwm.data import cache_dir, demo_folder, encode_all, load_demos
from phase4_uwm.loading import load_tokenizer
from phase5_integration.config import ScorerTrainConfig
from phase5_integration.libero_choice import ProgressData, ProgressScorer, ScorerTraining, episode_progress, spearman


@torch.no_grad()
def measure(scorer: ProgressScorer, z: torch.Tensor, episode: torch.Tensor, batch: int = 512) -> dict:
    """Held-out quality: rank correlation overall and within episodes (mean), mean absolute error."""
    scorer.eval()
    pred = torch.cat([scorer.progress(z[i:i + batch]) for i in range(0, len(z), batch)]).numpy()
    true = episode_progress(episode).numpy()
    within = [spearman(pred[episode.numpy() == e], true[episode.numpy() == e]) for e in np.unique(episode.numpy())
              if (episode == int(e)).sum() > 2]
    return {"frames": int(len(z)), "episodes": int(len(within)), "spearman": round(spearman(pred, true), 4),
            "spearman_within_episode_mean": round(float(np.mean(within)), 4) if within else None,
            "spearman_within_episode_min": round(float(np.min(within)), 4) if within else None,
            "mae": round(float(np.abs(pred - true).mean()), 4)}


@command
def main(argv: list[str] | None = None) -> dict:
    cfg = cli(ScorerTrainConfig, "phase5/train_scorer", argv, __doc__, profile_group="scorer_profile")
    tm = load_tokenizer(cfg.tokenizer, cfg.run.root)
    tok = tm.model
    size = tok.cfg.image_size

    def latents(split: str):
        demos = load_demos(demo_folder(cfg, split), size, cache_dir(cfg.run.root))
        return demos, encode_all(tok, demos, cache_dir(cfg.run.root), split)

    demos, z = latents(cfg.split)
    scorer = ProgressScorer(int(z.shape[1]), int(z.shape[2]), cfg.width)
    model = ScorerTraining(scorer)
    ctx = setup_run("phase5", cfg.run, to_dict(cfg))
    if ctx.dist.is_main:
        n = sum(p.numel() for p in scorer.parameters())
        print(f"phase5: progress scorer {n / 1e6:.2f}M params on {len(z)} frames of {demos.num_episodes} {cfg.split} "
              f"demonstrations (tasks {sorted(demos.instructions)}); tokenizer {tm.run.dir}; run {ctx.run.dir}",
              flush=True)
    trainer = Trainer(ctx, model, ProgressData(z, demos.episode), cfg.train, cfg.log, [])
    t0 = time.perf_counter()
    last = trainer.fit()
    seconds = time.perf_counter() - t0
    try:
        val_demos, val_z = latents(f"{cfg.split}_val")
        val = measure(trainer.eval_model.scorer, val_z, val_demos.episode)  # the EMA weights, which are exported
        print(f"held-out {cfg.split}_val: {val}", flush=True)
    except FileNotFoundError:
        val = None
        print(f"note: no {cfg.split}_val demonstrations: the scorer is not measured", flush=True)
    from phase3_vla.training import training_starts
    meta = {"kind": "progress_scorer", "views": int(z.shape[1]), "latent_channels": int(z.shape[2]),
            "tokenizer": {"run": str(tm.run.dir), "scale": float(tok.scale)}, "split": cfg.split,
            "tasks": sorted(int(t) for t in demos.instructions), "val": val, "trained_steps": trainer.step,
            "train_starts": training_starts(demo_folder(cfg, cfg.split), None), "data": demos.identity}
    return trainer.finish("progress_scorer", meta, last, seconds)


if __name__ == "__main__":
    main()
