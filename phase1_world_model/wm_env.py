"""The trained world model behind gymnasium's `Env` API: act in imagination with any agent or library.

    env = WorldModelEnv.from_run("latest")                 # newest phase 1 diffusion run, its own data set
    env = gymnasium.make("WorldModel-v0", run="latest")    # the same, registered (import this module first)
    obs, info = env.reset(seed=0)                          # K real frames from the data set; obs = the last one
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())

    worlds = Imagination(model, dataset)                   # B worlds at once (play's batch mode, an imagined agent)
    frames = worlds.reset(np.random.default_rng(0), batch=32)
    frames, reward, end, p_end = worlds.step(torch.randint(0, 4, (32,)))

A reset draws a start point uniformly among the data set's steps that have K real frames of context, and
the K-1 actions that were played between those frames. Each step then generates the next frame from the
last K frames and actions (the model's sampler: `steps` Euler or Heun steps), classifies the transition
with the reward/end head, and slides the window. Observations are (H, W, 3) uint8, the layout of
`envs.make_atari`, so an agent written for the real game runs unchanged in the imagined one.

`terminated` is the end head's verdict (life lost or game over: DIAMOND's training end); `truncated` comes
at `max_episode_steps`. Rewards are the head's sign-clipped classes -1, 0, 1. The generation noise of every
step is drawn from the env's seeded `np_random`, so `reset(seed=s)` followed by the same actions replays
the same imagined episode (gymnasium's env checker verifies this).
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from common.errors import DataError
from common.images import to_uint8
from phase1_world_model.dataset import AtariWorldModelDataset
from phase1_world_model.loading import data_of, load_trained
from phase1_world_model.model import WorldModel


class Imagination:
    """B worlds stepped in parallel by one WorldModel (tensors on the model's device)."""

    def __init__(self, model: WorldModel, dataset: AtariWorldModelDataset, steps: int | None = None,
                 solver: str | None = None, bf16: bool = False):
        if dataset.context != model.cfg.context:
            raise DataError(f"dataset context {dataset.context} != the model's K={model.cfg.context}")
        if dataset.num_actions != model.num_actions:
            raise DataError(f"{dataset.root} has {dataset.num_actions} actions, the model {model.num_actions}: "
                             f"use the data set of the game the model was trained on")
        self.model, self.ds, self.steps, self.solver, self.bf16 = model.eval(), dataset, steps, solver, bf16
        self.device = next(model.parameters()).device
        K = model.cfg.context
        self.valid_starts = np.flatnonzero(dataset.item_t >= K - 1)  # items with K real context frames
        if len(self.valid_starts) == 0:
            raise DataError(f"{dataset.root} ({dataset.split}) has no step with {K} frames of context")
        self.frames = self.acts = None
        self.starts: list[tuple[int, int]] = []

    def reset(self, rng: np.random.Generator, batch: int = 1,
              starts: list[tuple[int, int]] | None = None, where: torch.Tensor | None = None) -> torch.Tensor:
        """Start B worlds from real data; `starts` = (episode position in the split, t0) pairs, else random.
        `where` (B,) bool restarts only those worlds of the running batch (the others go on).
        -> the current frames (B, 3, H, W) uint8."""
        if where is not None:
            idx = torch.nonzero(where.cpu()).flatten().tolist()
            if idx:
                old = (self.frames, self.acts, self.starts)
                self.reset(rng, len(idx), starts)
                new = (self.frames, self.acts, self.starts)
                self.frames, self.acts, self.starts = old[0].clone(), old[1].clone(), list(old[2])
                self.frames[idx], self.acts[idx] = new[0], new[1]
                for j, i in enumerate(idx):
                    self.starts[i] = new[2][j]
            return self.frames[:, -1]
        ds, K = self.ds, self.model.cfg.context
        if starts is None:
            items = rng.choice(self.valid_starts, size=batch)
            starts = [(int(ds.item_episode[i]), int(ds.item_t[i])) for i in items]
        frames, acts = [], []
        for e, t0 in starts:
            if not K - 1 <= t0 <= ds.lengths[e]:
                raise ValueError(f"start t0={t0} of episode position {e}: needs {K - 1} <= t0 <= {ds.lengths[e]}")
            frames.append(ds.episode_frames(e, t0 - K + 1, t0 + 1)[0])  # (K, 3, H, W)
            acts.append(ds.episode_actions(e, t0 - K + 1, t0)[0])  # the K-1 actions between those frames
        self.frames = torch.from_numpy(np.stack(frames)).to(self.device)  # (B, K, 3, H, W) uint8
        self.acts = torch.from_numpy(np.stack(acts).astype(np.int64)).to(self.device)  # (B, K-1)
        self.starts = starts
        return self.frames[:, -1]

    @torch.no_grad()
    def step(self, actions: torch.Tensor, generator: torch.Generator | None = None):
        """actions (B,) -> next frames (B, 3, H, W) uint8, reward (B,) in {-1,0,1}, end (B,) bool, p_end (B,)."""
        if self.frames is None:
            raise RuntimeError("call reset() before step()")
        act = torch.cat([self.acts, actions.to(self.device, torch.int64).reshape(-1, 1)], dim=1)  # (B, K)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            nxt = to_uint8(self.model.next_frame(self.frames, act, generator=generator, steps=self.steps,
                                                 solver=self.solver))
            if self.model.head is not None:
                reward, end, p_end = self.model.reward_end(self.frames, act, nxt)
            else:
                B = nxt.shape[0]
                reward = torch.zeros(B, dtype=torch.long, device=self.device)
                end, p_end = torch.zeros(B, dtype=torch.bool, device=self.device), torch.zeros(B, device=self.device)
        self.frames = torch.cat([self.frames[:, 1:], nxt[:, None]], dim=1)
        self.acts = act[:, 1:]
        return nxt, reward, end, p_end.float()


