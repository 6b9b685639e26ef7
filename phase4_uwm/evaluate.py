"""Evaluate a trained UWM: its modes on held-out clips, and its policy in LIBERO.

    python -m phase4_uwm.evaluate                              # both parts, the latest UWM run
    python -m phase4_uwm.evaluate parts=[offline] offline.clips=512
    python -m phase4_uwm.evaluate parts=[policy] eval.tasks=[9] eval.episodes=25
    python -m phase4_uwm.evaluate load=<run> publish=true     # and rewrite the phase 4 README's results block

**offline** (validation demonstrations, never trained on; `offline.split`): on `offline.clips` evenly spaced clips,
- forward dynamics and video prediction: the 2 future frames of both cameras decoded from the predicted latents
  against the real frames, with phase 1's frame metrics (PSNR of the mean MSE with a bootstrap interval, SSIM,
  SSIM-cs) and a feature distance, the latent MSE: the frozen tokenizer's encoding of the 8-bit prediction against
  its encoding of the real frames (unit-variance latents; the same encoder for every row, baselines included),
  beside the floor `copy_current` (the last current frame as the prediction) and the ceiling `tokenizer` (the real
  future through the frozen autoencoder: no prediction can beat its reconstruction);
- pictures: `modes.png` (the first clips: each mode's prediction beside the real future), `modes.gif` and
  `actions.png` (the split's first episode; `episode_media`);
- policy and inverse dynamics: the action MSE per clip (data set units, real steps only), mean +- 1.96 s.e.;
- seconds per clip of each mode.

**policy** (LIBERO): the UWM's policy mode plays LIBERO's fixed initial states `eval.first_state ..` of
`eval.tasks` through phase 3's episode loop (`phase3_vla.rollouts.play`, the same steps, settle, success test and
failure reasons as SmolVLA's evaluation), each episode saved as it ends (rerunning resumes), after the check that
no evaluation state is one a training demonstration (of this run, or of the base run it was finetuned from)
started from. Success with Wilson intervals.
"""
from __future__ import annotations

import json
import time
import zlib
from pathlib import Path

import torch

from common.checkpoint import atomic_write
from common.config import cli, to_dict
from common.errors import command
from common.images import join, to_uint8
from common.runs import writable_dir
from common.system import start
from phase4_uwm.config import OFFLINE_MODES, UWMEvaluateConfig
from phase4_uwm.data import ActionStats, evenly_spaced, held_out_clips
from phase4_uwm.libero_eval import Player, policy_eval
from phase4_uwm.loading import load_uwm
from phase4_uwm.modes import run_mode

# ----------------------------------------------------------------------------- offline
# The modes each training objective taught: policy-only never saw a clean or partly noisy future, dynamics-only never
# saw noisy actions (its video mode, actions at full noise, is as untrained as its policy).
TRAINED_MODES = {"joint": OFFLINE_MODES,
                 "policy": ("policy",), "dynamics": ("forward", "forward_other")}


def clip_batch(clips, ids: list[int], device) -> tuple[dict, torch.Tensor]:
    """Clips `ids` stacked into a batch on `device`, and their real future frames (B, V, F, 3, S, S) uint8."""
    items = [clips[i] for i in ids]
    b = {k: torch.stack([it[k] for it in items]).to(device) for k in items[0]}
    real = torch.stack([clips.demos.frames[clips.idx["future"][i]].transpose(0, 1) for i in ids]).to(device)
    return b, real


