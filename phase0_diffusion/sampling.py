"""Drawing images from a trained phase 0 model: batches of labelled samples, class grids, sampler names."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from common.checkpoint import atomic_write
from common.runs import Exported
from common.system import Runtime, start
from phase0_diffusion.config import EvalRunConfig, Phase0Config, SampleConfig
from phase0_diffusion.model import ImageDiffusion, load_trained


def nfe(scfg: SampleConfig, T: int = 1000) -> int:
    """Network evaluations per sample (a guided evaluation runs both branches in one batch)."""
    return {"ddpm": T, "ddim": scfg.steps, "euler": scfg.steps, "heun": 2 * scfg.steps - 1}[scfg.sampler]


def tag(scfg: SampleConfig) -> str:
    """The sampler's short name in file names: heun-18-g2, ddim-50-eta0-g1, ddpm-1000-g1."""
    t = f"{scfg.sampler}-{scfg.steps}" if scfg.sampler != "ddpm" else "ddpm-1000"
    if scfg.sampler == "ddim":
        t += f"-eta{scfg.eta:g}"
    return t + f"-g{scfg.guidance:g}"


@torch.no_grad()
def generate(model: ImageDiffusion, scfg: SampleConfig, n: int, shape, num_classes: int, batch_size: int,
             device, seed: int = 0, bf16: bool = False, progress: str = "",
             resume: Path | None = None) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """n samples (labels cycle through the classes when the model is conditional); returns seconds too.
    With `progress`, a line per batch prefixed by it (images done, elapsed, estimated remaining).
    With `resume`, the images so far and the generator's state are saved there (atomically) after every batch and
    picked up from there by the next call: an interrupted run continues with the same draws it would have made."""
    g = torch.Generator(device=device).manual_seed(seed)
    labels = (torch.arange(n, device=device) % num_classes) if model.classes is not None else None
    out, first, spent = [], 0, 0.0
    if resume is not None and resume.exists():
        try:
            st = torch.load(resume, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - a torn or foreign file: say which, do not guess
            raise ValueError(f"{resume}: cannot read this partial sampling state ({e}); delete it to start the "
                             "cell again") from e
        want = {"n": n, "batch_size": batch_size, "seed": seed}
        if any(st.get(k) != v for k, v in want.items()):
            raise ValueError(f"{resume}: saved for {({k: st.get(k) for k in want})}, asked for {want}; delete it "
                             "to start again with the new settings")
        out, first, spent = [st["x"].to(device)], int(st["done"]), float(st["seconds"])
        g.set_state(st["generator"])
        if progress:
            print(f"{progress}: resuming at {first}/{n} images ({resume.name})", flush=True)
    t0 = time.perf_counter()
    for i in range(first, n, batch_size):
        lab = labels[i:i + batch_size] if labels is not None else None
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            out.append(model.sample(min(batch_size, n - i), shape, scfg, lab, g, device).float())
        done, dt = min(n, i + batch_size), time.perf_counter() - t0
        if resume is not None and done < n:
            x = torch.cat(out)
            out = [x]
            state = {"x": x.cpu(), "done": done, "seconds": spent + dt, "generator": g.get_state(), "n": n,
                     "batch_size": batch_size, "seed": seed}
            atomic_write(resume, lambda f: torch.save(state, f))
        if progress:
            print(f"{progress}: {done}/{n} images, {spent + dt:.0f} s, ~{dt / (done - first) * (n - done):.0f} s left",
                  flush=True)
    return torch.cat(out), labels, spent + time.perf_counter() - t0


def grid_labels(n: int, num_classes: int, device) -> torch.Tensor:
    """Labels for a grid of n images with one row per class (n // num_classes images per row)."""
    per_row = max(1, n // num_classes)
    return (torch.arange(n, device=device) // per_row).clamp(max=num_classes - 1)


def sample_grid(model: ImageDiffusion, cfg: Phase0Config, shape, num_classes: int, device) -> torch.Tensor:
    """cfg.sample.num images as one image grid (a row per class for a conditional model), values in [0, 1]."""
    import torchvision

    g = torch.Generator(device=device).manual_seed(cfg.sample.seed)
    labels = grid_labels(cfg.sample.num, num_classes, device) if model.classes is not None else None
    x = model.sample(cfg.sample.num, shape, cfg.sample, labels, g, device)
    nrow = max(1, cfg.sample.num // num_classes) if labels is not None else int(cfg.sample.num ** 0.5)
    return torchvision.utils.make_grid((x.clamp(-1, 1) + 1) / 2, nrow=nrow, padding=1)


def open_trained(cfg: EvalRunConfig, command: str) -> tuple[Exported, Runtime]:
    """Threads, device, precision, and the trained model (explicit, latest or the release): shared by eval and
    sample. Prints the start-up line."""
    rt = start(cfg.run)
    tm = load_trained(cfg.load, cfg.run.root, rt.device)
    print(f"{command}: {tm.run.describe()}; {rt.describe()}", flush=True)
    return tm, rt
