"""What Diffusion Forcing buys over autoregressive diffusion: every method from the same real context under the same actions.

    python -m phase2_diffusion_forcing.compare                      # latest DF, full-sequence and phase 1 runs
    python -m phase2_diffusion_forcing.compare publish=true         # also rewrite the README's results block
    python -m phase2_diffusion_forcing.compare full_sequence=none teacher_forced=none multiples=[1,2,4,8]
    python -m phase2_diffusion_forcing.compare tables_from=outputs/phase2/df-cpu/compare/results.json publish=true
                                                                    # an earlier comparison's tables, nothing generated
    python -m phase2_diffusion_forcing.compare variants=[outputs/phase2/df-cpu/compare/results.json,...] publish=true
                                                                    # DF variants side by side (their own comparisons)

From `starts_per_episode` points of every held-out episode, K real frames start each rollout, which then
runs for max(multiples) x L frames (L = the DF model's training window) under the episode's real actions:

    teacher_forced     phase 1's world model (trained on clean context, one frame ahead), rollout.py
    tf_control         (control=<run>) the equal-budget control: phase 1's objective trained on from the same warm
                       start for DF's steps, batch and windows (model.objective=teacher_forced), clean feedback
    full_sequence      the same network as DF trained with one noise level per window, full-sequence schedule
    df_ar              Diffusion Forcing, autoregressive schedule, generated context fed back clean
    df_ar_stab         ... fed back at the stabilization level σ_stab
    df_pyramid         pyramid schedule (uncertainty u), clean feedback
    df_pyramid_stab    pyramid schedule, σ_stab feedback

All use `steps` noise levels per frame (3 Euler steps, phase 1's sampler). Metrics per frame (phase 1's
`metrics.py`): PSNR of the mean MSE (bootstrap interval), the median PSNR and the fraction of bit-exact
frames, SSIM and its background-robust contrast-structure term, MSE, sharpness ratio, and the drift measure
`color_tv` (distance of the frame's colour histogram from the real frame's); every value with a 95% interval. Ablations: σ_stab for df_ar, and u for df_pyramid_stab, at
`ablation_multiple` x L. Writes `<df run>/compare/` (results.json, results.md, plots) and long side-by-side
videos in the DF run's media/.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
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
from phase1_world_model.dataset import AtariWorldModelDataset
from phase1_world_model import breakout
from phase1_world_model.metrics import color_tv, fmt, psnr_curve, score
from phase1_world_model.rollout import batched_rollout, gather, side_by_side, start_points
from phase1_world_model.loading import data_of, load_trained as load_phase1
from phase2_diffusion_forcing.config import CompareConfig, SamplerConfig
from phase2_diffusion_forcing.sampler import rollout
from phase2_diffusion_forcing.loading import load_trained

METRICS = ("psnr", "psnr_median", "exact", "ssim", "ssim_cs", "mse", "sharpness_ratio", "drift")
COMMAND = "python -m phase2_diffusion_forcing.compare publish=true"
README = REPO_ROOT / "phase2_diffusion_forcing" / "README.md"
FIGURES = REPO_ROOT / "phase2_diffusion_forcing" / "figures"


def drift(gen: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
    """Phase 2's extra per-frame metric (N, h, ...) -> (N, h): colour-histogram distance."""
    return {"drift": color_tv(gen, real)}


def over_horizon(gen: torch.Tensor, real: torch.Tensor) -> dict[str, list[float]]:
    """Per horizon h = 1..H: the PSNR of the mean MSE over rollouts, and the mean drift."""
    return {"psnr": psnr_curve(gen, real).tolist(), "drift": color_tv(gen, real).mean(0).tolist()}


def df_rollouts(model, batch, horizon: int, sampler: SamplerConfig, cfg: CompareConfig, bf16: bool) -> torch.Tensor:
    """DF-sampler rollouts over the batch in chunks of cfg.batch; chunk i's noise from seed + i."""
    device = next(model.parameters()).device
    outs = []
    for i in range(0, len(batch), cfg.batch):
        g = torch.Generator(device=device).manual_seed(cfg.run.seed + i)
        outs.append(rollout(model, batch.context[i:i + cfg.batch], batch.actions[i:i + cfg.batch], horizon, sampler,
                            g, bf16=bf16))
    return torch.cat(outs)


