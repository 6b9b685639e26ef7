"""Regenerate every phase 0 result table and figure with one command (resumable).

    python -m phase0_diffusion.experiments                 # all of it: many hours on 2 CPU cores (resumable)
    python -m phase0_diffusion.experiments --num-samples 200 --seeds 1 --steps 300    # a quick look

1. Unconditional DDPM (eps-prediction, linear betas) on Fashion-MNIST: DDPM-1000 samples.
2. The same UNet in EDM form, trained the same length. FID-proxy and time per sample of DDPM-1000,
   DDIM-10/20/50/100/1000 and EDM-Heun-18/40 (35/79 evaluations) on both models; DDIM-1000 and Heun-40 are
   the converged references of their samplers (skip the EDM model's DDPM-1000 with --no-edm-ddpm1000).
3. Class-conditional EDM with label dropout: FID-proxy and class accuracy for guidance 0, 1, 2, 3, 5, 7.

Every cell is measured with --seeds sampling seeds of --num-samples images each (mean +- standard error over the
seeds), next to the floor: the FID-proxy of as many real training images (never the judge's reference, the test
split) over the same seeds, the distance a perfect generator would score at that sample size.

Runs go to outputs/phase0/exp-{ddpm,edm,cond}/; a finished run or evaluation is reused, an interrupted
training run is resumed. Tables: outputs/phase0/experiments/results.md (+ results.json, guidance.png).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from omegaconf import OmegaConf

from common.checkpoint import atomic_write
from common.errors import command
from common.precision import Precision
from common.runs import RunConfig, outputs_root
from common.system import start
from phase0_diffusion import classifier, train
from phase0_diffusion.config import SampleConfig
from phase0_diffusion.config import DataConfig
from phase0_diffusion.data import build_split
from phase0_diffusion.fid import classifier_dir, load_judge, measure, real_floor
from phase0_diffusion.model import load_trained
from phase0_diffusion.sampling import tag

MODELS = {
    "ddpm": ["profile=cpu", "diffusion.process=ddpm", "model.unet.noise_embedding=sinusoidal"],
    "edm": ["profile=cpu"],
    "cond": ["profile=cpu_cond"],
}
GUIDANCE = (0.0, 1.0, 2.0, 3.0, 5.0, 7.0)
SAMPLERS = ([SampleConfig(sampler="ddpm")] + [SampleConfig(sampler="ddim", steps=s) for s in (10, 20, 50, 100, 1000)]
            + [SampleConfig(sampler="heun", steps=s) for s in (18, 40)])


def train_model(key: str, extra: list[str]) -> Path:
    run = outputs_root() / "phase0" / f"exp-{key}"
    if (run / "export" / "data.json").exists():
        print(f"experiments: {run} is trained; reusing it")
        return run
    resume = ["run.resume=true"] if any((run / "checkpoints").glob("step_*.pt")) else []
    train.main([*MODELS[key], f"run.name=exp-{key}", "log.progress=false", *resume, *extra])
    return run


def training_summary(run: Path) -> dict:
    """Steps, wall-clock training time and model size, read back from the run's own records."""
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
    train_lines = [l for l in lines if "train/loss" in l]
    cfg = OmegaConf.to_container(OmegaConf.load(run / "config.yaml"))
    model = load_trained(str(run)).model
    # Each line's throughput covers the log_every steps before it (sampling hooks included).
    seconds = sum(cfg["train"]["batch_size"] * cfg["log"]["log_every"] / l["train/samples_per_s"]
                  for l in train_lines)
    return {"run": str(run), "steps": train_lines[-1]["step"], "batch_size": cfg["train"]["batch_size"],
            "params_M": sum(p.numel() for p in model.process.net.parameters()) / 1e6,
            "train_minutes": seconds / 60, "final_loss": train_lines[-1]["train/loss"],
            "precision": cfg["run"].get("precision", "bf16" if cfg["train"].get("bf16") else "fp32"),
            "process": cfg["diffusion"]["process"]}


