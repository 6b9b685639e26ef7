"""Re-measure the constants of `phase1_world_model/breakout.py` on the emulator, and the detector's own error.

    python -m phase1_world_model.breakout_calibrate               # 3000 agent steps of a sticky-random policy
    python -m phase1_world_model.breakout_calibrate --steps 500 --seed 1

Prints the RAM -> pixel offsets seen (ball and paddle), how often the RAM's ball-in-play rule matches the ball
being drawn, whether the RAM's brick count matches the bricks on the screen, the brick band's brightness, and the
detector's errors on real 64x64 frames (the floor of the game metrics).
"""
from __future__ import annotations

import argparse

from common.errors import command
from phase1_world_model import breakout


@command
def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3000, help="agent steps of the sticky-random policy")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    c = breakout.calibrate(args.steps, args.seed)
    print(f"{c['steps']} agent steps (seed {c['seed']}) of a sticky-random policy: offsets on single emulator frames, "
          "the detector on max-pooled steps (as the data sets hold them)")
    for k in ("ball_offset_x", "ball_offset_y", "paddle_offset"):
        vals, counts = c[k]
        print(f"  {k}: " + ", ".join(f"{v:+d} ({n}x)" for v, n in zip(vals, counts)))
    print(f"  ball in play (RAM rule) agrees with 'drawn at the RAM position' on {100 * c['ball_in_play_vs_drawn']:.1f}% "
          f"of frames; bricks at the start: {c['bricks_at_start']:g}; bricks left (RAM) = bricks on the screen on "
          f"{100 * c['bricks_ram_vs_screen']:.1f}% of frames")
    print(f"  brick band brightness: full wall {c['band_full']:.0f}, no bricks {c['band_empty']:.0f} "
          f"(BAND_FULL, BAND_EMPTY = {breakout.BAND_FULL:.0f}, {breakout.BAND_EMPTY:.0f})")
    d = c["detector"]
    print("  detector on the real 64x64 frames vs RAM: " + "; ".join(
        f"{k} {d[k][0]:.3f} [{d[k][1]:.3f}, {d[k][2]:.3f}] (n={d[k + '_n'][0]})"
        for k in ("ball_error", "ball_agree", "paddle_error", "brick_error")))
    return c


if __name__ == "__main__":
    main()
