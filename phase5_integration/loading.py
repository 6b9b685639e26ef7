"""Loading trained phase 5 models (runs or releases).

    from phase5_integration.loading import load_agent
    ag = load_agent("latest")          # .model (ActorCritic, eval mode), .cfg, .meta (names its world model), .run
"""
from __future__ import annotations

import dataclasses

from torch import nn

from common.runs import Exported, load_exported
from phase5_integration.actor_critic import ActorCritic
from phase5_integration.config import AgentTrainConfig

AGENT_MARKER = "actor_critic.json"


def load_agent(spec: str = "latest", root: str = "outputs", device="cpu") -> Exported:
    """A finished train_agent run: a folder, "latest" (newest local run, else the release) or "release"."""
    def build(cfg, meta) -> nn.Module:  # the export is the ImaginationLearner's state: the agent under "agent."
        holder = nn.Module()
        holder.agent = ActorCritic(cfg.agent, meta["num_actions"], meta["context"], meta["frame_shape"][-1])
        return holder

    ex = load_exported("phase5", spec, root, AGENT_MARKER, AgentTrainConfig, build,
                       "Make one with: python -m phase5_integration.train_agent profile=cpu", device)
    return dataclasses.replace(ex, model=ex.model.agent.eval())