def over_seeds(runs: list[dict]) -> dict:
    """One cell from its per-seed evaluations: the seeds' metrics, and the mean and standard error of each."""
    import numpy as np

    cell = {k: v for k, v in runs[0].items() if (isinstance(v, (str, int)) or v is None) and k != "seed"}
    for k in ("fid_proxy", "seconds_per_sample", "class_accuracy"):
        vals = [r[k] for r in runs if k in r]
        if vals:
            cell[k] = float(np.mean(vals))
            cell[k + "_se"] = float(np.std(vals, ddof=1) / np.sqrt(len(vals))) if len(vals) > 1 else float("nan")
    cell["seeds"] = [r.get("seed", 0) for r in runs]
    cell["per_seed"] = runs
    return cell


def run_eval(run: Path, scfg: SampleConfig, n: int, device, precision: Precision, force: bool, seed: int = 0) -> dict:
    out = run / "eval" / f"{tag(scfg)}-n{n}-{precision.name}{f'-s{seed}' if seed else ''}.json"
    if out.exists() and not force:
        return json.loads(out.read_text())
    tm = load_trained(str(run), device=device)
    model, tcfg, info = tm.model, tm.cfg, tm.meta
    judge = load_judge("latest", tcfg.data.name, device=device)
    m, x = measure(model, judge, scfg, n, tuple(info["shape"]), info["num_classes"], 64, device,
                    seed=seed, bf16=precision.bf16)
    m["seed"] = seed
    m["precision"] = precision.name
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda f: f.write(json.dumps(m, indent=2).encode()))
    import torchvision
    torchvision.utils.save_image((x[:100].clamp(-1, 1) + 1) / 2, run / "media" / f"eval_{tag(scfg)}.png",
                                 nrow=10, padding=1)
    print(f"experiments: {run.name} {tag(scfg)} seed {seed}: " + ", ".join(
        f"{k}={v:.4g}" for k, v in m.items() if isinstance(v, float)))
    return m


@command
def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-samples", type=int, default=1000, help="generated images per FID-proxy estimate")
    p.add_argument("--seeds", type=int, default=3, help="sampling seeds per cell (0..seeds-1): mean +- s.e.")
    p.add_argument("--steps", type=int, default=0, help="override train.max_steps (0 = the cpu profile's)")
    p.add_argument("--force", action="store_true", help="recompute evaluations that already exist")
    p.add_argument("--no-edm-ddpm1000", action="store_true",
                   help="skip the EDM model's DDPM-1000 cell (it costs as much as all the other EDM cells together)")
    p.add_argument("--precision", default="auto", help="sampling precision: auto | bf16 | fp32 (common/precision.py)")
    args = p.parse_args(argv)
    rt = start(RunConfig(precision=args.precision))
    device, prec = rt.device, rt.precision
    print(f"experiments: {rt.describe()}")
    n = args.num_samples
    extra = [f"train.max_steps={args.steps}"] if args.steps else []
    t0 = time.perf_counter()
    if not (classifier_dir("fashion_mnist") / "export" / "classifier.json").exists():
        classifier.main(["log.progress=false"])
    runs = {k: train_model(k, extra) for k in MODELS}

    results: dict = {"num_samples": n, "classifier": json.loads(
        (classifier_dir("fashion_mnist") / "export" / "classifier.json").read_text())}
    results["training"] = {k: training_summary(r) for k, r in runs.items()}
    seeds = list(range(args.seeds))
    results["seeds"] = seeds
    judge = load_judge("latest", "fashion_mnist", device=device)
    train_images = build_split(DataConfig(name="fashion_mnist"), judge.info["in_channels"], "train").images
    results["floor"] = over_seeds([{"fid_proxy": f, "seed": s} for s, f in
                                   zip(seeds, real_floor(judge, train_images, n, seeds))])
    print(f"experiments: floor (real vs real, n={n}): FID-proxy {results['floor']['fid_proxy']:.3f}")

    def cell(run: Path, s: SampleConfig) -> dict:
        return over_seeds([run_eval(run, s, n, device, prec, args.force, seed) for seed in seeds])

    results["samplers"] = {
        "ddpm": [cell(runs["ddpm"], s) for s in SAMPLERS],
        "edm": [cell(runs["edm"], s) if s.sampler != "ddpm" or not args.no_edm_ddpm1000 else None for s in SAMPLERS]}
    results["guidance"] = [cell(runs["cond"], SampleConfig(sampler="heun", steps=18, guidance=g)) for g in GUIDANCE]
    out_dir = outputs_root() / "phase0" / "experiments"
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "results.json", lambda f: f.write(json.dumps(results, indent=2).encode()))
    (out_dir / "results.md").write_text(markdown(results))
    plot_guidance(results["guidance"], out_dir / "guidance.png")
    print((out_dir / "results.md").read_text())
    print(f"experiments: done in {(time.perf_counter() - t0) / 60:.1f} min; tables in {out_dir / 'results.md'}")
    return results


