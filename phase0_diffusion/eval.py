"""Metrics of a trained phase 0 model under one sampler: FID-proxy, class accuracy, time per sample.

    python -m phase0_diffusion.eval run=outputs/phase0/<run> sample.sampler=ddim sample.steps=50
    python -m phase0_diffusion.eval sample.sampler=heun sample.steps=18 sample.guidance=3   # latest run

Writes <run>/eval/<sampler>-<steps>[-eta<eta>]-g<guidance>.json and a grid of samples under <run>/media/.
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
from common.runs import outputs_root, resolve_run
from common.system import select_device, set_threads
from phase0_diffusion.classifier import Judge, load_judge
from phase0_diffusion.config import Phase0Config, SampleConfig
from phase0_diffusion.model import ImageDiffusion


@dataclass
class EvalRunConfig:
    run: str = "latest"  # a phase 0 run folder, or the latest one with exported weights
    root: str = "outputs"
    sample: SampleConfig = field(default_factory=SampleConfig)
    num_samples: int = 1000  # images generated for FID-proxy
    batch_size: int = 64  # images sampled at once (larger batches are slower on CPU: cache-bound)
    classifier: str = "latest"  # classifier run folder, or latest for the run's data set
    bf16: bool = False  # bf16 autocast while sampling
    device: str = "auto"
    threads: int = 0
    seed: int = 0  # sampling noise seed
    inception_weights: str = ""  # pytorch-fid's pt_inception-2015-12-05 weights file for real FID; "" = skip

    def check(self) -> None:
        require(self.num_samples >= 2 and self.batch_size >= 1, "num_samples", self.num_samples,
                "num_samples >= 2 and batch_size >= 1")


def nfe(scfg: SampleConfig, T: int = 1000) -> int:
    """Network evaluations per sample (a guided evaluation runs both branches in one batch)."""
    return {"ddpm": T, "ddim": scfg.steps, "euler": scfg.steps, "heun": 2 * scfg.steps - 1}[scfg.sampler]


def load_trained(run_dir: Path, device="cpu") -> tuple[ImageDiffusion, Phase0Config, dict]:
    """Rebuild a trained model from its run folder: config.yaml + export/model.safetensors (EMA)."""
    cfg = load_saved_config(Phase0Config, run_dir / "config.yaml")
    info = json.loads((run_dir / "export" / "data.json").read_text())
    model = ImageDiffusion(cfg.model, cfg.diffusion, info["num_classes"])
    model.load_state_dict(load_safetensors(run_dir / "export" / "model.safetensors"))
    return model.to(device).eval(), cfg, info


@torch.no_grad()
def generate(model: ImageDiffusion, scfg: SampleConfig, n: int, shape, num_classes: int, batch_size: int,
             device, seed: int = 0, bf16: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """n samples (labels cycle through the classes when the model is conditional); returns seconds too."""
    g = torch.Generator(device=device).manual_seed(seed)
    labels = (torch.arange(n, device=device) % num_classes) if model.classes is not None else None
    out = []
    t0 = time.perf_counter()
    for i in range(0, n, batch_size):
        lab = labels[i:i + batch_size] if labels is not None else None
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            out.append(model.sample(min(batch_size, n - i), shape, scfg, lab, g, device).float())
    return torch.cat(out), labels, time.perf_counter() - t0


def evaluate(model: ImageDiffusion, judge: Judge, scfg: SampleConfig, n: int, shape, num_classes: int,
             batch_size: int, device, seed: int = 0, bf16: bool = False) -> tuple[dict, torch.Tensor]:
    x, labels, seconds = generate(model, scfg, n, shape, num_classes, batch_size, device, seed, bf16)
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


def open_trained(cfg: EvalRunConfig):
    """Threads, device, the run (explicit or latest) and its model: shared by eval and sample."""
    set_threads(cfg.threads)
    device = select_device(cfg.device)
    run = resolve_run("phase0", cfg.run, cfg.root, require="export/data.json")
    model, tcfg, info = load_trained(run.dir, device)
    return run, model, tcfg, info, device


def main(argv: list[str] | None = None) -> dict:
    import torchvision

    cfg = cli(EvalRunConfig, "phase0/eval", argv, __doc__)
    run, model, tcfg, info, device = open_trained(cfg)
    judge = load_judge(cfg.classifier, tcfg.data.name, cfg.root, device)
    metrics, x = evaluate(model, judge, cfg.sample, cfg.num_samples, tuple(info["shape"]), info["num_classes"],
                          cfg.batch_size, device, cfg.seed, cfg.bf16)
    if cfg.inception_weights:
        metrics["fid_inception"] = inception_fid(x, cfg, tcfg, device)
    metrics.update(run=str(run.dir), classifier_test_accuracy=judge.info["test_accuracy"],
                   feature_space=f"FID-proxy: {judge.info['feature_dim']}-d features of the project's "
                                 f"{tcfg.data.name} classifier", device=str(device), bf16=cfg.bf16,
                   threads=torch.get_num_threads())
    out = run.dir / "eval" / f"{tag(cfg.sample)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda f: f.write(json.dumps(metrics, indent=2).encode()))
    (run.dir / "media").mkdir(exist_ok=True)
    torchvision.utils.save_image((x[:100].clamp(-1, 1) + 1) / 2, run.dir / "media" / f"eval_{tag(cfg.sample)}.png",
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
    cache = outputs_root(cfg.root) / "phase0" / f"inception-reference-{tcfg.data.name}.npz"
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
                        64, trainer.device, cfg.sample.seed, cfg.train.bf16)
        return {f"eval/{k}": v for k, v in m.items() if isinstance(v, (int, float)) and v is not None}
    return hook


if __name__ == "__main__":
    main()