def offline(cfg: UWMEvaluateConfig, uwm, device, media_dir: Path) -> dict:
    """Every trained mode and the configured baselines on the held-out validation clips: frame metrics of the
    predicted futures, action MSE of the predicted chunks, each row with its own noise generator (`offline.seed`),
    side-by-side figures and videos in `media_dir`. Returns the `offline` part of results.json."""
    from phase1_world_model.metrics import aggregate, frame_metrics, mean_interval

    m, tok, oc = uwm.model, uwm.tokenizer, cfg.offline
    modes = [k for k in oc.modes if k in TRAINED_MODES[m.objective]]
    if skipped := [k for k in oc.modes if k not in modes]:
        print(f"note: not scoring {', '.join(skipped)}: objective={m.objective} never trained the levels they use",
              flush=True)
    clips = held_out_clips(uwm, cfg.data, cfg.run.root, oc.split)
    idx = evenly_spaced(len(clips), oc.clips)
    per_clip: dict[str, dict[str, list]] = {}
    seconds: dict[str, float] = {}

    def add(name: str, gen: torch.Tensor, real: torch.Tensor, real_latents: torch.Tensor) -> None:
        fm = frame_metrics(gen.flatten(1, 2), real.flatten(1, 2))  # (B, V*F) per frame
        d = per_clip.setdefault(name, {})
        for k, v in fm.items():
            d.setdefault(k, []).append(v.mean(1) if k != "psnr" else v.median(1).values)
        lat = tok.encode(gen.float().round().clamp(0, 255).to(torch.uint8)).float()  # the feature distance
        d.setdefault("latent_mse", []).append((lat - real_latents).pow(2).flatten(1).mean(1))

    def add_actions(name: str, pred: torch.Tensor, real: torch.Tensor, pad: torch.Tensor) -> None:
        w = (~pad).float()[..., None]  # real steps only
        se = (((pred.float() - real) ** 2) * w).sum((1, 2)) / (w.sum((1, 2)) * real.shape[-1])
        per_clip.setdefault(f"{name}_actions", {}).setdefault("action_mse", []).append(se)
    inv = None
    if cfg.inverse_regressor != "none":
        from phase4_uwm.loading import load_inverse_regressor
        from common.config import ConfigError
        loaded = load_inverse_regressor(cfg.inverse_regressor, cfg.run.root, device)
        inv, side = loaded.model, int(clips.demos.frames.shape[-1])
        if to_dict(inv.clip) != to_dict(m.clip) or loaded.cfg.image_size != side:
            raise ConfigError("inverse_regressor", cfg.inverse_regressor,
                              f"{loaded.run.dir} was trained on clips {to_dict(inv.clip)} at {loaded.cfg.image_size} px; "
                              f"the UWM's are {to_dict(m.clip)} at {side} px: train it with the UWM's clip.* and size")
    wm = None
    if cfg.forward_baseline != "none":
        from common.config import ConfigError
        from phase4_uwm.loading import load_diamond
        loaded = load_diamond(cfg.forward_baseline, cfg.run.root, device)
        wm, side = loaded.model, int(clips.demos.frames.shape[-1])
        wm_stats = ActionStats(loaded.meta["action_low"], loaded.meta["action_high"])
        if loaded.meta["image_size"] != side:
            raise ConfigError("forward_baseline", cfg.forward_baseline, f"{loaded.run.dir} was trained at "
                              f"{loaded.meta['image_size']} px; the UWM's frames are {side} px")
    # the floor of the action cells: the training demonstrations' mean action, played at every step of the chunk
    from phase4_uwm.data import cache_dir, demo_folder, load_demos
    trained_on = load_demos(demo_folder(uwm.cfg, uwm.cfg.data.split), int(clips.demos.frames.shape[-1]),
                            cache_dir(cfg.run.root))
    mean_action = trained_on.actions.float().mean(0).to(device)
    gens: dict[str, torch.Generator] = {}

    def noise(row: str) -> torch.Generator:
        """The row's own generator, seeded from offline.seed and the row's name hashed together (a CPU generator
        keeps only the low 32 bits of its seed)."""
        if row not in gens:
            gens[row] = torch.Generator(device=device).manual_seed(zlib.crc32(f"{oc.seed}/{row}".encode()))
        return gens[row]
    shown: dict[str, torch.Tensor] = {}  # the figure's clips: the first `figure_clips` of the spaced ones
    for j in range(0, len(idx), oc.batch_size):
        ids = idx[j:j + oc.batch_size]
        b, real = clip_batch(clips, ids, device)
        real_lat = tok.encode(real).float()  # (B, V, F, C, h, w)
        real_a = m.unnormalize_actions(b["action"])
        add_actions("mean_action", mean_action.expand_as(real_a), real_a, b["action_is_pad"])
        cur = b["obs"][:, :, -1:].expand_as(real)
        add("copy_current", cur, real, real_lat)
        keep = max(0, min(oc.figure_clips - j, len(ids)))  # this batch's clips that go in the figure
        if keep:
            shown.setdefault("now", []).append(b["obs"][:keep, :, -1])
            shown.setdefault("real", []).append(real[:keep, :, -1])
        if wm is not None:
            from phase4_uwm.diamond import rollout
            t0 = time.perf_counter()
            gen = rollout(wm, clips.demos, ids, wm_stats, m.clip.chunk,
                          generator=noise("diamond_lite"))  # (B, chunk, V*3, S, S)
            seconds["diamond_lite"] = seconds.get("diamond_lite", 0.0) + time.perf_counter() - t0
            Fr, V = m.clip.future_frames, real.shape[1]
            gen = gen[:, -Fr:].reshape(len(ids), Fr, V, 3, *gen.shape[-2:]).transpose(1, 2)
            add("diamond_lite", gen.to(real.device).float(), real, real_lat)
            if keep:
                shown.setdefault("diamond_lite", []).append(gen[:keep, :, -1])
        if inv is not None:
            t0 = time.perf_counter()
            with torch.no_grad():
                pred = inv.unnormalize(inv.predict(b["obs"], real.to(torch.uint8), b["task"]))
            seconds["inverse_regressor"] = seconds.get("inverse_regressor", 0.0) + time.perf_counter() - t0
            add_actions("inverse_regressor", pred, real_a, b["action_is_pad"])
        add("tokenizer", to_uint8(tok.decode(b["future"])).float(), real, real_lat)
        for mode in modes:
            t0 = time.perf_counter()
            given = real_a.roll(1, 0) if mode == "forward_other" else real_a  # another clip's chunk: same shapes
            out = run_mode(m, "forward" if mode == "forward_other" else mode, b["obs"], b["task"], actions=given,
                           future=b["future"], steps=cfg.denoise_steps, generator=noise(mode))
            seconds[mode] = seconds.get(mode, 0.0) + time.perf_counter() - t0
            if mode in ("forward", "forward_other", "video", "joint"):
                gen = to_uint8(tok.decode(out.future.float())).float()
                add(mode, gen, real, real_lat)
                if keep:
                    shown.setdefault(mode, []).append(gen[:keep, :, -1])
            if mode in ("policy", "inverse", "joint"):
                add_actions(mode, out.actions, real_a, b["action_is_pad"])
    rows = {}
    for name, d in per_clip.items():
        cat = {k: torch.cat(v) for k, v in d.items()}
        if "action_mse" in cat:  # with the clips' own errors, in clip order: runs on the same clips pair up
            per = cat["action_mse"].double().cpu().numpy()
            rows[name] = {"action_mse": mean_interval(per), "per_clip": [float(f"{v:.6g}") for v in per]}
        else:
            rows[name] = aggregate(cat)
    return {"split": oc.split, "clips": len(idx), "denoise_steps": cfg.denoise_steps or m.cfg.sample_steps,
            "timestep_spacing": m.cfg.timestep_spacing, "chunk": m.clip.chunk, "seed": oc.seed,
            "rows": rows, "seconds_per_clip": {k: v / len(idx) for k, v in seconds.items()},
            "shown": {k: torch.cat(v).to(torch.uint8).cpu() for k, v in shown.items()},
            # the pictures of the first episode, from the clips loaded above (a one-loss model lacks a mode they show)
            "media": (episode_media(uwm, clips, device, media_dir, oc.video_stride, cfg.denoise_steps)
                      if oc.video_stride and m.objective == "joint" else {})}


