"""Run one mode of a trained UWM on held-out clips (the validation demonstrations) and say how close it came.

    python -m phase4_uwm.infer mode=policy                  # actions from the current frames
    python -m phase4_uwm.infer mode=forward                 # future frames from the current frames and real actions
    python -m phase4_uwm.infer mode=inverse                 # actions from the current and the real future frames
    python -m phase4_uwm.infer mode=video                   # future frames without actions
    python -m phase4_uwm.infer mode=joint                   # both
    python -m phase4_uwm.infer mode=forward load=<run> split=base_val clips=64 denoise_steps=10

Prints the mode's error on `clips` evenly spaced clips of the split (action MSE in the data set's units over real
steps; latent MSE and the PSNR of the mean MSE of the decoded future frames against the real ones), with the
copy-current-frame baseline for frames, and the seconds per clip. Writes <run>/infer/<mode>.json and a picture
<mode>.png (one row per clip: current frame | real future | predicted future, agent view then wrist). The full
comparison against baselines is `phase4_uwm.evaluate` (phase 4 README).
"""
from __future__ import annotations

import json
import math
import time

import torch

from common.checkpoint import atomic_write
from common.config import cli
from common.errors import command
from common.images import to_uint8
from common.runs import writable_dir
from common.system import start
from phase4_uwm.config import InferConfig
from phase4_uwm.data import evenly_spaced, held_out_clips
from phase4_uwm.loading import load_uwm
from phase4_uwm.modes import run_mode


def psnr_of_mse(mse: float) -> float:
    return 10 * math.log10(255.0 ** 2 / max(mse, 1e-12))


def picture(cur: torch.Tensor, real: torch.Tensor, pred: torch.Tensor | None, path) -> None:
    """Rows: clips; columns per view: current | real future | predicted future (uint8 (B, V, 3, S, S) each)."""
    from PIL import Image
    cols = [cur, real] + ([pred] if pred is not None else [])
    rows = [torch.cat([torch.cat([c[i, v] for c in cols], dim=2) for v in range(cur.shape[1])], dim=2)
            for i in range(cur.shape[0])]
    img = torch.cat(rows, dim=1).permute(1, 2, 0).numpy()
    Image.fromarray(img).save(path)


@command
def main(argv: list[str] | None = None) -> dict:
    cfg = cli(InferConfig, "phase4/infer", argv, __doc__)
    rt = start(cfg.run, 0, 1)
    tm = load_uwm(cfg.load, cfg.run.root, rt.device)
    m, tok = tm.model, tm.tokenizer
    clips = held_out_clips(tm, cfg.data, cfg.run.root, cfg.split)
    idx = evenly_spaced(len(clips), cfg.clips)
    g = torch.Generator(device=rt.device).manual_seed(cfg.seed)
    sums = {"action_se": 0.0, "action_n": 0, "latent_se": 0.0, "latent_n": 0, "frame_se": 0.0, "copy_se": 0.0,
            "frame_n": 0}
    shown = None
    t0 = time.perf_counter()
    for j in range(0, len(idx), cfg.batch_size):
        items = [clips[i] for i in idx[j:j + cfg.batch_size]]
        b = {k: torch.stack([it[k] for it in items]).to(rt.device) for k in items[0]}
        real_a = m.unnormalize_actions(b["action"])
        with rt.precision.autocast():
            out = run_mode(m, cfg.mode, b["obs"], b["task"], actions=real_a, future=b["future"],
                           steps=cfg.denoise_steps, generator=g)
        if cfg.mode in ("policy", "inverse", "joint"):
            w = (~b["action_is_pad"]).float()[..., None]
            sums["action_se"] += float((((out.actions.float() - real_a) ** 2) * w).sum())
            sums["action_n"] += int(w.sum()) * real_a.shape[-1]
        if cfg.mode in ("forward", "video", "joint"):
            sums["latent_se"] += float(((out.future.float() - b["future"]) ** 2).sum())
            sums["latent_n"] += out.future.numel()
            pred = to_uint8(tok.decode(out.future.float())).float()
            rows = [clips.idx["future"][i] for i in idx[j:j + cfg.batch_size]]
            real = torch.stack([clips.demos.frames[r].transpose(0, 1) for r in rows]).float().to(pred.device)
            cur = b["obs"][:, :, -1:].float().expand_as(real)
            sums["frame_se"] += float(((pred - real) ** 2).sum())
            sums["copy_se"] += float(((cur - real) ** 2).sum())
            sums["frame_n"] += real.numel()
            if shown is None:
                shown = (b["obs"][:8, :, -1].cpu(), real[:8, :, -1].to(torch.uint8).cpu(), pred[:8, :, -1].to(torch.uint8).cpu())
    seconds = (time.perf_counter() - t0) / len(idx)
    res = {"mode": cfg.mode, "run": str(tm.run.dir), "split": cfg.split, "clips": len(idx),
           "denoise_steps": cfg.denoise_steps or m.cfg.sample_steps, "seconds_per_clip": seconds, "device": str(rt.device)}
    if sums["action_n"]:
        res["action_mse"] = sums["action_se"] / sums["action_n"]
    if sums["frame_n"]:
        res.update(latent_mse=sums["latent_se"] / sums["latent_n"],
                   frame_psnr=psnr_of_mse(sums["frame_se"] / sums["frame_n"]),
                   copy_current_psnr=psnr_of_mse(sums["copy_se"] / sums["frame_n"]))
    out_dir = writable_dir(tm.run, cfg.run.root) / "infer"
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / f"{cfg.mode}.json", lambda f: f.write(json.dumps(res, indent=1).encode()))
    if shown is not None:
        picture(*shown, out_dir / f"{cfg.mode}.png")
    parts = [f"{k} {v:.4g}" for k, v in res.items() if isinstance(v, float)]
    print(f"mode={cfg.mode}: {len(idx)} clips of {cfg.split}: " + ", ".join(parts) + f" -> {out_dir}", flush=True)
    return res


if __name__ == "__main__":
    main()
