"""Atari through gymnasium + ale-py, with DIAMOND's protocol as the default.

    env = make_atari("Breakout")            # 64x64 RGB uint8 observations, 4 actions
    obs, info = env.reset(seed=123)         # info["noops"]: how many NOOP frames the reset played
    obs, reward, terminated, truncated, info = env.step(1)   # info["life_loss"], info["lives"]

The protocol is `<Game>NoFrameskip-v4`'s, built from `ALE/<Game>-v5` with its v5 defaults switched off:
the emulator runs one frame per ALE step and never repeats an action on its own (no sticky actions), and
the wrappers below add, from the inside out:

    ALE (frameskip=1, sticky actions off, minimal action set, 210x160 RGB)
      NoopReset(noop_max=30)      random start
      MaxAndSkip(4, max_pool)     one agent step = 4 frames; max over the last two
      LifeLossInfo                info["life_loss"] when lives went down during the step
      AreaResize(64)              210x160 -> 64x64, cv2.INTER_AREA

Each wrapper's docstring says why it is there. The ROMs ship inside the ale-py wheel: nothing is downloaded.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import asdict
from typing import Any

import cv2
import gymnasium as gym
import numpy as np

from phase1_world_model.config import AtariEnvConfig

NOOP = 0  # index of NOOP in every ALE action set (minimal and full); checked in make_atari
_NOOP_STREAM = 0x6E6F6F70  # separates the no-op count's random stream from other users of the same seed
_registered = False


def register() -> None:
    """gymnasium 1.x no longer imports ale-py's envs by itself: register them once."""
    global _registered
    if not _registered:
        import ale_py

        gym.register_envs(ale_py)
        _registered = True


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def game_names() -> list[str]:
    """Every ALE game gymnasium knows, in its CamelCase spelling (Breakout, MontezumaRevenge, ...)."""
    register()
    return sorted(m.group(1) for k in gym.registry if (m := re.fullmatch(r"ALE/(\w+)-v5", k)))


def canonical_game(name: str) -> str:
    """'breakout', 'Breakout', 'BreakoutNoFrameskip-v4' and 'ALE/Breakout-v5' all mean 'Breakout'."""
    stem = re.sub(r"(NoFrameskip)?-v\d+$", "", name.split("/")[-1])
    games = {_key(g): g for g in game_names()}
    if _key(stem) in games:
        return games[_key(stem)]
    close = difflib.get_close_matches(_key(stem), list(games), n=5, cutoff=0.5)
    hint = f"did you mean {', '.join(games[c] for c in close)}?" if close else \
        f"{len(games)} games are available, e.g. {', '.join(list(games.values())[:8])}, ..."
    raise ValueError(f"unknown ALE game {name!r}: {hint}")


class NoopReset(gym.Wrapper):
    """Reset, then play a random number (1..noop_max) of NOOP emulator frames.

    Why: the ALE is deterministic, so without it every episode would start from the very same state and a
    data set would hold many copies of one opening. The count is drawn from a generator seeded by the
    reset seed, so `reset(seed=s)` reproduces the same start exactly (the action-alignment test relies
    on it). No-ops are emulator frames, before the action repeat, as in the NoFrameskip-v4 protocol.
    """

    def __init__(self, env: gym.Env, noop_max: int):
        super().__init__(env)
        self.noop_max = noop_max
        self._rng = np.random.default_rng()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._rng = np.random.default_rng([seed, _NOOP_STREAM])
        obs, info = self.env.reset(seed=seed, options=options)
        n = int(self._rng.integers(1, self.noop_max + 1)) if self.noop_max > 0 else 0
        for _ in range(n):
            obs, _, terminated, truncated, info = self.env.step(NOOP)
            if terminated or truncated:  # cannot happen within 30 frames in any real game; be safe anyway
                obs, info = self.env.reset(options=options)
        return obs, {**info, "noops": n}


