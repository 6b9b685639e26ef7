"""Regenerate every phase 0 result table and figure with one command (resumable, across sessions and machines).

    python -m phase0_diffusion.experiments                    # measure the released models: many hours on 2 cores
    python -m phase0_diffusion.experiments --num-samples 200 --seeds 1      # a quick look
    python -m phase0_diffusion.experiments --models ddpm --threads 1 &      # two processes side by side, one core
    python -m phase0_diffusion.experiments --models edm cond --threads 1    # each
    python -m phase0_diffusion.experiments --models cond --threads 1 &      # two processes on one model's cells:
    python -m phase0_diffusion.experiments --models cond --threads 1        # each claims the cells it measures
    python -m phase0_diffusion.experiments --models ddpm --samplers ddpm-1000 --threads 1   # one cell's seeds first
    python -m phase0_diffusion.experiments --train            # train our own three models first, measure those
    python -m phase0_diffusion.experiments --tables-only --publish          # tables from what is measured so far
    python -m phase0_diffusion.experiments --evals phase0_diffusion/results --tables-only --publish   # the README's

1. Unconditional DDPM (eps-prediction, linear betas) on Fashion-MNIST: DDPM-1000 samples.
2. The same UNet in EDM form, trained the same length. FID-proxy and time per sample of DDPM-1000,
   DDIM-10/20/50/100/1000 and EDM-Heun-18/40 (35/79 evaluations) on both models; DDIM-1000 and Heun-40 are
   the converged references of their samplers (skip the EDM model's DDPM-1000 with --no-edm-ddpm1000).
3. Class-conditional EDM with label dropout: FID-proxy and class accuracy for guidance 0, 1, 2, 3, 5, 7.

Every cell is measured with --seeds sampling seeds of --num-samples images each (mean +- standard error over the
seeds), next to the floor: the FID-proxy of as many real training images (never the judge's reference, the test
split), mean +- s.e. over --floor-seeds draws (cheap: no sampling), the distance a perfect generator would score at
that sample size. The tables end with the CPU profile's three quantitative targets, each verdict computed from the
intervals (`verdicts`): yes, no, a tie, open while a range straddles the threshold, pending while a cell lacks
seeds.

The models: with the cpu profile, the released ones (releases/phase0/{ddpm,edm,cond}-cpu, the profile's recipe:
the command refuses a release whose recipe differs from the profile's), so a fresh clone measures without
training; --train (or a profile without releases) trains our own runs <root>/phase0/exp-{ddpm,edm,cond}/ instead
(a finished run is reused, an interrupted one resumed). Each evaluation is one JSON per (model, sampler, seed) in
--evals, stamped with the sha256 of the weights it sampled: the tables use only the evaluations of the weights
being measured, so cells of different models never mix. The measurement is far longer than a working session
(the 1000-step cells cost 1000 network evaluations per image), so ours accumulates its JSONs in the repository
(phase0_diffusion/results/, --evals) and any machine continues it where it stopped; an interrupted cell continues
from its last batch of 64 images with the same random draws (*.partial.pt beside the JSONs, not committed). The
cheap cells (< 1000 network evaluations per image) come first with all their seeds, then the 1000-step cells one
seed at a time, so an unfinished run has measured as many cells as it could; a cell short of seeds says how many
it has. Processes sharing one --evals folder (on one machine or a shared disk) split the work: each holds
<cell>.lock (host and pid) while it measures a cell and passes over cells another live process holds; the lock of a
process that died is taken over. Tables: <root>/phase0/experiments/results.md (+ results.json, guidance.png, sample
grids in media/).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import time
from pathlib import Path

from omegaconf import OmegaConf

from common.checkpoint import atomic_write
from common.config import load_config
from common.errors import UserError, command
from common.precision import Precision
from common.report import publish
from common.runs import RELEASE_MANIFEST, RunConfig, find_release, outputs_root, sha256
from common.system import start
from phase0_diffusion import classifier, train
from phase0_diffusion.config import DataConfig, Phase0Config, SampleConfig
from phase0_diffusion.data import build_split
from phase0_diffusion.fid import Judge, find_classifier, load_judge, measure, real_floor
from phase0_diffusion.model import load_trained
from phase0_diffusion.sampling import nfe, tag

PROFILES = {  # --profile: the training overrides of each model
    "cpu": {"ddpm": ["profile=cpu", "diffusion.process=ddpm", "model.unet.noise_embedding=sinusoidal"],
            "edm": ["profile=cpu"],
            "cond": ["profile=cpu_cond"]},
    "smoke": {"ddpm": ["profile=smoke", "diffusion.process=ddpm", "model.unet.noise_embedding=sinusoidal"],
              "edm": ["profile=smoke"],
              "cond": ["profile=smoke", "diffusion.class_conditional=true", "diffusion.label_dropout=0.1"]},
}
MODELS = PROFILES["cpu"]
GUIDANCE = (0.0, 1.0, 2.0, 3.0, 5.0, 7.0)
SAMPLERS = ([SampleConfig(sampler="ddpm")] + [SampleConfig(sampler="ddim", steps=s) for s in (10, 20, 50, 100, 1000)]
            + [SampleConfig(sampler="heun", steps=s) for s in (18, 40)])
# Sample grids kept beside the evaluations (seed 0, 100 images) and shown in the README: model -> sampler tags.
FIGURES = {"ddpm": ("ddpm-1000-g1", "ddim-50-eta0-g1"), "edm": ("heun-18-g1",),
           "cond": ("heun-18-g1", "heun-18-g2", "heun-18-g7")}
# The CPU profile's quantitative targets (README, "Against the targets"): DDIM-50 within 15% of DDPM-1000's
# FID-proxy, EDM-Heun-18 at least as good as DDPM-1000, DDPM-1000 within 2x of the real-vs-real floor.
DDIM50_WITHIN, FLOOR_MULTIPLE = 1.15, 2.0
EXPENSIVE_NFE = 1000  # cells at or above this many evaluations per image run one seed at a time, after the others
README = Path(__file__).parent / "README.md"
COMMAND = "python -m phase0_diffusion.experiments --evals phase0_diffusion/results --tables-only --publish"
# Settings that make a model what it is; a release is measured only if these match the profile's (bookkeeping such
# as checkpoint frequency may differ).
RECIPE = ("model", "diffusion", "data", "train.max_steps", "train.batch_size", "train.lr", "train.warmup_steps",
          "train.schedule", "train.ema_decay", "train.weight_decay", "train.grad_clip")


class ReleaseMismatch(UserError):
    """A release was trained with another recipe than the profile the tables claim to measure."""


def release_name(key: str) -> str:
    return f"{key}-cpu"


def run_dir(root: str, key: str) -> Path:
    return outputs_root(root) / "phase0" / f"exp-{key}"


def train_model(key: str, extra: list[str], root: str, profile: str = "cpu") -> Path:
    run = run_dir(root, key)
    if (run / "export" / "data.json").exists():
        print(f"experiments: {run} is trained; reusing it")
        return run
    resume = ["run.resume=true"] if any((run / "checkpoints").glob("step_*.pt")) else []
    train.main([*PROFILES[profile][key], f"run.root={root}", f"run.name=exp-{key}", "log.progress=false", *resume,
                *extra])
    return run


def _recipe(cfg: Phase0Config) -> dict:
    flat = OmegaConf.to_container(OmegaConf.structured(cfg))
    out = {}
    for key in RECIPE:
        section, _, leaf = key.partition(".")
        out[key] = flat[section][leaf] if leaf else flat[section]
    return out


def model_source(key: str, profile: str, root: str, train_own: bool, extra: list[str]) -> Path:
    """The folder whose weights the cells of `key` are measured on: the release releases/phase0/<key>-cpu for the
    cpu profile (unless --train), checked against the profile's recipe; else our own run, trained or resumed here."""
    if profile == "cpu" and not train_own and not extra:
        rel = find_release("phase0", "export/data.json", release_name(key))
        if rel is not None:
            expected = _recipe(load_config(Phase0Config, "phase0/train", PROFILES[profile][key]))
            got = _recipe(load_trained(str(rel.dir)).cfg)
            diff = [f"{k}: {got[k]} (profile: {expected[k]})" for k in RECIPE if got[k] != expected[k]]
            if diff:
                raise ReleaseMismatch(
                    f"release {rel.dir} was not trained with profile {profile}'s recipe for {key} ("
                    + "; ".join(diff) + "): pass --train to train and measure our own model, or re-release one "
                    "trained with the profile (scripts/make_releases.sh phase0)")
            print(f"experiments: {key}: measuring the release {rel.dir} (--train: train our own)", flush=True)
            return rel.dir
    return train_model(key, extra, root, profile)


