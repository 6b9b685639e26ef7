"""Phase 4 costs on this machine: a training step of each profile's UWM, tokenizer and baselines (Diffusion Policy,
inverse regressor, DIAMOND-lite), and each mode's latency at batch 1 and batch 16 (what phase 5 pays to score 16
action proposals at once).

    python -m benchmarks.phase4_speed                     # the cpu profile's sizes, run.threads = all cores
    python -m benchmarks.phase4_speed --threads 1 --profile smoke
    python -m benchmarks.phase4_speed --only modes           # or train, baselines

Random weights and inputs of the right shapes (speed does not depend on the values). Each figure is the median of
`--repeats` timed calls after one warm-up; the modes are also given as a ratio to policy mode at batch 1, measured in
the same process. Run it with nothing else busy: a second busy process on 2 cores slows torch by 10x or more. The
header names the CPU, its flags and the precision used, which decide these numbers.
"""
from __future__ import annotations

import argparse

import torch

from benchmarks.phase1_speed import median_time as timed
from common.config import load_config
from common.precision import machine_summary, resolve_precision
from common.stepwise import StepRNG
from phase4_uwm.config import MODES, Phase4Config, TokenizerTrainConfig
from phase4_uwm.model import UWM
from phase4_uwm.modes import run_mode
from phase4_uwm.tokenizer import Tokenizer


def step_time(model, batch: dict, B: int, repeats: int, prec) -> float:
    """Median seconds of one optimizer step (forward, backward, AdamW) of a Trainer-convention model on `batch`."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-4)

    def step():
        with prec.autocast():
            loss, _ = model(batch, StepRNG(0, 0, 0, B, B, torch.device("cpu")))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return timed(step, repeats)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "full"])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", choices=["train", "baselines", "modes"], default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    prec = resolve_precision("auto", "cpu")
    cfg = load_config(Phase4Config, "phase4/train", [f"profile={args.profile}"])
    tcfg = load_config(TokenizerTrainConfig, "phase4/train_tokenizer", [f"tokenizer_profile={args.profile}"])
    print(f"phase4 speed, profile {args.profile}, {torch.get_num_threads()} thread(s), precision {prec.name} "
          f"({prec.reason}); {machine_summary()}")
    torch.manual_seed(0)
    tok_cfg = tcfg.tokenizer
    m = UWM(cfg.model, cfg.clip, tok_cfg, 7)
    S, (C, h, w) = tok_cfg.image_size, m.latent
    res = {}

    def batch(B: int) -> dict:
        return {"obs": torch.randint(0, 256, (B, 2, cfg.clip.obs_frames, 3, S, S), dtype=torch.uint8),
                "action": torch.rand(B, cfg.clip.chunk, 7) * 2 - 1,
                "action_is_pad": torch.zeros(B, cfg.clip.chunk, dtype=torch.bool),
                "task": torch.zeros(B, dtype=torch.long), "has_action": torch.ones(B, dtype=torch.bool),
                "future": torch.randn(B, 2, cfg.clip.future_frames, C, h, w)}

    print(m.describe())
    if args.only in (None, "train"):
        B, TB = cfg.train.batch_size, tcfg.train.batch_size
        res["uwm_step_s"] = step_time(m, batch(B), B, args.repeats, prec)
        frames = {"frames": torch.randint(0, 256, (TB, 3, S, S), dtype=torch.uint8)}
        res["tokenizer_step_s"] = step_time(Tokenizer(tok_cfg), frames, TB, args.repeats, prec)
        print(f"training step: UWM batch {B}: {res['uwm_step_s']:.3f} s "
              f"({cfg.train.max_steps} steps = {res['uwm_step_s'] * cfg.train.max_steps / 60:.0f} min); tokenizer batch "
              f"{TB}: {res['tokenizer_step_s']:.3f} s ({tcfg.train.max_steps} steps = "
              f"{res['tokenizer_step_s'] * tcfg.train.max_steps / 60:.0f} min)")
    if args.only in (None, "baselines"):
        res.update(baselines(args.profile, args.repeats, prec))
    if args.only in (None, "modes"):
        m.eval()
        print(f"modes, {cfg.model.sample_steps} DDIM steps (observation encoded inside each call):")
        print("| mode | batch 1 (s) | batch 16 (s) | batch 16 per sample (s) | batch 1 vs policy |")
        print("|---|---|---|---|---|")
        base = None
        for mode in MODES:
            row = {}
            for B in (1, 16):
                b = batch(B)
                a = b["action"]

                def call():
                    with torch.no_grad(), prec.autocast():
                        run_mode(m, mode, b["obs"], b["task"], actions=a, future=b["future"])
                row[B] = timed(call, args.repeats)
            base = base or row[1]
            res[f"{mode}_b1_s"], res[f"{mode}_b16_s"] = row[1], row[16]
            print(f"| {mode} | {row[1]:.3f} | {row[16]:.3f} | {row[16] / 16:.4f} | {row[1] / base:.2f}x |")
    return res


def baselines(profile: str, repeats: int, prec) -> dict:
    """Training-step time of each baseline at its profile's batch, on random data of the right shapes."""
    from phase1_world_model.config import FrameSamplerConfig
    from phase1_world_model.model import WorldModel
    from phase4_uwm.baselines import InverseRegressor
    from phase4_uwm.config import DiamondTrainConfig, DPTrainConfig, InverseTrainConfig
    from phase4_uwm.data import ActionStats, Clips, Demos
    from phase4_uwm.diamond import DiamondClips
    from phase4_uwm.diffusion_policy import DPClips, DPModule, build_dp, stats_of

    def demos(side: int, n: int = 200) -> Demos:
        return Demos(torch.randint(0, 256, (n, 2, 3, side, side), dtype=torch.uint8), torch.randn(n, 7),
                     torch.randn(n, 8), torch.arange(n) // 100, torch.full((n,), 9), {9: "x"}, {})

    def ds_time(model, ds, B: int) -> float:
        return step_time(model, torch.utils.data.default_collate([ds[i % len(ds)] for i in range(B)]), B, repeats, prec)
    out = {}
    c = load_config(DPTrainConfig, "phase4/train_dp", [f"dp_profile={profile}"])
    d = demos(128)
    pol, pre, _ = build_dp(c.dp, stats_of(d), 128)
    out["dp"] = (ds_time(DPModule(pol, pre), DPClips(d, c.dp), c.train.batch_size), c.train)
    c = load_config(InverseTrainConfig, "phase4/train_inverse", [f"inverse_profile={profile}"])
    d = demos(c.image_size)
    st = ActionStats.of(d.actions)
    out["inverse"] = (ds_time(InverseRegressor(c.model, c.clip, 7), Clips(d, c.clip, st), c.train.batch_size), c.train)
    c = load_config(DiamondTrainConfig, "phase4/train_diamond", [f"diamond_profile={profile}"])
    d = demos(c.image_size)
    wm = WorldModel(c.model, 0, (6, c.image_size, c.image_size), FrameSamplerConfig(steps=c.sampler_steps), action_size=7)
    out["diamond"] = (ds_time(wm, DiamondClips(d, c.model.context, st), c.train.batch_size), c.train)
    names = {"dp": "Diffusion Policy", "inverse": "inverse regressor", "diamond": "DIAMOND-lite"}
    print("baselines, training step: " + "; ".join(
        f"{names[k]} batch {t.batch_size}: {s:.3f} s ({t.max_steps} steps = {s * t.max_steps / 60:.0f} min)"
        for k, (s, t) in out.items()))
    return {f"{k}_step_s": s for k, (s, _) in out.items()}


if __name__ == "__main__":
    main()
