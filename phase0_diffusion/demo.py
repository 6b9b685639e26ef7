"""`make demo`: a class-conditional diffusion model on Fashion-MNIST, trained from scratch on the CPU.

Three steps, each an entry point you can also run alone:
  1. python -m phase0_diffusion.classifier                      (skipped when already trained; ~3 min)
  2. python -m phase0_diffusion.train profile=demo              (~10 min on 2 cores)
  3. python -m phase0_diffusion.eval  sample.sampler=heun sample.steps=18 sample.guidance=2 bf16=true
Ends with a sample grid (one row per class) and its metrics, and prints where they are.
Extra arguments are passed to step 2 (e.g. `python -m phase0_diffusion.demo train.max_steps=100`).
`--smoke` runs the same three steps in seconds on synthetic data (used by the tests); with it,
`run.root=<dir>` redirects all outputs.
"""
from __future__ import annotations

import sys
import time

from common.runs import outputs_root
from phase0_diffusion import classifier, eval as evaluate, train
from phase0_diffusion.classifier import classifier_dir
from phase0_diffusion.data import DataNotFoundError


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    smoke = "--smoke" in argv
    argv = [a for a in argv if a != "--smoke"]
    root = next((a.split("=", 1)[1] for a in argv if a.startswith("run.root=")), "outputs")
    dataset, profile, n = ("synthetic", "smoke", 64) if smoke else ("fashion_mnist", "demo", 1000)
    t0 = time.perf_counter()
    name = time.strftime("demo-%Y%m%d-%H%M%S")
    try:
        if not (classifier_dir(dataset, root) / "export" / "classifier.json").exists():
            print("demo 1/3: training the FID-proxy classifier")
            classifier.main(["log.progress=false", f"data.name={dataset}", f"run.root={root}"]
                            + (["train.max_steps=20"] if smoke else []))
        else:
            print(f"demo 1/3: classifier found at {classifier_dir(dataset, root)}")
        print("demo 2/3: training a class-conditional EDM model (progress below)")
        out = train.main([f"profile={profile}", f"run.name={name}", "diffusion.class_conditional=true", *argv])
    except DataNotFoundError as e:
        print(f"demo: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"demo 3/3: sampling {n} images (EDM-Heun, 18 steps, guidance 2) for the metrics")
    metrics = evaluate.main([f"run={out['run_dir']}", f"root={root}", "sample.sampler=heun", "sample.steps=18",
                             "sample.guidance=2", f"num_samples={n}", "bf16=true"])
    run_dir = outputs_root(root) / "phase0" / name
    print("\n" + "=" * 72)
    print(f"demo finished in {(time.perf_counter() - t0) / 60:.1f} min")
    print(f"  FID-proxy {metrics['fid_proxy']:.2f}, class accuracy {metrics['class_accuracy']:.3f} "
          f"(classifier's own test accuracy {metrics['classifier_test_accuracy']:.3f})")
    print(f"  sample grid : {run_dir / 'media' / 'eval_heun-18-g2.png'}")
    print(f"  metrics     : {run_dir / 'eval' / 'heun-18-g2.json'} and {run_dir / 'metrics.jsonl'}")
    print(f"  TensorBoard : tensorboard --logdir {run_dir / 'tb'}")
    print(f"  weights     : {run_dir / 'export' / 'model.safetensors'}")


if __name__ == "__main__":
    main()