class MaxAndSkip(gym.Wrapper):
    """Repeat each action for `skip` emulator frames, sum the rewards, max-pool the last two frames.

    Why repeat: 60 Hz decisions are needlessly fine and make credit assignment and world-model rollouts
    4x longer; 15 Hz is the standard agent rate. Why max-pool: the Atari 2600 draws some objects only on
    alternate frames (flicker), so a single frame can miss them; the max of the last two shows them.
    The repeat stops early when the episode ends, so no frame after the end is ever played.
    """

    def __init__(self, env: gym.Env, skip: int, max_pool: bool = True):
        super().__init__(env)
        self.skip, self.max_pool = skip, max_pool

    def step(self, action):
        total = 0.0
        prev = last = None
        for _ in range(self.skip):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            prev, last = last, obs
            if terminated or truncated:
                break
        if self.max_pool and prev is not None:
            last = np.maximum(prev, last)
        return last, total, terminated, truncated, info


class LifeLossInfo(gym.Wrapper):
    """Add `info["life_loss"]` (lives went down during this agent step) and `info["lives"]`.

    Why: DIAMOND treats a lost life as the end of an episode for training (the end model and the
    imagined agent see it as terminal) while the real game goes on. Recording the flag, rather than
    resetting on it, keeps the full game in the data and leaves that choice to the consumer.
    Games without lives (Pong) report 0 lives and never lose one.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._lives = 0

    def _ale_lives(self) -> int:
        return int(self.env.unwrapped.ale.lives())

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._lives = self._ale_lives()
        return obs, {**info, "life_loss": False, "lives": self._lives}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = self._ale_lives()
        life_loss = lives < self._lives
        self._lives = lives
        return obs, reward, terminated, truncated, {**info, "life_loss": life_loss, "lives": lives}


class AreaResize(gym.ObservationWrapper):
    """210x160 RGB -> size x size RGB uint8 with area interpolation.

    Why 64x64 RGB: DIAMOND's resolution, small enough for a diffusion model on a CPU. Why INTER_AREA: it
    averages every source pixel into the target pixel, so small objects (Breakout's 2x4 ball) stay
    visible as a dimmer blob instead of appearing and vanishing as nearest/bilinear sampling skips them.
    The aspect ratio is not kept (as in DIAMOND): the world model only needs a consistent picture.
    """

    def __init__(self, env: gym.Env, size: int):
        super().__init__(env)
        self.size = size
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)

    def observation(self, obs: np.ndarray) -> np.ndarray:
        return cv2.resize(obs, (self.size, self.size), interpolation=cv2.INTER_AREA)


def make_atari(game: str, cfg: AtariEnvConfig | None = None, render_mode: str | None = None,
               **overrides: Any) -> gym.Env:
    """An ALE game (any name `canonical_game` accepts) under `cfg` (DIAMOND's protocol by default).

    `overrides` replace single fields of cfg, e.g. `make_atari("Pong", size=84, noop_max=0)`.
    `env.unwrapped.get_action_meanings()` names the actions ("NOOP", "FIRE", "RIGHT", ...).
    """
    cfg = AtariEnvConfig(**{**asdict(cfg or AtariEnvConfig()), **overrides})
    cfg.check()
    register()
    name = canonical_game(game)
    env = gym.make(f"ALE/{name}-v5", obs_type="rgb", frameskip=1,
                   repeat_action_probability=cfg.repeat_action_probability,
                   full_action_space=cfg.full_action_space, max_num_frames_per_episode=cfg.max_frames,
                   render_mode=render_mode)
    meanings = env.unwrapped.get_action_meanings()
    if meanings[NOOP] != "NOOP":  # the no-op reset relies on it; true for every ALE game today
        raise RuntimeError(f"{name}: action {NOOP} is {meanings[NOOP]!r}, expected 'NOOP'")
    env = NoopReset(env, cfg.noop_max)
    env = MaxAndSkip(env, cfg.frame_skip, cfg.max_pool)
    env = LifeLossInfo(env)
    return AreaResize(env, cfg.size)


def protocol(game: str, cfg: AtariEnvConfig) -> dict:
    """What a data set records about how it was made (stored in every episode file and in index.json)."""
    name = canonical_game(game)
    return {"game": name, "env_id": f"ALE/{name}-v5", **asdict(cfg)}
