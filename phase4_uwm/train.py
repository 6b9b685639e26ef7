"""Train a Unified World Model on phase 3's LIBERO demonstrations.

    python -m phase3_vla.collect && python -m phase4_uwm.train_tokenizer profile=cpu     # data and tokenizer first
    python -m phase4_uwm.train profile=smoke data.demos=smoke      # seconds (tests)
    python -m phase4_uwm.train profile=cpu                        # pretrain on the 9 base tasks (2 CPU cores)
    python -m phase4_uwm.train profile=cpu data.split=new init_from=<base run> run.name=uwm-new   # finetune
    python -m phase4_uwm.train profile=cpu objective=policy       # the same network, action loss only (ablation)
    python -m phase4_uwm.train profile=full                       # the paper's sizes, for GPUs
    torchrun --nproc_per_node=2 -m phase4_uwm.train profile=full

Runs land in outputs/phase4/<run.name>/ (checkpoints, metrics with loss/action and loss/video logged apart, final
EMA weights in export/ with uwm.json naming the tokenizer and the data). `run.resume=true run.name=<name>`
continues. The validation demonstrations (base_val / new_val) give `val/loss_action`, `val/loss_video` (fixed noise
and levels, so successive values differ only by the weights) and, on 32 clips, the action error of policy mode and
the latent error of forward-dynamics mode.
"""
from __future__ import annotations

import time

import torch

from common.config import ConfigError, cli, to_dict
from common.errors import command
from common.trainer import Hook, Trainer, setup_run
from phase4_uwm.config import Phase4Config, TokenizerConfig
from phase4_uwm.data import (ActionStats, Clips, cache_dir, concat_demos, demo_folder, encode_all, encode_frames,
                             evenly_spaced, load_demos, make_clips, played_demos, played_episodes, played_starts)
from phase4_uwm.loading import load_tokenizer, load_uwm, pixel_tokenizer
from phase4_uwm.model import UWM
from phase4_uwm.modes import run_mode


def validation_hook(model: UWM, val: Clips, every: int, samples: int) -> Hook | None:
    """Losses on held-out demonstrations with fixed noise and levels, plus two modes on 32 clips."""
    if every <= 0:
        return None
    idx = evenly_spaced(len(val), samples)
    batches = [torch.utils.data.default_collate([val[i] for i in idx[j:j + 32]]) for j in range(0, len(idx), 32)]
    for b in batches:
        b["has_action"] = torch.ones_like(b["has_action"])
    g = torch.Generator().manual_seed(1234)
    T = model.schedule.T
    draws = [(torch.randint(0, T, (len(b["task"]), 2), generator=g), torch.randn(b["action"].shape, generator=g),
              torch.randn(b["future"].shape, generator=g)) for b in batches]
    probe = batches[0]

    def fn(trainer: Trainer) -> dict:
        m = trainer.eval_model
        was = m.training
        m.eval()
        la = lv = 0.0
        n = 0
        with torch.no_grad(), trainer.ctx.precision.autocast():
            for b, (t, na, nv) in zip(batches, draws):
                a, v = b["action"], b["future"]
                x_a = m.schedule.q_sample(a, t[:, 0], na)
                x_v = m.schedule.q_sample(v, t[:, 1], nv)
                ea, ev = m.denoise(x_a, x_v, t[:, 0].float(), t[:, 1].float(), m.condition(b["obs"], b["task"]))
                w = (~b["action_is_pad"]).float()[..., None].expand_as(a)
                la += float((((ea.float() - na) ** 2) * w).sum() / w.sum().clamp_min(1)) * len(a)
                lv += float(((ev.float() - nv) ** 2).mean()) * len(a)
                n += len(a)
            gen = torch.Generator().manual_seed(0)
            pol = run_mode(m, "policy", probe["obs"], probe["task"], generator=gen)
            real_a = m.unnormalize_actions(probe["action"])
            w = (~probe["action_is_pad"]).float()[..., None]
            act_mse = float((((pol.actions - real_a) ** 2) * w).sum() / (w.sum() * real_a.shape[-1]))
            fwd = run_mode(m, "forward", probe["obs"], probe["task"], actions=real_a, generator=gen)
            lat_mse = float(((fwd.future - probe["future"]) ** 2).mean())
        m.train(was)
        return {"val/loss_action": la / n, "val/loss_video": lv / n, "val/policy_action_mse": act_mse,
                "val/forward_latent_mse": lat_mse}
    return Hook(every, fn, "validation")


# model.* keys that only say how the model samples (set per run; never a reason to refuse a warm start)
SAMPLING_KEYS = ("sample_steps", "clip_actions", "clip_latents", "timestep_spacing")