FIGURE_COLUMNS = {"now": "now (t)", "real": "real t+{h}", "forward": "forward t+{h}",
                  "forward_other": "other actions t+{h}", "video": "video t+{h}",
                  "joint": "joint t+{h}", "diamond_lite": "DIAMOND-lite t+{h}"}


def _header(cols: list[str], width: int, total: int, horizon: int):
    import numpy as np
    from PIL import Image, ImageDraw

    head = Image.new("RGB", (total, 14), "white")
    for c, k in enumerate(cols):
        ImageDraw.Draw(head).text((c * (width + 4) + 2, 1), FIGURE_COLUMNS[k].format(h=horizon), fill="black")
    return np.asarray(head)


def _cells(shown: dict[str, torch.Tensor], cols: list[str], i: int):
    """Row i of the figure: each column's (V, 3, S, S) uint8 frames, the views stacked (agent view on top)."""
    return join([join([v.permute(1, 2, 0).numpy() for v in shown[k][i]], axis=0, gap=1) for k in cols], axis=1)


def modes_figure(shown: dict[str, torch.Tensor], horizon: int, path: Path) -> Path:
    """One row per clip: the current frame, the real frame `horizon` steps later and each mode's prediction of it;
    every cell is the agent view above the wrist view. `shown[k]`: (N, V, 3, S, S) uint8."""
    import imageio.v3 as iio
    import numpy as np

    cols = [k for k in FIGURE_COLUMNS if k in shown]
    grid = join([_cells(shown, cols, i) for i in range(len(shown["now"]))], axis=0)
    head = _header(cols, int(shown["now"].shape[-1]), grid.shape[1], horizon)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, join([np.asarray(head), grid], axis=0, gap=2))
    return path