def weights_id(folder: Path) -> str:
    """sha256 of the weights a run or release samples with: what an evaluation is stamped with."""
    release = (folder / RELEASE_MANIFEST).exists()
    return sha256(folder / "model.safetensors" if release else folder / "export" / "model.safetensors")


def training_summary(folder: Path) -> dict:
    """Steps, wall-clock training time and model size, read back from the training run's own records (a
    release's are in the run its provenance names, when that run is on this machine)."""
    from common.precision import cpu_flags, cpu_name

    run, cpu = folder, f"{cpu_name()} [{' '.join(cpu_flags())}]"
    if (folder / RELEASE_MANIFEST).exists():
        prov = json.loads((folder / RELEASE_MANIFEST).read_text())["provenance"]
        run, machine = Path(prov["source_run"]), prov.get("machine", {})
        cpu = f"{machine.get('cpu', '?')} [{' '.join(machine.get('cpu_flags', []))}]"
    if not (run / "metrics.jsonl").exists():
        return {}
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
    train_lines = [l for l in lines if "train/loss" in l]
    cfg = OmegaConf.to_container(OmegaConf.load(run / "config.yaml"))
    model = load_trained(str(folder)).model
    # Each line's throughput covers the log_every steps before it (sampling hooks included).
    seconds = sum(cfg["train"]["batch_size"] * cfg["log"]["log_every"] / l["train/samples_per_s"]
                  for l in train_lines)
    return {"name": folder.name, "steps": train_lines[-1]["step"], "batch_size": cfg["train"]["batch_size"],
            "params_M": sum(p.numel() for p in model.process.net.parameters()) / 1e6,
            "train_minutes": seconds / 60, "final_loss": train_lines[-1]["train/loss"],
            "precision": cfg["run"].get("precision", "bf16" if cfg["train"].get("bf16") else "fp32"),
            "threads": cfg["run"].get("threads", 0), "process": cfg["diffusion"]["process"],
            "cpu": cpu, "weights": weights_id(folder)}


