"""Phase 1 world model speed on this machine: training steps and generated frames per second, by precision.

    python benchmarks/phase1_speed.py                       # the cpu profile's model (channels 32)
    python benchmarks/phase1_speed.py --profile full        # DIAMOND's sizes (channels 64)
    python benchmarks/phase1_speed.py --widths 32 48 64 --modes bf16   # how the cpu profile's width was chosen
    python benchmarks/phase1_speed.py --threads 1

Run it on an otherwise idle machine: on 2 cores a second busy process slows torch by 10x or more.
For each precision (fp32, bf16 autocast, bf16 autocast + channels_last) it times, in this process:
- a training step at batch 32 (forward + backward + AdamW, the denoiser and the reward/end head), and
- generation of the next frame with the profile's sampler (3 Euler steps), at batch 1 and batch 32,
and prints each as a ratio to fp32. This is how the cpu profile's precision was chosen.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from common.config import load_config
from common.stepwise import StepRNG
from phase1_world_model.config import Phase1Config
from phase1_world_model.model import WorldModel

MODES = {"fp32": (False, False), "bf16": (True, False), "bf16+channels_last": (True, True)}


def fake_batch(B: int, K: int, actions: int, size: int = 64) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"obs": torch.randint(0, 256, (B, K, 3, size, size), generator=g, dtype=torch.uint8),
            "act": torch.randint(0, actions, (B, K), generator=g), "mask": torch.ones(B, K, dtype=torch.bool),
            "next_obs": torch.randint(0, 256, (B, 3, size, size), generator=g, dtype=torch.uint8),
            "reward": torch.zeros(B, dtype=torch.long), "end": torch.zeros(B, dtype=torch.bool)}


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def time_model(cfg, mode: str, repeats: int, K: int, A: int, sampler=None) -> tuple[float, float, float, float]:
    """-> (train step s, batch-1 fps, batch-32 fps, denoiser params M) for one model config and precision."""
    bf16, cl = MODES[mode]
    torch.manual_seed(0)
    model = WorldModel(cfg, A, sampler=sampler)
    if cl:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = fake_batch(32, K, A)

    def train_step(step=[0]):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, _ = model(batch, StepRNG(0, step[0], 0, 32, 32, torch.device("cpu")))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        step[0] += 1

    t_train = median_time(train_step, repeats)
    model.eval()
    fps = {}
    for B in (1, 32):
        obs, act = batch["obs"][:B], batch["act"][:B]

        def gen():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                model.next_frame(obs, act)
        fps[B] = B / median_time(gen, repeats)
    return t_train, fps[1], fps[32], sum(p.numel() for p in model.frame_net.parameters()) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--widths", type=int, nargs="+", help="UNet width(s), the same at every level, instead of "
                                                            "the profile's channels (e.g. 32 48 64)")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    full_cfg = load_config(Phase1Config, "phase1/train", [f"profile={args.profile}"])
    base_cfg, sampler = full_cfg.model, full_cfg.sampler
    levels = len(base_cfg.unet.channels)
    widths = [[w] * levels for w in args.widths] if args.widths else [list(base_cfg.unet.channels)]
    K, A = base_cfg.context, 4
    from common.precision import machine_summary
    print(machine_summary())
    print(f"profile {args.profile}: {sampler.steps} {sampler.solver} steps per frame, {args.threads} threads, "
          f"median of {args.repeats}; baseline = the first row")
    rows = []
    for ch in widths:
        cfg = copy.deepcopy(base_cfg)
        cfg.unet.channels = ch
        for mode in args.modes:
            t, f1, f32, params = time_model(cfg, mode, args.repeats, K, A, sampler)
            rows.append((f"channels {ch[0]} ({params:.2f}M) {mode}", t, f1, f32))
            print(f"  {rows[-1][0]:38s} train step (batch 32) {t:6.2f} s   next frame: batch 1 {f1:6.1f} fps, "
                  f"batch 32 {f32:6.1f} fps", flush=True)
    _, t0, f10, f320 = rows[0]
    print("\nratios to the first row (higher is faster):")
    for name, t, f1, f32 in rows:
        print(f"  {name:38s} training x{t0 / t:4.2f}   generation batch 1 x{f1 / f10:4.2f}   batch 32 x{f32 / f320:4.2f}")


if __name__ == "__main__":
    main()
