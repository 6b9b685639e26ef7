"""Metrics of a trained phase 0 model under one sampler: FID-proxy, class accuracy, time per sample.

    python -m phase0_diffusion.eval load=outputs/phase0/<run> sample.sampler=ddim sample.steps=50
    python -m phase0_diffusion.eval sample.sampler=heun sample.steps=18 sample.guidance=3   # latest run
    python -m phase0_diffusion.eval load=release          # the released model (releases/phase0/)

Writes <run>/eval/<sampler>-<steps>[-eta<eta>]-g<guidance>.json and a grid of samples under <run>/media/
(for a release: under <run.root>/phase0/<release name>/, the release itself is never written to).
FID-proxy = Frechet distance in the feature space of the project's classifier (see classifier.py),
between `num_samples` generated images and that classifier's reference statistics of the test split.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from common.checkpoint import atomic_write, load_safetensors
from common.config import cli, load_saved_config, require
from common.runs import Run, RunConfig, outputs_root, resolve_run, writable_dir
from common.system import Runtime, start
from phase0_diffusion.classifier import Judge, load_judge
from phase0_diffusion.config import Phase0Config, SampleConfig
from phase0_diffusion.model import ImageDiffusion


@dataclass
class EvalRunConfig:
    run: RunConfig = field(default_factory=RunConfig)  # run.seed = the sampling noise seed
    load: str = "latest"  # the model: a phase 0 run folder, latest (the newest local run, else the release), release
    sample: SampleConfig = field(default_factory=SampleConfig)
    num_samples: int = 1000  # images generated for FID-proxy
    batch_size: int = 64  # images sampled at once (larger batches are slower on CPU: cache-bound)
    classifier: str = "latest"  # classifier run folder, or latest for the run's data set (local, else the release)
    inception_weights: str = ""  # pytorch-fid's pt_inception-2015-12-05 weights file for real FID; "" = skip

    def check(self) -> None:
        require(self.num_samples >= 2 and self.batch_size >= 1, "num_samples", self.num_samples,
                "num_samples >= 2 and batch_size >= 1")


def nfe(scfg: SampleConfig, T: int = 1000) -> int:
    """Network evaluations per sample (a guided evaluation runs both branches in one batch)."""
    return {"ddpm": T, "ddim": scfg.steps, "euler": scfg.steps, "heun": 2 * scfg.steps - 1}[scfg.sampler]


def load_trained(run: Run, device="cpu") -> tuple[ImageDiffusion, Phase0Config, dict]:
    """Rebuild a trained model from a run (or release): export/config.yaml + export/model.safetensors (EMA)."""
    cfg = load_saved_config(Phase0Config, run.export_dir / "config.yaml")
    info = json.loads((run.export_dir / "data.json").read_text())
    model = ImageDiffusion(cfg.model, cfg.diffusion, info["num_classes"])
    model.load_state_dict(load_safetensors(run.export_dir / "model.safetensors"))
    return model.to(device).eval(), cfg, info


@torch.no_grad()
def generate(model: ImageDiffusion, scfg: SampleConfig, n: int, shape, num_classes: int, batch_size: int,
             device, seed: int = 0, bf16: bool = False, progress: str = "") -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """n samples (labels cycle through the classes when the model is conditional); returns seconds too.
    With `progress`, a line per batch prefixed by it (images done, elapsed, estimated remaining)."""
    g = torch.Generator(device=device).manual_seed(seed)
    labels = (torch.arange(n, device=device) % num_classes) if model.classes is not None else None
    out = []
    t0 = time.perf_counter()
    for i in range(0, n, batch_size):
        lab = labels[i:i + batch_size] if labels is not None else None
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            out.append(model.sample(min(batch_size, n - i), shape, scfg, lab, g, device).float())
        if progress:
            done, dt = min(n, i + batch_size), time.perf_counter() - t0
            print(f"{progress}: {done}/{n} images, {dt:.0f} s, ~{dt / done * (n - done):.0f} s left", flush=True)
    return torch.cat(out), labels, time.perf_counter() - t0


def evaluate(model: ImageDiffusion, judge: Judge, scfg: SampleConfig, n: int, shape, num_classes: int,
             batch_size: int, device, seed: int = 0, bf16: bool = False, progress: str = "") -> tuple[dict, torch.Tensor]:
    x, labels, seconds = generate(model, scfg, n, shape, num_classes, batch_size, device, seed, bf16, progress)
    T = model.process.schedule.T if model.cfg.process == "ddpm" else model.cfg.ddpm.num_timesteps
    metrics = {"fid_proxy": judge.fid_proxy(x), "num_samples": n, "nfe": nfe(scfg, T),
               "seconds_per_sample": seconds / n, "sampler": scfg.sampler, "steps": scfg.steps,
               "eta": scfg.eta, "guidance": scfg.guidance if model.classes is not None else None}
    if labels is not None:
        metrics["class_accuracy"] = judge.accuracy(x, labels)
    return metrics, x


def tag(scfg: SampleConfig) -> str:
    t = f"{scfg.sampler}-{scfg.steps}" if scfg.sampler != "ddpm" else "ddpm-1000"
    if scfg.sampler == "ddim":
        t += f"-eta{scfg.eta:g}"
    return t + f"-g{scfg.guidance:g}"


def open_trained(cfg: EvalRunConfig, command: str) -> tuple[Run, ImageDiffusion, Phase0Config, dict, Runtime]:
    """Threads, device, precision, the run (explicit, latest or the release) and its model: shared by eval
    and sample. Prints the start-up line."""
    rt = start(cfg.run)
    run = resolve_run("phase0", cfg.load, cfg.run.root, require="export/data.json")
    model, tcfg, info = load_trained(run, rt.device)
    print(f"{command}: {run.describe()}; {rt.describe()}", flush=True)
    return run, model, tcfg, info, rt


def main(argv: list[str] | None = None) -> dict:
    import torchvision

    cfg = cli(EvalRunConfig, "phase0/eval", argv, __doc__)
    run, model, tcfg, info, rt = open_trained(cfg, "eval")
    judge = load_judge(cfg.classifier, tcfg.data.name, cfg.run.root, rt.device)
    metrics, x = evaluate(model, judge, cfg.sample, cfg.num_samples, tuple(info["shape"]), info["num_classes"],
                          cfg.batch_size, rt.device, cfg.run.seed, rt.precision.bf16, progress="eval")
    if cfg.inception_weights:
        metrics["fid_inception"] = inception_fid(x, cfg, tcfg, rt.device)
    metrics.update(run=str(run.dir), classifier_test_accuracy=judge.info["test_accuracy"],
                   feature_space=f"FID-proxy: {judge.info['feature_dim']}-d features of the project's "
                                 f"{tcfg.data.name} classifier", **rt.as_dict())
    home = writable_dir(run, cfg.run.root)
    out = home / "eval" / f"{tag(cfg.sample)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda f: f.write(json.dumps(metrics, indent=2).encode()))
    (home / "media").mkdir(exist_ok=True)
    torchvision.utils.save_image((x[:100].clamp(-1, 1) + 1) / 2, home / "media" / f"eval_{tag(cfg.sample)}.png",
                                 nrow=10, padding=1)
    print(json.dumps(metrics, indent=2))
    print(f"eval: written to {out}")
    return metrics


def inception_fid(x: torch.Tensor, cfg: EvalRunConfig, tcfg: Phase0Config, device) -> float:
    """Real FID against the test split, in pytorch-fid's Inception features (user-supplied weights)."""
    import numpy as np

    from phase0_diffusion.classifier import feature_stats, frechet_distance
    from phase0_diffusion.data import to_model_range
    from phase0_diffusion.inception import build_inception, inception_features
    from phase0_diffusion.train import build_data_for

    features = inception_features(build_inception(cfg.inception_weights, device))
    cache = outputs_root(cfg.run.root) / "phase0" / f"inception-reference-{tcfg.data.name}.npz"
    if not cache.exists():
        test = build_data_for(tcfg.data, tcfg.model.in_channels, "test")
        mu, sigma = feature_stats(features(to_model_range(test.images).to(device)))
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, mu=mu, sigma=sigma)
    ref = np.load(cache)
    return frechet_distance(*feature_stats(features(x)), ref["mu"], ref["sigma"])


def fid_hook(cfg: Phase0Config, data):
    """A Trainer hook that logs FID-proxy (and class accuracy) of the EMA model during training."""
    judge = None

    def hook(trainer) -> dict:
        nonlocal judge
        if judge is None:
            judge = load_judge(cfg.eval.classifier, cfg.data.name, cfg.run.root, trainer.device)
        m, _ = evaluate(trainer.eval_model, judge, cfg.sample, cfg.eval.num_samples, data.shape, data.num_classes,
                        64, trainer.device, cfg.sample.seed, trainer.ctx.precision.bf16)
        return {f"eval/{k}": v for k, v in m.items() if isinstance(v, (int, float)) and v is not None}
    return hook


if __name__ == "__main__":
    main()
