"""The on-disk format of a phase 1 data set, shared by collect (writer) and dataset / show_batch (readers).

A data set is one folder, by default `outputs/phase1/datasets/<Game>/`:

    episode_000000.npz   one compressed file per episode (np.savez_compressed), written atomically
    episode_000001.npz
    ...
    index.json           rebuilt from the episode files by every collect run (game, protocol, episodes)
    media/               pictures drawn by show_batch

An episode of T agent steps holds

    frames      uint8   (T+1, H, W, 3)  frames[0] = the observation after reset, frames[t+1] = after step t
    actions     int64   (T,)            actions[t] was taken when frames[t] was shown and led to frames[t+1]
    rewards     float32 (T,)            raw game reward of step t (summed over the repeated frames)
    terminated  bool    (T,)            the game ended at step t (only the last step can be True)
    truncated   bool    (T,)            the episode was cut at step t by a frame or step cap (idem)
    life_loss   bool    (T,)            lives went down during step t
    ram         uint8   (T+1, 128)      the emulator's RAM when frames[t] was shown (after the step's last
                                        emulator frame); optional: data sets collected before it was recorded
                                        lack it, and only the game metrics (breakout.py) need it
    meta        str                     JSON: format version, episode number, its env seed and no-op count,
                                        the env protocol, the collection settings, the action meanings

Every reader goes through `load_episode`, which checks all of the above and raises CorruptEpisodeError
naming the file; nothing is ever skipped silently.
"""
from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.checkpoint import atomic_write, read_npz
from common.errors import UserError
from common.runs import ArtifactNotFoundError, outputs_root

FORMAT_VERSION = 1
INDEX = "index.json"
EPISODE_RE = re.compile(r"^episode_(\d{6})\.npz$")
RAM_BYTES = 128  # the Atari 2600's RAM
STEP_ARRAYS = {"actions": np.int64, "rewards": np.float32, "terminated": np.bool_, "truncated": np.bool_,
               "life_loss": np.bool_}


class CorruptEpisodeError(UserError, RuntimeError):
    """One episode file cannot be read or does not follow the format; the message names the file."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"corrupt episode file {self.path}: {reason}")


class CorruptDatasetError(UserError, RuntimeError):
    """Some episode files of a data set are corrupt or missing; the message lists every one by name."""

    def __init__(self, root: Path, errors: list[CorruptEpisodeError], hint: str):
        self.root, self.errors = Path(root), errors
        lines = "\n".join(f"  {e.path.name}: {e.reason}" for e in errors)
        super().__init__(f"{len(errors)} bad episode file(s) in {self.root}:\n{lines}\n{hint}")


def collect_command(game: str) -> str:
    return f"python -m phase1_world_model.collect data.game={game} profile=cpu"


def episode_name(i: int) -> str:
    return f"episode_{i:06d}.npz"


def dataset_dir(game: str, root: str = "outputs", folder: str = "") -> Path:
    """`folder` if given (relative to the current directory), else <root>/phase1/datasets/<game>/."""
    return Path(folder).expanduser().resolve() if folder else outputs_root(root) / "phase1" / "datasets" / game


def find_dataset(game: str, root: str = "outputs", folder: str = "") -> Path:
    """The data set folder of `game`, or ArtifactNotFoundError naming the command that makes it."""
    path = dataset_dir(game, root, folder)
    if not (path / INDEX).exists():
        what = "does not exist" if not path.exists() else f"has no {INDEX}"
        raise ArtifactNotFoundError(
            f"phase 1 data set {path} {what}. Make it with: {collect_command(game)}"
            + (f" data.folder={path}" if folder else "") + " (an interrupted collection is continued by the same command)")
    return path


def split_of(episode: int, test_fraction: float) -> str:
    """Deterministic split by episode number, spread evenly: with 0.1, episodes 9, 19, 29, ... are test.

    Episode i is test when floor((i+1) f) > floor(i f), i.e. when the running count of test episodes
    steps up, so any prefix 0..n-1 of the episodes holds round(n f) test episodes (+-1).
    """
    return "test" if int((episode + 1) * test_fraction) > int(episode * test_fraction) else "train"


@dataclass
class Episode:
    frames: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    life_loss: np.ndarray
    meta: dict
    ram: np.ndarray | None = None

    @property
    def length(self) -> int:
        return len(self.actions)

    def summary(self, file: str) -> dict:
        """This episode's entry in index.json (the split is added by the index writer)."""
        return {"file": file, "episode": self.meta["episode"], "env_seed": self.meta["env_seed"],
                "noops": self.meta["noops"], "length": self.length, "return": float(self.rewards.sum()),
                "life_losses": int(self.life_loss.sum()), "terminated": bool(self.terminated[-1]),
                "truncated": bool(self.truncated[-1])}


def encode_episode(ep: Episode) -> bytes:
    """The compressed .npz bytes of an episode (checked first, so a bad episode is never written)."""
    _validate(ep, Path("<new episode>"))
    buf = io.BytesIO()
    ram = {} if ep.ram is None else {"ram": ep.ram}
    np.savez_compressed(buf, frames=ep.frames, actions=ep.actions, rewards=ep.rewards,
                        terminated=ep.terminated, truncated=ep.truncated, life_loss=ep.life_loss,
                        meta=np.array(json.dumps(ep.meta, sort_keys=True)), **ram)
    return buf.getvalue()


def save_episode(path: Path, ep: Episode) -> None:
    """Write atomically: a kill leaves either no file or the complete one (plus a `.tmp` that is ignored)."""
    data = encode_episode(ep)
    atomic_write(path, lambda f: f.write(data))