def episode_media(uwm, clips, device, out: Path, stride: int, steps: int, seed: int = 0) -> dict[str, Path]:
    """The split's first validation episode replayed every `stride` steps t: `modes.gif` shows, frame by frame, the
    current frame, the real frame chunk steps later and the forward (real actions) and video (no actions) modes'
    predictions of it, side by side (agent view above wrist view); `actions.png` plots, per action dimension, the
    real action a_t against the first action of the chunk the policy mode (no future) and the inverse mode (the real
    future) predict at t. One clip per t, so the frames of the GIF are independent predictions, not a rollout."""
    import imageio.v3 as iio
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    m, tok = uwm.model, uwm.tokenizer
    ep = clips.demos.episode
    rows = torch.nonzero(ep == ep[0]).flatten()
    ts = [int(t) for t in rows[: max(1, len(rows) - m.clip.chunk)][::stride]]  # futures inside the episode
    g = torch.Generator(device=device).manual_seed(seed)
    shown: dict[str, list] = {}
    acts: dict[str, list] = {}
    for j in range(0, len(ts), 32):
        ids = ts[j:j + 32]
        b, real = clip_batch(clips, ids, device)
        real_a = m.unnormalize_actions(b["action"])
        shown.setdefault("now", []).append(b["obs"][:, :, -1].cpu())
        shown.setdefault("real", []).append(real[:, :, -1].cpu())
        acts.setdefault("real", []).append(real_a[:, 0].cpu())
        for mode in ("forward", "video", "policy", "inverse"):
            o = run_mode(m, mode, b["obs"], b["task"], actions=real_a, future=b["future"], steps=steps, generator=g)
            if mode in ("forward", "video"):
                shown.setdefault(mode, []).append(to_uint8(tok.decode(o.future.float()))[:, :, -1].cpu())
            else:
                acts.setdefault(mode, []).append(o.actions[:, 0].float().cpu())
    shown_t = {k: torch.cat(v) for k, v in shown.items()}
    cols = [k for k in FIGURE_COLUMNS if k in shown_t]
    frames = [_cells(shown_t, cols, i) for i in range(len(ts))]
    head = _header(cols, int(shown_t["now"].shape[-1]), frames[0].shape[1], m.clip.chunk)
    out.mkdir(parents=True, exist_ok=True)
    gif = out / "modes.gif"
    iio.imwrite(gif, np.stack([join([head, f], axis=0, gap=2) for f in frames]), extension=".gif",
                duration=250, loop=0)
    a = {k: torch.cat(v).numpy() for k, v in acts.items()}
    dims = a["real"].shape[1]
    fig, axes = plt.subplots(dims, 1, figsize=(7, 1.3 * dims), sharex=True)
    for d, ax in enumerate(np.atleast_1d(axes)):
        for k, style in (("real", "k-"), ("policy", "C0.--"), ("inverse", "C1.:")):
            ax.plot(ts, a[k][:, d], style, label=k if d == 0 else None, lw=1, ms=3)
        ax.set_ylabel(f"a[{d}]", fontsize=8)
    fig.legend(loc="upper center", ncol=3, fontsize=8)
    np.atleast_1d(axes)[-1].set_xlabel(f"step t of validation episode {int(ep[0])} (first action of the chunk at t)")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    png = out / "actions.png"
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return {"gif": gif, "actions": png}


