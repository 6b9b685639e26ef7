"""Metrics of a trained phase 0 model under one sampler: FID-proxy, class accuracy, time per sample.

    python -m phase0_diffusion.evaluate load=outputs/phase0/<run> sample.sampler=ddim sample.steps=50
    python -m phase0_diffusion.evaluate sample.sampler=heun sample.steps=18 sample.guidance=3   # latest run
    python -m phase0_diffusion.evaluate load=release          # the released model (releases/phase0/)

Writes <run>/eval/<sampler>-<steps>[-eta<eta>]-g<guidance>.json and a grid of samples under <run>/media/
(for a release: under <run.root>/phase0/<release name>/, the release itself is never written to).
FID-proxy = Frechet distance in the feature space of the project's classifier (see classifier.py),
between `num_samples` generated images and that classifier's reference statistics of the test split.
"""
from __future__ import annotations

import json

from common.checkpoint import atomic_write
from common.config import cli
from common.errors import command
from common.runs import writable_dir
from phase0_diffusion.config import EvalRunConfig
from phase0_diffusion.fid import inception_fid, load_judge, measure
from phase0_diffusion.sampling import open_trained, tag


@command
def main(argv: list[str] | None = None) -> dict:
    import torchvision

    cfg = cli(EvalRunConfig, "phase0/evaluate", argv, __doc__)
    tm, rt = open_trained(cfg, "eval")
    run, tcfg, info = tm.run, tm.cfg, tm.meta
    judge = load_judge(cfg.classifier, tcfg.data.name, cfg.run.root, rt.device)
    metrics, x = measure(tm.model, judge, cfg.sample, cfg.num_samples, tuple(info["shape"]), info["num_classes"],
                         cfg.batch_size, rt.device, cfg.run.seed, rt.precision.bf16, progress="eval")
    if cfg.inception_weights:
        metrics["fid_inception"] = inception_fid(x, cfg.inception_weights, tcfg.data, tcfg.model.unet.in_channels,
                                                 cfg.run.root, rt.device)
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


if __name__ == "__main__":
    main()
