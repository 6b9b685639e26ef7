"""Evaluate phase 1 world models on held-out episodes: rollouts, metrics against horizon, videos, plots, table.

    python -m phase1_world_model.evaluate                                  # latest diffusion + regressor runs
    python -m phase1_world_model.evaluate denoise_steps_sweep=[1,2,3,5,10] sweep_solvers=[euler,heun]   # + steps sweep
    python -m phase1_world_model.evaluate publish=true                     # also rewrite the README's results
    python -m phase1_world_model.evaluate load=outputs/phase1/myrun regressor=none

From every start point (`starts_per_episode` per held-out episode), each method sees the same K real frames
and the episode's real actions and generates `max(horizons)` frames autoregressively (`rollout.py`):

    diffusion   the EDM world model, `sampler.steps` Euler steps per frame (its training config's sampler)
    regressor   the same UNet trained with MSE to output the next frame (the deterministic baseline)
    copy_last   the last real context frame, repeated (no model at all)

Metrics at each horizon h (the frame h steps after the context; `metrics.py`): the PSNR of the mean MSE over
rollouts (bootstrap interval), the median per-frame PSNR and the fraction of bit-exact frames, SSIM and its
background-robust contrast-structure term, MSE and the sharpness ratio (Laplacian energy generated / real,
< 1 = blur), each with a 95% interval. The reward/end head is scored on every held-out transition with the real next frame.

Writes `<load run>/eval/`: results.json, results.md (tables), metrics_vs_horizon.png, steps_sweep.png,
and side-by-side videos (real | diffusion | regressor | copy | |real - diffusion|) as MP4 + GIF in the
run's `media/`, also logged to its TensorBoard (and wandb when enabled) under `eval/`.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from common import report
from common.checkpoint import atomic_write
from common.config import REPO_ROOT, ConfigError, cli
from common.errors import command
from common.logger import LogConfig, RunLogger
from common.runs import writable_dir
from common.system import start
from phase1_world_model.config import EvaluateConfig
from phase1_world_model.dataset import AtariWorldModelDataset
from phase1_world_model import breakout
from phase1_world_model.metrics import fmt, score
from phase1_world_model.rollout import batched_rollout, gather, side_by_side, start_points
from phase1_world_model.loading import TrainedWorldModel, data_of, load_trained

METRICS = ("psnr", "psnr_median", "exact", "ssim", "ssim_cs", "mse", "sharpness_ratio")
PLOTTED = ("psnr", "exact", "ssim_cs", "sharpness_ratio")
README = REPO_ROOT / "phase1_world_model" / "README.md"
FIGURES = REPO_ROOT / "phase1_world_model" / "figures"
COMMAND = "python -m phase1_world_model.evaluate publish=true"


@torch.no_grad()
def reward_end_accuracy(model, ds: AtariWorldModelDataset, batch: int = 256) -> dict:
    """Confusion-based scores of the reward/end head on every transition of `ds` (real next frames)."""
    r_true, r_pred, e_true, e_pred = [], [], [], []
    device = next(model.parameters()).device
    for i in range(0, len(ds), batch):
        items = [ds[j] for j in range(i, min(i + batch, len(ds)))]
        b = {k: torch.stack([it[k] for it in items]).to(device) for k in ("obs", "act", "next_obs", "mask", "reward",
                                                                             "end")}
        r, e, _ = model.reward_end(b["obs"], b["act"], b["next_obs"], b["mask"])
        r_true.append(b["reward"].cpu()), r_pred.append(r.cpu()), e_true.append(b["end"].cpu()), e_pred.append(e.cpu())
    out = {}
    for name, t, p, classes in (("reward", torch.cat(r_true), torch.cat(r_pred), (-1, 0, 1)),
                                ("end", torch.cat(e_true).long(), torch.cat(e_pred).long(), (0, 1))):
        recall = {}
        for c in classes:
            n = int((t == c).sum())
            if n:
                recall[str(c)] = {"n": n, "recall": float(((p == c) & (t == c)).sum() / n),
                                  "precision": float(((p == c) & (t == c)).sum() / max(1, int((p == c).sum())))}
        out[name] = {"accuracy": float((t == p).float().mean()),
                     "balanced_accuracy": float(np.mean([v["recall"] for v in recall.values()])),
                     "per_class": recall}
    return out


def _method_rollouts(models: dict, batch, horizon: int, cfg: EvaluateConfig, bf16: bool, steps=None,
                     solver=None) -> dict:
    out = {}
    for name, tm in models.items():
        t0 = time.perf_counter()
        kw = {"steps": steps, "solver": solver} if name == "diffusion" else {}
        gen = batched_rollout(tm.model if tm is not None else None, batch, horizon, cfg.batch, cfg.run.seed,
                              bf16=bf16, **kw)
        out[name] = (gen, time.perf_counter() - t0)
    return out


def evaluate(cfg: EvaluateConfig) -> dict:
    rt = start(cfg.run)
    bf16 = rt.precision.bf16
    diff = load_trained(cfg.load, "diffusion", cfg.run.root, rt.device)
    models: dict[str, TrainedWorldModel | None] = {"diffusion": diff}
    if cfg.regressor != "none":
        models["regressor"] = load_trained(cfg.regressor, "regressor", cfg.run.root, rt.device)
    models["copy_last"] = None
    for name, tm in models.items():
        if tm is not None and tm.meta["game"] != diff.meta["game"]:
            raise ConfigError(name, tm.run.dir, f"was trained on {tm.meta['game']}, the diffusion model on "
                                                f"{diff.meta['game']}: evaluate models of one game")
    K = diff.cfg.model.context
    test = AtariWorldModelDataset(data_of(diff, cfg.run.root, cfg.data.folder), split="test", context=K)
    if test.game != diff.meta["game"]:
        raise ConfigError("data.game", test.game, f"the models were trained on {diff.meta['game']}")
    H = max(cfg.horizons)
    starts = start_points(test, H, cfg.starts_per_episode, cfg.max_episodes)
    batch = gather(test, starts, H)
    out_dir = Path(cfg.out) if cfg.out else writable_dir(diff.run, cfg.run.root) / "eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"evaluate: {len(batch)} rollouts of {H} frames from {len(set(e for e, _ in batch.starts))} held-out "
          f"episodes of {test.game}; methods: {', '.join(models)}; {rt.describe()}; -> {out_dir}")

    results = {"game": test.game, "dataset": str(test.root), "rollouts": len(batch), "horizons": cfg.horizons,
               "starts": batch.starts, "config": asdict(cfg), "system": rt.as_dict(),
               "models": {n: {"run": str(tm.run.dir), "describe": tm.model.describe(),
                              "steps": tm.cfg.sampler.steps, "solver": tm.cfg.sampler.solver}
                          for n, tm in models.items() if tm is not None},
               "methods": {}}
    rolls = _method_rollouts(models, batch, H, cfg, bf16)
    if test.game == "Breakout":
        results["game_state"] = breakout.game_scores({n: g for n, (g, _) in rolls.items()}, batch.future,
                                                     batch.future_ram, cfg.horizons)
        if results["game_state"] is None:
            print(f"  no game metrics: {breakout.ram_hint(test.root)}")
    for name, (gen, secs) in rolls.items():
        results["methods"][name] = {**score(gen, batch.future, cfg.horizons),
                                    "seconds": secs, "frames_per_s": len(batch) * H / secs}
        print(f"  {name:10s} PSNR " + "  ".join(f"h{h} {results['methods'][name]['psnr'][h][0]:.2f}"
                                                 for h in cfg.horizons) + f"  ({secs:.0f} s)")

    SH = min(cfg.sweep_horizon, H)  # the rollouts hold H real frames to compare with
    sweep_hs = sorted({h for h in cfg.horizons if h <= SH} | {SH})
    if cfg.shuffled_actions and len(batch) > 1:
        # The same starts under the actions of the next rollout in the batch: if the model ignored its actions,
        # this would score as well as the real actions do.
        shuffled = type(batch)(batch.context, batch.actions.roll(1, 0), batch.future, batch.starts, batch.future_ram)
        gen = batched_rollout(diff.model, shuffled, SH, cfg.batch, cfg.run.seed, bf16=bf16)
        results["shuffled_actions"] = score(gen, batch.future[:, :SH], sweep_hs)
        real = rolls["diffusion"][0][:, :SH]
        results["shuffled_actions_reference"] = score(real, batch.future[:, :SH], sweep_hs)
        print(f"  shuffled actions: PSNR h{SH} {results['shuffled_actions']['psnr'][SH][0]:.2f} "
              f"vs real actions {results['shuffled_actions_reference']['psnr'][SH][0]:.2f}")

    if cfg.denoise_steps_sweep:
        sweep = []
        for solver in cfg.sweep_solvers:
            for n in cfg.denoise_steps_sweep:
                t0 = time.perf_counter()
                gen = batched_rollout(diff.model, batch, SH, cfg.batch, cfg.run.seed, bf16=bf16,
                                      steps=n, solver=solver)
                secs = time.perf_counter() - t0
                row = {"solver": solver, "steps": n, "nfe": n if solver == "euler" else 2 * n - 1,
                       "seconds": secs, "frames_per_s": len(batch) * SH / secs,
                       **score(gen, batch.future[:, :SH], sweep_hs)}
                sweep.append(row)
                print(f"  sweep {solver} {n} steps: PSNR h1 {row['psnr'][1][0]:.2f} "
                      f"h{SH} {row['psnr'][SH][0]:.2f} ({secs:.0f} s)")
        results["steps_sweep"] = sweep

    if diff.model.head is not None:
        results["reward_end"] = reward_end_accuracy(diff.model, test)
        re_ = results["reward_end"]
        print(f"  reward head: accuracy {re_['reward']['accuracy']:.4f}, balanced {re_['reward']['balanced_accuracy']:.3f}; "
              f"end head: accuracy {re_['end']['accuracy']:.4f}, balanced {re_['end']['balanced_accuracy']:.3f}")

    _videos(diff, rolls, batch, cfg, writable_dir(diff.run, cfg.run.root))
    results["figures"] = _plots(results, out_dir)
    atomic_write(out_dir / "results.json", lambda f: f.write(json.dumps(results, indent=1).encode()))
    md = tables(results, diff)
    atomic_write(out_dir / "results.md", lambda f: f.write(md.encode()))
    if cfg.publish:
        publish(results, md)
    print(f"evaluate: wrote {out_dir / 'results.md'}")
    return results


def _videos(diff: TrainedWorldModel, rolls: dict, batch, cfg: EvaluateConfig, home: Path) -> None:
    """Side-by-side clips in media/ of `home` (the diffusion run, or where a release's results go) and its
    TensorBoard (wandb when enabled)."""
    if not cfg.videos:
        return
    logger = RunLogger(home, LogConfig(wandb=cfg.wandb, progress=False), enabled=True)
    step = int(diff.meta.get("trained_steps", diff.cfg.train.max_steps))
    picks = np.linspace(0, len(batch) - 1, min(cfg.videos, len(batch))).round().astype(int)
    names = [n for n in ("diffusion", "regressor", "copy_last") if n in rolls]
    for i in picks:
        ep, t0 = batch.starts[i]
        clip = side_by_side(batch.future[i], *[rolls[n][0][i] for n in names])
        logger.log_video(f"eval/rollout_ep{ep}_t{t0}", clip, step, fps=cfg.fps)
    logger.close()
    print(f"  videos ({' | '.join(['real', *names, '|real - diffusion|'])}) in {home / 'media'}")


def _plots(results: dict, out_dir: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(4 * len(PLOTTED), 3.2))
    hs = results["horizons"]
    for ax, k in zip(axes, PLOTTED):
        for name, m in results["methods"].items():
            est = np.array([m[k][h] for h in hs])  # (horizons, [estimate, low, high])
            err = np.nan_to_num(np.stack([est[:, 0] - est[:, 1], est[:, 2] - est[:, 0]]))
            ax.errorbar(hs, est[:, 0], yerr=err, marker="o", capsize=3, label=name)
        ax.set_xscale("log")
        ax.set_xticks(hs, [str(h) for h in hs])
        ax.set_xlabel("horizon (generated frames)")
        ax.set_title({"psnr": "PSNR of the mean MSE", "exact": "fraction of bit-exact frames",
                      "ssim_cs": "SSIM contrast-structure", "sharpness_ratio": "sharpness ratio (1 = real)"}[k])
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"{results['game']}: {results['rollouts']} held-out rollouts, 95% intervals")
    fig.tight_layout()
    p = out_dir / "metrics_vs_horizon.png"
    fig.savefig(p, dpi=90)
    plt.close(fig)
    paths.append(str(p))
    if results.get("steps_sweep"):
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        for solver in sorted({r["solver"] for r in results["steps_sweep"]}):
            rows = [r for r in results["steps_sweep"] if r["solver"] == solver]
            for ax, k in zip(axes, ("psnr", "sharpness_ratio")):
                for h in sorted(rows[0][k], key=int):
                    ax.plot([r["nfe"] for r in rows], [r[k][h][0] for r in rows], marker="o",
                            label=f"{solver}, h={h}")
        for ax, k in zip(axes, ("psnr", "sharpness_ratio")):
            ax.set_xlabel("network evaluations per frame")
            ax.set_title(k)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        p = out_dir / "steps_sweep.png"
        fig.savefig(p, dpi=90)
        plt.close(fig)
        paths.append(str(p))
    return paths


def tables(results: dict, diff: TrainedWorldModel) -> str:
    """Markdown tables of results.json (what the README shows)."""
    hs = results["horizons"]
    lines = [f"{results['rollouts']} rollouts from {len(set(e for e, _ in results['starts']))} held-out "
             f"{results['game']} episodes, real actions. Each cell: estimate [95% interval]; psnr = PSNR of the mean "
             "MSE over rollouts (bootstrap interval), psnr_median = median per-frame PSNR, exact = fraction of "
             "bit-exact frames (Wilson), ssim_cs = SSIM without its luminance term (robust to a background offset), "
             "the rest means ± 1.96 s.e. Diffusion: "
             f"{results['models']['diffusion']['describe']}, {results['models']['diffusion']['steps']} "
             f"{results['models']['diffusion']['solver']} steps per frame.", ""]
    for k in METRICS:
        lines += [f"**{k}** by horizon", "", "| method | " + " | ".join(f"h={h}" for h in hs) + " |",
                  "|---|" + "---|" * len(hs)]
        for name, m in results["methods"].items():
            lines.append(f"| {name} | " + " | ".join(fmt(m[k][h], k) for h in hs) + " |")
        lines.append("")
    if results.get("game_state"):
        lines += ["### Did it get the game right? (Breakout)", "",
                  "Ground truth from the emulator's RAM recorded with the held-out episodes; generated frames read by "
                  "`phase1_world_model/breakout.py`'s detector, whose own error on the real frames is the first row.", ""]
        lines += breakout.tables(results["game_state"], hs)
    lines += ["| method | generation time | frames/s (batch %d) |" % results["config"]["batch"], "|---|---|---|"]
    for name, m in results["methods"].items():
        lines.append(f"| {name} | {m['seconds']:.0f} s | {m['frames_per_s']:.1f} |")
    lines.append("")
    if results.get("steps_sweep"):
        sh = sorted(results["steps_sweep"][0]["psnr"], key=int)
        lines += [f"**Denoising steps** (diffusion model, horizon up to {results['config']['sweep_horizon']})", "",
                  "| solver | steps | NFE | " + " | ".join(f"PSNR h={h}" for h in sh) + " | "
                  + " | ".join(f"sharpness h={h}" for h in sh) + " | frames/s |",
                  "|---|---|---|" + "---|" * (2 * len(sh) + 1)]
        for r in results["steps_sweep"]:
            lines.append(f"| {r['solver']} | {r['steps']} | {r['nfe']} | "
                         + " | ".join(fmt(r["psnr"][h], "psnr") for h in sh) + " | "
                         + " | ".join(fmt(r["sharpness_ratio"][h], "sharpness_ratio") for h in sh)
                         + f" | {r['frames_per_s']:.1f} |")
        lines.append("")
    if results.get("shuffled_actions"):
        sh = sorted(results["shuffled_actions"]["psnr"], key=int)
        lines += ["**Does the model use its actions?** Diffusion rollouts from the same starts under the real actions "
                  "and under another rollout's actions", "",
                  "| actions | " + " | ".join(f"PSNR h={h}" for h in sh) + " | " + " | ".join(f"SSIM h={h}" for h in sh)
                  + " |", "|---|" + "---|" * (2 * len(sh))]
        for name, key in (("real", "shuffled_actions_reference"), ("shuffled", "shuffled_actions")):
            r = results[key]
            lines.append(f"| {name} | " + " | ".join(fmt(r["psnr"][h], "psnr") for h in sh) + " | "
                         + " | ".join(fmt(r["ssim"][h], "ssim") for h in sh) + " |")
        lines.append("")
    if results.get("reward_end"):
        lines += ["**Reward / end head** on every held-out transition (real next frame)", "",
                  "| head | accuracy | balanced accuracy | per class: n, recall, precision |", "|---|---|---|---|"]
        for name, r in results["reward_end"].items():
            per = "; ".join(f"{c}: {v['n']}, {v['recall']:.2f}, {v['precision']:.2f}" for c, v in r["per_class"].items())
            lines.append(f"| {name} | {r['accuracy']:.4f} | {r['balanced_accuracy']:.3f} | {per} |")
        lines.append("")
    return "\n".join(lines)


def publish(results: dict, md: str, readme: Path = README, figures: Path = FIGURES) -> None:
    """Copy the plots to the README's figures folder and replace the README's results block."""
    report.publish(readme, md, results["figures"], figures, COMMAND)
    print(f"  published the tables and {len(results['figures'])} figure(s) to {readme}")


@command
def main(argv: list[str] | None = None) -> dict:
    cfg = cli(EvaluateConfig, "phase1/evaluate", argv, __doc__)
    return evaluate(cfg)


if __name__ == "__main__":
    main()
