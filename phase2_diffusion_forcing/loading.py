"""Loading a trained phase 2 model (a run or a release).

    from phase2_diffusion_forcing.loading import load_trained
    tm = load_trained("latest")              # .model (DFWorldModel, EMA weights, eval mode), .cfg, .meta, .run
    tm = load_trained("latest", "full_sequence")
"""
from __future__ import annotations

import torch

from common.runs import Exported, load_exported
from phase2_diffusion_forcing.config import Phase2Config
from phase2_diffusion_forcing.model import DFWorldModel

TrainedDF = Exported  # .model (DFWorldModel), .cfg (Phase2Config), .meta, .run


def load_trained(spec: str = "latest", objective: str = "diffusion_forcing", root: str = "outputs",
                 device: str | torch.device = "cpu") -> TrainedDF:
    """A finished phase 2 run with the given objective (diffusion_forcing, full_sequence or teacher_forced):
    spec = a run folder, "latest" (the newest such local run, else the release), "release" or "release:<name>".
    When there is none, the error names the training command."""
    extra = "" if objective == "diffusion_forcing" else f" model.objective={objective} run.name=cpu_{objective}"
    return load_exported("phase2", spec, root, f"{objective}.json", Phase2Config,
                         lambda cfg, meta: DFWorldModel(cfg.model, meta["num_actions"], tuple(meta["frame_shape"])),
                         f"For objective {objective}: python -m phase2_diffusion_forcing.train profile=cpu{extra}",
                         device)