def offline_tables(res: dict) -> str:
    """The markdown tables of an `offline` result: frames (one row per mode or baseline) and actions."""
    from phase1_world_model.metrics import fmt

    frames = [k for k in ("forward", "forward_other", "video", "joint", "diamond_lite", "copy_current", "tokenizer")
              if k in res["rows"]]
    label = {"forward": "forward dynamics (real actions)",
             "forward_other": "forward dynamics, another clip's actions (does it use them?)",
             "video": "video prediction (no actions)",
             "joint": "joint (actions and video sampled)",
             "diamond_lite": "DIAMOND-lite, 16 frames rolled out with the real actions", "copy_current": "copy current frame (floor)",
             "tokenizer": "tokenizer reconstruction (ceiling)"}
    lines = [f"{res['clips']} clips of `{res['split']}` (validation demonstrations), {res['denoise_steps']} DDIM steps "
             f"({res.get('timestep_spacing', 'trailing')} spacing); "
             "future = the 2 frames 16 steps ahead, both cameras, 8-bit; each cell estimate [95% interval over the "
             "clips]" + (f"; noise seed {res['seed']}" if "seed" in res else "") + ".", "",
             "| prediction of the future frames | PSNR (dB) | SSIM | SSIM-cs | latent MSE | s/clip |",
             "|---|---|---|---|---|---|"]
    for k in frames:
        r = res["rows"][k]
        s = res["seconds_per_clip"].get(k)
        lat = fmt(r["latent_mse"], "latent_mse") if "latent_mse" in r else "-"  # evaluations before it: none
        lines.append(f"| {label[k]} | {fmt(r['psnr'], 'psnr')} | {fmt(r['ssim'], 'ssim')} | "
                     f"{fmt(r['ssim_cs'], 'ssim_cs')} | {lat} | {'-' if s is None else f'{s:.3f}'} |")
    acts = [k for k in ("policy", "inverse", "inverse_regressor", "joint", "mean_action")
            if f"{k}_actions" in res["rows"]]
    names = {"mean_action": "mean training action (floor)"}
    if acts:
        lines += ["", "| actions | MSE (data set units, real steps) | s/clip |", "|---|---|---|"]
        for k in acts:
            v = res["rows"][f"{k}_actions"]["action_mse"]
            s = res["seconds_per_clip"].get(k)
            lines.append(f"| {names.get(k, k)} | {v[0]:.4f} [{v[1]:.4f}, {v[2]:.4f}] | "
                         f"{'-' if s is None else f'{s:.3f}'} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- policy in LIBERO
def uwm_player(cfg: UWMEvaluateConfig, uwm) -> Player:
    """The UWM's policy mode for phase 3's LIBERO episode loop (`UWMPolicy`; frames and actions need no processor)."""
    from phase4_uwm.policy import UWMPolicy

    ident = lambda x: x  # noqa: E731
    return Player(uwm.run, uwm.meta, uwm.run.export_dir / "model.safetensors",
                  cfg.eval.n_action_steps or uwm.model.clip.chunk, cfg.denoise_steps or uwm.model.cfg.sample_steps,
                  lambda task, g: (UWMPolicy(uwm.model, task, cfg.eval.n_action_steps, cfg.denoise_steps, g), ident,
                                   ident), "UWM policy mode", {"timestep_spacing": uwm.model.cfg.timestep_spacing})


def dp_player(cfg: UWMEvaluateConfig, device) -> Player:
    """lerobot's Diffusion Policy saved by train_dp (export/policy), with its processors."""
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
    from lerobot.policies.factory import make_pre_post_processors

    from common.runs import resolve_run
    run = resolve_run("phase4", cfg.load, cfg.run.root, require="export/diffusion_policy.json")
    folder = run.export_dir / "policy"
    policy = DiffusionPolicy.from_pretrained(folder).to(device).eval()
    if cfg.eval.n_action_steps:
        policy.config.n_action_steps = cfg.eval.n_action_steps
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(folder),
                                         preprocessor_overrides={"device_processor": {"device": str(device)}})
    meta = json.loads((run.export_dir / "diffusion_policy.json").read_text())

    def make(task, g):
        torch.manual_seed(g.initial_seed())  # lerobot samples its noise from torch's global generator
        policy.reset()
        return policy, pre, post
    return Player(run, meta, folder / "model.safetensors", policy.config.n_action_steps,
                  policy.config.num_inference_steps or policy.config.num_train_timesteps, make,
                  "Diffusion Policy (lerobot, from scratch)")


