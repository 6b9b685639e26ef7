"""Train an actor-critic purely in imagination, inside phase 1's world model (DIAMOND's recipe).

    python -m phase5_integration.train_agent profile=smoke            # seconds (tests)
    python -m phase5_integration.train_agent profile=cpu              # in phase 1's released DIAMOND-lite
    python -m phase5_integration.train_agent world=<phase 1 run> denoise_steps=1
    python -m phase5_integration.plan agent=actor_critic              # then score it in the real game

Every step starts `train.batch_size` imagined worlds from real context of the world model's own training split and
imagines `agent.horizon` steps (phase5_integration/actor_critic.py has the objective). Results land in
outputs/phase5/<run.name>/ (checkpoints, metrics, export/ with the actor-critic's weights and actor_critic.json
naming the world model); `run.resume=true run.name=<name>` continues a run.
"""
from __future__ import annotations

import time

import numpy as np
from torch.utils.data import Subset

from common.config import cli, to_dict
from common.errors import command
from common.trainer import Trainer, setup_run
from phase1_world_model.dataset import AtariWorldModelDataset
from phase1_world_model.loading import data_of, load_trained
from phase5_integration.actor_critic import ActorCritic, ImaginationLearner
from phase5_integration.config import AgentTrainConfig


@command
def main(argv: list[str] | None = None) -> dict:
    cfg = cli(AgentTrainConfig, "phase5/train_agent", argv, __doc__, profile_group="agent_profile")
    tm = load_trained(cfg.world, "diffusion", cfg.run.root, "cpu")
    if tm.model.head is None:
        from common.config import ConfigError
        raise ConfigError("world", cfg.world, "this phase 1 run has no reward/end head: train one with the default "
                          "model.reward_end.enabled=true")
    K = tm.model.cfg.context
    ds = AtariWorldModelDataset(data_of(tm, cfg.run.root), split="train", context=K)
    starts = Subset(ds, np.flatnonzero(ds.item_t >= K - 1).tolist())  # K real frames of context
    ctx = setup_run("phase5", cfg.run, to_dict(cfg))
    frame_shape = tuple(ds.frames.shape[1:])
    net = ActorCritic(cfg.agent, tm.model.num_actions, K, frame_shape[-1])
    model = ImaginationLearner(net, tm.model, cfg.agent, cfg.denoise_steps or None)
    if ctx.dist.is_main:
        n = sum(p.numel() for p in net.parameters())
        print(f"phase5: actor-critic {n / 1e6:.2f}M params, imagining {cfg.agent.horizon} steps x "
              f"{cfg.train.batch_size} worlds per update in {tm.run.describe()}; starts from {len(starts)} real "
              f"steps of {ds!r}; run {ctx.run.dir}", flush=True)
    trainer = Trainer(ctx, model, starts, cfg.train, cfg.log, [])
    t0 = time.perf_counter()
    last = trainer.fit()
    meta = {"num_actions": tm.model.num_actions, "context": K, "frame_shape": list(frame_shape),
            "game": tm.meta["game"], "world_model": str(tm.run.dir), "world_release": tm.run.release,
            "data": tm.meta.get("data"), "trained_steps": trainer.step}
    return trainer.finish("actor_critic", meta, last, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
