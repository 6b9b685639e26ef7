"""Agents for the real game, and the loop that scores them.

    agent = PlanningAgent(Planner(model, cfg.planner), replan_every=1)   # or RandomAgent / StickyRandomAgent
    result, video = play_game(env, agent, env_seed, max_steps=1000, context=4, record=True)

The loop keeps the agent's `History` (the last K real frames and the K - 1 actions between them; at the start of a
game the first frame is repeated with NOOPs, as the game shows a still screen until the ball is launched) and, for
an agent whose model needs it (the emulator oracle), a snapshot of the emulator taken before every decision. The
decision time is the wall-clock of `agent.act`, so it includes all the imagination a plan needs.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass, field

import gymnasium as gym
import numpy as np
import torch

from phase1_world_model.envs import NOOP
from phase1_world_model.policies import RandomPolicy, StickyRandomPolicy
from phase5_integration.adapters import snapshot
from phase5_integration.planner import Planner
from phase5_integration.protocol import History


class RandomAgent:
    needs_state = False
    context = 1

    def __init__(self, num_actions: int, sticky: float = 0.0):
        self.num_actions, self.sticky = num_actions, sticky
        self.last_imagined = None

    def reset(self, rng: np.random.Generator) -> None:
        self.policy = (StickyRandomPolicy(self.num_actions, rng, self.sticky) if self.sticky
                       else RandomPolicy(self.num_actions, rng))

    def act(self, history: History) -> int:
        return self.policy.act()


class PlanningAgent:
    """Plans with `planner`, executes the first `replan_every` actions of each plan, then plans again."""

    def __init__(self, planner: Planner, replan_every: int = 1):
        self.planner, self.replan_every = planner, replan_every
        self.needs_state = planner.model.needs_state
        self.context = planner.model.context
        self.queue: deque[int] = deque()
        self.last_imagined: torch.Tensor | None = None  # imagined frames of the plan being executed
        self.plans = self.evaluated = 0

    def reset(self, rng: np.random.Generator) -> None:
        self.planner.reset()
        self.queue.clear()
        self.last_imagined = None

    def act(self, history: History) -> int:
        if not self.queue:
            plan = self.planner.plan(history)
            self.queue.extend(plan.actions[:self.replan_every])
            self.planner.shift(len(self.queue))
            self.last_imagined = plan.imagined_frames
            self.plans += 1
            self.evaluated += plan.evaluated
        elif self.last_imagined is not None:
            self.last_imagined = self.last_imagined[1:]
        return self.queue.popleft()


VIDEO_BAR = 2  # white columns between the real and the imagined frame of a recorded game (filmstrip.split cuts there)

@dataclass
class GameResult:
    env_seed: int
    score: float  # the game's own score (sum of raw rewards)
    lives_lost: int
    steps: int  # agent steps played
    game_over: bool  # the game ended (all lives lost); False = cut at max_steps
    decision_ms: float  # mean wall-clock of one agent decision
    decision_ms_max: float
    plans: int = 0  # planning calls (planner agents)
    imagined: int = 0  # candidate futures imagined in all
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _chw(obs: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(obs)).permute(2, 0, 1)


def play_game(env: gym.Env, agent, env_seed: int, agent_rng: np.random.Generator, max_steps: int, context: int,
              record: bool = False) -> tuple[GameResult, list[np.ndarray]]:
    """One real game (or its first max_steps steps). record: frames real | imagined-next (black when none)."""
    obs, info = env.reset(seed=env_seed)
    agent.reset(agent_rng)
    K = max(1, context)
    frames = deque([_chw(obs)] * K, maxlen=K)
    actions = deque([NOOP] * (K - 1), maxlen=max(1, K - 1))
    score, lives_lost, steps, over = 0.0, 0, 0, False
    times, video = [], []
    plans0, imagined0 = getattr(agent, "plans", 0), getattr(agent, "evaluated", 0)
    while steps < max_steps:
        hist = History(torch.stack(list(frames)), torch.tensor(list(actions)[:K - 1], dtype=torch.int64),
                       snapshot(env) if agent.needs_state else None)
        t0 = time.perf_counter()
        a = int(agent.act(hist))
        times.append(time.perf_counter() - t0)
        imagined = agent.last_imagined
        obs, reward, terminated, truncated, info = env.step(a)
        steps += 1
        score += float(reward)
        lives_lost += int(info["life_loss"])
        if record:
            guess = (imagined[0].permute(1, 2, 0).numpy() if imagined is not None and len(imagined)
                     else np.zeros_like(obs))
            video.append(np.concatenate([obs, np.full((obs.shape[0], VIDEO_BAR, 3), 255, np.uint8), guess], axis=1))
        frames.append(_chw(obs))
        actions.append(a)
        if terminated or truncated:
            over = bool(terminated)
            break
    t = np.asarray(times) * 1e3
    return GameResult(int(env_seed), score, lives_lost, steps, over, float(t.mean()), float(t.max()),
                      getattr(agent, "plans", 0) - plans0, getattr(agent, "evaluated", 0) - imagined0), video
