"""How much LIBERO's initial states vary: the target item's and the basket's start positions over the 50 fixed
initial states of each task, against the sampled placements the demonstrations started from.

    python -m phase3_vla.initial_states                     # tasks 0-9; demonstrations of outputs/phase3/demos/cpu
    python -m phase3_vla.initial_states --tasks 9 --demos smoke

Fixed states are read by setting each of LIBERO's state vectors in a camera-less env (what LiberoEnv.reset does
before its settle steps); sampled placements come from the data sets' meta/starts.json (collect records every
demonstration's start). Prints a markdown table (x and y ranges in cm, world frame) and writes it to
<run.root>/phase3/initial_states.md (<folder>/initial_states.md with --folder).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from common.checkpoint import atomic_write
from common.errors import command
from common.runs import outputs_root


def fixed_poses(task_id: int) -> list[dict[str, list[float]]]:
    """Every object's pose in each of the task's 50 fixed initial states, and the (target, basket) names."""
    from phase3_vla.config import LiberoConfig
    from phase3_vla.libero_env import make_env, object_poses
    from phase3_vla.starts import fixed_states

    env = make_env(LiberoConfig(), task_id, cameras=False)
    env.reset(init_state=0)
    poses = []
    for state in fixed_states(task_id):
        env._env.set_init_state(state)
        poses.append(object_poses(env._env.env))
    names = env.target_and_basket
    env.close()
    return poses, names


def sampled_starts(demos: Path) -> list:
    """Every demonstration's start record in the collection's four data sets."""
    from phase3_vla.starts import read_starts

    out = []
    for name in ("base", "base_val", "new", "new_val"):
        folder = demos / "lerobot" / name
        if (folder / "meta" / "info.json").exists():
            out += read_starts(folder)
    return out


def _range(poses: list[dict], obj: str, axis: int) -> str:
    if not poses:
        return "-"
    v = 100 * np.array([p[obj][axis] for p in poses])
    return f"{v.min():.1f} .. {v.max():.1f}"


def _spread(poses: list[dict], obj: str) -> str:
    """Largest distance (cm) of the object from its mean start position."""
    if not poses:
        return "-"
    xy = 100 * np.array([p[obj][:2] for p in poses])
    return f"{np.linalg.norm(xy - xy.mean(0), axis=1).max():.1f}"


@command
def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, nargs="*", default=list(range(10)))
    ap.add_argument("--demos", default="cpu", help="collection name under <root>/phase3/demos/ (its starts.json)")
    ap.add_argument("--root", default="outputs", help="run.root")
    ap.add_argument("--folder", default="", help="a collection folder (instead of --demos under --root)")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    demos = Path(args.folder).resolve() if args.folder else outputs_root(args.root) / "phase3" / "demos" / args.demos
    lines = ["| task | object | fixed states: n | x (cm) | y (cm) | max from mean (cm) | sampled: n | x (cm) | y (cm) | "
             "max from mean (cm) |", "|---|---|---|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    records = sampled_starts(demos)
    for t in args.tasks:
        fixed, names = fixed_poses(t)
        sampled = [r.poses for r in records if r.task_id == t]
        for obj in names:
            lines.append(f"| {t} | {obj} | {len(fixed)} | {_range(fixed, obj, 0)} | {_range(fixed, obj, 1)} | "
                         f"{_spread(fixed, obj)} | {len(sampled)} | {_range(sampled, obj, 0)} | "
                         f"{_range(sampled, obj, 1)} | {_spread(sampled, obj)} |")
            print(lines[-1], flush=True)
    from phase3_vla.starts import check_disjoint

    mine = [r for r in records if r.task_id in args.tasks]
    checked = check_disjoint(mine, {t: range(50) for t in args.tasks})  # raises if one is shared
    verdict = f"none of the {len(mine)} demonstrations' starts equals any of the {checked} fixed states (exact digests)"
    print(verdict)
    page = ("# Initial states of LIBERO-Object\n\nWritten by `python -m phase3_vla.initial_states`. Fixed = LIBERO's 50 "
            f"evaluation states per task; sampled = the starts of the demonstrations in `{demos}`.\n\n"
            + "\n".join(lines) + f"\n\n{verdict}.\n")
    out = (demos / "initial_states.md") if args.folder else outputs_root(args.root) / "phase3" / "initial_states.md"
    atomic_write(out, lambda f: f.write(page.encode()))
    print(f"-> {out}")
    return page


if __name__ == "__main__":
    main()
