"""Metrics and media to three places: metrics.jsonl + TensorBoard always, wandb when asked.

`metrics.jsonl` is the stable, greppable record: one JSON object per call of `log`, with `step` and
wall-clock `time`. Images go to `media/<tag>_<step>.png`, videos to `.mp4` and `.gif`; the same media
go to TensorBoard (videos as animated GIF image summaries, which TensorBoard plays without moviepy)
and to wandb. Only the main process logs; the others get a logger that does nothing.
"""
from __future__ import annotations

import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.config import choice


@dataclass
class LogConfig:
    """What gets logged where."""

    wandb: str = "off"  # off | offline (files under the run, sync later) | online (needs an account)
    wandb_project: str = "world-models"  # wandb project the run is logged to (read only when wandb is not off)
    log_every: int = 50  # optimizer steps between metric lines and progress-bar updates
    progress: bool = True  # tqdm progress bar on the main process

    def check(self) -> None:
        choice("wandb", self.wandb, ("off", "offline", "online"))
        from common.config import require
        require(self.log_every >= 1, "log_every", self.log_every, "must be >= 1")


def to_uint8_hwc(img: Any) -> np.ndarray:
    """Accept (C,H,W) or (H,W,C) or (H,W), float in [0,1] or uint8; return (H,W,C) uint8."""
    if isinstance(img, torch.Tensor):
        img = img.detach().cpu().float().numpy() if img.dtype != torch.uint8 else img.cpu().numpy()
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = img.transpose(1, 2, 0)
    if img.dtype != np.uint8:
        img = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    return img


def write_video(stem: str | Path, frames: Any, fps: int = 15) -> tuple[Path, bytes]:
    """frames (T,H,W,C) or (T,C,H,W), uint8 or float in [0,1] -> `<stem>.mp4` and `<stem>.gif`.

    Returns the MP4 path and the GIF's bytes (TensorBoard shows the GIF as an animated image)."""
    import imageio.v3 as iio

    arr = np.stack([to_uint8_hwc(f) for f in frames])  # (T, H, W, 3)
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    gif = io.BytesIO()
    iio.imwrite(gif, arr, extension=".gif", duration=1000 / fps, loop=0)
    stem.with_suffix(".gif").write_bytes(gif.getvalue())
    mp4 = stem.with_suffix(".mp4")
    try:
        # H.264 wants even sizes; pad by one pixel where needed.
        h, w = arr.shape[1:3]
        padded = np.pad(arr, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        iio.imwrite(mp4, padded, fps=fps, codec="libx264", plugin="pyav")
    except Exception:
        import imageio.v2 as iio2
        iio2.mimwrite(mp4, arr, fps=fps, macro_block_size=1)
    return mp4, gif.getvalue()


class RunLogger:
    def __init__(self, run_dir: Path, cfg: LogConfig, config: dict | None = None, enabled: bool = True,
                 run_name: str = ""):
        self.enabled = enabled
        self.dir = Path(run_dir)
        self._wandb = None
        self._tb = None
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.media_dir = self.dir / "media"
        self.media_dir.mkdir(parents=True, exist_ok=True)
        self._metrics = open(self.dir / "metrics.jsonl", "a", buffering=1)
        self._tb = SummaryWriter(str(self.dir / "tb"))
        if cfg.wandb != "off":
            import wandb

            self._wandb = wandb.init(project=cfg.wandb_project, name=run_name or self.dir.name,
                                     dir=str(self.dir), mode=cfg.wandb, config=config, resume="allow",
                                     id=f"{self.dir.parent.name}-{self.dir.name}")

    def log(self, metrics: dict[str, float], step: int) -> None:
        if not self.enabled:
            return
        clean = {k: (float(v) if isinstance(v, (int, float, np.floating, torch.Tensor)) else v)
                 for k, v in metrics.items()}
        self._metrics.write(json.dumps({"step": step, "time": time.time(), **clean}) + "\n")
        for k, v in clean.items():
            if isinstance(v, float) and math.isfinite(v):
                self._tb.add_scalar(k, v, step)
        if self._wandb is not None:
            self._wandb.log(clean, step=step)

    def log_image(self, tag: str, img: Any, step: int) -> Path | None:
        if not self.enabled:
            return None
        import imageio.v3 as iio

        arr = to_uint8_hwc(img)
        path = self.media_dir / f"{tag.replace('/', '_')}_{step:08d}.png"
        iio.imwrite(path, arr)
        self._tb.add_image(tag, arr, step, dataformats="HWC")
        if self._wandb is not None:
            import wandb
            self._wandb.log({tag: wandb.Image(arr)}, step=step)
        return path

    def log_video(self, tag: str, frames: Any, step: int, fps: int = 15) -> Path | None:
        """frames: (T,H,W,C) or (T,C,H,W), uint8 or float in [0,1]. Writes MP4 and GIF."""
        if not self.enabled:
            return None
        from tensorboard.compat.proto.summary_pb2 import Summary

        stem = self.media_dir / f"{tag.replace('/', '_')}_{step:08d}"
        mp4, gif = write_video(stem, frames, fps)
        h, w = to_uint8_hwc(frames[0]).shape[:2]
        image = Summary.Image(height=h, width=w, colorspace=3, encoded_image_string=gif)
        self._tb.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
        if self._wandb is not None:
            import wandb
            self._wandb.log({tag: wandb.Video(str(mp4), format="mp4")}, step=step)
        return mp4

    def close(self) -> None:
        if not self.enabled:
            return
        self._metrics.close()
        self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
