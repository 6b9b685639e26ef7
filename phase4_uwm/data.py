"""Phase 3's demonstrations as UWM training clips.

    from phase4_uwm.data import load_demos, Clips
    demos = load_demos(folder, image_size=64)       # every frame of both cameras in memory, uint8, plus actions
    clips = Clips(demos, ClipConfig(), stats)       # clips[i]: current frames, action chunk, future frames, task

A clip at time t of an episode (the paper's horizons with the defaults):

    obs     frames t-1, t                      (obs_frames, both views)   -> the observation encoder
    action  a_t .. a_{t+15}                    (chunk, normalised)        -> action tokens
    future  frames t+15, t+16                  (future_frames, both views: the last ones the chunk reaches)

Indices before the episode's start or past its end are clamped to its first/last frame, lerobot's rule; the
action steps past the end are flagged in `action_is_pad` and left out of the action loss (they are not actions
anyone took). Every frame time t of every episode is a sample.

Reading: phase 3 stores PNG images inside parquet (lerobot's format), which costs ~1 ms a frame to decode, so
`load_demos` decodes every frame once, resizes it (area) to the tokenizer's side and caches the arrays under
`<run.root>/phase4/cache/`, keyed by the data set's identity (its meta/ digest) and the side; a cache that does not
match its data set is rebuilt, never trusted.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common.checkpoint import atomic_write
from common.config import to_dict
from common.errors import DataError
from phase4_uwm.config import ClipConfig

IMAGE_KEYS = ("observation.images.image", "observation.images.image2")  # agentview, wrist: phase3_vla.dataset


@dataclass
class Demos:
    """Every frame of a data set, in episode order."""

    frames: torch.Tensor  # (N, V, 3, S, S) uint8, V = 2 views
    actions: torch.Tensor  # (N, A) float32, raw (the data set's units)
    state: torch.Tensor  # (N, 8) float32: the robot's proprioception (phase 3's observation.state; baselines use it)
    episode: torch.Tensor  # (N,) int64: episode index in the data set
    task: torch.Tensor  # (N,) int64: LIBERO task id of the frame's episode
    instructions: dict[int, str]  # LIBERO task id -> instruction
    identity: dict  # phase3_vla.dataset.dataset_identity of the source

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def num_episodes(self) -> int:
        return int(self.episode.max()) + 1 if len(self) else 0

    def select(self, episodes: int) -> "Demos":
        """The first `episodes` episodes (0 = all): the data-size ablation."""
        if episodes <= 0 or episodes >= self.num_episodes:
            return self
        keep = self.episode < episodes
        return Demos(self.frames[keep], self.actions[keep], self.state[keep], self.episode[keep], self.task[keep],
                     self.instructions, {**self.identity, "episodes_used": episodes})


def concat_demos(*parts: Demos) -> Demos:
    """Several data sets as one (episode indices renumbered so that they stay distinct and contiguous)."""
    eps, off = [], 0
    for d in parts:
        eps.append(d.episode + off)
        off += d.num_episodes
    return Demos(torch.cat([d.frames for d in parts]), torch.cat([d.actions for d in parts]),
                 torch.cat([d.state for d in parts]), torch.cat(eps), torch.cat([d.task for d in parts]),
                 {k: v for d in parts for k, v in d.instructions.items()}, {"parts": [d.identity for d in parts]})


def resize_frames(images: np.ndarray, size: int) -> np.ndarray:
    """(n, H, W, 3) uint8 -> (n, 3, size, size) uint8, area averaging (exact block means when H is a multiple)."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="area")
    return x.round().clamp(0, 255).to(torch.uint8).numpy()


def video_frames(video, size: int) -> torch.Tensor:
    """An episode video as the evaluation loops write it ((T, H, 2W, 3): agent view | wrist) -> (T, V=2, 3, size,
    size) uint8, area-resized as the demonstrations are (resize_frames)."""
    import imageio.v3 as iio

    frames = np.asarray(iio.imread(video, plugin="pyav"))
    w = frames.shape[2] // 2
    return torch.from_numpy(np.stack([resize_frames(np.ascontiguousarray(frames[:, :, :w]), size),
                                      resize_frames(np.ascontiguousarray(frames[:, :, w:]), size)], axis=1))


