"""Baselines for the UWM's dynamics modes, trained on the same clips.

    InverseRegressor   current frames + the real future frames -> the 16 actions, by MSE (no diffusion): the plain
                       inverse-dynamics model that the UWM's inverse mode is compared with.

Both share the UWM's observation encoder class (ResNet-GN), so the comparison is of the objective, not of the
image features' architecture. `forward(batch, rng)` is the Trainer's contract; `predict` the evaluation's.
"""
from __future__ import annotations

import torch
from torch import nn

from phase4_uwm.config import ClipConfig, UWMConfig
from phase4_uwm.data import scale_from_unit
from phase4_uwm.model import ObsEncoder


class InverseRegressor(nn.Module):
    """a_{t..t+chunk-1} = MLP([enc(current frames), enc(future frames), task embedding]), MSE over real steps."""

    def __init__(self, cfg: UWMConfig, clip: ClipConfig, action_dim: int, views: int = 2):
        super().__init__()
        self.cfg, self.clip, self.action_dim = cfg, clip, action_dim
        self.enc = ObsEncoder(cfg.obs_channels, cfg.obs_dim)
        n_in = views * (clip.obs_frames + clip.future_frames) * cfg.obs_dim + cfg.width
        self.task_emb = nn.Embedding(cfg.num_tasks, cfg.width)
        self.mlp = nn.Sequential(nn.Linear(n_in, cfg.action_hidden), nn.Mish(),
                                 nn.Linear(cfg.action_hidden, cfg.action_hidden), nn.Mish(),
                                 nn.Linear(cfg.action_hidden, clip.chunk * action_dim))
        self.register_buffer("action_low", -torch.ones(action_dim))
        self.register_buffer("action_high", torch.ones(action_dim))

    def unnormalize(self, a: torch.Tensor) -> torch.Tensor:
        """[-1, 1] -> the data set's units (min/max of the training actions, as the UWM)."""
        return scale_from_unit(a, self.action_low, self.action_high)

    def predict(self, obs: torch.Tensor, future_frames: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """obs (B, V, F, 3, S, S) and future_frames (B, V, F', 3, S, S) uint8 -> normalised actions (B, chunk, A)."""
        h = torch.cat([self.enc(obs), self.enc(future_frames), self.task_emb(task)], dim=1)
        return self.mlp(h).reshape(-1, self.clip.chunk, self.action_dim)

    def forward(self, batch: dict, rng) -> tuple[torch.Tensor, dict]:
        pred = self.predict(batch["obs"], batch["future_frames"], batch["task"]).float()
        w = (~batch["action_is_pad"].bool()).float()[..., None].expand_as(pred)
        loss = (((pred - batch["action"].float()) ** 2) * w).sum() / w.sum().clamp_min(1)
        return loss, {"loss/action": loss.detach()}
