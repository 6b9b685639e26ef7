"""SmolVLA training-step and inference time at a few image sizes, backbone widths and chunk lengths.

    python benchmarks/phase3_policy_speed.py                     # the variants below, 1 thread, batch 8
    python benchmarks/phase3_policy_speed.py --steps 5 --batch 4 --threads 2 --precisions fp32 bf16
    python benchmarks/phase3_policy_speed.py --only baseline,img64

Every variant is timed in this process on the same synthetic batch (two 128 px cameras, as the cpu
demonstrations), and printed as a ratio against the first variant (the cpu profile's policy), so the
ratios mean something even on a busy machine; the absolute seconds do not (run it alone for those).
One training step = preprocessor (tokenizer, normalization) + SmolVLA forward + backward + AdamW step.
One inference = a fresh action chunk (`select_action` with an empty queue: prefix pass + num_steps
Euler steps of the action expert). Data loading (phase3_vla.frames: LeRobotDataset reads + the action
chunk + collate) is timed separately; `--lerobot-chunks` times lerobot's own delta-timestamp reads instead.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from phase3_vla.config import PolicyConfig  # noqa: E402

BASE = PolicyConfig()  # the cpu profile's policy (configs/phase3/profile/cpu.yaml keeps these defaults)


def variant(**kw) -> PolicyConfig:
    bb = {k[3:]: kw.pop(k) for k in list(kw) if k.startswith("bb_")}
    return dataclasses.replace(BASE, backbone=dataclasses.replace(BASE.backbone, **bb), **kw)


VARIANTS = {
    "baseline": BASE,
    "img64": variant(image_size=64),
    "img256": variant(image_size=256),
    "chunk10": variant(chunk_size=10, n_action_steps=10),
    "chunk25": variant(chunk_size=25, n_action_steps=25),
    "text64": variant(bb_text_hidden=64, bb_text_heads=2, bb_text_kv_heads=1),
    "text256": variant(bb_text_hidden=256, bb_text_heads=4),
    "layers8": variant(bb_text_layers=8),
    "vision128": variant(bb_vision_hidden=128, bb_vision_heads=4),
    "lora16": BASE,  # the baseline wrapped with LoRA r=16 (lerobot's default targets): a finetune step
}
LORA = {"lora16": 16}


def synthetic_dataset(folder: Path, size: int = 128, episodes: int = 2, steps: int = 60):
    from phase3_vla import staging
    from phase3_vla.dataset import write_lerobot_dataset

    demos = []
    for e in range(episodes):
        rng = np.random.default_rng(e)
        demos.append(staging.Demo(
            agentview=rng.integers(0, 256, (steps, size, size, 3), dtype=np.uint8),
            wrist=rng.integers(0, 256, (steps, size, size, 3), dtype=np.uint8),
            state=rng.normal(size=(steps, 8)).astype(np.float32),
            action=rng.uniform(-1, 1, (steps, 7)).astype(np.float32),
            meta={"instruction": "pick up the alphabet soup and place it in the basket"}))
    write_lerobot_dataset(folder, "local/bench", demos, fps=20)
    return folder


def time_variant(name: str, p: PolicyConfig, folder: Path, batch: int, steps: int, bf16: bool, root: Path,
                 lerobot_chunks: bool = False) -> dict:
    from phase3_vla.dataset import open_dataset
    from phase3_vla.frames import open_training_set
    from phase3_vla.policy import PolicyModule, build_policy, trainable_and_total
    from common.stepwise import StepRNG

    device = torch.device("cpu")
    meta = open_dataset(folder).meta
    torch.manual_seed(0)
    policy, pre, post = build_policy(p, meta, device, root)
    if lerobot_chunks:
        from lerobot.datasets.factory import resolve_delta_timestamps

        ds = open_dataset(folder, delta_timestamps=resolve_delta_timestamps(policy.config, meta))
    else:
        ds = open_training_set(folder, p.chunk_size)  # what train/finetune read (lerobot's chunks, faster)
    loader = iter(torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True))
    loads = []
    for _ in range(3):
        t0 = time.perf_counter()
        raw = next(loader)
        loads.append(time.perf_counter() - t0)
    load_s = float(np.median(loads[1:]))
    model = policy
    if name in LORA:
        from phase3_vla.config import AdapterConfig
        from phase3_vla.policy import wrap_lora

        policy.config.pretrained_path = root  # lerobot's wrap_with_peft insists on a base path
        model = wrap_lora(policy, AdapterConfig(r=LORA[name]))
    module = PolicyModule(model, pre, adapter_only=name in LORA).train()
    opt = torch.optim.AdamW([q for q in module.parameters() if q.requires_grad], lr=1e-4)
    times = []
    for s in range(steps + 2):  # the first two are warm-up
        rng = StepRNG(0, s, 0, batch, batch, device)
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, _ = module(dict(raw), rng)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    policy.eval()
    obs = {k: raw[k][:1, 0] for k in policy.config.image_features}
    obs["observation.state"], obs["task"] = raw["observation.state"][:1, 0], raw["task"][:1]
    infer = []
    for _ in range(3):
        policy.reset()
        t0 = time.perf_counter()  # (through the adapters too for lora16: not merged)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            post(policy.select_action(pre(dict(obs))))
        infer.append(time.perf_counter() - t0)
    trainable, total = trainable_and_total(model)
    return {"name": name, "params": total, "trainable": trainable, "step_s": float(np.median(times[2:])),
            "infer_s": float(np.median(infer)), "load_s": load_s, "image": p.image_size, "chunk": p.chunk_size,
            "text": f"{p.backbone.text_layers}x{p.backbone.text_hidden}",
            "vision": f"{p.backbone.vision_layers}x{p.backbone.vision_hidden}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5, help="timed training steps per variant (after 2 warm-up)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16"],
                    help="time each variant in these precisions (bf16 = run.precision=bf16's autocast)")
    ap.add_argument("--lerobot-chunks", action="store_true",
                    help="read chunks with LeRobotDataset(delta_timestamps=...) (lerobot-train's way) for the data column")
    ap.add_argument("--only", default="", help="comma-separated variant names (the first is the baseline)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    names = a.only.split(",") if a.only else list(VARIANTS)
    from common.precision import machine_summary
    print(machine_summary())
    print(f"torch {torch.__version__}, {a.threads} thread(s), batch {a.batch}, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (ratios are the meaningful numbers on a busy machine)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = synthetic_dataset(Path(tmp) / "ds")
        rows = []
        for n, prec in [(n, p) for p in a.precisions for n in names]:
            r = time_variant(n, VARIANTS[n], folder, a.batch, a.steps, prec == "bf16", Path(tmp), a.lerobot_chunks)
            rows.append(r)
            base = rows[0]
            print(f"{prec} {n:10s} image {r['image']:3d} chunk {r['chunk']:2d} text {r['text']:6s} vision {r['vision']:6s} "
                  f"{r['params'] / 1e6:5.2f}M params ({r['trainable'] / 1e6:.3f}M trained) | train {r['step_s']:.3f} s/step ({r['step_s'] / base['step_s']:.2f}x) | "
                  f"chunk inference {r['infer_s'] * 1000:.0f} ms ({r['infer_s'] / base['infer_s']:.2f}x) | "
                  f"data {r['load_s']:.2f} s/batch", flush=True)


if __name__ == "__main__":
    main()
