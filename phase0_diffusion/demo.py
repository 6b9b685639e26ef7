"""`make demo`: a class-conditional diffusion model on Fashion-MNIST, trained from scratch on the CPU.

Three steps, each an entry point you can also run alone:
  1. python -m phase0_diffusion.classifier      (the FID-proxy judge; the released one is used when there is
                                                 no local one, so this step is instant after `make setup`)
  2. python -m phase0_diffusion.train profile=demo                 (progress bar; ~3 min with native bf16,
                                                                   ~9 min on a 2-core AVX2-only CPU)
  3. python -m phase0_diffusion.evaluate sample.sampler=heun sample.steps=18 sample.guidance=2 num_samples=500
Ends with a sample grid and its metrics, prints where they are and the elapsed time of each step.
Sized by measurement on an AVX2-only CPU (benchmarks/phase0_demo_speed.py, configs/phase0/profile/demo.yaml).
Precision is chosen from the hardware (run.precision=auto): bf16 where the CPU computes it natively, else fp32.
Extra arguments are passed to step 2 (e.g. `python -m phase0_diffusion.demo train.max_steps=100`).
`--smoke` runs the same three steps in seconds on synthetic data (used by the tests); with it,
`run.root=<dir>` redirects all outputs.
"""
from __future__ import annotations

import sys
import time

from common.errors import command
from common.runs import outputs_root
from phase0_diffusion import classifier, evaluate, train
from phase0_diffusion.fid import find_classifier

SAMPLES = 500  # images sampled for the closing metrics (the FID-proxy's noise grows as this shrinks)


@command
def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    smoke = "--smoke" in argv
    argv = [a for a in argv if a != "--smoke"]
    root = next((a.split("=", 1)[1] for a in argv if a.startswith("run.root=")), "outputs")
    dataset, profile, n = ("synthetic", "smoke", 64) if smoke else ("fashion_mnist", "demo", SAMPLES)
    t0 = time.perf_counter()
    name = time.strftime("demo-%Y%m%d-%H%M%S")
    steps = []

    def done(what: str, since: float) -> None:
        steps.append(f"{what} {time.perf_counter() - since:.0f} s")

    t = time.perf_counter()
    found = find_classifier("latest", dataset, root, quiet=True)
    if found is None:
        print("demo 1/3: training the FID-proxy classifier (progress below)", flush=True)
        classifier.main([f"data.name={dataset}", f"run.root={root}"] + (["train.max_steps=20"] if smoke else []))
        done("classifier", t)
    else:
        print(f"demo 1/3: classifier found: {found.describe()}", flush=True)
    t = time.perf_counter()
    print("demo 2/3: training a class-conditional EDM model (progress below)", flush=True)
    out = train.main([f"profile={profile}", f"run.name={name}", "diffusion.class_conditional=true", *argv])
    done("training", t)
    t = time.perf_counter()
    print(f"demo 3/3: sampling {n} images (EDM-Heun, 18 steps, guidance 2) for the metrics", flush=True)
    metrics = evaluate.main([f"load={out['run_dir']}", f"run.root={root}", "sample.sampler=heun", "sample.steps=18",
                             "sample.guidance=2", f"num_samples={n}"])
    done("sampling", t)
    run_dir = outputs_root(root) / "phase0" / name
    print("\n" + "=" * 72)
    print(f"demo finished in {(time.perf_counter() - t0) / 60:.1f} min ({', '.join(steps)}; "
          f"{metrics['threads']} threads, {metrics['precision']})")
    lo, hi = metrics["class_accuracy_95ci"]
    print(f"  class accuracy {metrics['class_accuracy']:.3f} (95% Wilson interval {lo:.3f}-{hi:.3f}) over {n} samples "
          f"(the classifier's own test accuracy {metrics['classifier_test_accuracy']:.3f}); FID-proxy "
          f"{metrics['fid_proxy']:.2f} (one seed, no noise floor measured)")
    print(f"  sample grid : {run_dir / 'media' / 'eval_heun-18-g2.png'} (column k = class k)")
    print(f"  metrics     : {run_dir / 'eval' / 'heun-18-g2.json'} and {run_dir / 'metrics.jsonl'}")
    print(f"  TensorBoard : tensorboard --logdir {run_dir / 'tb'}")
    print(f"  weights     : {run_dir / 'export' / 'model.safetensors'}")


if __name__ == "__main__":
    main()
