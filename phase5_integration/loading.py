"""Loading trained phase 5 models (runs or releases) and the games phase5_integration.plan kept.

    from phase5_integration.loading import load_agent, load_scorer
    ag = load_agent("latest")          # .model (ActorCritic, eval mode), .cfg, .meta (names its world model), .run
    sc = load_scorer("latest")         # .model.scorer (ProgressScorer), .meta (its tokenizer, held-out quality)
    read_games(results_root("phase5_integration/results", "outputs") / "Breakout" / "random" / "games.jsonl")
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from torch import nn

from common.errors import DataError
from common.runs import Exported, load_exported, outputs_root
from phase5_integration.actor_critic import ActorCritic
from phase5_integration.config import AgentTrainConfig, ScorerTrainConfig
from phase5_integration.libero_choice import ProgressScorer, ScorerTraining

AGENT_MARKER = "actor_critic.json"
SCORER_MARKER = "progress_scorer.json"


def results_root(results: str, root: str) -> Path:
    """Where the arms' folders of every game are: `results`, or <run.root>/phase5 when it is empty."""
    return Path(results).expanduser().resolve() if results else outputs_root(root) / "phase5"


def read_games(games_file: Path) -> list[dict]:
    """The finished games of an arm, one per game index, in game order (shards append in any order)."""
    rows: dict[int, dict] = {}
    if games_file.exists():
        for n, line in enumerate(games_file.read_text().splitlines()):
            try:
                row = json.loads(line)
            except ValueError:
                raise DataError(f"{games_file} line {n + 1} is not JSON (an interrupted write?): delete that line "
                                f"and run again; the game is replayed from its seed") from None
            if row["game"] in rows and rows[row["game"]] != row:
                raise DataError(f"{games_file} holds game {row['game']} twice with different results (two "
                                f"processes on one shard?): delete one of the lines and check the settings")
            rows[row["game"]] = row
    return [rows[i] for i in sorted(rows)]


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