def played_episodes(folders: list[str], tasks: list[int], size: int, with_actions: bool = False) -> list[dict]:
    """Every recorded episode of `tasks` in evaluation folders (phase 3's and phase 4's `episodes/` + `media/`), in
    a fixed order: {task, init_state, success, frames (T, V, 3, S, S) uint8, and with_actions: actions (T, A),
    state (T, 8)}. Refuses an episode without its video (all must be recorded, or the failures kept would be only
    the first few), or without its actions when they are needed, and names an unreadable one."""
    from phase3_vla.rollouts import video_stem

    out = []
    for folder in map(lambda f: Path(f).expanduser().resolve(), folders):
        logs = sorted((folder / "episodes").glob("task_*_ep_*.json"))
        if not logs:
            raise DataError(f"played episodes: {folder} holds no episodes/task_*_ep_*.json; play some with e.g. "
                            "python -m phase4_uwm.evaluate parts=[policy] eval.first_state=25 eval.videos=-1 "
                            "out=<folder>")
        missing, no_actions = [], []
        for log in logs:
            rec = json.loads(log.read_text())
            if int(rec["task_id"]) not in tasks:
                continue
            video = (Path(rec["video"]) if rec.get("video")
                     else video_stem(folder, rec["task_id"], rec["episode"]).with_suffix(".mp4"))
            if not video.exists():
                missing.append(log.name)
                continue
            if with_actions and not (rec.get("played") and Path(rec["played"]).exists()):
                no_actions.append(log.name)
                continue
            try:
                ep = {"task": int(rec["task_id"]), "init_state": int(rec["init_state"]),
                      "success": bool(rec["success"]), "frames": video_frames(video, size)}
                if with_actions:
                    with np.load(rec["played"]) as z:
                        ep["actions"], ep["state"] = torch.from_numpy(z["actions"]), torch.from_numpy(z["state"])
                    if not len(ep["actions"]) == len(ep["state"]) == len(ep["frames"]):
                        raise ValueError(f"{len(ep['frames'])} frames, {len(ep['actions'])} actions, "
                                         f"{len(ep['state'])} states")
            except Exception as e:  # noqa: BLE001  (any decoder error: name the file)
                raise DataError(f"played episodes: {video} or its actions are unreadable ({type(e).__name__}: {e}); "
                                f"delete the episode's log {log} and play it again") from e
            out.append(ep)
        if missing or no_actions:
            bad = missing or no_actions
            raise DataError(f"played episodes: {len(bad)} episode(s) of {folder} have no "
                            f"{'video' if missing else 'recorded actions (episodes played before actions were kept)'}"
                            f" ({', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}): every episode must be recorded."
                            " Play them into a fresh folder with eval.videos=-1 (out=<new folder>)")
    return out


def played_starts(episodes: list[dict]) -> list[dict]:
    """Played episodes' starts as training-start records (LIBERO's fixed states): evaluating there is then refused."""
    from phase3_vla.starts import fixed_states, state_digest

    tables: dict[int, np.ndarray] = {}
    recs = []
    for r in episodes:
        table = tables.setdefault(r["task"], fixed_states(r["task"]))
        recs.append({"task_id": r["task"], "kind": "fixed", "seed": r["init_state"],
                     "digest": state_digest(table[r["init_state"]]), "episode_index": -1})
    return recs


def played_demos(episodes: list[dict], instructions: dict[int, str]) -> Demos:
    """Played episodes (played_episodes(..., with_actions=True)) as a data set like the demonstrations, failures
    included: a world model trained on them sees what chunks that fail lead to."""
    if not episodes:
        raise DataError("played episodes: none to train on")
    n = [len(e["frames"]) for e in episodes]
    digest = hashlib.sha256(b"".join(e["frames"].numpy().tobytes()[:4096] + e["actions"].numpy().tobytes()
                                     for e in episodes)).hexdigest()[:16]
    return Demos(torch.cat([e["frames"] for e in episodes]), torch.cat([e["actions"] for e in episodes]).float(),
                 torch.cat([e["state"] for e in episodes]).float(),
                 torch.cat([torch.full((k,), i, dtype=torch.int64) for i, k in enumerate(n)]),
                 torch.cat([torch.full((k,), e["task"], dtype=torch.int64) for k, e in zip(n, episodes)]),
                 {t: instructions.get(t, "") for t in sorted({e["task"] for e in episodes})},
                 {"played_episodes": len(episodes), "failed": sum(not e["success"] for e in episodes),
                  "frames": sum(n), "digest": digest})


