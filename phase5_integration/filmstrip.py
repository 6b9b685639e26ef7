"""A still figure of a recorded Breakout game: the real frames above the frames the planner imagined for them.

    python -m phase5_integration.filmstrip <arm dir>/media/game_000.mp4 out.png --start 40 --frames 8
    python -m phase5_integration.filmstrip <arm dir>/media/game_000.gif out.png --start 40 --every 2   # lossless

`python -m phase5_integration.plan` records its first `video` games as `media/game_NNN.mp4`, each frame the real
observation after the step, a white bar (`agents.VIDEO_BAR` pixels), and the frame the plan being executed
imagined for that step (black when the agent imagines nothing). This cuts `--frames` of them, from step `--start`, one every `--every`
steps, into two rows: real on top, imagined below, each column labelled by nothing but its position (the command
line says which steps they are).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from common.errors import DataError, command
from common.images import join
from phase5_integration.agents import VIDEO_BAR


def split(frame: np.ndarray, bar: int = VIDEO_BAR) -> tuple[np.ndarray, np.ndarray]:
    """real | bar | imagined -> (real, imagined); the two halves have the same width."""
    w = (frame.shape[1] - bar) // 2
    if 2 * w + bar != frame.shape[1]:
        raise DataError(f"a frame {frame.shape[1]} pixels wide is not real | {bar}-pixel bar | imagined of equal "
                        f"widths; is this a video `python -m phase5_integration.plan` recorded?")
    return frame[:, :w], frame[:, w + bar:]


def filmstrip(frames: np.ndarray, start: int, n: int, every: int = 1, scale: int = 1) -> np.ndarray:
    """(T, H, 2W + 2, 3) recorded frames -> one image: n real frames from `start`, `every` apart, above the imagined
    frames of the same steps; each frame enlarged `scale` times (nearest neighbour)."""
    idx = start + every * np.arange(n)
    if start < 0 or every < 1 or n < 1 or idx[-1] >= len(frames):
        raise DataError(f"frames {start}..{idx[-1]} (every {every}) are not inside the video's {len(frames)} "
                        f"frames; choose --start, --frames and --every within it")
    pairs = [split(frames[i]) for i in idx]
    up = lambda x: x.repeat(scale, 0).repeat(scale, 1)  # noqa: E731
    rows = [join([up(p[k]) for p in pairs], axis=1) for k in (0, 1)]
    return join(rows, axis=0)


@command
def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video", type=Path, help="a game video written by phase5_integration.plan (media/game_NNN.mp4)")
    ap.add_argument("out", type=Path, help="the PNG to write")
    ap.add_argument("--start", type=int, default=0, help="the first step shown")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--every", type=int, default=1, help="steps between columns")
    ap.add_argument("--scale", type=int, default=2, help="enlarge each frame this many times")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    import imageio.v3 as iio

    if not args.video.is_file():
        raise DataError(f"no video {args.video}; `python -m phase5_integration.plan video=1 ...` records the first "
                        f"game of an arm in <arm dir>/media/game_000.mp4")
    frames = iio.imread(args.video, plugin="pyav") if args.video.suffix == ".mp4" else iio.imread(args.video)
    frames = frames[..., :3]  # a GIF may carry alpha
    img = filmstrip(frames, args.start, args.frames, args.every, args.scale)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(args.out, img)
    print(f"wrote {args.out}: steps {args.start}..{args.start + args.every * (args.frames - 1)} of {len(frames)}, "
          f"real above imagined")
    return args.out


if __name__ == "__main__":
    main()
