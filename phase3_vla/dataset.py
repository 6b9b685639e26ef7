"""Staged demonstrations -> LeRobotDataset v3, through lerobot's own writer (create / add_frame /
save_episode / finalize), so that lerobot's `LeRobotDataset` and `lerobot-train` read it unchanged.

    from phase3_vla.dataset import write_lerobot_dataset, open_dataset
    write_lerobot_dataset(root, "local/libero_object_new", demos, fps=20)   # demos: iterable of staging.Demo
    ds = open_dataset(root)          # lerobot's LeRobotDataset, offline
    ds[0]["observation.images.image"].shape   # (3, 128, 128) float in [0, 1]; ds[0]["task"] = the instruction

Features follow lerobot's LIBERO naming (HuggingFaceVLA/libero and lerobot's LiberoEnv mapping), so a
policy trained here evaluates in lerobot's LIBERO env without renaming:

    observation.images.image    agent-view camera, (H, W, 3) uint8, stored as images (PNG in parquet)
    observation.images.image2   wrist camera
    observation.state           float32 (8,): eef xyz, eef axis-angle, 2 gripper joints
    action                      float32 (7,): delta position, delta rotation, gripper (-1 open, +1 closed)

Images are stored as `image` features (no video codec, nothing to decode at training time; a 128 px
demonstration of ~110 steps is ~3 MB). Command-line training, offline:

    HF_HUB_OFFLINE=1 lerobot-train --dataset.repo_id=local/libero_object_base \\
        --dataset.root=outputs/phase3/demos/cpu/lerobot/base --policy.type=smolvla --policy.push_to_hub=false ...
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np

STATE_NAMES = ["eef_x", "eef_y", "eef_z", "eef_axis_angle_x", "eef_axis_angle_y", "eef_axis_angle_z",
               "gripper_left", "gripper_right"]
ACTION_NAMES = ["delta_x", "delta_y", "delta_z", "delta_rot_x", "delta_rot_y", "delta_rot_z", "gripper"]
IMAGE_KEYS = {"agentview": "observation.images.image", "wrist": "observation.images.image2"}


def features(image_size: int) -> dict:
    img = {"dtype": "image", "shape": (image_size, image_size, 3), "names": ["height", "width", "channel"]}
    return {IMAGE_KEYS["agentview"]: dict(img), IMAGE_KEYS["wrist"]: dict(img),
            "observation.state": {"dtype": "float32", "shape": (8,), "names": list(STATE_NAMES)},
            "action": {"dtype": "float32", "shape": (7,), "names": list(ACTION_NAMES)}}


def write_lerobot_dataset(root: Path, repo_id: str, demos: Iterable, fps: int = 20, image_size: int | None = None,
                          threads: int = 2) -> dict:
    """Write every demo (in the given order) as one episode; returns {episodes, frames, tasks}. Demos whose
    meta holds a start record (collect's do) also give `meta/starts.json` (phase3_vla.starts).

    Built in `<root>.tmp` and renamed onto `root` only when finalized, so a kill leaves either the
    previous dataset or the new one, never a half-written dataset that lerobot would choke on."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = Path(root)
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    from phase3_vla.starts import StartRecord, write_starts

    ds, n_frames, tasks, starts = None, 0, [], []
    try:
        for d in demos:
            if ds is None:
                size = image_size or d.agentview.shape[1]
                ds = LeRobotDataset.create(repo_id=repo_id, fps=fps, features=features(size), root=tmp,
                                           robot_type="panda", use_videos=False, image_writer_threads=threads)
            task = d.meta["instruction"]
            for t in range(d.length):
                ds.add_frame({IMAGE_KEYS["agentview"]: d.agentview[t], IMAGE_KEYS["wrist"]: d.wrist[t],
                              "observation.state": d.state[t], "action": d.action[t], "task": task})
            ds.save_episode()
            n_frames += d.length
            tasks.append(task)
            if "start" in d.meta:
                starts.append(StartRecord(**d.meta["start"]))
        if ds is None:
            raise ValueError(f"no demonstrations to write to {root}")
        ds.finalize()
        ds.stop_image_writer()
        if starts:
            if len(starts) != len(tasks):
                raise ValueError(f"{len(tasks) - len(starts)} of the demonstrations for {root} record no start")
            write_starts(tmp, starts)
    except BaseException:
        if ds is not None:
            ds.stop_image_writer()
        raise
    images = tmp / "images"  # lerobot's temporary PNGs, embedded in the parquet files by now
    if images.is_dir() and not any(p.is_file() for p in images.rglob("*")):
        shutil.rmtree(images)
    old = root.with_name(root.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if root.exists():
        os.replace(root, old)
    os.replace(tmp, root)
    shutil.rmtree(old, ignore_errors=True)
    return {"episodes": len(tasks), "frames": n_frames, "tasks": sorted(set(tasks))}


def open_dataset(root: Path, repo_id: str | None = None, **kwargs):
    """lerobot's LeRobotDataset on a local folder, hub untouched. The repo id is the one collect recorded in
    `<root>.selection.json` unless given (it is only a name here: nothing is fetched)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = Path(root)
    if not (root / "meta" / "info.json").exists():
        from common.runs import ArtifactNotFoundError

        raise ArtifactNotFoundError(f"{root} is not a LeRobotDataset (no meta/info.json). Make it with: "
                                    "python -m phase3_vla.collect profile=cpu")
    if repo_id is None:  # collect records the repo id beside the dataset (info.json has no field for it)
        marker = root.with_name(root.name + ".selection.json")
        repo_id = json.loads(marker.read_text())["repo_id"] if marker.exists() else f"local/{root.name}"
    return LeRobotDataset(repo_id, root=root, **kwargs)


def dataset_identity(root: Path, episodes: list[int] | None = None) -> dict:
    """What a trained policy records about its demonstrations (and a release carries): the suite and tasks, the
    size, which episodes, and a digest of the data set's meta/ files (info, stats, tasks, episode index), which
    change whenever an episode does."""
    import hashlib

    root = Path(root)
    info = json.loads((root / "meta" / "info.json").read_text())
    h = hashlib.sha256()
    for p in sorted((root / "meta").rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    marker = root.with_name(root.name + ".selection.json")
    return {"folder": str(root), "repo_id": json.loads(marker.read_text())["repo_id"] if marker.exists() else None,
            "episodes": info.get("total_episodes"), "frames": info.get("total_frames"),
            "used_episodes": episodes if episodes is not None else "all", "meta_sha256": h.hexdigest()[:16]}


def column_stats(values: np.ndarray) -> dict:
    return {"mean": values.mean(0).tolist(), "std": values.std(0).tolist(), "min": values.min(0).tolist(),
            "max": values.max(0).tolist()}
