"""A still figure of evaluation episodes: one row per episode, frames at evenly spaced steps.

    python -m phase3_vla.filmstrip phase3_vla/figures/rollouts.png full-n50-cpu:9:0 lora-r16-n50-cpu:9:1
    python -m phase3_vla.filmstrip out.png base-cpu:2:0 --frames 8 --wrist

Each episode is `<run>:<task>:<episode>` (or `<run>@<eval folder>:<task>:<episode>`, e.g.
`full-n50-cpu@eval-perturb0.08:9:0`, or `<evaluation folder>:<task>:<episode>` for any folder with episodes/ and
media/ in this layout: phase 4's `outputs/phase4/uwm-new-cpu/evaluate`, phase 5's `outputs/phase5/LIBERO/<arm>`)
and is read from the video `phase3_vla.evaluate` wrote for it
(<run.root>/phase3/<run>/eval/media/task_TT_ep_EEE.mp4; only the first eval.videos episodes have one). The
row is labelled with the episode's outcome from its log. Agent view only, unless --wrist.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from common.errors import command
from common.images import join
from phase3_vla.training import run_dir


def episode_files(spec: str, root: str) -> tuple[Path, dict]:
    from phase3_vla.rollouts import episode_path, video_stem

    try:
        run, task, ep = spec.rsplit(":", 2)
        task, ep = int(task), int(ep)
    except ValueError:
        raise SystemExit(f"filmstrip: {spec!r} is not <run>:<task>:<episode>, e.g. full-n50-cpu:9:0") from None
    if Path(run, "episodes").is_dir():  # an evaluation folder itself (phase 4's <run>/evaluate, phase 5's arms)
        out = Path(run)
    else:
        run, _, sub = run.partition("@")  # <run>@eval-perturb0.08: another evaluation folder of the run
        out = run_dir(run, root) / (sub or "eval")
    video, log = video_stem(out, task, ep).with_suffix(".mp4"), episode_path(out, task, ep)
    if not video.exists() or not log.exists():
        raise SystemExit(f"filmstrip: no video or episode log for {spec} ({video}); evaluate it with "
                         f"python -m phase3_vla.evaluate load={run} eval.tasks=[{task}] eval.episodes={ep + 1} eval.videos={ep + 1}")
    return video, json.loads(log.read_text())


def row(video: Path, n: int, wrist: bool) -> np.ndarray:
    import imageio.v3 as iio

    frames = iio.imread(video, plugin="pyav")  # (T, H, 2W, 3): agent view | wrist
    if not wrist:
        frames = frames[:, :, : frames.shape[2] // 2]
    idx = np.linspace(0, len(frames) - 1, n).round().astype(int)
    return join([frames[i] for i in idx], axis=1)


@command
def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("episodes", nargs="+", help="<run>:<task>:<episode>")
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--wrist", action="store_true", help="agent view | wrist (default: agent view only)")
    ap.add_argument("--root", default="outputs")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    import imageio.v3 as iio

    rows = []
    for spec in args.episodes:
        video, log = episode_files(spec, args.root)
        rows.append(row(video, args.frames, args.wrist))
        print(f"{spec}: {log['reason']} ({log['steps']} steps)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(args.out, join(rows, axis=0))
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