def _hwc_uint8(im) -> np.ndarray:
    """A frame as lerobot hands it (a (3, H, W) float tensor in [0, 1] through its transform, or a PIL image)."""
    if isinstance(im, torch.Tensor):
        return (im.permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    return np.asarray(im.convert("RGB"))


def _decode(folder: Path, size: int) -> dict[str, np.ndarray]:
    from phase3_vla.dataset import open_dataset
    from phase3_vla.starts import read_starts

    ds = open_dataset(folder)
    table = ds.hf_dataset.with_format("numpy")
    n = len(table)
    actions = np.stack(table.select_columns(["action"])["action"]).astype(np.float32)
    state = np.stack(table.select_columns(["observation.state"])["observation.state"]).astype(np.float32)
    episode = np.asarray(table.select_columns(["episode_index"])["episode_index"], dtype=np.int64)
    task_of_episode = {r.episode_index: r.task_id for r in read_starts(folder)}
    missing = sorted(set(episode.tolist()) - set(task_of_episode))
    if missing:
        raise DataError(f"{folder}/meta/starts.json has no record of episode(s) {missing[:5]}: collect the data set "
                        "again with python -m phase3_vla.collect")
    task = np.asarray([task_of_episode[e] for e in episode], dtype=np.int64)
    frames = np.empty((n, len(IMAGE_KEYS), 3, size, size), np.uint8)
    cols = ds.hf_dataset.select_columns(list(IMAGE_KEYS))
    step = 256
    for a in range(0, n, step):
        rows = cols[a:a + step]
        for v, key in enumerate(IMAGE_KEYS):
            frames[a:a + step, v] = resize_frames(np.stack([_hwc_uint8(im) for im in rows[key]]), size)
    tasks = ds.hf_dataset.select_columns(["task_index"])["task_index"]
    names = {int(i): str(t) for t, i in zip(ds.meta.tasks.index, ds.meta.tasks["task_index"])}
    instructions = {}
    for ti, e in zip(tasks, episode):
        instructions.setdefault(task_of_episode[int(e)], names.get(int(ti), ""))
    return {"frames": frames, "actions": actions, "state": state, "episode": episode, "task": task,
            "instructions": np.asarray(json.dumps(instructions))}


def load_demos(folder: str | Path, image_size: int, cache_root: str | Path | None = None) -> Demos:
    """Every frame of a phase 3 LeRobotDataset at `image_size` px, from the cache when it matches the data set."""
    from phase3_vla.dataset import dataset_identity

    folder = Path(folder)
    if not (folder / "meta" / "info.json").exists():
        raise DataError(f"{folder} is not a LeRobotDataset (no meta/info.json). Make it with: python -m "
                        "phase3_vla.collect profile=cpu")
    identity = dataset_identity(folder)
    key = hashlib.sha256(json.dumps({k: identity.get(k) for k in ("meta_sha256", "frames", "episodes")},
                                    sort_keys=True).encode()).hexdigest()[:16]
    cache = Path(cache_root) / f"{folder.name}-{key}-{image_size}px-v2.npz" if cache_root else None
    arrays = None
    if cache is not None and cache.exists():
        try:
            with np.load(cache) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError) as e:  # a damaged cache is rebuilt, and said so
            print(f"phase4: cache {cache} is unreadable ({e}); decoding the data set again", flush=True)
    if arrays is None:
        arrays = _decode(folder, image_size)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(cache, lambda f: np.savez(f, **arrays))
    instructions = {int(k): v for k, v in json.loads(str(arrays["instructions"])).items()}
    return Demos(torch.from_numpy(arrays["frames"]), torch.from_numpy(arrays["actions"]),
                 torch.from_numpy(arrays["state"]), torch.from_numpy(arrays["episode"]), torch.from_numpy(arrays["task"]), instructions, identity)


