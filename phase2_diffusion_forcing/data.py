"""Windows of consecutive frames for sequence training, cut from phase 1's data set.

    ds = WindowDataset(AtariWorldModelDataset.for_game("Breakout", split="train"), window=8)
    item = ds[0]   # frames (K + L, 3, H, W) uint8, actions (K + L - 1,), mask (K + L,), episode, t

Item i is the window of L frames starting at step s of an episode, preceded by the K frames before it:

    frames   positions 0 .. K-1        the K frames before the window (context only: no loss on them)
             positions K .. K+L-1      the window (each gets a loss)
    actions  actions[p] was taken on frames[p] (so frame p+1 is what it led to), p = 0 .. K+L-2
    mask     False where a position lies before the episode's first frame (zeros there, action NOOP)

Every window lies inside one episode; windows start at every step s with s + L <= T (T+1 frames in an
episode of T steps), so a split of E episodes of lengths T_e holds sum(T_e - L + 1) windows.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from common.errors import DataError
from phase1_world_model.dataset import AtariWorldModelDataset


class WindowDataset(Dataset):
    def __init__(self, base: AtariWorldModelDataset, window: int):
        self.base, self.L, self.K = base, window, base.context
        starts = []
        for e, T in enumerate(base.lengths):
            s = np.arange(1, int(T) - window + 2)  # window frames s .. s+L-1, all <= T; s >= 1 (frame 0 has no past)
            starts.append(np.stack([np.full_like(s, e), s], 1))
        self.starts = np.concatenate(starts) if starts else np.zeros((0, 2), np.int64)
        if len(self.starts) == 0:
            raise DataError(f"{base.root} ({base.split}): no episode has the {window + 1} frames a window of "
                             f"{window} needs; use a shorter model.window")

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        e, s = (int(v) for v in self.starts[i])
        b, K, L = self.base, self.K, self.L
        frames, mask = b.episode_frames(e, s - K, s + L)  # K context frames, then the L window frames
        actions, _ = b.episode_actions(e, s - K, s + L - 1)  # the actions between them
        return {"frames": torch.from_numpy(frames), "actions": torch.from_numpy(actions),
                "mask": torch.from_numpy(mask), "episode": torch.tensor(b.episodes[e]), "t": torch.tensor(s)}