@command
def main(argv: list[str] | None = None) -> dict:
    cfg = cli(Phase4Config, "phase4/train", argv, __doc__)
    if cfg.tokenizer_kind == "pixel":
        tok, tok_meta = pixel_tokenizer(cfg.pixel_size), {"run": "", "kind": "pixel"}
        tok_cfg = TokenizerConfig(kind="pixel", image_size=cfg.pixel_size)
    else:
        tm = load_tokenizer(cfg.tokenizer, cfg.run.root)
        tok, tok_cfg = tm.model, tm.cfg.tokenizer
        tok_meta = {"run": str(tm.run.dir), "kind": "vae", "scale": float(tok.scale), "val_psnr": tm.meta.get("val_psnr")}
    base = None
    if cfg.init_from:
        base = load_uwm(cfg.init_from, cfg.run.root)
        for key in ("model", "clip"):
            ours, theirs = to_dict(getattr(cfg, key)), to_dict(getattr(base.cfg, key))
            if key == "model":  # how it samples is not part of the weights (and a default may have changed since)
                ours, theirs = ({k: v for k, v in d.items() if k not in SAMPLING_KEYS} for d in (ours, theirs))
            if (diff := sorted(k for k in ours if ours[k] != theirs.get(k))):
                raise ConfigError("init_from", cfg.init_from, f"{base.run.dir} has another {key} config than this run "
                                  f"({', '.join(f'{key}.{k}' for k in diff)}): use the base run's {key}.* settings")
        stats = ActionStats(base.model.action_low.tolist(), base.model.action_high.tolist())
    else:
        stats = None
    split = cfg.data.split
    size = cfg.pixel_size if cfg.tokenizer_kind == "pixel" else tok_cfg.image_size
    demos = load_demos(demo_folder(cfg, split), size, cache_dir(cfg.run.root)).select(cfg.data.episodes)
    stats = stats or ActionStats.of(demos.actions)
    z = encode_all(tok, demos, cache_dir(cfg.run.root), split)
    played, n_demos, imitate = [], demos.num_episodes, None
    if cfg.data.played:  # recorded evaluation episodes, failures included; encoded here (small), never cached
        played = played_episodes(cfg.data.played, sorted(demos.instructions), size, with_actions=True)
        if not played:
            raise ConfigError("data.played", cfg.data.played, f"no recorded episode of tasks "
                                                              f"{sorted(demos.instructions)} there")
        extra = played_demos(played, demos.instructions)
        zp = encode_frames(tok, extra.frames)
        imitate = torch.cat([torch.ones(len(demos), dtype=torch.bool),
                             torch.full((len(extra),), cfg.data.played_imitate, dtype=torch.bool)])
        demos, z = concat_demos(demos, extra), torch.cat([z, zp])
        print(f"phase4: + {len(played)} played episodes ({extra.identity['failed']} failed, "
              f"{extra.identity['frames']} frames) from {len(cfg.data.played)} folder(s); their actions "
              f"{'imitated' if cfg.data.played_imitate else 'condition the video loss only'}", flush=True)
    train = Clips(demos, cfg.clip, stats, z, cfg.data.video_only_fraction, cfg.run.seed, imitate)
    model = UWM(cfg.model, cfg.clip, tok_cfg, demos.actions.shape[1], demos.frames.shape[1], cfg.objective,
                cfg.pixel_size)
    model.set_action_stats(stats.low, stats.high)
    if base is not None:
        model.load_state_dict(base.model.state_dict())
    try:
        val = make_clips(cfg, tok, f"{split}_val", stats)
    except FileNotFoundError:
        val = None
        print(f"note: no {split}_val demonstrations: no validation losses", flush=True)
    hooks = [h for h in [validation_hook(model, val, cfg.val_every, cfg.val_samples) if val else None] if h]
    ctx = setup_run("phase4", cfg.run, to_dict(cfg))
    if ctx.dist.is_main:
        print(f"phase4: {len(train)} clips from {n_demos} {split} demonstrations "
              f"(tasks {sorted(demos.instructions)}); {model.describe()}; tokenizer {tok_meta['kind']} "
              f"{tok_meta['run']}; objective {cfg.objective}; "
              + (f"finetuning {base.run.dir}; " if base else "from scratch; ") + f"run {ctx.run.dir}", flush=True)
    trainer = Trainer(ctx, model, train, cfg.train, cfg.log, hooks)
    t0 = time.perf_counter()
    last = trainer.fit()
    from phase3_vla.training import training_starts
    used = list(range(cfg.data.episodes)) if 0 < cfg.data.episodes < n_demos else None
    starts = (training_starts(demo_folder(cfg, split), used) + played_starts(played)
              + (base.meta.get("train_starts", []) if base else []))
    meta = {"train_starts": starts, "objective": cfg.objective, "action_dim": int(demos.actions.shape[1]), "views": int(demos.frames.shape[1]),
            "tokenizer": tok_meta, "tokenizer_config": to_dict(tok_cfg), "action_low": stats.low,
            "action_high": stats.high, "instructions": demos.instructions, "trained_steps": trainer.step,
            "init_from": str(base.run.dir) if base else "", "data": demos.identity}
    return trainer.finish("uwm", meta, last, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
