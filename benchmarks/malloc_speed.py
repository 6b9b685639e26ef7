"""What `common.system.keep_freed_memory` (called by every command's start-up) buys: one planning decision of
phase 5 with DIAMOND-lite, first with glibc's default malloc settings, then with freed memory kept, in the same
process, as a ratio, with the page faults each decision costs.

    python -m benchmarks.malloc_speed                       # H = 2 and 3, macro-actions of 4 (the cpu arms)
    python -m benchmarks.malloc_speed --horizons 2 --repeat-action 1 --repeats 2

The default settings run first (glibc's settings cannot be put back once changed). Real model (the release or the
newest local phase 1 run) and a real Breakout history. Run it with nothing else busy; the header names the CPU.
"""
from __future__ import annotations

import argparse
import resource

import torch

from benchmarks.phase1_speed import median_time
from benchmarks.phase5_speed import breakout_history
from common.precision import machine_summary
from common.system import keep_freed_memory
from phase1_world_model.loading import load_trained
from phase5_integration.adapters import Phase1Model
from phase5_integration.config import PlannerConfig
from phase5_integration.planner import Planner
from phase5_integration.protocol import History


def measure(planners: dict, hist: History, repeats: int) -> dict:
    out = {}
    for key, p in planners.items():
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        with torch.no_grad():
            t = median_time(lambda: p.plan(hist), repeats)
        out[key] = (t, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / (repeats + 1))
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--horizons", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--repeat-action", type=int, default=4, help="macro-actions: each planned action held k steps")
    ap.add_argument("--root", default="outputs")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"malloc speed, {torch.get_num_threads()} thread(s), fp32; {machine_summary()}")
    model = Phase1Model(load_trained("latest", "diffusion", args.root).model, "diamond")
    planners = {H: Planner(model, PlannerConfig(method="enumerate", horizon=H, action_repeat=args.repeat_action))
                for H in args.horizons}
    hist = breakout_history()
    default = measure(planners, hist, args.repeats)
    if not keep_freed_memory():
        print("keep_freed_memory: not available here (not glibc on Linux); nothing to compare")
        return {"default": default}
    kept = measure(planners, hist, args.repeats)
    print("| planner | frames / decision | default s | kept s | speed-up | page faults / decision (default -> kept) |")
    print("|---|---|---|---|---|---|")
    for H in args.horizons:
        (t0, f0), (t1, f1) = default[H], kept[H]
        frames = sum(4 ** (h + 1) for h in range(H)) * args.repeat_action
        print(f"| enumerate h={H} x{args.repeat_action} | {frames} | {t0:.2f} | {t1:.2f} | {t0 / t1:.2f}x | "
              f"{f0:.0f} -> {f1:.0f} |")
    return {"default": default, "kept": kept}


if __name__ == "__main__":
    main()
