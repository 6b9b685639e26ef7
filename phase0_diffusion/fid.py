"""FID-proxy and class accuracy: the Frechet distance math, the judge (a trained SmallCNN with its reference
statistics), finding the judge of a data set, and measuring a model's samples with it.

No Inception weights can be fetched offline, so FID here is computed on the 128-d penultimate features of the
project's own classifier (`python -m phase0_diffusion.classifier`), trained on the same data set. Every table
calls it "FID-proxy": it ranks samplers and models on one data set; it is not comparable with published
Inception FIDs. Real Inception FID (`inception_fid`) needs pytorch-fid's weights file supplied by hand.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from common.checkpoint import load_safetensors
from common.images import to_model_range
from common.runs import ArtifactNotFoundError, Run, find_release, outputs_root
from common.stats import wilson
from phase0_diffusion.config import DataConfig, SampleConfig
from phase0_diffusion.model import ImageDiffusion, SmallCNN
from phase0_diffusion.sampling import generate, nfe


@torch.no_grad()
def batched(fn, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    return torch.cat([fn(x[i:i + batch]) for i in range(0, len(x), batch)])


def feature_stats(feats: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    f = feats.double().cpu().numpy()
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) (Heusel et al. 2017)."""
    from scipy import linalg

    covmean, _ = linalg.sqrtm(sigma1 @ sigma2, disp=False)
    if not np.isfinite(covmean).all():  # near-singular product: regularise as pytorch-fid does
        eps = 1e-6 * np.eye(len(mu1))
        covmean = linalg.sqrtm((sigma1 + eps) @ (sigma2 + eps))
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


class Judge:
    """A trained classifier with its reference statistics: FID-proxy and class accuracy of samples."""

    def __init__(self, export_dir: Path, device="cpu"):
        """export_dir: a classifier run's export/ folder, or a classifier release."""
        info = json.loads((export_dir / "classifier.json").read_text())
        self.info = info
        self.model = SmallCNN(info["in_channels"], info["num_classes"], info["width"]).to(device).eval()
        self.model.load_state_dict(load_safetensors(export_dir / "model.safetensors"))
        ref = np.load(export_dir / "reference_stats.npz")
        self.mu, self.sigma = ref["mu"], ref["sigma"]

    def fid_proxy(self, x: torch.Tensor) -> float:
        """x: generated images in [-1, 1]."""
        mu, sigma = feature_stats(batched(self.model.features, x.clamp(-1, 1)))
        return frechet_distance(mu, sigma, self.mu, self.sigma)

    def accuracy(self, x: torch.Tensor, labels: torch.Tensor) -> float:
        pred = batched(self.model.logits, x.clamp(-1, 1)).argmax(1)
        return float((pred.cpu() == labels.cpu()).float().mean())


def real_floor(judge: Judge, images: torch.Tensor, n: int, seeds: list[int]) -> list[float]:
    """The FID-proxy of n real images (drawn without replacement from `images`, uint8 or [-1, 1]; held apart from
    the judge's reference split) per seed: the distance a perfect generator would score at this sample size, the
    floor every model's FID-proxy is read against."""
    x = to_model_range(images) if images.dtype == torch.uint8 else images
    if n > len(x):
        raise ValueError(f"the floor needs n={n} real images, the split has {len(x)}")
    out = []
    for s in seeds:
        idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(s))[:n]
        out.append(judge.fid_proxy(x[idx]))
    return out


def classifier_dir(dataset: str, root: str = "outputs") -> Path:
    """Where `python -m phase0_diffusion.classifier data.name=<dataset>` puts its run."""
    return outputs_root(root) / "phase0" / f"classifier-{dataset}"