class WorldModelEnv(gym.Env):
    """One imagined game (see the module docstring). `model.head` must exist for rewards and terminations."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, model: WorldModel, dataset: AtariWorldModelDataset, max_episode_steps: int = 1000,
                 steps: int | None = None, solver: str | None = None, bf16: bool = False,
                 render_mode: str | None = None):
        if model.head is None:
            raise DataError("WorldModelEnv needs the reward/end head: train with model.reward_end.enabled=true")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r}; allowed: None, 'rgb_array'")
        self.worlds = Imagination(model, dataset, steps, solver, bf16)
        self.max_episode_steps, self.render_mode = max_episode_steps, render_mode
        C, H, W = dataset.frames.shape[1:]
        self.observation_space = gym.spaces.Box(0, 255, (H, W, C), np.uint8)
        self.action_space = gym.spaces.Discrete(model.num_actions)
        self.action_meanings = dataset.action_meanings
        self._t, self._obs = 0, None

    @classmethod
    def from_run(cls, run: str = "latest", root: str = "outputs", split: str = "train", device: str = "cpu",
                 precision: str = "auto", **kwargs: Any) -> "WorldModelEnv":
        """The trained diffusion world model of a phase 1 run ("latest": the newest local run, else the release;
        "release"; or a folder), started from its own data set's `split` (collected first if it is missing).
        precision: auto | bf16 | fp32 for generation (common/precision.py)."""
        from common.precision import resolve_precision

        tm = load_trained(run, "diffusion", root, device)
        ds = AtariWorldModelDataset(data_of(tm, root), split=split, context=tm.cfg.model.context)
        kwargs.setdefault("bf16", resolve_precision(precision, device).bf16)
        return cls(tm.model, ds, **kwargs)

    def get_action_meanings(self) -> list[str]:
        return list(self.action_meanings)

    def _hwc(self, frame: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(frame.permute(1, 2, 0).cpu().numpy())  # (3, H, W) -> (H, W, 3)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """options={"start": (episode position in the split, t0)} starts from a chosen point of the data set."""
        super().reset(seed=seed)
        start = (options or {}).get("start")
        frame = self.worlds.reset(self.np_random, 1, [tuple(start)] if start is not None else None)[0]
        self._t, self._obs = 0, self._hwc(frame)
        e, t0 = self.worlds.starts[0]
        return self._obs, {"start": (int(self.worlds.ds.episodes[e]), t0)}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space} ({', '.join(self.action_meanings)})")
        g = torch.Generator(device=self.worlds.device).manual_seed(int(self.np_random.integers(2 ** 62)))
        nxt, reward, end, p_end = self.worlds.step(torch.tensor([int(action)]), g)
        self._t += 1
        self._obs = self._hwc(nxt[0])
        truncated = self._t >= self.max_episode_steps and not bool(end[0])
        return self._obs, float(reward[0]), bool(end[0]), truncated, {"p_end": float(p_end[0]), "t": self._t}

    def render(self):
        if self.render_mode == "rgb_array":
            return self._obs
        return None


def _make(run: str = "latest", root: str = "outputs", split: str = "train", device: str = "cpu",
          **kwargs: Any) -> WorldModelEnv:
    return WorldModelEnv.from_run(run, root, split, device, **kwargs)


if "WorldModel-v0" not in gym.registry:
    gym.register(id="WorldModel-v0", entry_point=f"{__name__}:_make")
