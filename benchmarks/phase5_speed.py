"""Phase 5 costs on this machine: one planning decision (all candidates imagined and valued) with each world model,
for the planner settings the cpu profile may use, as a ratio to the emulator oracle measured in the same process.

    python -m benchmarks.phase5_speed                      # the released phase 1 and phase 2 models, all cores
    python -m benchmarks.phase5_speed --threads 1 --horizons 2 --repeats 2

Real models (the releases, or the newest local runs), a real Breakout history (the game after 40 steps of play), the
real emulator. Each figure is the median of `--repeats` decisions after one warm-up. Run it with nothing else busy:
a second busy process on 2 cores slows torch by 10x or more. The header names the CPU, its flags and the precision,
which decide these numbers.
"""
from __future__ import annotations

import argparse

import torch

from benchmarks.phase1_speed import median_time as timed
from common.precision import machine_summary, resolve_precision
from phase1_world_model.envs import make_atari
from phase1_world_model.loading import load_trained as load_phase1
from phase2_diffusion_forcing.config import SamplerConfig
from phase2_diffusion_forcing.loading import load_trained as load_phase2
from phase5_integration.adapters import DFModel, EmulatorModel, Phase1Model, snapshot
from phase5_integration.config import PlannerConfig
from phase5_integration.planner import Planner
from phase5_integration.protocol import History


def breakout_history(with_state: bool = False) -> History:
    """The real game after 40 steps of scripted play: 4 frames, the 3 actions between them (and the emulator's
    state, for the oracle)."""
    env = make_atari("Breakout")
    obs, _ = env.reset(seed=1)
    frames = []
    for a in [1] + [2, 2, 3, 0] * 10:
        obs, *_ = env.step(a)
        frames.append(torch.from_numpy(obs).permute(2, 0, 1))
    return History(torch.stack(frames[-4:]), torch.tensor([2, 3, 0]), snapshot(env) if with_state else None)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--horizons", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--root", default="outputs")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    prec = resolve_precision("auto", "cpu")
    print(f"phase5 speed, {torch.get_num_threads()} thread(s), precision {prec.name} ({prec.reason}); "
          f"{machine_summary()}")
    hist = breakout_history(with_state=True)
    scorer = load_phase1("latest", "diffusion", args.root)
    models = {"emulator": EmulatorModel(make_atari("Breakout")),
              "diamond": Phase1Model(scorer.model, "diamond", bf16=prec.bf16),
              "regressor": Phase1Model(load_phase1("latest", "regressor", args.root).model, "regressor", scorer.model,
                                       bf16=prec.bf16),
              "df": DFModel(load_phase2("latest", "diffusion_forcing", args.root).model, scorer.model, SamplerConfig(),
                            bf16=prec.bf16)}
    out = {}
    print("| world model | planner | futures / decision | s / decision | x emulator |\n|---|---|---|---|---|")
    for H in args.horizons:
        base = None
        for name, m in models.items():
            cfg = PlannerConfig(method="enumerate", horizon=H)
            p = Planner(m, cfg)
            with torch.no_grad():
                t = timed(lambda: p.plan(hist), args.repeats)
            base = base or t
            out[(name, H)] = t
            print(f"| {name} | enumerate h={H} | {4 ** H} | {t:.3f} | {t / base:.1f} |", flush=True)
    return out


if __name__ == "__main__":
    main()