def find_classifier(spec: str, dataset: str, root: str = "outputs", quiet: bool = False) -> Run | None:
    """The classifier to judge `dataset` with: spec = a run or release folder, latest (the local run
    <root>/phase0/classifier-<dataset>, else its release) or release. None when there is none."""
    name = f"classifier-{dataset}"
    if spec not in ("latest", "release"):
        return Run.at(Path(spec).expanduser().resolve(), "phase0")
    local = classifier_dir(dataset, root)
    if spec == "latest" and (local / "export" / "classifier.json").exists():
        return Run(local, "phase0")
    rel = find_release("phase0", "export/classifier.json", name)
    if rel is not None and spec == "latest" and not quiet:
        print(f"note: no local classifier at {local}; using the {rel.describe()}", file=sys.stderr, flush=True)
    return rel


def load_judge(spec: str, dataset: str, root: str = "outputs", device="cpu") -> Judge:
    run = find_classifier(spec, dataset, root)
    if run is None or not (run.export_dir / "classifier.json").exists():
        where = run.dir if run is not None else classifier_dir(dataset, root)
        raise ArtifactNotFoundError(
            f"no trained classifier for {dataset} at {where} (needed for FID-proxy and class accuracy). "
            f"Make it with: python -m phase0_diffusion.classifier data.name={dataset}")
    return Judge(run.export_dir, device)


def measure(model: ImageDiffusion, judge: Judge, scfg: SampleConfig, n: int, shape, num_classes: int,
            batch_size: int, device, seed: int = 0, bf16: bool = False, progress: str = "",
            resume: Path | None = None) -> tuple[dict, torch.Tensor]:
    """Generate n samples and measure them: FID-proxy, class accuracy (conditional models), time per sample.
    Returns (metrics, samples). `resume`: a file that makes the generation resumable batch by batch (generate)."""
    x, labels, seconds = generate(model, scfg, n, shape, num_classes, batch_size, device, seed, bf16, progress,
                                  resume)
    T = model.process.schedule.T if model.cfg.process == "ddpm" else model.cfg.ddpm.num_timesteps
    metrics = {"fid_proxy": judge.fid_proxy(x), "num_samples": n, "nfe": nfe(scfg, T),
               "seconds_per_sample": seconds / n, "sampler": scfg.sampler,
               # what the sampler used: ancestral DDPM walks all T timesteps; only DDIM has an eta
               "steps": T if scfg.sampler == "ddpm" else scfg.steps,
               "eta": scfg.eta if scfg.sampler == "ddim" else None,
               "guidance": scfg.guidance if model.classes is not None else None}
    if labels is not None:
        metrics["class_accuracy"] = judge.accuracy(x, labels)
        metrics["class_accuracy_95ci"] = wilson(round(metrics["class_accuracy"] * n), n)  # Wilson, n samples
    return metrics, x


def fid_hook(classifier: str, data: DataConfig, scfg: SampleConfig, num_samples: int, shape, num_classes: int,
             root: str, seed: int):
    """A Trainer hook that logs FID-proxy (and class accuracy) of the EMA model during training."""
    judge = None

    def hook(trainer) -> dict:
        nonlocal judge
        if judge is None:
            judge = load_judge(classifier, data.name, root, trainer.device)
        m, _ = measure(trainer.eval_model, judge, scfg, num_samples, shape, num_classes, 64, trainer.device, seed,
                       trainer.ctx.precision.bf16)
        return {f"eval/{k}": v for k, v in m.items() if isinstance(v, (int, float)) and v is not None}
    return hook


def inception_fid(x: torch.Tensor, weights: str, data: DataConfig, channels: int, root: str, device) -> float:
    """Real FID of images x (in [-1, 1]) against the test split of `data`, in pytorch-fid's Inception features
    (user-supplied weights). The reference statistics are cached under <root>/phase0/."""
    from common.images import to_model_range
    from phase0_diffusion.data import build_split
    from phase0_diffusion.inception import build_inception, inception_features

    features = inception_features(build_inception(weights, device))
    cache = outputs_root(root) / "phase0" / f"inception-reference-{data.name}.npz"
    if not cache.exists():
        test = build_split(data, channels, "test")
        mu, sigma = feature_stats(features(to_model_range(test.images).to(device)))
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, mu=mu, sigma=sigma)
    ref = np.load(cache)
    return frechet_distance(*feature_stats(features(x)), ref["mu"], ref["sigma"])
