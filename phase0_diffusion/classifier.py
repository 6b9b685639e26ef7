"""The project's own image classifier: the feature space of the FID-proxy and the judge of class accuracy.

No Inception weights can be fetched offline, so FID here is computed on the 128-d penultimate features
of this small CNN, trained on the same data set. Every table calls it "FID-proxy"; it ranks samplers
and models on one data set, it is not comparable with published Inception FIDs.

    python -m phase0_diffusion.classifier                       # Fashion-MNIST, ~2 min on 2 cores
    python -m phase0_diffusion.classifier data.name=mnist
    python -m phase0_diffusion.classifier data.name=synthetic train.max_steps=20   # smoke

Writes outputs/phase0/classifier-<data set>/ with export/model.safetensors, export/classifier.json
(test accuracy) and export/reference_stats.npz (feature mean/covariance of the test split).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.checkpoint import atomic_write, load_safetensors
from common.config import cli, require, to_dict
from common.logger import LogConfig
from common.runs import RELEASE_MANIFEST, ArtifactNotFoundError, Run, TrainRunConfig, find_release, outputs_root
from common.trainer import TrainConfig, Trainer, setup_run
from phase0_diffusion.config import DataConfig
from phase0_diffusion.data import to_model_range


@dataclass
class ClassifierConfig:
    run: TrainRunConfig = field(default_factory=TrainRunConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)
    data: DataConfig = field(default_factory=DataConfig)
    in_channels: int = 1
    width: int = 32  # channels of the first conv; features are 4 * width wide

    def check(self) -> None:
        require(self.width >= 4, "width", self.width, "must be >= 4")


class SmallCNN(nn.Module):
    """conv-conv-pool x3 -> global average pool -> features (4*width) -> logits."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32):
        super().__init__()
        w = width

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU(),
                                 nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU())
        self.blocks = nn.ModuleList([block(in_channels, w), block(w, 2 * w), block(2 * w, 4 * w)])
        self.head = nn.Linear(4 * w, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x in [-1, 1], (B, C, H, W) -> (B, 4*width)."""
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i < len(self.blocks) - 1:
                x = F.avg_pool2d(x, 2)
        return x.mean(dim=(2, 3))

    def forward(self, batch, rng=None):
        images, labels = batch
        logits = self.head(self.features(to_model_range(images)))
        loss = F.cross_entropy(logits, labels)
        return loss, {"acc": (logits.argmax(1) == labels).float().mean().item()}

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


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


def classifier_dir(dataset: str, root: str = "outputs") -> Path:
    return outputs_root(root) / "phase0" / f"classifier-{dataset}"


def find_classifier(spec: str, dataset: str, root: str = "outputs", quiet: bool = False) -> Run | None:
    """The classifier to judge `dataset` with: spec = a run or release folder, latest (the local run
    <root>/phase0/classifier-<dataset>, else its release) or release. None when there is none."""
    name = f"classifier-{dataset}"
    if spec not in ("latest", "release"):
        path = Path(spec).expanduser().resolve()
        return Run(path, "phase0", release=(path / RELEASE_MANIFEST).exists())
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


def main(argv: list[str] | None = None) -> dict:
    from phase0_diffusion.train import ImageTensorDataset, build_data_for

    cfg = cli(ClassifierConfig, "phase0/classifier", argv, __doc__)
    if not cfg.run.name:
        cfg.run.name = f"classifier-{cfg.data.name}"
    train_data = build_data_for(cfg.data, cfg.in_channels, "train")
    test_data = build_data_for(cfg.data, cfg.in_channels, "test")
    ctx = setup_run("phase0", cfg.run, to_dict(cfg))
    model = SmallCNN(cfg.in_channels, train_data.num_classes, cfg.width)
    trainer = Trainer(ctx, model, ImageTensorDataset(train_data), cfg.train, cfg.log)
    trainer.fit()
    if not ctx.dist.is_main:
        return {}
    net = trainer.eval_model.eval()
    x = to_model_range(test_data.images).to(ctx.device)
    acc = float((batched(net.logits, x).argmax(1).cpu() == test_data.labels).float().mean())
    mu, sigma = feature_stats(batched(net.features, x))
    export = ctx.run.export_dir
    np.savez(export / "reference_stats.npz", mu=mu, sigma=sigma)
    info = {"dataset": cfg.data.name, "test_accuracy": acc, "num_classes": train_data.num_classes,
            "in_channels": cfg.in_channels, "width": cfg.width, "feature_dim": 4 * cfg.width,
            "reference": f"{cfg.data.name} test split, {len(test_data.images)} images",
            "train_steps": cfg.train.max_steps, "data": train_data.identity("train")}
    atomic_write(export / "classifier.json", lambda f: f.write(json.dumps(info, indent=2).encode()))
    print(f"classifier: {cfg.data.name} test accuracy {acc:.4f}; written to {export}")
    return info


if __name__ == "__main__":
    main()
