"""`AtariWorldModelDataset`: (K past frames, K past actions) -> next frame, reward, end, from a collected data set.

    ds = AtariWorldModelDataset.for_game("Breakout", split="train", context=4)   # outputs/phase1/datasets/Breakout
    ds = AtariWorldModelDataset("path/to/folder", split="test")
    item = ds[0]

One item per agent step t of every episode of the split (len = the split's total steps). For step t:

    obs       uint8 (K, 3, H, W)   frames t-K+1 .. t (obs[-1] is the frame the action was taken on)
    act       int64 (K,)           actions t-K+1 .. t: act[k] was taken while obs[k] was shown
    next_obs  uint8 (3, H, W)      frame t+1, what act[-1] led to
    reward    int64 ()             sign of the step's reward: -1, 0 or 1 (add 1 for a 3-class index)
    end       bool ()              terminated or life lost at step t: DIAMOND's end-of-episode for training
    terminated, life_loss, truncated  bool ()   the raw flags, for consumers that want another rule
    mask      bool (K,)            False where the context reaches before the episode's first frame
    episode, t  int64 ()           where the item comes from (for tests and debugging)

Context never crosses episodes. Positions before the first frame (mask False) hold zeros in obs and
action 0 (NOOP) in act. Why zeros rather than copies of the first frame: a copied frame would pretend
the game stood still before the reset (a fake zero velocity the model could learn from), while an
all-black frame never occurs in Atari play, so "no information" is unambiguous even without the mask.
Life losses do not cut the context: the game continues on the same screen, so frames across a life loss
are real dynamics; `end` marks the step for the reward/end model.

Memory: the split's frames are loaded at construction, decompressed once into one uint8 array in
(N, 3, H, W) layout (12 KB per 64x64 frame: 100 Breakout episodes ~ 20k frames ~ 0.25 GB, 100 Pong
episodes ~ 1 GB). Every file of the split is read and checked there, so a corrupt file stops the
constructor with the names of all bad files instead of surfacing halfway through training. DataLoader
workers (fork) share the arrays without copying them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from common.errors import DataError
from phase1_world_model.config import SPLITS
from phase1_world_model.envs import canonical_game
from phase1_world_model.storage import (CorruptDatasetError, CorruptEpisodeError, collect_command, find_dataset,
                                        load_episode, read_index, split_of)


class AtariWorldModelDataset(Dataset):
    def __init__(self, root: str | Path, split: str = "train", context: int = 4,
                 test_fraction: float | None = None):
        """root: a data set folder made by collect. test_fraction: None = the split recorded in index.json,
        else recompute it by episode number (storage.split_of) with this fraction."""
        if split not in SPLITS:
            raise ValueError(f"split={split!r}; allowed values: {', '.join(SPLITS)}")
        if context < 1:
            raise ValueError(f"context={context}; must be >= 1")
        self.root, self.split, self.context = Path(root), split, context
        self.index = read_index(self.root)
        self.game = self.index["game"]
        self.action_meanings: list[str] = self.index["action_meanings"]
        self.num_actions = len(self.action_meanings)
        entries = [e for e in self.index["episodes"]
                   if (e["split"] if test_fraction is None else split_of(e["episode"], test_fraction)) == split]
        if not entries:
            raise DataError(f"{self.root} has no {split} episodes ({len(self.index['episodes'])} in all): "
                             f"collect more episodes (episodes=N) or change test_fraction")
        self.episodes = [e["episode"] for e in entries]
        self._load(entries)

    @classmethod
    def for_game(cls, game: str, root: str = "outputs", folder: str = "", **kwargs) -> "AtariWorldModelDataset":
        """The data set of `game` at its default place; ArtifactNotFoundError names the collect command."""
        return cls(find_dataset(canonical_game(game), root, folder), **kwargs)

    def _load(self, entries: list[dict]) -> None:
        frames, rams, steps, errors = [], [], {k: [] for k in ("actions", "rewards", "terminated", "truncated",
                                                               "life_loss")}, []
        for e in entries:
            try:
                ep = load_episode(self.root / e["file"])
                if ep.length != e["length"] or ep.meta["episode"] != e["episode"]:
                    raise CorruptEpisodeError(self.root / e["file"], f"holds episode {ep.meta['episode']} of "
                                              f"{ep.length} steps, index.json says {e['episode']} of {e['length']}")
            except CorruptEpisodeError as err:
                errors.append(err)
                continue
            frames.append(ep.frames.transpose(0, 3, 1, 2))  # (T+1, H, W, 3) -> (T+1, 3, H, W)
            rams.append(ep.ram)
            for k in steps:
                steps[k].append(getattr(ep, k))
        if errors:
            raise CorruptDatasetError(self.root, errors, f"Nothing was loaded. Repair with: "
                                      f"{collect_command(self.game)} data.folder={self.root} repair=true")
        lengths = np.array([len(a) for a in steps["actions"]], np.int64)
        # Episode e's frames start at frame_start[e] in the concatenated array, its steps at step_start[e];
        # an episode of T steps owns T+1 frames, hence the different offsets.
        self.step_start = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        self.frame_start = self.step_start + np.arange(len(lengths))
        self.frames = np.ascontiguousarray(np.concatenate(frames))
        # The emulator's RAM per frame (aligned with self.frames), when every episode recorded it; else None.
        self.ram = np.concatenate(rams) if all(r is not None for r in rams) else None
        for k, arrays in steps.items():
            setattr(self, k, np.concatenate(arrays))
        # Item i -> (episode position in this split, step t): every step of every episode is one item.
        self.item_episode = np.repeat(np.arange(len(lengths)), lengths)
        self.item_t = np.arange(int(lengths.sum())) - self.step_start[self.item_episode]
        self.lengths = lengths

    def __len__(self) -> int:
        return len(self.item_t)

    def episode_frames(self, e: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Frames start .. stop-1 of the episode at position e of this split (frame t is the screen on which
        action t was chosen), black where the index is before the episode's first frame; and that mask of real
        frames. (stop - start, 3, H, W) uint8 and (stop - start,) bool."""
        if stop > self.lengths[e] + 1:
            raise IndexError(f"frame {stop - 1} of episode position {e}, which has {self.lengths[e] + 1} frames")
        pos = np.arange(start, stop)
        mask = pos >= 0
        out = np.zeros((len(pos), *self.frames.shape[1:]), np.uint8)
        out[mask] = self.frames[self.frame_start[e] + pos[mask]]
        return out, mask

    def episode_ram(self, e: int, start: int, stop: int) -> np.ndarray:
        """The RAM of frames start .. stop-1 (all real: start >= 0) of the episode at position e, (stop - start,
        128) uint8; DataError when the data set did not record RAM, naming the command that re-collects it."""
        if self.ram is None:
            raise DataError(f"{self.root} has no emulator RAM (collected before it was recorded). Re-collect it into "
                            f"a new folder (the same episodes; collection is deterministic): "
                            f"{collect_command(self.game)} data.folder=<new folder>, then pass data.folder=<new folder>")
        if start < 0 or stop > self.lengths[e] + 1:
            raise IndexError(f"RAM of frames {start}..{stop - 1} of episode position {e} ({self.lengths[e] + 1} frames)")
        return self.ram[self.frame_start[e] + start:self.frame_start[e] + stop]

    def episode_actions(self, e: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Actions start .. stop-1 of the episode at position e, NOOP (0 in every ALE action set) before its first
        step; and the mask of real actions. (stop - start,) int64 and bool."""
        if stop > self.lengths[e]:
            raise IndexError(f"step {stop - 1} of episode position {e}, which has {self.lengths[e]} steps")
        pos = np.arange(start, stop)
        mask = pos >= 0
        out = np.zeros(len(pos), np.int64)
        out[mask] = self.actions[self.step_start[e] + pos[mask]]
        return out, mask

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        e, t, K = int(self.item_episode[i]), int(self.item_t[i]), self.context
        obs, mask = self.episode_frames(e, t - K + 1, t + 1)  # the context: frames t-K+1 .. t
        act, _ = self.episode_actions(e, t - K + 1, t + 1)  # and the actions chosen on them
        s = self.step_start[e] + t
        terminated, life_loss = bool(self.terminated[s]), bool(self.life_loss[s])
        return {
            "obs": torch.from_numpy(obs), "act": torch.from_numpy(act),
            "next_obs": torch.from_numpy(self.episode_frames(e, t + 1, t + 2)[0][0]),
            "reward": torch.tensor(int(np.sign(self.rewards[s])), dtype=torch.int64),
            "end": torch.tensor(terminated or life_loss), "terminated": torch.tensor(terminated),
            "life_loss": torch.tensor(life_loss), "truncated": torch.tensor(bool(self.truncated[s])),
            "mask": torch.from_numpy(mask),
            "episode": torch.tensor(self.episodes[e], dtype=torch.int64), "t": torch.tensor(t, dtype=torch.int64),
        }

    def class_counts(self) -> tuple[list[int], list[int]]:
        """How many items have sign(reward) -1 / 0 / +1, and end False / True (for class weighting)."""
        r = np.sign(self.rewards).astype(np.int64) + 1
        end = (self.terminated | self.life_loss).astype(np.int64)
        return np.bincount(r, minlength=3).tolist(), np.bincount(end, minlength=2).tolist()

    def __repr__(self) -> str:
        return (f"AtariWorldModelDataset({self.game}, {self.split}: {len(self.episodes)} episodes, {len(self)} "
                f"steps, context {self.context}, frames {tuple(self.frames.shape[1:])}, {self.num_actions} actions)")
