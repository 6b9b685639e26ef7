"""Data order and training randomness as pure functions of (seed, step).

This is what makes runs reproducible across restarts and process counts: the Trainer never keeps
hidden sampler state, so a resumed run, or one split over 2 processes or 4 accumulation steps, sees the
same samples with the same noise as a single uninterrupted process.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Sampler


def mix_seed(*xs: int) -> int:
    """A 63-bit seed mixed from integers (splitmix64-style): independent streams per (seed, step, ...)."""
    h = 0x9E3779B97F4A7C15
    for x in xs:
        h = (h ^ (x & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


class StepRNG:
    """Randomness for one micro-batch, independent of how the global batch is split.

    Each call draws `total` rows (the global batch) from a generator seeded by (seed, step, call number)
    and returns rows [offset, offset + count): the slice this process and accumulation step own.
    """

    def __init__(self, seed: int, step: int, offset: int, count: int, total: int, device: torch.device):
        self.seed, self.step, self.offset, self.count, self.total = seed, step, offset, count, total
        self.device = device
        self._calls = 0

    def generator(self) -> torch.Generator:
        g = torch.Generator(device=self.device)
        g.manual_seed(mix_seed(self.seed, self.step, self._calls))
        self._calls += 1
        return g

    def _slice(self, full: torch.Tensor) -> torch.Tensor:
        return full[self.offset:self.offset + self.count]

    def randn(self, *shape: int) -> torch.Tensor:
        return self._slice(torch.randn(self.total, *shape, generator=self.generator(), device=self.device))

    def rand(self, *shape: int) -> torch.Tensor:
        return self._slice(torch.rand(self.total, *shape, generator=self.generator(), device=self.device))


class StepBatchSampler(Sampler):
    """Yields each process's micro-batches of indices; the order is a pure function of (seed, step).

    The index stream is the concatenation of per-epoch permutations; optimizer step s owns stream
    positions [s*G, (s+1)*G) for global batch G, split as [accumulation][process][micro-batch].
    """

    def __init__(self, n: int, global_batch: int, micro: int, accum: int, rank: int, world: int,
                 seed: int, start_step: int, max_steps: int):
        self.n, self.G, self.micro, self.accum = n, global_batch, micro, accum
        self.rank, self.world, self.seed = rank, world, seed
        self.start_step, self.max_steps = start_step, max_steps

    @lru_cache(maxsize=4)
    def _perm(self, epoch: int) -> np.ndarray:
        g = torch.Generator().manual_seed(mix_seed(self.seed, 0xDA7A, epoch))
        return torch.randperm(self.n, generator=g).numpy()

    def global_indices(self, step: int) -> np.ndarray:
        """The G dataset indices of optimizer step `step` (may straddle an epoch boundary)."""
        epochs, within = np.divmod(np.arange(step * self.G, (step + 1) * self.G), self.n)
        return np.concatenate([self._perm(int(e))[within[epochs == e]] for e in np.unique(epochs)])

    def __iter__(self):
        for step in range(self.start_step, self.max_steps):
            idx = self.global_indices(step)
            for a in range(self.accum):
                off = (a * self.world + self.rank) * self.micro
                yield idx[off:off + self.micro].tolist()

    def __len__(self) -> int:
        return (self.max_steps - self.start_step) * self.accum