def compare(cfg: CompareConfig) -> dict:
    rt = start(cfg.run)
    device, bf16 = rt.device, rt.precision.bf16
    df = load_trained(cfg.load, "diffusion_forcing", cfg.run.root, device)
    fs = load_trained(cfg.full_sequence, "full_sequence", cfg.run.root, device) if cfg.full_sequence != "none" else None
    tf = load_phase1(cfg.teacher_forced, "diffusion", cfg.run.root, device) if cfg.teacher_forced != "none" else None
    ctl = load_trained(cfg.control, "teacher_forced", cfg.run.root, device) if cfg.control != "none" else None
    L, K = df.meta["window"], df.meta["context"]
    for name, m in (("full_sequence", fs and fs.meta), ("teacher_forced", tf and tf.meta), ("control", ctl and ctl.meta)):
        if m and m["game"] != df.meta["game"]:
            raise ConfigError(name, m["game"], f"the DF model was trained on {df.meta['game']}: compare one game")
    test = AtariWorldModelDataset(data_of(df, cfg.run.root, cfg.data.folder), split="test", context=K)
    H = max(cfg.multiples) * L
    horizons = sorted({1, *(m * L for m in cfg.multiples)})
    batch = gather(test, start_points(test, H, cfg.starts_per_episode, cfg.max_episodes), H)
    out_dir = Path(cfg.out) if cfg.out else writable_dir(df.run, cfg.run.root) / "compare"
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"compare: {len(batch)} rollouts of {H} frames (window L={L}, horizons {horizons}) from "
          f"{len(set(e for e, _ in batch.starts))} held-out {test.game} episodes; {rt.describe()} -> {out_dir}")

    base = SamplerConfig(steps=cfg.denoise_steps, chunk=L)
    methods: dict[str, tuple] = {}
    if tf is not None:
        methods["teacher_forced"] = ("phase 1 world model, clean context", lambda: batched_rollout(
            tf.model, batch, H, cfg.batch, cfg.run.seed, steps=cfg.denoise_steps, bf16=bf16))
    if ctl is not None:
        methods["tf_control"] = ("teacher forcing trained on for DF's budget", lambda: df_rollouts(
            ctl.model, batch, H, replace(base, schedule="autoregressive"), cfg, bf16))
    if fs is not None:
        methods["full_sequence"] = ("full-sequence model and schedule", lambda: df_rollouts(
            fs.model, batch, H, replace(base, schedule="full_sequence"), cfg, bf16))
    s, u = cfg.stabilization, cfg.pyramid_uncertainty
    for name, desc, sampler in (
            ("df_ar", "DF, autoregressive, clean feedback", replace(base, schedule="autoregressive")),
            ("df_ar_stab", f"DF, autoregressive, σ_stab={s}", replace(base, schedule="autoregressive", stabilization=s)),
            ("df_pyramid", f"DF, pyramid u={u}, clean feedback", replace(base, schedule="pyramid", uncertainty=u)),
            ("df_pyramid_stab", f"DF, pyramid u={u}, σ_stab={s}", replace(base, schedule="pyramid", uncertainty=u,
                                                                          stabilization=s))):
        methods[name] = (desc, lambda sampler=sampler: df_rollouts(df.model, batch, H, sampler, cfg, bf16))

    results = {"game": test.game, "window": L, "context": K, "rollouts": len(batch), "horizon": H,
               "horizons": horizons, "starts": batch.starts, "config": asdict(cfg), "system": rt.as_dict(),
               "models": {"df": str(df.run.dir), "full_sequence": str(fs.run.dir) if fs else None,
                          "teacher_forced": str(tf.run.dir) if tf else None,
                          "df_describe": df.model.describe()},
               "methods": {}, "curves": {}}
    gens = {}
    for name, (desc, fn) in methods.items():
        t0 = time.perf_counter()
        gen = fn()
        secs = time.perf_counter() - t0
        results["methods"][name] = {"description": desc, "seconds": secs, **score(gen, batch.future, horizons, drift)}
        results["curves"][name] = over_horizon(gen, batch.future)
        gens[name] = gen
        print(f"  {name:16s} PSNR " + "  ".join(f"h{h} {results['methods'][name]['psnr'][h][0]:.2f}" for h in horizons)
              + f"   drift h{H} {results['methods'][name]['drift'][H][0]:.3f}  ({secs:.0f} s)")
    if test.game == "Breakout":
        results["game_state"] = breakout.game_scores(gens, batch.future, batch.future_ram, horizons)
        if results["game_state"] is None:
            print(f"  no game metrics: {breakout.ram_hint(test.root)}")

    Ha = cfg.ablation_multiple * L
    ab_batch = type(batch)(batch.context, batch.actions[:, :K - 1 + Ha], batch.future[:, :Ha], batch.starts,
                           None if batch.future_ram is None else batch.future_ram[:, :Ha])
    results["ablation_stabilization"] = []
    for level in cfg.ablate_stabilization:
        gen = df_rollouts(df.model, ab_batch, Ha, replace(base, schedule="autoregressive", stabilization=level), cfg,
                          bf16)
        results["ablation_stabilization"].append(
            {"stabilization": level, **{k: v[Ha] for k, v in score(gen, ab_batch.future, [Ha], drift).items()},
             "psnr_mean_over_horizon": float(np.mean(over_horizon(gen, ab_batch.future)["psnr"]))})
        print(f"  ablation σ_stab={level}: PSNR h{Ha} {results['ablation_stabilization'][-1]['psnr'][0]:.2f}")
    results["ablation_uncertainty"] = []
    for un in cfg.ablate_uncertainty:
        gen = df_rollouts(df.model, ab_batch, Ha, replace(base, schedule="pyramid", uncertainty=un, stabilization=s),
                          cfg, bf16)
        results["ablation_uncertainty"].append(
            {"uncertainty": un, **{k: v[Ha] for k, v in score(gen, ab_batch.future, [Ha], drift).items()},
             "psnr_mean_over_horizon": float(np.mean(over_horizon(gen, ab_batch.future)["psnr"]))})
        print(f"  ablation pyramid u={un}: PSNR h{Ha} {results['ablation_uncertainty'][-1]['psnr'][0]:.2f}")

    _videos(df, gens, batch, cfg, writable_dir(df.run, cfg.run.root))
    results["figures"] = _plots(results, out_dir)
    atomic_write(out_dir / "results.json", lambda f: f.write(json.dumps(results, indent=1).encode()))
    md = tables(results)
    atomic_write(out_dir / "results.md", lambda f: f.write(md.encode()))
    if cfg.publish:
        report.publish(README, md, results["figures"], FIGURES, COMMAND)
        print(f"  published to {README}")
    print(f"compare: wrote {out_dir / 'results.md'}")
    return results


