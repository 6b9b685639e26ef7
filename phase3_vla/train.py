"""Train the BASE SmolVLA on the 9 base tasks' demonstrations ("pretrained" in this project = this run).

    python -m phase3_vla.collect                            # the demonstrations first (outputs/phase3/demos/cpu/)
    python -m phase3_vla.train profile=smoke data.demos=smoke   # seconds (tests use a tiny dataset instead)
    python -m phase3_vla.train                              # profile cpu -> outputs/phase3/base-cpu/
    python -m phase3_vla.train run.resume=true              # continue it after an interruption (bitwise on CPU)
    python -m phase3_vla.train profile=full                 # real SmolVLA sizes from lerobot/smolvla_base (GPU, hub)
    python -m phase3_vla.train run.precision=bf16 policy.image_size=64 policy.chunk_size=10 policy.n_action_steps=10

Builds lerobot's SmolVLAPolicy (phase3_vla.policy) on a generated SmolVLM-style backbone, for the features
of the base LeRobotDataset (two cameras, 8-d state, 7-d action), with lerobot's processors normalizing by
that dataset's statistics, and trains it with the project's Trainer (common/trainer.py: checkpoints, resume,
metrics.jsonl + TensorBoard, autocast as run.precision chooses). Reads the config sections run, log, data, policy, train.

Exports, besides export/model.safetensors: export/policy/ in lerobot's save_pretrained format
(`SmolVLAPolicy.from_pretrained("outputs/phase3/base-cpu/export/policy")` loads it; finetune starts there)
and export/info.json (wall time, parameters, dataset).

lerobot's own trainer reads the same datasets unchanged (offline; checked by tests/test_phase3_policy.py):

    HF_HUB_OFFLINE=1 lerobot-train --policy.type=smolvla --policy.push_to_hub=false --policy.device=cpu \\
        --policy.vlm_model_name=$(python -m phase3_vla.make_backbone | head -1) '--policy.resize_imgs_with_padding=[128,128]' \\
        --dataset.repo_id=local/libero_object_base --dataset.root=outputs/phase3/demos/cpu/lerobot/base \\
        --output_dir=outputs/phase3/lerobot-train-base --steps=2 --batch_size=2 --eval_freq=0 --wandb.enable=false
"""
from __future__ import annotations


from common.config import cli, to_dict
from common.errors import command
from common.trainer import setup_run
from phase3_vla.config import READS, Phase3Config
from phase3_vla import training


@command
def main(argv: list[str] | None = None) -> dict:
    cfg = training.named(cli(Phase3Config, "phase3/train", argv, __doc__,
                                reads=READS["train"]), "train")
    from phase3_vla.dataset import dataset_identity, open_dataset
    from phase3_vla.frames import ChunkedFrames
    from phase3_vla.policy import PolicyModule, build_policy, trainable_and_total, save_policy

    folder = training.require_dataset(cfg, "base")
    ctx = setup_run(training.PHASE, cfg.run, to_dict(cfg))
    data = ChunkedFrames(open_dataset(folder), cfg.policy.chunk_size)
    policy, pre, post = build_policy(cfg.policy, data.meta, ctx.device, cfg.run.root)
    from phase3_vla.dataset import ACTION_NAMES

    module = PolicyModule(policy, pre, mask_padded_actions=cfg.policy.mask_padded_actions, action_names=ACTION_NAMES)
    starts = training.training_starts(folder)  # before training: a data set without starts is refused now
    trainable, total = trainable_and_total(module)
    clock = training.Clock(ctx.run)
    if ctx.dist.is_main:
        print(f"phase3 base: SmolVLA on {folder} ({data.meta.total_episodes} episodes, {len(data)} frames, "
              f"{len(data.meta.tasks)} tasks); {training.fmt_params(trainable, total)}; backbone "
              f"{policy.config.vlm_model_name}; device {ctx.device}, {ctx.threads} thread(s); run {ctx.run.dir}", flush=True)
    m = cfg.monitor
    hooks = [h for h in (clock.hook(cfg.log.log_every),
                         training.validation_hook(module, training.dataset_folder(cfg, "base_val"),
                                                  cfg.policy.chunk_size, m.val_every, m.val_samples),
                         training.snapshot_hook(m.snapshots, lambda d: save_policy(policy, pre, post, d / "policy")))
             if h is not None]
    trainer = training.PolicyTrainer(ctx, module, data, cfg.train, cfg.log, hooks,
                                     save=lambda d: save_policy(policy, pre, post, d / "policy"))
    last = trainer.fit()
    info = {}
    if ctx.dist.is_main:
        clock.save(trainer.step)
        info = training.write_info(ctx.run, {
            "kind": "base", "steps": trainer.step, "seconds": round(clock.seconds, 1),
            "seconds_per_step": round(clock.seconds / max(1, trainer.step), 4), "trainable": trainable, "total": total,
            "dataset": str(folder), "episodes": data.meta.total_episodes, "frames": len(data),
            "data": dataset_identity(folder),
            "tasks": list(data.meta.tasks.index), "final_loss": last.get("train/loss"),
            "backbone": policy.config.vlm_model_name, "mask_padded_actions": cfg.policy.mask_padded_actions,
            "val_loss": training.last_metric(ctx.run, "val/loss"), "train_starts": starts,
            "policy": str(ctx.run.export_dir / "policy")})
        print(f"phase3 base: done, {trainer.step} steps in {clock.seconds:.0f} s (wall, all sessions); final loss "
              f"{last.get('train/loss', float('nan')):.4f}; policy in {ctx.run.export_dir / 'policy'}", flush=True)
    return {"run_dir": str(ctx.run.dir), **info, **last}


if __name__ == "__main__":
    main()
