"""Training samples of a LeRobotDataset with action chunks, as `LeRobotDataset(delta_timestamps=...)` makes
them, without its per-sample cost on image datasets.

    from phase3_vla.frames import ChunkedFrames, open_training_set
    ds = open_training_set(folder, chunk_size=50, episodes=[0, 1, 2])     # first 3 demos
    ds[0]["action"].shape, ds[0]["action_is_pad"]                         # (50, 7), (50,) bool

Why: with delta timestamps, lerobot 0.4.4 fetches the chunk's 50 action rows through `hf_dataset[...]`,
which formats whole rows and so decodes both PNG images of all 50 frames to read 50 small vectors. Measured
here on 128 px images, batch 32, with both cores busy with other jobs: 1.22 s per batch that way against
0.06 s with this class (`python benchmarks/phase3_policy_speed.py --only baseline [--lerobot-chunks]`),
while the cpu profile's training step takes 0.3-0.45 s: lerobot's reads would have been ~3/4 of the time.
`ChunkedFrames` reads the frame itself through lerobot (images, state, task string) with no delta
timestamps, and the chunk from the action column held in memory, with lerobot's rule: indices past the
episode's end are clamped to its last frame and flagged in `action_is_pad`; observation keys get lerobot's
time axis of length 1 and `<key>_is_pad` = False. A test checks equality with lerobot's own output.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from phase3_vla.dataset import open_dataset


class ChunkedFrames(torch.utils.data.Dataset):
    """`ds[i]` of a LeRobotDataset opened without delta timestamps, plus `action` (chunk, dim) and
    `action_is_pad` (chunk,) for the SmolVLA chunk length; `len` and order are the dataset's."""

    def __init__(self, ds, chunk_size: int):
        if ds.delta_indices is not None:
            raise ValueError("open the LeRobotDataset without delta_timestamps; ChunkedFrames adds the chunk")
        self.ds, self.chunk_size = ds, chunk_size
        cols = ds.hf_dataset.with_format("numpy").select_columns(["action", "episode_index"])
        self.actions = torch.from_numpy(np.stack(cols["action"]).astype(np.float32))  # (N, action_dim)
        ep = np.asarray(cols["episode_index"])
        # Rows of one episode are contiguous (also when only some episodes are selected): [start, end) per row.
        change = np.flatnonzero(np.diff(ep)) + 1
        starts, ends = np.concatenate([[0], change]), np.concatenate([change, [len(ep)]])
        run = np.repeat(np.arange(len(starts)), ends - starts)
        self.end = torch.from_numpy(ends[run])
        self.obs_keys = [k for k in ds.meta.features if k.startswith("observation.")]

    def __len__(self) -> int:
        return len(self.ds)

    @property
    def meta(self):
        return self.ds.meta

    def __getitem__(self, i: int) -> dict:
        item = self.ds[i]
        for k in self.obs_keys:  # lerobot's delta_timestamps [0]: a time axis of one step, never padded
            item[k] = item[k].unsqueeze(0)
            item[f"{k}_is_pad"] = torch.zeros(1, dtype=torch.bool)
        steps = i + torch.arange(self.chunk_size)
        end = int(self.end[i])
        item["action"] = self.actions[steps.clamp(max=end - 1)]  # (chunk, action_dim)
        item["action_is_pad"] = steps >= end
        return item


def open_training_set(folder: str | Path, chunk_size: int, episodes: list[int] | None = None) -> ChunkedFrames:
    return ChunkedFrames(open_dataset(Path(folder), episodes=episodes), chunk_size)
