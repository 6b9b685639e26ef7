"""`make roadmap-smoke`: every phase's main pipeline at smoke scale, chained the way a user chains them.

    python scripts/roadmap_smoke.py                    # under a fresh temporary root; ~5 min on 2 cores
    python scripts/roadmap_smoke.py --root /tmp/chain  # keep everything it made
    python scripts/roadmap_smoke.py --phases 0 1 2     # only these

Each phase runs its own entry points (in this process, as `main([...])`) under one `run.root`, and finds what
the earlier phases made only through the resolver (`"latest"` runs, `init_from=latest`), never by path:

    phase 0  classifier + diffusion training on synthetic images, samples and FID-proxy through `load=latest`
    phase 1  collect -> train the world model and the regressor -> evaluate (both found as `latest`) -> play
    phase 2  train Diffusion Forcing warm-started from phase 1's `latest` run on phase 1's data -> compare
    phase 3  collect LIBERO demonstrations (one per dataset) -> base training -> LoRA finetune on the base run
             -> one evaluation episode of the adapter
    phase 4  train the UWM's tokenizer and the UWM on phase 3's smoke demonstrations (found by collection name and
             `tokenizer=latest`) -> one short LIBERO episode of its policy mode
    phase 5  the planner plays real Breakout steps with phase 1's world model and phase 2's DF model (both found as
             `latest`) and with the emulator as its model; an actor-critic trained in phase 1's world model plays
             too -> the table over the agents

One line per phase at the end (what ran, the headline number, seconds). Exit status 1 if any phase failed.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")


def phase0(root: str) -> str:
    from phase0_diffusion import classifier, evaluate, sample, train
    common = [f"run.root={root}", "data.name=synthetic"]
    classifier.main([*common, "train.max_steps=20", "log.progress=false", "run.precision=fp32"])
    out = train.main(["profile=smoke", f"run.root={root}", "diffusion.class_conditional=true"])
    png = sample.main([f"run.root={root}", "load=latest", "sample.num=16", "sample.sampler=euler", "sample.steps=4"])
    m = evaluate.main([f"run.root={root}", "load=latest", "num_samples=32", "sample.sampler=euler", "sample.steps=4"])
    return (f"trained {out['train/loss']:.3f} final loss; sampled {Path(png).name} via load=latest; "
            f"FID-proxy {m['fid_proxy']:.2f}, class accuracy {m['class_accuracy']:.2f} (synthetic data, 20 steps)")


def phase1(root: str) -> str:
    from phase1_world_model import collect, evaluate, play, train
    collect.main(["profile=smoke", f"run.root={root}"])
    train.main(["profile=smoke", f"run.root={root}", "run.name=diffusion"])
    train.main(["profile=smoke", f"run.root={root}", "run.name=regressor", "model.kind=regressor"])
    res = evaluate.main([f"run.root={root}", "horizons=[1,3]", "starts_per_episode=2", "videos=1", "sweep_horizon=3"])
    rep = play.main([f"run.root={root}", "mode=headless", "frames=5"])
    p = {n: m["psnr"][3][0] for n, m in res["methods"].items()}
    return (f"collected, trained diffusion + regressor; evaluate PSNR at h=3: "
            + ", ".join(f"{n} {v:.1f}" for n, v in p.items()) + f"; played {rep['steps']} frames headless")


def phase2(root: str) -> str:
    from phase2_diffusion_forcing import compare, train
    out = train.main(["profile=smoke", f"run.root={root}", "run.name=df", "init_from=latest"])
    res = compare.main([f"run.root={root}", "full_sequence=none", "starts_per_episode=1", "multiples=[1,2]",
                        "ablate_stabilization=[0]", "ablate_uncertainty=[1]", "ablation_multiple=1", "videos=0"])
    import json
    warm = json.loads((Path(out["run_dir"]) / "export" / "diffusion_forcing.json").read_text())["warm_start"]
    H = max(res["horizons"])
    return (f"DF warm-started from {Path(warm).name} (phase 1, found as latest); compare PSNR at h={H}: "
            + ", ".join(f"{n} {m['psnr'][H][0]:.1f}" for n, m in res["methods"].items()))


def phase3(root: str) -> str:
    from phase3_vla import collect, evaluate, finetune, train
    collect.main(["profile=smoke", f"run.root={root}", "videos=0"])
    args = ["profile=smoke", f"run.root={root}"]
    train.main(args)
    lora = finetune.main([*args, "finetune.num_demos=1"])
    res = evaluate.main([*args, f"load={Path(lora['run_dir']).name}", "eval.episodes=1", "eval.videos=0"])
    return (f"collected 1+1 demos, trained base-smoke, LoRA on it ({lora['trainable']:,} trainable); "
            f"eval {res['total']['successes']}/{res['total']['episodes']} (a 6-step smoke episode)")


def phase4(root: str) -> str:
    from phase4_uwm import evaluate, train, train_tokenizer
    args = ["profile=smoke", f"run.root={root}"]  # phase 3's smoke collection, found by its name (data.demos=smoke)
    tok = train_tokenizer.main(args)
    out = train.main([*args, "tokenizer=latest"])
    res = evaluate.main([f"run.root={root}", "data.demos=smoke", "parts=[policy]", "eval.episodes=1",
                         "eval.libero.max_steps=3", "eval.libero.image_size=64", "eval.videos=0", "eval.progress=false"])
    return (f"tokenizer PSNR {tok['val/psnr']:.1f} dB, UWM trained on phase 3's smoke demos (tokenizer found as latest), "
            f"losses action {out['train/loss/action']:.3f} video {out['train/loss/video']:.3f}; policy mode played "
            f"{res['policy']['total']['episodes']} LIBERO episode (3 steps)")


def phase5(root: str) -> str:
    from phase5_integration import choose, evaluate, plan, train_agent, train_scorer
    args = ["profile=smoke", f"run.root={root}", "game.episodes=1", "game.max_steps=3", "video=0"]
    ms = {kind: plan.main([*args, f"model.kind={kind}"])["decision_ms"][0] for kind in ("diamond", "df", "emulator")}
    train_agent.main(["profile=smoke", f"run.root={root}"])  # in phase 1's world model, found as latest
    ac = plan.main([*args, "agent=actor_critic"])
    evaluate.main([f"run.root={root}"])
    # testbed 2: a progress scorer on phase 3's smoke demos (phase 4's tokenizer, found as latest), then phase 4's
    # UWM (found as latest) proposes 2 chunks per decision and imagines them, the scorer chooses
    train_scorer.main(["profile=smoke", f"run.root={root}"])
    ch = choose.main(["profile=smoke", f"run.root={root}", "eval.libero.image_size=64", "eval.videos=0",
                      "eval.progress=false"])
    evaluate.main([f"run.root={root}", "testbed=libero"])
    return ("planner played 3 real Breakout steps in each of DIAMOND-lite (phase 1, found as latest), DF (phase 2, "
            "found as latest) and the emulator; ms per decision " + ", ".join(f"{k} {v:.0f}" for k, v in ms.items())
            + f"; an actor-critic trained in imagination played {ac['steps'][0]:.0f} steps; in LIBERO the UWM "
            f"(phase 4, found as latest) chose among 2 imagined chunks {ch['decisions']} time(s)")


PHASES = {0: phase0, 1: phase1, 2: phase2, 3: phase3, 4: phase4, 5: phase5}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="", help="run.root for everything (default: a temporary folder, removed)")
    ap.add_argument("--phases", nargs="+", type=int, default=[0, 1, 2, 3, 4, 5])
    ap.add_argument("--verbose", action="store_true", help="show each command's own output")
    a = ap.parse_args(argv)
    tmp = None if a.root else tempfile.TemporaryDirectory(prefix="roadmap-smoke-")
    root = a.root or tmp.name
    lines, failed, t_all = [], False, time.perf_counter()
    for n in a.phases:
        if n not in PHASES:
            lines.append(f"phase {n}: not built yet")
            continue
        t0 = time.perf_counter()
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(sys.stdout if a.verbose else buf):
                summary = PHASES[n](root)
            lines.append(f"phase {n}: ok   {summary} ({time.perf_counter() - t0:.0f} s)")
        except BaseException as e:  # SystemExit from an entry point's error path included
            failed = True
            lines.append(f"phase {n}: FAIL {type(e).__name__}: {e} ({time.perf_counter() - t0:.0f} s)")
            print(buf.getvalue()[-3000:], file=sys.stderr)
            traceback.print_exc()
        print(lines[-1], flush=True)
    print(f"\nroadmap smoke under {root} in {time.perf_counter() - t_all:.0f} s:")
    print("\n".join(lines))
    if tmp is not None:
        tmp.cleanup()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