def recorded_training(folder: Path, evals: Path, key: str) -> dict:
    """The training summary of `folder`, kept in evals/<key>/training.json so the tables can still say how the
    model was trained where its run is gone (a fresh clone measuring the release)."""
    path = evals / key / "training.json"
    summary = training_summary(folder)
    if summary:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: f.write(json.dumps(summary, indent=2).encode()))
        return summary
    if path.exists() and (old := json.loads(path.read_text())).get("weights") == weights_id(folder):
        return old
    return {}


def over_seeds(runs: list[dict]) -> dict:
    """One cell from its per-seed evaluations: the seeds' metrics, and the mean and standard error of each."""
    import numpy as np

    settings = ("guidance", "eta")  # the sampler's float settings, the same for every seed
    cell = {k: v for k, v in runs[0].items()
            if (isinstance(v, (str, int)) or v is None or k in settings) and k != "seed"}
    for k in ("fid_proxy", "seconds_per_sample", "class_accuracy"):
        vals = [r[k] for r in runs if k in r]
        if vals:
            cell[k] = float(np.mean(vals))
            cell[k + "_se"] = float(np.std(vals, ddof=1) / np.sqrt(len(vals))) if len(vals) > 1 else float("nan")
    cell["seeds"] = [r.get("seed", 0) for r in runs]
    cell["per_seed"] = runs
    return cell


def eval_path(evals: Path, key: str, scfg: SampleConfig, n: int, precision: str, seed: int) -> Path:
    return evals / key / f"{tag(scfg)}-n{n}-{precision}-s{seed}.json"


def figure_path(evals: Path, key: str, scfg: SampleConfig) -> Path:
    return evals / key / f"{key}_{tag(scfg)}.png"


def read_eval(path: Path, weights: str) -> dict | None:
    """The evaluation in `path` if it sampled these weights (None if absent or of other weights)."""
    if not path.exists():
        return None
    m = json.loads(path.read_text())
    return m if m.get("weights") == weights else None


