"""Speed of our UNet against diffusers' UNet2DModel at a matched size, in one process, fp32 and bf16.

    python benchmarks/unet_vs_diffusers.py                 # phase 0 cpu-profile size, 28x28, batch 64
    python benchmarks/unet_vs_diffusers.py --size 32 --channels 64 128 128 --diffusers-channels 80 144 144

Run it on an otherwise idle machine: on 2 cores a second busy process slows torch by 10x or more.
Prints training images/s (forward + backward + AdamW step) and sampling image-steps/s (forward only,
no grad) for each model and precision, and the ratio ours / diffusers for each setting.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from common.nn.unet import UNet, UNetConfig, count_parameters


def make_ours(channels: list[int], ch_in: int) -> nn.Module:
    cfg = UNetConfig(in_channels=ch_in, out_channels=ch_in, channels=channels, num_res_blocks=2,
                     attn_levels=[len(channels) - 1], emb_dim=4 * channels[0], num_groups=8)
    net = UNet(cfg)
    return _Wrap(lambda x, t: net(x, t), net)


def make_diffusers(channels: list[int], ch_in: int, size: int) -> nn.Module:
    from diffusers import UNet2DModel

    n = len(channels)
    net = UNet2DModel(sample_size=size, in_channels=ch_in, out_channels=ch_in, block_out_channels=tuple(channels),
                      layers_per_block=2, norm_num_groups=8,
                      down_block_types=("DownBlock2D",) * (n - 1) + ("AttnDownBlock2D",),
                      up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (n - 1))
    return _Wrap(lambda x, t: net(x, t).sample, net)


class _Wrap(nn.Module):
    def __init__(self, fn, net):
        super().__init__()
        self.fn, self.net = fn, net

    def forward(self, x, t):
        return self.fn(x, t)


def _time(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, oneDNN kernel selection)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return sorted(ts)[len(ts) // 2]  # median


def bench(model: nn.Module, x: torch.Tensor, bf16: bool, repeats: int) -> tuple[float, float]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    t = torch.rand(x.shape[0]) * 10
    ctx = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    def train_step():
        with ctx():
            loss = model(x, t).float().pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    @torch.no_grad()
    def sample_step():
        with ctx():
            model(x, t)

    return x.shape[0] / _time(train_step, repeats), x.shape[0] / _time(sample_step, repeats)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--in-channels", type=int, default=1)
    p.add_argument("--channels", type=int, nargs="+", default=[32, 64, 64])
    # diffusers conditions each block with one Linear(emb, C), ours with two Linear(emb, 2C) (AdaGN), so
    # equal widths are not equal sizes: 40/72/72 matches our 32/64/64 to 0.3% (2.125M vs 2.120M).
    p.add_argument("--diffusers-channels", type=int, nargs="+", default=[40, 72, 72])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sample-batches", type=int, nargs="*", default=[],
                   help="also time our model's sampling forward at these batch sizes (fp32 and bf16)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from common.precision import machine_summary
    print(machine_summary())
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.in_channels, args.size, args.size)
    models = {"ours": make_ours(args.channels, args.in_channels),
              "diffusers": make_diffusers(args.diffusers_channels, args.in_channels, args.size)}
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, "
          f"{args.in_channels}x{args.size}x{args.size}, channels ours {args.channels}, "
          f"diffusers {args.diffusers_channels}")
    for name, m in models.items():
        print(f"  {name:9s} {count_parameters(m) / 1e6:.2f}M parameters")
    rows = {}
    for bf16 in (False, True):
        for name, m in models.items():
            rows[(name, bf16)] = bench(m, x, bf16, args.repeats)
    print("\n| precision | model | train img/s | sample img-steps/s |\n|---|---|---|---|")
    for (name, bf16), (tr, sa) in rows.items():
        print(f"| {'bf16' if bf16 else 'fp32'} | {name} | {tr:.1f} | {sa:.1f} |")
    print("\nratio ours / diffusers (same precision):")
    for bf16 in (False, True):
        (o_tr, o_sa), (d_tr, d_sa) = rows[("ours", bf16)], rows[("diffusers", bf16)]
        print(f"  {'bf16' if bf16 else 'fp32'}: train {o_tr / d_tr:.2f}x, sample {o_sa / d_sa:.2f}x")
    (o_tr, o_sa), (d_tr, d_sa) = rows[("ours", True)], rows[("diffusers", False)]
    print(f"  ours bf16 vs diffusers fp32: train {o_tr / d_tr:.2f}x, sample {o_sa / d_sa:.2f}x")
    for b in args.sample_batches:  # large CPU batches can be slower per image (cache-bound)
        xb = torch.randn(b, args.in_channels, args.size, args.size)
        for bf16 in (False, True):
            _, sa = bench(models["ours"], xb, bf16, max(2, args.repeats // 2))
            print(f"  ours sampling at batch {b}, {'bf16' if bf16 else 'fp32'}: {sa:.1f} img-steps/s")


if __name__ == "__main__":
    main()
