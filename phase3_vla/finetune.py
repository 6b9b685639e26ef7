"""Finetune a base run on the NEW task (never in base training): LoRA through peft, or full finetuning.

    python -m phase3_vla.finetune                                  # LoRA r=16 on 50 demos of the new task, on base-cpu
    python -m phase3_vla.finetune finetune.num_demos=5             # the demo-count ablation (first 5 episodes)
    python -m phase3_vla.finetune finetune.lora.r=64               # the rank ablation (alpha = 2r unless set)
    python -m phase3_vla.finetune finetune.method=full             # every parameter the base run trained
    python -m phase3_vla.finetune load=outputs/phase3/my-base run.name=my-lora
    python -m phase3_vla.finetune finetune.lora.target_modules='.*(q|k|v|o)_proj'   # a regex on module names
    python -m phase3_vla.finetune profile=smoke data.demos=smoke   # seconds

Loads the base run's lerobot policy (export/policy, with `config.pretrained_path` set, which lerobot's
`wrap_with_peft` requires), then either wraps it with a peft LoraConfig built here (rank, alpha, dropout,
target modules; the default targets are lerobot's for SmolVLA) and trains only the adapters, or trains
it whole. Prints the trainable-parameter count and fraction. Reads run, log, data and finetune (its own
`finetune.train` optimisation settings). Run names default to lora-r<r>-n<demos>-<profile> / full-n<demos>-<profile>.

Saves, besides the project's checkpoints (adapter-only for LoRA) and export/info.json (method, base run,
trainable parameters, wall time): LoRA -> export/adapter/ (peft's adapter_config.json + adapter weights,
whose base_model_name_or_path is the base run's export/policy, plus lerobot's policy config and
processors); full -> export/policy/. `phase3_vla.policy.load_adapter` puts an adapter back on its base by
that path, and says which command remakes the base when it is gone.
"""
from __future__ import annotations


from common.config import ConfigError, cli, to_dict
from common.errors import command
from common.trainer import setup_run
from phase3_vla.config import READS, Phase3Config
from phase3_vla import training


def new_task_stats(data) -> dict:
    """Normalization statistics of state and action over the selected episodes only (finetune.normalization=new;
    the dataset's own meta.stats cover all its episodes). Image statistics are kept: SmolVLA does not
    normalize images (IDENTITY)."""
    import numpy as np

    from phase3_vla.dataset import column_stats

    cols = data.ds.hf_dataset.with_format("numpy").select_columns(["observation.state", "action"])
    stats = {k: dict(v) for k, v in data.meta.stats.items()}
    for key in ("observation.state", "action"):
        s = column_stats(np.stack(cols[key]).astype(np.float64))
        stats[key] = {**stats.get(key, {}), **{k: np.asarray(v, dtype=np.float32) for k, v in s.items()}}
    return stats


@command
def main(argv: list[str] | None = None) -> dict:
    cfg = training.named(cli(Phase3Config, "phase3/finetune", argv, __doc__,
                                reads=READS["finetune"]), "finetune")
    f = cfg.finetune
    from phase3_vla.dataset import dataset_identity, open_dataset
    from phase3_vla.frames import ChunkedFrames
    from phase3_vla.policy import PolicyModule, trainable_and_total, load_policy, save_policy, wrap_lora

    base = training.require_base(cfg)
    folder = training.require_dataset(cfg, "new")
    available = open_dataset(folder).meta.total_episodes
    if f.num_demos > available:
        raise ConfigError("finetune.num_demos", f.num_demos, f"{folder} has {available} episodes; use at most "
                          f"{available} (0 = all), or collect more (collect new_demos=...)")
    episodes = list(range(f.num_demos or available))
    ctx = setup_run(training.PHASE, cfg.run, to_dict(cfg))
    policy, pre, post = load_policy(base.export_dir / "policy", ctx.device)
    data = ChunkedFrames(open_dataset(folder, episodes=episodes), policy.config.chunk_size)
    if f.normalization == "new":
        from lerobot.policies.factory import make_pre_post_processors

        pre, post = make_pre_post_processors(policy.config, dataset_stats=new_task_stats(data))
    model = wrap_lora(policy, f.lora) if f.method == "lora" else policy
    from phase3_vla.dataset import ACTION_NAMES

    module = PolicyModule(model, pre, adapter_only=f.method == "lora",
                          mask_padded_actions=cfg.policy.mask_padded_actions, action_names=ACTION_NAMES)
    starts = training.training_starts(folder, episodes)
    trainable, total = trainable_and_total(module)
    clock = training.Clock(ctx.run)
    export = "adapter" if f.method == "lora" else "policy"
    if ctx.dist.is_main:
        what = (f"LoRA r={f.lora.r} alpha={f.lora.alpha or 2 * f.lora.r:g} dropout={f.lora.dropout}"
                if f.method == "lora" else "full finetuning")
        print(f"phase3 finetune: {what} of {base.dir} on {len(episodes)} demo(s) of {folder} ({len(data)} frames, "
              f"task: {list(data.meta.tasks.index)[0]!r}); {training.fmt_params(trainable, total)}; device "
              f"{ctx.device}; run {ctx.run.dir}", flush=True)
    m = cfg.monitor
    hooks = [h for h in (clock.hook(cfg.log.log_every),
                         training.validation_hook(module, training.dataset_folder(cfg, "new_val"),
                                                  policy.config.chunk_size, m.val_every, m.val_samples),
                         training.snapshot_hook(m.snapshots, lambda d: save_policy(model, pre, post, d / export)))
             if h is not None]
    trainer = training.PolicyTrainer(ctx, module, data, f.train, cfg.log, hooks,
                                     save=lambda d: save_policy(model, pre, post, d / export))
    last = trainer.fit()
    info = {}
    if ctx.dist.is_main:
        clock.save(trainer.step)
        info = training.write_info(ctx.run, {
            "kind": f.method, "steps": trainer.step, "seconds": round(clock.seconds, 1),
            "seconds_per_step": round(clock.seconds / max(1, trainer.step), 4), "trainable": trainable, "total": total,
            "trainable_fraction": trainable / max(1, total), "base_run": str(base.dir),
            "base_policy": str(base.export_dir / "policy"), "make_base": training.train_command(base.dir),
            "dataset": str(folder), "num_demos": len(episodes), "frames": len(data),
            "data": dataset_identity(folder, episodes),
            "tasks": list(data.meta.tasks.index), "normalization": f.normalization,
            "lora": ({"r": f.lora.r, "alpha": f.lora.alpha or 2 * f.lora.r, "dropout": f.lora.dropout,
                      "target_modules": f.lora.target_modules or "lerobot default"} if f.method == "lora" else None),
            "final_loss": last.get("train/loss"), "val_loss": training.last_metric(ctx.run, "val/loss"),
            "mask_padded_actions": cfg.policy.mask_padded_actions, "lr": f.train.lr, "train_starts": starts,
            "base_train_starts": training.finished(base.dir).get("train_starts"),
            export: str(ctx.run.export_dir / export)})
        print(f"phase3 finetune: done, {trainer.step} steps in {clock.seconds:.0f} s (wall, all sessions); final "
              f"loss {last.get('train/loss', float('nan')):.4f}; {export} in {ctx.run.export_dir / export}", flush=True)
    return {"run_dir": str(ctx.run.dir), **info, **last}


if __name__ == "__main__":
    main()