def run_eval(source: Path, key: str, scfg: SampleConfig, n: int, device, precision: Precision, force: bool,
             seed: int, judge: Judge, evals: Path, media: Path, threads: int = 0) -> dict:
    from common.precision import cpu_flags, cpu_name

    weights = weights_id(source)
    out = eval_path(evals, key, scfg, n, precision.name, seed)
    if not force and (done := read_eval(out, weights)) is not None:
        return done
    if out.exists() and not force:
        raise UserError(f"{out} holds an evaluation of other weights than {source} (sha256 "
                        f"{json.loads(out.read_text()).get('weights', '?')[:12]} vs {weights[:12]}): move it away, or "
                        "pass --force to measure this model again over it")
    partial = out.with_suffix(".partial.pt")
    if force:
        partial.unlink(missing_ok=True)
    tm = load_trained(str(source), device=device)
    model, info = tm.model, tm.meta
    out.parent.mkdir(parents=True, exist_ok=True)
    m, x = measure(model, judge, scfg, n, tuple(info["shape"]), info["num_classes"], 64, device,
                   seed=seed, bf16=precision.bf16, progress=f"experiments: {key} {tag(scfg)} seed {seed}",
                   resume=partial)
    m.update(seed=seed, precision=precision.name, threads=threads, weights=weights, model=source.name,
             cpu=f"{cpu_name()} [{' '.join(cpu_flags())}]")
    atomic_write(out, lambda f: f.write(json.dumps(m, indent=2).encode()))
    partial.unlink(missing_ok=True)
    import torchvision
    media.mkdir(parents=True, exist_ok=True)
    grid = (x[:100].clamp(-1, 1) + 1) / 2
    torchvision.utils.save_image(grid, media / f"{key}_{tag(scfg)}.png", nrow=10, padding=1)
    if seed == 0 and tag(scfg) in FIGURES.get(key, ()):
        torchvision.utils.save_image(grid, figure_path(evals, key, scfg), nrow=10, padding=1)
    print(f"experiments: {key} {tag(scfg)} seed {seed}: " + ", ".join(
        f"{k}={v:.4g}" for k, v in m.items() if isinstance(v, float)), flush=True)
    return m


def _started_after(pid: int, t: float) -> bool:
    """Whether process `pid` started after time `t` (from Linux's /proc; False where that cannot be read)."""
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK") > t + 2
    except (OSError, ValueError, IndexError, StopIteration):
        return False


def _held_by_a_live_process(lock: Path) -> bool:
    try:
        text, written = lock.read_text(), lock.stat().st_mtime
    except FileNotFoundError:
        return False
    try:
        host, pid = text.split()
        if host != socket.gethostname():
            return True  # another machine's process: only its owner (or a person) can tell it is gone
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    except ValueError:
        return time.time() - written < 60  # being written right now, or garbage left behind long ago
    # alive, unless the pid now names a process that started after the lock was written: the holder is gone and its
    # pid reused (locks outlive their machine's processes when the repository is carried to a new session)
    return not _started_after(int(pid), written)


