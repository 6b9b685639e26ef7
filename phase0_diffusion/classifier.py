"""Train the project's own image classifier: the feature space of the FID-proxy and the judge of class accuracy
(the model is model.SmallCNN; the FID math and the judge are in fid.py).

    python -m phase0_diffusion.classifier                       # Fashion-MNIST, ~2 min on 2 cores
    python -m phase0_diffusion.classifier data.name=mnist
    python -m phase0_diffusion.classifier data.name=synthetic train.max_steps=20   # smoke

Writes outputs/phase0/classifier-<data set>/ with export/model.safetensors, export/classifier.json
(test accuracy) and export/reference_stats.npz (feature mean/covariance of the test split).
"""
from __future__ import annotations

import json

import numpy as np

from common.checkpoint import atomic_write
from common.config import cli, to_dict
from common.errors import command
from common.images import to_model_range
from common.trainer import Trainer, setup_run
from phase0_diffusion.config import ClassifierConfig
from phase0_diffusion.data import ImageTensorDataset, build_split
from phase0_diffusion.fid import batched, feature_stats
from phase0_diffusion.model import SmallCNN


@command
def main(argv: list[str] | None = None) -> dict:
    cfg = cli(ClassifierConfig, "phase0/classifier", argv, __doc__)
    if not cfg.run.name:
        cfg.run.name = f"classifier-{cfg.data.name}"
    train_data = build_split(cfg.data, cfg.in_channels, "train")
    test_data = build_split(cfg.data, cfg.in_channels, "test")
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
