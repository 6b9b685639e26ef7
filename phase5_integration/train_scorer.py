"""Train testbed 2's progress scorer: how far into a successful demonstration one frame is.

    python -m phase5_integration.train_scorer profile=smoke data.demos=smoke      # seconds (tests)
    python -m phase5_integration.train_scorer profile=cpu                        # task 9's demonstrations, minutes

Input: the latents of one frame of both cameras under phase 4's frozen tokenizer (the space the UWM imagines in);
target: t / (T - 1) within its episode; loss: BCE on that soft target. Demonstrations only succeed, so a scorer
trained on them alone never sees a failure (it reads the arm's pose as progress); `rollouts=[<evaluation folder>,
...]` adds played episodes, successes targeted the same way and failures 0 at every frame, and measures the scorer
on every 5th of them, held out (the progress it gives failures; AUROC of the last frame, success against failure).

    python -m phase5_integration.train_scorer rollouts=[outputs/phase5/rollouts/uwm,outputs/phase5/rollouts/vla] \
        run.name=scorer-rollouts-cpu At the end the scorer is measured on the
split's held-out demonstrations (`<split>_val`, never trained on): Spearman's rank correlation between predicted and
true progress over all frames and within each episode, and the mean absolute error. They go to the run's
export/progress_scorer.json and the console. `python -m phase5_integration.choose` uses it.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from common.config import ConfigError, cli, to_dict
from common.errors import DataError, command
from common.trainer import Trainer, setup_run
from phase4_uwm.data import (cache_dir, demo_folder, encode_all, encode_frames, load_demos, played_episodes,
                             played_starts)
from phase4_uwm.loading import load_tokenizer, same_scale
from phase5_integration.config import ScorerTrainConfig
from phase5_integration.libero_choice import (ProgressData, ProgressScorer, ScorerTraining, episode_progress,
                                              rollout_targets, spearman)


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


def auroc(pos: np.ndarray, neg: np.ndarray) -> float | None:
    """P(a positive scores above a negative), ties counting half (the Mann-Whitney statistic); None if one is empty."""
    if len(pos) == 0 or len(neg) == 0:
        return None
    diff = np.asarray(pos, float)[:, None] - np.asarray(neg, float)[None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


@torch.no_grad()
def measure_rollouts(scorer: ProgressScorer, held: list[dict], z_held: list[torch.Tensor],
                     demo_last: np.ndarray) -> dict:
    """The held-out played episodes: mean progress the scorer gives failed episodes (all frames, last frame), and
    how well the last frame separates success from failure (AUROC; positives: the held-out demonstrations' and
    successful episodes' last frames)."""
    scorer.eval()
    pred = [scorer.progress(z).numpy() for z in z_held]
    fail = [p for p, r in zip(pred, held) if not r["success"]]
    succ_last = np.array([p[-1] for p, r in zip(pred, held) if r["success"]])
    fail_last = np.array([p[-1] for p in fail])
    return {"episodes": len(held), "failures": len(fail),
            "failure_progress_mean": round(float(np.concatenate(fail).mean()), 4) if fail else None,
            "failure_last_progress_mean": round(float(fail_last.mean()), 4) if fail else None,
            "success_last_progress_mean": round(float(succ_last.mean()), 4) if len(succ_last) else None,
            "auroc_last_frame": (None if not fail else
                                 round(auroc(np.concatenate([demo_last, succ_last]), fail_last), 4))}


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
    tasks = sorted(int(t) for t in demos.instructions)
    data = ProgressData(z, demos.episode)
    rollouts, held, z_held = [], [], []
    if cfg.rollouts:
        rollouts = played_episodes(cfg.rollouts, tasks, size)
        for i, r in enumerate(rollouts):
            r["held_out"] = i % 5 == 4
        if not rollouts:
            raise DataError(f"rollouts: no episode of tasks {tasks} in {cfg.rollouts}")
        zr = [encode_frames(tok, r["frames"]) for r in rollouts]
        train = [i for i, r in enumerate(rollouts) if not r["held_out"]]
        held = [rollouts[i] for i in range(len(rollouts)) if rollouts[i]["held_out"]]
        z_held = [zr[i] for i in range(len(rollouts)) if rollouts[i]["held_out"]]
        data = ProgressData(torch.cat([z] + [zr[i] for i in train]),
                            target=torch.cat([data.target] + [rollout_targets(rollouts[i]["success"],
                                                                              len(zr[i])) for i in train]))
        n_fail = sum(not rollouts[i]["success"] for i in train)
        print(f"phase5: + {len(train)} played episodes ({n_fail} failed, target 0; {sum(len(zr[i]) for i in train)} "
              f"frames) from {len(cfg.rollouts)} folder(s); {len(held)} held out", flush=True)
    scorer = ProgressScorer(int(z.shape[1]), int(z.shape[2]), cfg.width)
    model = ScorerTraining(scorer)
    ctx = setup_run("phase5", cfg.run, to_dict(cfg))
    if ctx.dist.is_main:
        n = sum(p.numel() for p in scorer.parameters())
        print(f"phase5: progress scorer {n / 1e6:.2f}M params on {len(z)} frames of {demos.num_episodes} {cfg.split} "
              f"demonstrations (tasks {sorted(demos.instructions)}); tokenizer {tm.run.dir}; run {ctx.run.dir}",
              flush=True)
    trainer = Trainer(ctx, model, data, cfg.train, cfg.log, [])
    t0 = time.perf_counter()
    last = trainer.fit()
    seconds = time.perf_counter() - t0
    try:
        val_demos, val_z = latents(f"{cfg.split}_val")
    except FileNotFoundError:
        val_demos = val_z = None
        print(f"note: no {cfg.split}_val demonstrations: the scorer is not measured on demonstrations", flush=True)

    def held_out(scorer: ProgressScorer) -> tuple[dict | None, dict | None]:
        """(demonstrations, played episodes) held out, for one scorer."""
        val, demo_last = None, np.zeros(0)
        if val_demos is not None:
            val = measure(scorer, val_z, val_demos.episode)
            ends = [i for i in range(len(val_demos)) if i + 1 == len(val_demos)
                    or int(val_demos.episode[i + 1]) != int(val_demos.episode[i])]
            with torch.no_grad():
                demo_last = scorer.progress(val_z[ends]).numpy()
        return val, (measure_rollouts(scorer, held, z_held, demo_last) if held else None)

    val, played_val = held_out(trainer.eval_model.scorer)  # the EMA weights, which are exported
    print(f"held-out {cfg.split}_val: {val}", flush=True)
    rollouts_meta = None
    if rollouts:
        rollouts_meta = {"folders": [str(Path(f).expanduser().resolve()) for f in cfg.rollouts],
                         "train_episodes": len(rollouts) - len(held),
                         "train_failures": sum(not r["success"] and not r["held_out"] for r in rollouts),
                         "val": played_val}
        print(f"held-out played episodes: {played_val}", flush=True)
    compared = None
    if cfg.compare:
        from phase5_integration.loading import load_scorer
        other = load_scorer(cfg.compare, cfg.run.root)
        if not same_scale(other.meta["tokenizer"]["scale"], float(tok.scale)):
            raise ConfigError("compare", cfg.compare, f"{other.run.dir} scores another tokenizer's latents "
                                                      f"({other.meta['tokenizer']['run']})")
        c_val, c_played = held_out(other.model.scorer.eval())
        compared = {"run": str(other.run.dir), "val": c_val, "rollouts_val": c_played}
        print(f"the same held-out data, scored by {other.run.dir}: {c_val}; played: {c_played}", flush=True)
    from phase3_vla.training import training_starts
    meta = {"kind": "progress_scorer", "views": int(z.shape[1]), "latent_channels": int(z.shape[2]),
            "tokenizer": {"run": str(tm.run.dir), "scale": float(tok.scale)}, "split": cfg.split,
            "tasks": tasks, "val": val, "trained_steps": trainer.step, "rollouts": rollouts_meta, "compared": compared,
            "train_starts": training_starts(demo_folder(cfg, cfg.split), None) + played_starts(rollouts),
            "data": demos.identity}
    return trainer.finish("progress_scorer", meta, last, seconds)


if __name__ == "__main__":
    main()
