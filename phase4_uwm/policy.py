"""A UWM in policy mode, behind the interface phase 3's LIBERO episode loop plays (`phase3_vla.rollouts.play`).

    policy = UWMPolicy(uwm.model, task_id=9, n_action_steps=16)
    policy.reset()
    action = policy.select_action(obs)       # obs as rollouts.observation builds it; returns (1, 7)

It keeps the last `obs_frames` camera frames (the first frame of an episode is repeated, as the training clips
clamp at an episode's start), predicts a chunk in policy mode when its action queue is empty and plays
`n_action_steps` of it open loop (the paper plays all 16), as lerobot's policies do with their `_queues`.
"""
from __future__ import annotations

from collections import deque

import torch
import torch.nn.functional as F

from phase4_uwm.modes import run_mode

IMAGE_KEYS = ("observation.images.image", "observation.images.image2")  # agent view, wrist (phase 3's names)


class UWMPolicy:
    """Policy mode behind lerobot's `reset` / `select_action` interface: one chunk per `n_action_steps` actions
    (0 = the whole chunk), `denoise_steps` DDIM steps (0 = the model's), noise from `generator`."""

    def __init__(self, model, task_id: int, n_action_steps: int = 0, denoise_steps: int = 0,
                 generator: torch.Generator | None = None):
        self.model, self.task_id = model, task_id
        self.n_action_steps = n_action_steps or model.clip.chunk
        if not 1 <= self.n_action_steps <= model.clip.chunk:
            raise ValueError(f"n_action_steps={n_action_steps}: must be in [1, {model.clip.chunk}] (the chunk)")
        self.denoise_steps, self.generator = denoise_steps, generator
        self.size = int(model.obs_size)
        self._queues = {"action": deque()}
        self.history: deque = deque(maxlen=model.clip.obs_frames)

    def reset(self) -> None:
        """A new episode: forget the queued actions and the frame history."""
        self._queues["action"].clear()
        self.history.clear()

    def _frame(self, batch: dict) -> torch.Tensor:
        """(V, 3, S, S) uint8 at the model's side from the two cameras' (1, 3, H, W) floats in [0, 1]."""
        views = []
        for key in IMAGE_KEYS:
            x = batch[key].float()
            if x.shape[-1] != self.size:
                x = F.interpolate(x * 255, size=(self.size, self.size), mode="area") / 255
            views.append((x[0] * 255).round().clamp(0, 255).to(torch.uint8))
        return torch.stack(views)

    @torch.no_grad()
    def select_action(self, batch: dict) -> torch.Tensor:
        frame = self._frame(batch)
        if not self.history:
            self.history.extend([frame] * self.history.maxlen)
        else:
            self.history.append(frame)
        if not self._queues["action"]:
            dev = next(self.model.parameters()).device
            obs = torch.stack(list(self.history), dim=1)[None].to(dev)  # (1, V, F, 3, S, S)
            task = torch.tensor([self.task_id], device=dev)
            out = run_mode(self.model, "policy", obs, task, steps=self.denoise_steps, generator=self.generator)
            self._queues["action"].extend(out.actions[0, :self.n_action_steps].float().cpu())
        return self._queues["action"].popleft()[None]