def _videos(df, gens: dict, batch, cfg: CompareConfig, home: Path) -> None:
    if not cfg.videos:
        return
    logger = RunLogger(home, LogConfig(progress=False))
    picks = np.linspace(0, len(batch) - 1, min(cfg.videos, len(batch))).round().astype(int)
    names = list(gens)
    for i in picks:
        ep, t0 = batch.starts[i]
        logger.log_video(f"compare/ep{ep}_t{t0}", side_by_side(batch.future[i], *[gens[n][i] for n in names]),
                         int(df.meta["trained_steps"]))
    logger.close()
    print(f"  videos (real | {' | '.join(names)} | |real - {names[0]}|) in {home / 'media'}")


def _plots(results: dict, out_dir: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    L, H = results["window"], results["horizon"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, k in zip(axes, ("psnr", "drift")):
        for name, c in results["curves"].items():
            ax.plot(np.arange(1, H + 1), c[k], label=name)
        for m in range(L, H + 1, L):
            ax.axvline(m, color="grey", lw=0.5, ls=":")
        ax.set_xlabel(f"frames generated (dotted: multiples of the training window L={L})")
        ax.set_title({"psnr": "PSNR vs real frames (higher is better)",
                      "drift": "drift: colour-histogram distance (lower is better)"}[k])
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    p1 = out_dir / "error_vs_horizon.png"
    fig.savefig(p1, dpi=90)
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, key, x in ((axes[0], "ablation_stabilization", "stabilization"), (axes[1], "ablation_uncertainty",
                                                                               "uncertainty")):
        rows = results[key]
        ax.errorbar([r[x] for r in rows], [r["psnr"][0] for r in rows],
                    yerr=np.nan_to_num([[r["psnr"][0] - r["psnr"][1] for r in rows], [r["psnr"][2] - r["psnr"][0] for r in rows]]),
                    marker="o", capsize=3, label=f"PSNR at h={results['config']['ablation_multiple'] * L}")
        ax.plot([r[x] for r in rows], [r["psnr_mean_over_horizon"] for r in rows], marker="s", label="PSNR mean over h")
        ax.set_xlabel({"stabilization": "σ_stab (autoregressive schedule)",
                       "uncertainty": "pyramid uncertainty u (σ_stab as in the table)"}[x])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    p2 = out_dir / "ablations.png"
    fig.savefig(p2, dpi=90)
    plt.close(fig)
    return [str(p1), str(p2)]


def models_line(results: dict) -> str:
    """Which runs the comparison read, as the command named them (`load`, `control`, ...)."""
    c = results["config"]
    return ", ".join(f"{key}={c[key]}" for key in ("load", "control", "teacher_forced", "full_sequence"))


def horizon_label(L: int):
    """A table column's name: h=16 (2L) for multiples of the window L, h=1 otherwise."""
    return lambda h: f"h={h}" + (f" ({h // L}L)" if h % L == 0 else "")


def tables(results: dict) -> str:
    L, hs = results["window"], results["horizons"]
    label = horizon_label(L)
    lines = [f"{results['rollouts']} rollouts of {results['horizon']} frames from "
             f"{len(set(e for e, _ in results['starts']))} held-out {results['game']} episodes, real actions, "
             f"training window L={L}, K={results['context']} context frames, {results['config']['denoise_steps']} noise "
             f"levels per frame, sampling seed {results['config']['run']['seed']}; models: {models_line(results)}. Each cell: estimate [95% interval]; psnr = PSNR of the mean MSE over rollouts (bootstrap interval), psnr_median = median per-frame PSNR, exact = fraction of bit-exact frames (Wilson), ssim_cs = SSIM without its luminance term (robust to a background offset), the rest means ± 1.96 s.e. DF model: {results['models']['df_describe']}.", ""]
    for k in METRICS:
        lines += [f"**{k}**", "", "| method | " + " | ".join(label(h) for h in hs) + " |", "|---|" + "---|" * len(hs)]
        for name, m in results["methods"].items():
            lines.append(f"| {name} ({m['description']}) | " + " | ".join(fmt(m[k][h], k) for h in hs) + " |")
        lines.append("")
    if results.get("game_state"):
        lines += ["### Did it get the game right? (Breakout)", "",
                  "Ground truth from the emulator's RAM recorded with the held-out episodes; generated frames read by "
                  "phase 1's `breakout.py` detector, whose own error on the real frames is the first row.", ""]
        lines += breakout.tables(results["game_state"], hs, label)
    lines += ["| method | generation time |", "|---|---|"]
    lines += [f"| {n} | {m['seconds']:.0f} s |" for n, m in results["methods"].items()]
    Ha = results["config"]["ablation_multiple"] * L
    for key, x in (("ablation_stabilization", "stabilization"), ("ablation_uncertainty", "uncertainty")):
        lines += ["", f"**Ablation: {x}** ({'autoregressive schedule' if x == 'stabilization' else 'pyramid, σ_stab=' + str(results['config']['stabilization'])}), at h={Ha}", "",
                  f"| {x} | PSNR | SSIM | SSIM-cs | drift | sharpness | PSNR averaged over h=1..{Ha} |",
                  "|---|---|---|---|---|---|---|"]
        for r in results[key]:
            lines.append(f"| {r[x]} | " + " | ".join(fmt(r[k], k) for k in ("psnr", "ssim", "ssim_cs", "drift",
                                                                          "sharpness_ratio"))
                         + f" | {r['psnr_mean_over_horizon']:.2f} |")
    return "\n".join(lines) + "\n"


@command
def main(argv: list[str] | None = None) -> dict:
    cfg = cli(CompareConfig, "phase2/compare", argv, __doc__)
    if cfg.variants:
        return variants(cfg)
    return republish(cfg) if cfg.tables_from else compare(cfg)


def _int_keys(obj):
    """JSON turned the horizon keys (ints) into strings: turn them back."""
    if isinstance(obj, dict):
        return {(int(k) if isinstance(k, str) and k.isdigit() else k): _int_keys(v) for k, v in obj.items()}
    return [_int_keys(v) for v in obj] if isinstance(obj, list) else obj


def _read_results(path: str, key: str) -> dict:
    try:
        return _int_keys(json.loads(Path(path).read_text()))
    except FileNotFoundError:
        raise ConfigError(key, path, "no such file: give a results.json that compare wrote (<df run>/compare/)")
    except ValueError as e:
        raise ConfigError(key, path, f"not a results.json of compare ({e!r}): run compare again")


def republish(cfg: CompareConfig) -> dict:
    """The tables of an earlier comparison's results.json, written again next to it (and published)."""
    path = Path(cfg.tables_from)
    results = _read_results(cfg.tables_from, "tables_from")
    try:
        md = tables(results)
    except KeyError as e:  # JSON, but not compare's keys
        raise ConfigError("tables_from", cfg.tables_from, f"not a results.json of compare ({e!r}): run compare again")
    atomic_write(path.with_name("results.md"), lambda f: f.write(md.encode()))
    if cfg.publish:
        report.publish(README, md, results["figures"], FIGURES, COMMAND)
        print(f"  published to {README}")
    print(f"compare: wrote {path.with_name('results.md')} from {path}")
    return results


VARIANTS_COMMAND = "python -m phase2_diffusion_forcing.compare variants=[...] publish=true"
VARIANT_METRICS = ("psnr", "ssim_cs")  # the frame metrics of the summary; the game metrics follow
SAME_ROLLOUTS = ("starts", "horizons", "rollouts", "window", "context", "game")


def variants(cfg: CompareConfig) -> dict:
    """One table of several DF runs, each from its own comparison against the same control on the same rollouts:
    every variant's df_ar (DF, autoregressive, clean feedback) next to the baselines its comparisons measured."""
    runs = [(p, _read_results(p, "variants")) for p in cfg.variants]
    first_path, first = runs[0]
    setup = lambda r: {**{k: r[k] for k in SAME_ROLLOUTS}, "seed": r["config"]["run"]["seed"],
                       "denoise_steps": r["config"]["denoise_steps"]}
    for path, r in runs[1:]:
        for k in (d := setup(r)):
            if d[k] != setup(first)[k]:
                raise ConfigError("variants", path, f"its {k} differs from {first_path}'s: the variants must be "
                                  "compared on the same rollouts (same data, starts, horizons, seed and steps)")
    rows: dict[str, tuple[dict, dict | None]] = {}  # row label -> (frame metrics, game metrics)
    for name in ("teacher_forced", "tf_control", "full_sequence"):
        for path, r in runs:
            if name in r["methods"]:
                rows[f"{name} ({r['methods'][name]['description']})"] = (
                    r["methods"][name], (r.get("game_state") or {}).get(name))
                break
    for path, r in runs:
        if "df_ar" not in r["methods"]:
            raise ConfigError("variants", path, "has no df_ar row: not a comparison of a DF run")
        rows[f"df_ar of {Path(r['config']['load']).name}"] = (r["methods"]["df_ar"],
                                                               (r.get("game_state") or {}).get("df_ar"))
    hs, label = first["horizons"], horizon_label(first["window"])
    lines = [f"{first['rollouts']} rollouts of {first['horizon']} frames from "
             f"{len(set(e for e, _ in first['starts']))} held-out {first['game']} episodes (the same in every "
             f"comparison), {first['config']['denoise_steps']} noise levels per frame, sampling seed "
             f"{first['config']['run']['seed']}; each DF run's df_ar row (autoregressive schedule, clean feedback) from "
             "its own comparison: " + "; ".join(f"`{p}` ({models_line(r)})" for p, r in runs) +
             ". Each cell: estimate [95% interval].", ""]
    titles = {"psnr": "PSNR of the mean MSE (dB)", "ssim_cs": "SSIM-cs (SSIM without its luminance term)"}
    for k in VARIANT_METRICS:
        lines += [f"**{titles[k]}**", "", "| method | " + " | ".join(label(h) for h in hs) + " |",
                  "|---|" + "---|" * len(hs)]
        lines += [f"| {n} | " + " | ".join(fmt(m[k][h], k) for h in hs) + " |" for n, (m, _) in rows.items()]
        lines.append("")
    game = {n: g for n, (_, g) in rows.items() if g}
    if game:
        lines += breakout.tables(game, hs, label)
    md = "\n".join(lines) + "\n"
    out = (Path(cfg.out) if cfg.out else Path(first_path).parent) / "variants.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda f: f.write(md.encode()))
    if cfg.publish:
        report.publish(README, md, [], FIGURES, VARIANTS_COMMAND)
        print(f"  published to {README}")
    print(md)
    print(f"compare: wrote {out}")
    return {"rows": list(rows), "markdown": md}


if __name__ == "__main__":
    main()