def load_episode(path: Path) -> Episode:
    """Read and check every array of one episode file; CorruptEpisodeError names the file and the problem."""
    path = Path(path)
    arrays, meta = read_npz(path, ("frames", *STEP_ARRAYS), CorruptEpisodeError)
    ep = Episode(meta=meta, ram=arrays.get("ram"), **{k: arrays[k] for k in ("frames", *STEP_ARRAYS)})
    _validate(ep, path)
    return ep


def _validate(ep: Episode, path: Path) -> None:
    T = len(ep.actions)
    if T < 1:
        raise CorruptEpisodeError(path, "no steps")
    f = ep.frames
    if f.dtype != np.uint8 or f.ndim != 4 or f.shape[0] != T + 1 or f.shape[3] != 3:
        raise CorruptEpisodeError(path, f"frames are {f.dtype} {f.shape}, expected uint8 ({T + 1}, H, W, 3)")
    for name, dtype in STEP_ARRAYS.items():
        a = getattr(ep, name)
        if a.dtype != dtype or a.shape != (T,):
            raise CorruptEpisodeError(path, f"{name} is {a.dtype} {a.shape}, expected {np.dtype(dtype)} ({T},)")
    if ep.ram is not None and (ep.ram.dtype != np.uint8 or ep.ram.shape != (T + 1, RAM_BYTES)):
        raise CorruptEpisodeError(path, f"ram is {ep.ram.dtype} {ep.ram.shape}, expected uint8 ({T + 1}, {RAM_BYTES})")
    if (ep.terminated[:-1] | ep.truncated[:-1]).any():
        raise CorruptEpisodeError(path, "terminated/truncated set before the last step")
    missing = [k for k in ("format_version", "episode", "env_seed", "noops", "protocol", "collection",
                           "action_meanings") if k not in ep.meta]
    if missing:
        raise CorruptEpisodeError(path, f"meta lacks {', '.join(missing)}")
    if ep.meta["format_version"] != FORMAT_VERSION:
        raise CorruptEpisodeError(path, f"format_version {ep.meta['format_version']}, this code reads {FORMAT_VERSION}")
    if not (0 <= ep.actions.min() and ep.actions.max() < len(ep.meta["action_meanings"])):
        raise CorruptEpisodeError(path, "an action is outside the action set")


def episode_files(root: Path) -> dict[int, Path]:
    """{episode number: path} of the finished episode files (`*.tmp` leftovers of a kill never match)."""
    return {int(m.group(1)): p for p in Path(root).iterdir() if (m := EPISODE_RE.match(p.name))} \
        if Path(root).is_dir() else {}


def scan(root: Path) -> tuple[dict[int, tuple[dict, dict]], list[CorruptEpisodeError]]:
    """Load every episode file once: ({episode: (index entry, meta)}, [errors of the corrupt files])."""
    good, bad = {}, []
    for i, path in sorted(episode_files(root).items()):
        try:
            ep = load_episode(path)
        except CorruptEpisodeError as e:
            bad.append(e)
            continue
        if ep.meta["episode"] != i:
            bad.append(CorruptEpisodeError(path, f"holds episode {ep.meta['episode']}, not {i} (renamed?)"))
            continue
        good[i] = (ep.summary(path.name), ep.meta)
    return good, bad


def write_index(root: Path, header: dict, entries: list[dict], test_fraction: float) -> dict:
    """index.json = header + one entry per episode (sorted, with its split) + totals. Written atomically."""
    entries = [{**e, "split": split_of(e["episode"], test_fraction)} for e in sorted(entries, key=lambda e: e["episode"])]
    totals = {s: {"episodes": sum(e["split"] == s for e in entries),
                  "steps": sum(e["length"] for e in entries if e["split"] == s)} for s in ("train", "test")}
    index = {**header, "format_version": FORMAT_VERSION, "test_fraction": test_fraction,
             "totals": totals, "episodes": entries}
    text = json.dumps(index, indent=1)
    atomic_write(Path(root) / INDEX, lambda f: f.write(text.encode()))
    return index


def dataset_identity(root: Path) -> dict:
    """What a trained model records about its data set (and a release carries): the game, protocol and collection
    settings that recreate it, its size, and the digest of its index (deterministic: it lists every episode's
    seed, length and return), so a re-collected copy can be checked against the original."""
    import hashlib
    index = read_index(root)
    t = index["totals"]
    return {"game": index["game"], "episodes": len(index["episodes"]), "train_episodes": t["train"]["episodes"],
            "test_episodes": t["test"]["episodes"], "steps": t["train"]["steps"] + t["test"]["steps"],
            "test_fraction": index["test_fraction"], "protocol": index["protocol"], "collection": index["collection"],
            "index_sha256": hashlib.sha256((Path(root) / INDEX).read_bytes()).hexdigest()[:16]}


def read_index(root: Path) -> dict:
    path = Path(root) / INDEX
    try:
        index = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactNotFoundError(f"{path} does not exist. Make the data set with: "
                                    "python -m phase1_world_model.collect data.game=<Game>") from None
    except ValueError as e:
        raise CorruptDatasetError(path.parent, [], f"{path} is not valid JSON ({e}); rerun the collect "
                                  "command that made this folder: it rebuilds the index from the episode files") from None
    if index.get("format_version") != FORMAT_VERSION:
        raise CorruptDatasetError(path.parent, [], f"{path} has format_version {index.get('format_version')}, "
                                  f"this code reads {FORMAT_VERSION}")
    return index
