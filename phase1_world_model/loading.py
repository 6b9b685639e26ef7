"""Loading what phase 1 made: a trained world model (a run or a release) and the data set to use it on.

    from phase1_world_model.loading import load_trained, data_of
    tm = load_trained("latest")                 # .model (WorldModel, EMA weights, eval mode), .cfg, .meta, .run
    test = AtariWorldModelDataset(data_of(tm), split="test", context=tm.cfg.model.context)

Later phases (phase 2's warm start and comparison, phase 5's planners) load phase 1 through these names.
"""
from __future__ import annotations

from pathlib import Path

import torch

from common.runs import Exported, load_exported
from phase1_world_model.config import DataSourceConfig, Phase1Config
from phase1_world_model.dataset import AtariWorldModelDataset
from phase1_world_model.envs import canonical_game
from phase1_world_model.model import WorldModel
from phase1_world_model.recording import ensure_dataset
from phase1_world_model.storage import find_dataset

TrainedWorldModel = Exported  # .model (WorldModel), .cfg (Phase1Config), .meta, .run


def dataset_folder(d: DataSourceConfig, root: str = "outputs") -> Path:
    """The collected data set a DataSourceConfig names (by game, under <root>, or its `folder`)."""
    return find_dataset(canonical_game(d.game), root, d.folder)


def load_split(d: DataSourceConfig, root: str, split: str, context: int) -> AtariWorldModelDataset:
    return AtariWorldModelDataset(dataset_folder(d, root), split=split, context=context)


def load_trained(spec: str = "latest", kind: str = "diffusion", root: str = "outputs",
                 device: str | torch.device = "cpu") -> TrainedWorldModel:
    """A finished phase 1 run of the given kind (its EMA weights, in eval mode).

    spec: a run folder, "latest" (the newest local run of that kind, else the release), "release" or
    "release:<name>". The error names the train command."""
    extra = "" if kind == "diffusion" else " model.kind=regressor"
    return load_exported("phase1", spec, root, f"{kind}.json", Phase1Config,
                         lambda cfg, meta: WorldModel(cfg.model, meta["num_actions"], tuple(meta["frame_shape"]),
                                                               cfg.sampler),
                         f"For a {kind} model: python -m phase1_world_model.train profile=cpu{extra}", device)


def data_of(tm: TrainedWorldModel, root: str = "outputs", folder: str = "") -> Path:
    """The data set to roll a trained model out on: `folder` if given, else the one it trained on (by game, under
    <root>), collected with the recorded settings when it is missing (a release used on a fresh clone)."""
    if folder:
        return dataset_folder(DataSourceConfig(game=tm.meta["game"], folder=folder), root)
    if "data" not in tm.meta:
        return dataset_folder(tm.cfg.data, root)
    return ensure_dataset(tm.meta["data"], root, tm.cfg.data.folder if not tm.run.release else "")
