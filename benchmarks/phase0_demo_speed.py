"""What `make demo` costs on this machine, step by step, in fp32 and bf16: how the demo profile was sized.

    python benchmarks/phase0_demo_speed.py
    ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 python benchmarks/phase0_demo_speed.py   # an AVX2-only CPU

The second line makes oneDNN and MKL use only AVX2 kernels, which is how a CPU without AVX-512/AMX runs: bf16
matmuls fall back to emulation (~1 GFLOP/s) while fp32 keeps AVX2 speed. Run on an otherwise idle machine.

For the classifier and each UNet size it times a training step (forward, backward, AdamW) and a sampling
forward pass at the demo's batch sizes, then prints the demo's estimated wall time for its profile
(configs/phase0/profile/demo.yaml) and classifier settings (configs/phase0/classifier.yaml).
"""
from __future__ import annotations

import argparse
import time

import torch

from common.config import load_config
from common.nn.unet import UNet, count_parameters
from common.precision import Precision, machine_summary
from phase0_diffusion.config import ClassifierConfig, Phase0Config
from phase0_diffusion.model import SmallCNN


def _median(fn, repeats: int) -> float:
    fn()  # warm-up: kernel selection, allocations
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return sorted(ts)[len(ts) // 2]


def train_rate(net, x, loss_fn, prec: Precision, repeats: int) -> float:
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)

    def step():
        with prec.autocast():
            loss = loss_fn(net, x)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return len(x) / _median(step, repeats)


@torch.no_grad()
def forward_rate(fn, x, prec: Precision, repeats: int) -> float:
    def go():
        with prec.autocast():
            fn(x)
    return len(x) / _median(go, repeats)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--widths", nargs="+", default=["32,64,64"], help="UNet channel lists to time, e.g. 32,64,64 16,32,32")
    ap.add_argument("--slow-batch", type=int, default=4,
                    help="batch used for a precision the probe calls slow (emulated bf16 takes minutes at full size)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    print(machine_summary())
    demo = load_config(Phase0Config, "phase0/train", ["profile=demo"])
    clf = load_config(ClassifierConfig, "phase0/classifier", [])
    from common.precision import probe_cpu
    slow_bf16 = probe_cpu().speedup < 1.0
    rows = {}
    for name in a.precisions:
        prec = Precision(name, "benchmark")
        small = name == "bf16" and slow_bf16
        b = lambda n: a.slow_batch if small else n  # noqa: E731
        x = torch.rand(b(clf.train.batch_size), 1, 28, 28) * 2 - 1
        y = torch.randint(0, 10, (len(x),))
        cnn = SmallCNN(1, 10, clf.width)
        rows[(name, f"classifier w{clf.width}", "train img/s")] = train_rate(
            cnn, x, lambda m, x: torch.nn.functional.cross_entropy(m.logits(x), y), prec, a.repeats)
        for w in a.widths:
            ucfg = demo.model.unet
            ucfg.channels = [int(c) for c in w.split(",")]
            net = UNet(ucfg)
            x = torch.randn(b(demo.train.batch_size), 1, 28, 28)
            t = torch.rand(len(x))
            lab = f"UNet [{w}] {count_parameters(net) / 1e6:.2f}M"
            rows[(name, lab, "train img/s")] = train_rate(net, x, lambda m, x: m(x, t).square().mean(), prec,
                                                          a.repeats)
            xs = torch.randn(b(100), 1, 28, 28)
            rows[(name, lab, "sample img-evals/s (batch 100)")] = forward_rate(
                lambda x: net(x, torch.rand(len(x))), xs, prec, a.repeats)
        print(f"  {name} done" + (f" (batch {a.slow_batch}: bf16 is emulated here)" if small else ""), flush=True)
    print("\n| precision | model | measure | value |\n|---|---|---|---|")
    for (p, m, k), v in rows.items():
        print(f"| {p} | {m} | {k} | {v:.1f} |")
    # The demo's cost in the precision auto would pick here, for the first width.
    pick = "fp32" if slow_bf16 or "bf16" not in a.precisions else "bf16"
    lab = next(m for (p, m, k) in rows if p == pick and m.startswith("UNet"))
    cls_s = clf.train.max_steps * clf.train.batch_size / rows[(pick, f"classifier w{clf.width}", "train img/s")]
    tr_s = demo.train.max_steps * demo.train.batch_size / rows[(pick, lab, "train img/s")]
    print(f"\nauto picks {pick}: classifier {clf.train.max_steps} x {clf.train.batch_size} ~ {cls_s / 60:.1f} min; "
          f"{lab} {demo.train.max_steps} x {demo.train.batch_size} ~ {tr_s / 60:.1f} min (without grids and data "
          f"loading); each 1000 network evaluations of sampling at batch 100 ~ "
          f"{1000 / rows[(pick, lab, 'sample img-evals/s (batch 100)')]:.2f} s")


if __name__ == "__main__":
    main()