def claim(out: Path) -> Path | None:
    """Create <out>.lock for this process (None if another live process holds it; a dead one's is taken over)."""
    lock = out.with_suffix(".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if _held_by_a_live_process(lock):
                return None
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{socket.gethostname()} {os.getpid()}")
        return lock
    return None


def cells(key: str, no_edm_ddpm1000: bool = False) -> list[SampleConfig]:
    """The sampler settings measured on model `key`."""
    if key == "cond":
        return [SampleConfig(sampler="heun", steps=18, guidance=g) for g in GUIDANCE]
    return [s for s in SAMPLERS if not (key == "edm" and s.sampler == "ddpm" and no_edm_ddpm1000)]


def work_order(keys: list[str], seeds: list[int], no_edm_ddpm1000: bool = False,
               only: list[str] = ()) -> list[tuple[str, SampleConfig, int]]:
    """(model, sampler, seed) in the order they are measured: every cheap cell with all its seeds, then the
    expensive (1000-step) cells seed by seed, so an unfinished run leaves whole cells and a first seed of each
    expensive one rather than three seeds of one. `only`: just the samplers whose tag starts with one of these."""
    mine = [(k, s) for k in keys for s in cells(k, no_edm_ddpm1000) if not only or tag(s).startswith(tuple(only))]
    cheap = [(k, s) for k, s in mine if nfe(s) < EXPENSIVE_NFE]
    dear = [(k, s) for k, s in mine if nfe(s) >= EXPENSIVE_NFE]
    return [(k, s, seed) for k, s in cheap for seed in seeds] + [(k, s, seed) for seed in seeds for k, s in dear]


def collect(sources: dict[str, Path], evals: Path, n: int, seeds: list[int], precision: str, floor: dict,
            classifier_info: dict, no_edm_ddpm1000: bool = False) -> dict:
    """The tables' data from the evaluations on disk of each model's weights (`sources`: key -> its run or
    release): every cell with the seeds measured so far (None: none yet)."""
    weights = {k: weights_id(f) for k, f in sources.items()}

    def cell(key: str, s: SampleConfig) -> dict | None:
        if key not in sources:
            return None
        runs = [m for seed in seeds if (m := read_eval(eval_path(evals, key, s, n, precision, seed), weights[key]))]
        return over_seeds(runs) if runs else None

    stale = sorted(str(p) for k in sources for p in (evals / k).glob("*.json")
                   if p.name != "training.json" and json.loads(p.read_text()).get("weights") != weights[k])
    if stale:
        print(f"experiments: {len(stale)} evaluation(s) of other weights left out of the tables, e.g. {stale[0]}",
              flush=True)
    training = {k: t for k, f in sources.items() if (t := recorded_training(f, evals, k))}
    return {"num_samples": n, "seeds": seeds, "precision": precision, "classifier": classifier_info, "floor": floor,
            "training": training,
            "samplers": {k: [cell(k, s) if s in cells(k, no_edm_ddpm1000) else None for s in SAMPLERS]
                         for k in ("ddpm", "edm")},
            "guidance": [cell("cond", s) for s in cells("cond")]}


@command
def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-samples", type=int, default=1000, help="generated images per FID-proxy estimate")
    p.add_argument("--seeds", type=int, default=3, help="sampling seeds per cell (0..seeds-1): mean +- s.e.")
    p.add_argument("--floor-seeds", type=int, default=20, help="draws of real images for the floor (0..n-1; it needs "
                   "no sampling, so more than --seeds: its interval bounds every verdict against it)")
    p.add_argument("--steps", type=int, default=0, help="override train.max_steps (0 = the profile's; implies --train)")
    p.add_argument("--train", action="store_true", help="train (or reuse) our own runs <root>/phase0/exp-<model> "
                   "instead of measuring the released models (always so for profiles without releases)")
    p.add_argument("--evals", default="", help="folder of the per-seed evaluation JSONs (default "
                   "<root>/phase0/experiments/evals; the README's tables: phase0_diffusion/results)")
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS),
                   help="train and measure only these models (two processes can share the work: their files differ)")
    p.add_argument("--samplers", nargs="+", default=[], metavar="TAG",
                   help="measure only the samplers whose tag starts with one of these (ddpm-1000, ddim-1000, heun-18, "
                   "...): the cells a verdict waits for first; the tables still show every cell measured")
    p.add_argument("--profile", choices=list(PROFILES), default="cpu", help="training profile (smoke: the tests)")
    p.add_argument("--root", default="outputs", help="run.root: where the runs, the classifier and the tables are")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = every core)")
    p.add_argument("--force", action="store_true", help="recompute evaluations that already exist")
    p.add_argument("--no-edm-ddpm1000", action="store_true",
                   help="skip the EDM model's DDPM-1000 cell (it costs as much as all the other EDM cells together)")
    p.add_argument("--precision", default="fp32", help="sampling precision: fp32 (default: cells measured on different "
                   "CPUs are one measurement) | bf16 | auto (common/precision.py); the tables show one precision's cells")
    p.add_argument("--tables-only", action="store_true", help="train and sample nothing: write the tables from the "
                   "evaluations measured so far (of the models that exist: releases, or with --train our runs)")
    p.add_argument("--publish", action="store_true", help="also write the tables into phase0_diffusion/README.md")
    args = p.parse_args(argv)
    if args.seeds < 1 or args.floor_seeds < 1:
        p.error(f"--seeds {args.seeds} / --floor-seeds {args.floor_seeds}: each needs at least 1")
    rt = start(RunConfig(root=args.root, precision=args.precision, threads=args.threads))
    device, prec = rt.device, rt.precision
    print(f"experiments: {rt.describe()}", flush=True)
    n, root = args.num_samples, args.root
    data_name = "synthetic" if args.profile == "smoke" else "fashion_mnist"
    extra = [f"train.max_steps={args.steps}"] if args.steps else []
    t0 = time.perf_counter()
    if find_classifier("latest", data_name, root, quiet=True) is None:
        if args.tables_only:
            raise FileNotFoundError(f"no classifier for {data_name} under {root} and no release: nothing measured "
                                    "yet; run python -m phase0_diffusion.experiments first")
        classifier.main([f"run.root={root}", f"data.name={data_name}", "log.progress=false"])
    judge = load_judge("latest", data_name, root, device=device)
    seeds = list(range(args.seeds))
    train_images = build_split(DataConfig(name=data_name), judge.info["in_channels"], "train").images
    fseeds = list(range(args.floor_seeds))
    floor = over_seeds([{"fid_proxy": f, "seed": s}
                        for s, f in zip(fseeds, real_floor(judge, train_images, n, fseeds))])
    print(f"experiments: floor (real vs real, n={n}, {len(fseeds)} draws): FID-proxy {floor['fid_proxy']:.3f} ± "
          f"{floor['fid_proxy_se']:.3f}", flush=True)

    out_dir = outputs_root(root) / "phase0" / "experiments"
    evals = Path(args.evals) if args.evals else out_dir / "evals"
    train_own = args.train or bool(extra)
    runs: dict[str, Path] = {}
    if not args.tables_only:
        runs = {k: model_source(k, args.profile, root, train_own, extra) for k in args.models}
        elsewhere = []
        for key, s, seed in work_order(args.models, seeds, args.no_edm_ddpm1000, args.samplers):
            out = eval_path(evals, key, s, n, prec.name, seed)
            if (lock := claim(out)) is None:  # (a finished cell is claimed for a moment: run_eval returns it)
                elsewhere.append(out.name)
                continue
            try:
                run_eval(runs[key], key, s, n, device, prec, args.force, seed, judge, evals, out_dir / "media",
                         rt.threads)
            finally:
                lock.unlink(missing_ok=True)
        if elsewhere:
            print(f"experiments: {len(elsewhere)} cell(s) were being measured by another process: "
                  f"{', '.join(elsewhere)}", flush=True)
    sources = dict(runs)  # every model the tables can speak for: measured here, else released / trained earlier
    for k in (k for k in MODELS if k not in runs):
        if not train_own and args.profile == "cpu" and find_release("phase0", "export/data.json", release_name(k)):
            try:
                sources[k] = model_source(k, args.profile, root, False, [])
            except ReleaseMismatch as e:
                print(f"experiments: {k} left out of the tables: {e}", flush=True)
        elif (run_dir(root, k) / "export" / "data.json").exists():
            sources[k] = run_dir(root, k)
    results = collect(sources, evals, n, seeds, prec.name, floor, judge.info, args.no_edm_ddpm1000)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "results.json", lambda f: f.write(json.dumps(results, indent=2).encode()))
    md = markdown(results)
    (out_dir / "results.md").write_text(md)
    figures = [f for k, tags in FIGURES.items() if k in sources for s in cells(k) if tag(s) in tags
               and read_eval(eval_path(evals, k, s, n, prec.name, 0), weights_id(sources[k]))
               and (f := figure_path(evals, k, s)).exists()]
    if all(results["guidance"]):
        plot_guidance(results["guidance"], out_dir / "guidance.png")
        figures.append(out_dir / "guidance.png")
    print(md)
    if args.publish:
        publish(README, md, figures, README.parent / "figures", COMMAND)
        print(f"experiments: published to {README}")
    print(f"experiments: done in {(time.perf_counter() - t0) / 60:.1f} min; tables in {out_dir / 'results.md'}")
    return results