def _fid(m: dict | None) -> str:
    """'mean ± s.e. | s / sample' of a cell (seeds in the table's header)."""
    if not m:
        return "not run | -"
    se = m.get("fid_proxy_se", float("nan"))
    return (f"{m['fid_proxy']:.2f}" + (f" ± {se:.2f}" if se == se else "") + f" | {m['seconds_per_sample']:.3f}")


def markdown(r: dict) -> str:
    c, f = r["classifier"], r["floor"]
    k = len(r.get("seeds", [0]))
    lines = [f"FID-proxy: Frechet distance in the {c['feature_dim']}-d feature space of the project's Fashion-MNIST "
             f"classifier (test accuracy {c['test_accuracy']:.3f}), {r['num_samples']} samples vs the "
             f"{c['reference']}; mean ± standard error over {k} sampling seed(s). Lower is better; not comparable "
             f"with Inception FID. **Floor** (real training images vs the same reference, {r['num_samples']} per "
             f"seed, {k} seed(s)): {f['fid_proxy']:.2f}" + (f" ± {f['fid_proxy_se']:.2f}" if k > 1 else "") +
             ": what a perfect generator scores at this sample size. Sampling in "
             f"{r['samplers']['ddpm'][0].get('precision', 'bf16')}, batch 64, 2 CPU threads.", "",
             "| model | process | params | steps x batch | training time (2 cores) | final loss |",
             "|---|---|---|---|---|---|"]
    for key, t in r["training"].items():
        lines.append(f"| exp-{key} | {t['process']} | {t['params_M']:.2f}M | {t['steps']} x {t['batch_size']} | "
                     f"{t['train_minutes']:.1f} min ({t['precision']}) | {t['final_loss']:.4f} |")
    lines += ["", "| sampler | NFE | DDPM model: FID-proxy | s / sample | EDM model: FID-proxy | s / sample |",
              "|---|---|---|---|---|---|"]
    for d, e in zip(r["samplers"]["ddpm"], r["samplers"]["edm"]):
        name = {"ddpm": "DDPM-1000 ancestral", "ddim": f"DDIM-{d['steps']} (eta 0)",
                "heun": f"EDM-Heun-{d['steps']}"}[d["sampler"]]
        lines.append(f"| {name} | {d['nfe']} | {_fid(d)} | {_fid(e)} |")
    lines += ["", "| guidance scale | FID-proxy | class accuracy | s / sample |", "|---|---|---|---|"]
    for g in r["guidance"]:
        se = g.get("class_accuracy_se", float("nan"))
        acc = f"{g['class_accuracy']:.3f}" + (f" ± {se:.3f}" if se == se else "")
        fid, secs = _fid(g).split(" | ")
        lines.append(f"| {g['guidance']:g} | {fid} | {acc} | {secs} |")
    return "\n".join(lines) + "\n"


def plot_guidance(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=110)
    fid = [r["fid_proxy"] for r in rows]
    acc = [r["class_accuracy"] for r in rows]
    ax.plot(acc, fid, "o-")
    for r, x, y in zip(rows, acc, fid):
        ax.annotate(f"s={r['guidance']:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("class accuracy of samples (fidelity to the label)")
    ax.set_ylabel("FID-proxy (lower = closer to data)")
    ax.set_title("Classifier-free guidance trade-off, Fashion-MNIST")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