@dataclass
class ActionStats:
    """Per-dimension min and max of the training actions; actions are scaled to [-1, 1] (the authors' rule)."""

    low: list[float]
    high: list[float]

    @classmethod
    def of(cls, actions: torch.Tensor) -> "ActionStats":
        return cls(actions.min(0).values.tolist(), actions.max(0).values.tolist())

    def normalize(self, a: torch.Tensor) -> torch.Tensor:
        return scale_to_unit(a, torch.tensor(self.low), torch.tensor(self.high))

    def unnormalize(self, a: torch.Tensor) -> torch.Tensor:
        return scale_from_unit(a, torch.tensor(self.low), torch.tensor(self.high))


def _span(a: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    lo, hi = low.to(a), high.to(a)
    return lo, torch.where(hi - lo > 1e-6, hi, lo + 2.0)  # a constant dimension maps to -1


def scale_to_unit(a: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Actions -> [-1, 1] per dimension, by the training actions' min (low) and max (high)."""
    lo, hi = _span(a, low, high)
    return 2 * (a - lo) / (hi - lo) - 1


def scale_from_unit(a: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """The inverse of `scale_to_unit` (inputs clamped to [-1, 1] first)."""
    lo, hi = _span(a, low, high)
    return (a.clamp(-1, 1) + 1) / 2 * (hi - lo) + lo


def episode_bounds(episode: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For every row, the first and the last row of its episode (rows of an episode are contiguous)."""
    ep = episode.numpy()
    change = np.flatnonzero(np.diff(ep)) + 1
    starts, ends = np.concatenate([[0], change]), np.concatenate([change, [len(ep)]])
    run = np.repeat(np.arange(len(starts)), ends - starts)
    return torch.from_numpy(starts[run]), torch.from_numpy(ends[run] - 1)


def clip_indices(episode: torch.Tensor, cfg: ClipConfig, action_offset: int = 0) -> dict[str, torch.Tensor]:
    """For every frame t: the rows of its current frames, its action chunk (a_{t+offset} ..), its future frames, and
    the pad mask of the chunk (steps outside the episode, clamped to its first/last action as lerobot does). Pure
    index arithmetic, so it is tested on its own. Diffusion Policy's chunk starts at the first observation step
    (offset -(obs_frames - 1)); the UWM's at the current one (offset 0)."""
    n = len(episode)
    lo, hi = (b[:, None] for b in episode_bounds(episode))
    t = torch.arange(n)[:, None]
    obs = t + torch.arange(-cfg.obs_frames + 1, 1)[None]
    act = t + action_offset + torch.arange(cfg.chunk)[None]
    fut = t + cfg.chunk + torch.arange(-cfg.future_frames + 1, 1)[None]
    return {"obs": torch.maximum(torch.minimum(obs, hi), lo), "action": torch.maximum(torch.minimum(act, hi), lo),
            "action_is_pad": (act > hi) | (act < lo), "future": torch.minimum(fut, hi)}


class Clips(torch.utils.data.Dataset):
    """Map-style clips over `Demos` (one per frame). Items hold uint8 frames; the model scales and encodes them.

    `future_latents` (N, V, C, h, w), when given, replaces the future frames by the frozen tokenizer's latents of the
    same rows (encoded once: the tokenizer is frozen, so this is exact and spares a VAE pass per step)."""

    def __init__(self, demos: Demos, cfg: ClipConfig, stats: ActionStats, future_latents: torch.Tensor | None = None,
                 video_only_fraction: float = 0.0, seed: int = 0, imitate: torch.Tensor | None = None):
        self.demos, self.cfg, self.stats = demos, cfg, stats
        self.idx = clip_indices(demos.episode, cfg)
        self.actions = stats.normalize(demos.actions)
        self.latents = future_latents
        # Action-free samples (video only): a fixed subset, chosen once from the seed, marked has_action = False.
        g = torch.Generator().manual_seed(seed)
        self.has_action = torch.rand(len(demos), generator=g) >= video_only_fraction
        # imitate (N,) bool: False = the clip's actions condition the video loss but are not imitated (no action
        # loss), e.g. played episodes that failed; None = every clip is imitated
        self.imitate = torch.ones(len(demos), dtype=torch.bool) if imitate is None else imitate.bool()
        if len(self.imitate) != len(demos):
            raise ValueError(f"imitate has {len(self.imitate)} entries for {len(demos)} frames")

    def __len__(self) -> int:
        return len(self.demos)

    def __getitem__(self, i: int) -> dict:
        ix = self.idx
        fut = ix["future"][i]
        item = {"obs": self.demos.frames[ix["obs"][i]].transpose(0, 1),  # (V, obs_frames, 3, S, S) uint8
                "action": self.actions[ix["action"][i]],  # (chunk, A)
                "action_is_pad": ix["action_is_pad"][i],
                "task": self.demos.task[i],
                "has_action": self.has_action[i],
                "imitate": self.imitate[i]}
        if self.latents is not None:
            item["future"] = self.latents[fut].transpose(0, 1).float()  # (V, future_frames, C, h, w)
        else:
            item["future_frames"] = self.demos.frames[fut].transpose(0, 1)  # (V, future_frames, 3, S, S) uint8
        return item


def evenly_spaced(n: int, k: int) -> list[int]:
    """k indices spread over range(n) (validation clips, held-out evaluation clips)."""
    k = min(k, n)
    return np.linspace(0, n - 1, k).round().astype(int).tolist() if k else []


def demo_folder(cfg, split: str) -> Path:
    """Phase 3's data set of a split (base, new, base_val, new_val) named by cfg.data (and cfg.run.root), or an
    error that says how to make it."""
    from phase3_vla.training import require_dataset
    return require_dataset(cfg, split)


def cache_dir(root: str) -> Path:
    from common.runs import outputs_root
    return outputs_root(root) / "phase4" / "cache"


@torch.no_grad()
def encode_frames(tok, frames: torch.Tensor, batch: int = 128) -> torch.Tensor:
    """Latents (N, V, C, h, w) of uint8 frames (N, V, 3, S, S), `batch` frames at a time."""
    return torch.cat([tok.encode(frames[i:i + batch]) for i in range(0, len(frames), batch)])


def encode_all(tok, demos: Demos, cache, tag: str, batch: int = 128) -> torch.Tensor:
    """Latents (N, V, C, h, w) of every frame, from the cache when the tokenizer and data set match (fp16 on disk)."""
    key = hashlib.sha256(repr((tag, demos.identity.get("meta_sha256"), len(demos), float(tok.scale),
                               tok.cfg.kind, tok.cfg.image_size)).encode()).hexdigest()[:16]
    path = cache / f"latents-{key}.pt" if cache is not None else None
    if path is not None and path.exists():
        try:
            z = torch.load(path)
            if z.shape[0] == len(demos):
                return z.float()
        except (OSError, RuntimeError, EOFError) as e:
            print(f"phase4: latent cache {path} is unreadable ({e}); encoding again", flush=True)
    z = encode_frames(tok, demos.frames, batch)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: torch.save(z.half(), f))
    return z


def make_clips(cfg, tok, split: str, stats: ActionStats, episodes: int = 0,
               video_only: float = 0.0) -> Clips:
    size = cfg.pixel_size if cfg.tokenizer_kind == "pixel" else tok.cfg.image_size
    demos = load_demos(demo_folder(cfg, split), size, cache_dir(cfg.run.root)).select(episodes)
    z = encode_all(tok, demos, cache_dir(cfg.run.root), split)
    return Clips(demos, cfg.clip, stats, z, video_only, cfg.run.seed)


def held_out_clips(uwm, data, root: str, split: str) -> Clips:
    """Clips of a validation split for a trained UWM (its run's clip and tokenizer settings and action scaling; the
    collection named by this command's `data`)."""
    cfg = uwm.cfg
    cfg.data = type(cfg.data)(**{**to_dict(cfg.data), **to_dict(data)})
    cfg.run.root = root
    return make_clips(cfg, uwm.tokenizer, split, ActionStats(uwm.model.action_low.tolist(),
                                                             uwm.model.action_high.tolist()))
