"""Loading trained phase 5 models (runs or releases).

    from phase5_integration.loading import load_agent, load_scorer
    ag = load_agent("latest")          # .model (ActorCritic, eval mode), .cfg, .meta (names its world model), .run
    sc = load_scorer("latest")         # .model.scorer (ProgressScorer), .meta (its tokenizer, held-out quality)
"""
from __future__ import annotations

import dataclasses

from torch import nn

from common.runs import Exported, load_exported
from phase5_integration.actor_critic import ActorCritic
from phase5_integration.config import AgentTrainConfig, ScorerTrainConfig
from phase5_integration.libero_choice import ProgressScorer, ScorerTraining

AGENT_MARKER = "actor_critic.json"
SCORER_MARKER = "progress_scorer.json"


def load_agent(spec: str = "latest", root: str = "outputs", device="cpu") -> Exported:
    """A finished train_agent run: a folder, "latest" (newest local run, else the release) or "release"."""
    def build(cfg, meta) -> nn.Module:  # the export is the ImaginationLearner's state: the agent under "agent."
        holder = nn.Module()
        holder.agent = ActorCritic(cfg.agent, meta["num_actions"], meta["context"], meta["frame_shape"][-1])
        return holder

    ex = load_exported("phase5", spec, root, AGENT_MARKER, AgentTrainConfig, build,
                       "Make one with: python -m phase5_integration.train_agent profile=cpu", device)
    return dataclasses.replace(ex, model=ex.model.agent.eval())


def load_scorer(spec: str = "latest", root: str = "outputs", device="cpu") -> Exported:
    """A finished train_scorer run (.model: ScorerTraining; .model.scorer is the ProgressScorer)."""
    return load_exported("phase5", spec, root, SCORER_MARKER, ScorerTrainConfig,
                         lambda cfg, meta: ScorerTraining(ProgressScorer(meta["views"], meta["latent_channels"],
                                                                         cfg.width)),
                         "Make one with: python -m phase5_integration.train_scorer profile=cpu", device)