def _fid(m: dict | None, k: int) -> str:
    """'mean ± s.e. | s / sample' of a cell; a cell short of the table's k seeds says how many it has."""
    if not m:
        return "pending | -"
    se = m.get("fid_proxy_se", float("nan"))
    short = f" ({len(m['seeds'])} of {k} seeds)" if len(m["seeds"]) < k else ""
    return f"{m['fid_proxy']:.2f}" + (f" ± {se:.2f}" if se == se else "") + short + f" | {m['seconds_per_sample']:.3f}"


def markdown(r: dict) -> str:
    c, f = r["classifier"], r["floor"]
    k = len(r.get("seeds", [0]))
    cellruns = [m for rows in r["samplers"].values() for m in rows if m] + [m for m in r["guidance"] if m]
    threads = sorted({p.get("threads", 0) for m in cellruns for p in m.get("per_seed", [m])})
    cpus = sorted({p["cpu"] for m in cellruns for p in m.get("per_seed", [m]) if p.get("cpu")})
    lines = [f"FID-proxy: Frechet distance in the {c['feature_dim']}-d feature space of the project's classifier "
             f"(test accuracy {c['test_accuracy']:.3f}), {r['num_samples']} samples vs the "
             f"{c['reference']}; mean ± standard error over {k} sampling seed(s) (a cell measured with fewer says "
             f"so; pending = not measured yet). Lower is better; not comparable with Inception FID. **Floor** (real "
             f"training images vs the same reference, {r['num_samples']} per draw, {len(f['seeds'])} draw(s)): "
             f"{f['fid_proxy']:.2f}" + (f" ± {f['fid_proxy_se']:.2f}" if len(f["seeds"]) > 1 else "") +
             ": what a perfect generator scores at this sample size. Sampling in "
             f"{r.get('precision', 'bf16')}, batch 64, "
             f"{'/'.join(str(t) if t else 'all' for t in threads) or 'all'} CPU thread(s) per process"
             + (f" on {'; '.join(cpus)} (s / sample: the mean over the seeds' machines)" if cpus else "") + ".", "",
             "| model | process | params | steps x batch | training time | final loss |",
             "|---|---|---|---|---|---|"]
    for key, t in r["training"].items():
        thr = t.get("threads", 0)
        lines.append(f"| {t.get('name', 'exp-' + key)} | {t['process']} | {t['params_M']:.2f}M | "
                     f"{t['steps']} x {t['batch_size']} | "
                     f"{t['train_minutes']:.1f} min ({t['precision']}, {thr or 'all'} thread(s)"
                     + (f", {t['cpu']}" if t.get("cpu") else "") + ") | "
                     f"{t['final_loss']:.4f} |")
    lines += ["", "| sampler | NFE | DDPM model: FID-proxy | s / sample | EDM model: FID-proxy | s / sample |",
              "|---|---|---|---|---|---|"]
    for s, d, e in zip(SAMPLERS, r["samplers"]["ddpm"], r["samplers"]["edm"]):
        name = {"ddpm": "DDPM-1000 ancestral", "ddim": f"DDIM-{s.steps} (eta 0)",
                "heun": f"EDM-Heun-{s.steps}"}[s.sampler]
        lines.append(f"| {name} | {nfe(s)} | {_fid(d, k)} | {_fid(e, k)} |")
    lines += pairwise(r)
    lines += ["", "| guidance scale | FID-proxy | class accuracy | s / sample |", "|---|---|---|---|"]
    for g, m in zip(GUIDANCE, r["guidance"]):
        g = m.get("guidance", g) if m else g
        if not m:
            lines.append(f"| {g:g} | pending | - | - |")
            continue
        se = m.get("class_accuracy_se", float("nan"))
        acc = f"{m['class_accuracy']:.3f}" + (f" ± {se:.3f}" if se == se else "")
        fid, secs = _fid(m, k).split(" | ")
        lines.append(f"| {g:g} | {fid} | {acc} | {secs} |")
    lines += ["", "Targets of the CPU profile, from the intervals: a range is mean ± 2 s.e.; a ratio's s.e. by the "
              "delta method, its terms' seeds independent. Two cells differ when their ranges do not overlap, else "
              "they tie; a target is open while its range straddles the threshold and pending while a cell lacks "
              "seeds.", "",
              "| target | measured | met? |", "|---|---|---|"]
    lines += [f"| {t} | {m} | {v} |" for t, m, v in verdicts(r)]
    return "\n".join(lines) + "\n"