@command
def main(argv: list[str] | None = None) -> dict:
    cfg = cli(UWMEvaluateConfig, "phase4/evaluate", argv, __doc__)
    rt = start(cfg.run, 0, 1)
    if cfg.method == "uwm":
        uwm = load_uwm(cfg.load, cfg.run.root, rt.device, cfg.timestep_spacing)
        player, what = uwm_player(cfg, uwm), f"UWM `{uwm.run.dir.name}`: {uwm.model.describe()}."
    else:
        uwm, player = None, dp_player(cfg, rt.device)
        what = f"Diffusion Policy `{player.run.dir.name}` (lerobot, trained from scratch by phase4_uwm.train_dp)."
    out = Path(cfg.out).expanduser().resolve() if cfg.out else writable_dir(player.run, cfg.run.root) / "evaluate"
    out.mkdir(parents=True, exist_ok=True)
    print(f"phase4 evaluate: {what} {rt.describe()} -> {out}", flush=True)
    res: dict = {"run": str(player.run.dir), "method": cfg.method, "device": str(rt.device),
                 "precision": rt.precision.name}
    figures = []
    if "offline" in cfg.parts:
        res["offline"] = offline(cfg, uwm, rt.device, out)
        shown, media = res["offline"].pop("shown"), res["offline"].pop("media")
        if shown:
            figures.append(modes_figure(shown, res["offline"]["chunk"], out / "modes.png"))
        print(offline_tables(res["offline"]), flush=True)
        if media:
            figures.append(media["actions"])  # the GIF (about a megabyte) stays beside the results
            print(f"side by side: {media['gif']}, {media['actions']}", flush=True)
    if "policy" in cfg.parts:
        res["policy"] = policy_eval(cfg.eval, player, out, rt.device, rt.precision)
    atomic_write(out / "results.json", lambda f: f.write(json.dumps(res, indent=1, default=str).encode()))
    md = [what]
    if "offline" in res:
        md += ["", offline_tables(res["offline"])]
    if "policy" in res:
        from phase3_vla.rollouts import table
        md += ["", f"Policy mode in LIBERO ({res['policy']['starts_check']}):", "", table(res["policy"])]
    page = "\n".join(md) + "\n"
    atomic_write(out / "results.md", lambda f: f.write(page.encode()))
    if cfg.publish:
        from common.report import publish
        readme = Path(__file__).resolve().parent / "README.md"
        publish(readme, page, figures, readme.parent / "figures", "python -m phase4_uwm.evaluate publish=true")
        print(f"published to {readme}", flush=True)
    return res


if __name__ == "__main__":
    main()
