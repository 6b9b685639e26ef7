"""Train lerobot's Diffusion Policy from scratch on phase 3's demonstrations: the UWM paper's main baseline.

    python -m phase4_uwm.train_dp profile=smoke data.demos=smoke      # seconds (tests)
    python -m phase4_uwm.train_dp profile=cpu                        # the new task's 50 demonstrations (2 CPU cores)
    python -m phase4_uwm.evaluate load=<this run> parts=[policy]     # success in LIBERO, as the UWM's

No task input (Diffusion Policy has none), so it is trained on one task's demonstrations: by default the held-out
new task's (`data.split=new`), the same 50 the UWM and SmolVLA are finetuned on. The run exports the EMA weights
in lerobot's format to export/policy (config, model.safetensors, processors), with export/diffusion_policy.json
recording the data and where its demonstrations started (for the evaluation's contamination check).
"""
from __future__ import annotations

import time

from common.config import cli, to_dict
from common.errors import command
from common.trainer import setup_run
from phase3_vla.training import PolicyTrainer, training_starts
from phase4_uwm.config import DPTrainConfig
from phase4_uwm.data import cache_dir, demo_folder, load_demos
from phase4_uwm.diffusion_policy import DPClips, DPModule, build_dp, stats_of


@command
def main(argv: list[str] | None = None) -> dict:
    cfg = cli(DPTrainConfig, "phase4/train_dp", argv, __doc__, profile_group="dp_profile")
    folder = demo_folder(cfg, cfg.data.split)
    from phase3_vla.dataset import open_dataset
    size = open_dataset(folder).meta.features["observation.images.image"]["shape"][0]
    demos = load_demos(folder, size, cache_dir(cfg.run.root)).select(cfg.data.episodes)
    policy, pre, post = build_dp(cfg.dp, stats_of(demos), size)
    module = DPModule(policy, pre)
    data = DPClips(demos, cfg.dp)
    ctx = setup_run("phase4", cfg.run, to_dict(cfg))
    if ctx.dist.is_main:
        n = sum(p.numel() for p in policy.parameters())
        print(f"phase4: Diffusion Policy (lerobot, from scratch) {n / 1e6:.2f}M params on {len(data)} samples of "
              f"{demos.num_episodes} {cfg.data.split} demonstrations ({size} px, resized to {cfg.dp.resize}); "
              f"run {ctx.run.dir}", flush=True)
    holder = {}

    def save(export_dir):
        m = holder["trainer"].eval_model
        m.policy.save_pretrained(export_dir / "policy")
        pre.save_pretrained(export_dir / "policy")
        post.save_pretrained(export_dir / "policy")
    trainer = PolicyTrainer(ctx, module, data, cfg.train, cfg.log, [], save=save)
    holder["trainer"] = trainer
    t0 = time.perf_counter()
    last = trainer.fit()
    used = list(range(cfg.data.episodes)) if 0 < cfg.data.episodes < demos.num_episodes else None
    meta = {"kind": "diffusion_policy", "image_size": size, "tasks": sorted(demos.instructions),
            "train_starts": training_starts(folder, used), "trained_steps": trainer.step, "data": demos.identity}
    return trainer.finish("diffusion_policy", meta, last, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