def _range(mean: float, se: float) -> tuple[float, float]:
    return mean - 2 * se, mean + 2 * se


def _compare(a: dict, b: dict) -> str:
    """'<' when cell a's range of mean ± 2 s.e. lies wholly below b's (a is better: lower FID-proxy), '>' when
    wholly above, '=' (a tie) when the ranges overlap."""
    (al, ah), (bl, bh) = (_range(c["fid_proxy"], c["fid_proxy_se"]) for c in (a, b))
    return "<" if ah < bl else ">" if al > bh else "="


def short_name(s: SampleConfig) -> str:
    return {"ddpm": "DDPM-1000", "ddim": f"DDIM-{s.steps}", "heun": f"Heun-{s.steps}"}[s.sampler]


def pairwise(r: dict) -> list[str]:
    """Markdown lines: every two sampler cells of one model judged by the targets' rule (`_compare`), so each
    'tie' or 'differ' read off the sampler table has a printed source. A cell short of the table's seeds has no
    interval and is compared with nothing."""
    k = len(r.get("seeds", [0]))
    if k < 2:
        return []
    names = [short_name(s) for s in SAMPLERS]
    lines = ["", "Pairwise, by the targets' rule (range = mean ± 2 s.e.; row against column, lower is better): "
             "< the row is better, > the row is worse, = a tie; - a cell short of seeds.", "",
             "| model | cell | range | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
    for m, label in (("ddpm", "DDPM"), ("edm", "EDM")):
        row = r["samplers"].get(m, [])
        full = [c if c and len(c["seeds"]) >= k else None for c in row]
        for i, (name, a) in enumerate(zip(names, full)):
            span = "{:.3f}-{:.3f}".format(*_range(a["fid_proxy"], a["fid_proxy_se"])) if a else "-"
            marks = ["" if i == j else _compare(a, b) if a and b else "-" for j, b in enumerate(full)]
            lines.append(f"| {label} | {name} | {span} | " + " | ".join(marks) + " |")
    return lines


def _ratio(a: dict, b: dict) -> tuple[float, float]:
    """a / b of two cells' FID-proxies and its standard error (delta method, independent seeds)."""
    q = a["fid_proxy"] / b["fid_proxy"]
    return q, q * ((a["fid_proxy_se"] / a["fid_proxy"]) ** 2 + (b["fid_proxy_se"] / b["fid_proxy"]) ** 2) ** 0.5


def _against(q: float, se: float, threshold: float) -> str:
    lo, hi = _range(q, se)
    return "yes" if hi <= threshold else "no" if lo > threshold else f"open: the range straddles {threshold:g}"


def verdicts(r: dict) -> list[tuple[str, str, str]]:
    """(target, what was measured, verdict) for the CPU profile's three quantitative targets, from the cells'
    intervals (`r` as `collect` returns it). A cell with fewer seeds than the table's has no interval to judge by:
    its target stays pending."""
    k = len(r.get("seeds", [0]))
    by = {m: {tag(s): c for s, c in zip(SAMPLERS, r["samplers"].get(m, []))} for m in ("ddpm", "edm")}
    floor = r["floor"]

    names = {tag(s): short_name(s) for s in SAMPLERS}

    def missing(*named: tuple[str, str]) -> str:
        if k < 2:
            return "open: one seed per cell has no interval"
        short = [f"{m.upper()} model's {names[t]} ({len(c['seeds']) if (c := by[m].get(t)) else 0} of {k} seeds)"
                 for m, t in named if not (c := by[m].get(t)) or len(c["seeds"]) < k]
        return "pending: " + ", ".join(short) if short else ""

    def fmt(c: dict) -> str:
        return f"{c['fid_proxy']:.3f} ± {c['fid_proxy_se']:.3f}"

    rows = []
    ddim, anc = by["ddpm"].get("ddim-50-eta0-g1"), by["ddpm"].get("ddpm-1000-g1")
    wait = missing(("ddpm", "ddim-50-eta0-g1"), ("ddpm", "ddpm-1000-g1"))
    measured, verdict = "-", wait
    if not wait:
        q, se = _ratio(ddim, anc)
        speed = anc["seconds_per_sample"] / ddim["seconds_per_sample"]
        measured = (f"DDPM model: DDIM-50 {fmt(ddim)}, DDPM-1000 {fmt(anc)}: ratio {q:.2f} ± {se:.2f}; "
                    f"{speed:.0f}x less time per image")
        verdict = _against(q, se, DDIM50_WITHIN)
    rows.append((f"DDIM-50 within {DDIM50_WITHIN - 1:.0%} of DDPM-1000 on FID-proxy at ~20x less time", measured,
                 verdict))
    for m, name in (("ddpm", "DDPM"), ("edm", "EDM")):
        heun, anc = by[m].get("heun-18-g1"), by[m].get("ddpm-1000-g1")
        wait = missing((m, "heun-18-g1"), (m, "ddpm-1000-g1"))
        measured, verdict = "-", wait
        if not wait:
            measured = f"{name} model: Heun-18 {fmt(heun)}, DDPM-1000 {fmt(anc)}"
            verdict = {"<": "yes: better", ">": "no: worse", "=": "yes: a tie"}[_compare(heun, anc)]
        rows.append((f"EDM-Heun-18 (35 evaluations) at least as good as DDPM-1000, {name} model", measured, verdict))
    anc = by["ddpm"].get("ddpm-1000-g1")
    wait = missing(("ddpm", "ddpm-1000-g1"))
    measured, verdict = "-", wait
    if not wait:
        q, se = _ratio(anc, floor)
        measured = (f"DDPM model's DDPM-1000 {fmt(anc)} against the floor {fmt(floor)}: {q:.2f}x ± {se:.2f}")
        verdict = _against(q, se, FLOOR_MULTIPLE)
    rows.append((f"DDPM-1000 within {FLOOR_MULTIPLE:g}x of the real-vs-real floor", measured, verdict))
    return rows


def plot_guidance(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=110)
    fid = [r["fid_proxy"] for r in rows]
    acc = [r["class_accuracy"] for r in rows]
    ax.plot(acc, fid, "o-")
    for r, x, y in zip(rows, acc, fid):
        ax.annotate(f"s={r['guidance']:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("class accuracy of samples (fidelity to the label)")
    ax.set_ylabel("FID-proxy (lower = closer to data)")
    ax.set_title("Classifier-free guidance trade-off, Fashion-MNIST")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
