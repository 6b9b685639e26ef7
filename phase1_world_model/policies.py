"""Collection policies: they see nothing of the game, only their own random generator.

Each policy is built per episode with that episode's generator, so an episode is a function of its seed.
"""
from __future__ import annotations

import numpy as np


class RandomPolicy:
    """A uniformly random action at every agent step."""

    def __init__(self, num_actions: int, rng: np.random.Generator):
        self.num_actions, self.rng = num_actions, rng

    def act(self) -> int:
        return int(self.rng.integers(self.num_actions))


class StickyRandomPolicy(RandomPolicy):
    """Repeat the previous action with probability `repeat_prob`, else draw a uniform one (maybe the same).

    Why: a uniform policy jitters (LEFT, RIGHT, NOOP, ...), so the paddle hardly leaves the middle and the
    world model rarely sees the screen edges or long moves. Persistence gives runs of one action with a
    mean length of 1 / ((1 - p) (1 - 1/num_actions)) steps: 5.3 for p = 0.75 with 4 actions.
    """

    def __init__(self, num_actions: int, rng: np.random.Generator, repeat_prob: float):
        super().__init__(num_actions, rng)
        self.repeat_prob = repeat_prob
        self.last: int | None = None

    def act(self) -> int:
        if self.last is None or self.rng.random() >= self.repeat_prob:
            self.last = super().act()
        return self.last


def make_policy(name: str, num_actions: int, rng: np.random.Generator, repeat_prob: float = 0.75):
    if name == "random":
        return RandomPolicy(num_actions, rng)
    if name == "sticky_random":
        return StickyRandomPolicy(num_actions, rng, repeat_prob)
    raise ValueError(f"unknown policy {name!r}; allowed: random, sticky_random")
