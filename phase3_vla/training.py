"""What `phase3_vla.train` and `phase3_vla.finetune` share: dataset folders, run names and lookup, the Trainer
subclass that also exports in lerobot's format, the wall-clock record, and the run summary.

A finished run holds, besides the project's usual run files (config.yaml, metrics.jsonl, tb/, checkpoints/,
export/model.safetensors + config.yaml):

    export/policy/     lerobot's save_pretrained layout (base and full runs): SmolVLAPolicy.from_pretrained loads it
    export/adapter/    peft's adapter + the policy config and processors (LoRA runs); its base is recorded inside
    export/info.json   kind, steps, wall time, trainable / total parameters, dataset, the base run (finetunes)
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from common.checkpoint import atomic_write
from common.runs import ArtifactNotFoundError, Run, find_release, outputs_root
from common.trainer import Hook, Trainer
from phase3_vla.config import Phase3Config

PHASE = "phase3"
INFO = "info.json"


class RunNotReadyError(ArtifactNotFoundError):
    """A run named on the command line does not exist or has not finished; the message says what to run."""


def dataset_folder(cfg: Phase3Config, split: str) -> Path:
    """The base (9 tasks) or new (held-out task) LeRobotDataset that collect wrote, or (split base_val / new_val)
    its validation twin (an explicit folder's twin is `<folder>_val`)."""
    role, _, val = split.partition("_")
    explicit = cfg.data.base_folder if role == "base" else cfg.data.new_folder
    if explicit:
        folder = Path(explicit).expanduser().resolve()
        return folder.with_name(folder.name + "_val") if val else folder
    return collection_folder(cfg) / "lerobot" / split


def collection_folder(cfg: Phase3Config) -> Path:
    """The collection collect wrote: data.folder, else <run.root>/phase3/demos/<data.demos>/."""
    if cfg.data.folder:
        return Path(cfg.data.folder).expanduser().resolve()
    return outputs_root(cfg.run.root) / PHASE / "demos" / cfg.data.demos


def require_dataset(cfg: Phase3Config, split: str) -> Path:
    folder = dataset_folder(cfg, split)
    if not (folder / "meta" / "info.json").exists():
        key = "data.base_folder" if split.startswith("base") else "data.new_folder"
        make = (f"python -m phase3_vla.collect data.folder={cfg.data.folder}" if cfg.data.folder else
                f"python -m phase3_vla.collect profile={cfg.data.demos}")
        named = f"data.folder={cfg.data.folder}" if cfg.data.folder else f"data.demos={cfg.data.demos}"
        raise ArtifactNotFoundError(
            f"no {split} dataset at {folder} ({named}). Make it with: {make}, or point {key}= at a LeRobotDataset folder")
    return folder


def default_name(cfg: Phase3Config, command: str) -> str:
    if command == "train":
        return f"base-{cfg.profile}"
    f = cfg.finetune
    demos = f"n{f.num_demos}" if f.num_demos else "nall"
    return f"lora-r{f.lora.r}-{demos}-{cfg.profile}" if f.method == "lora" else f"full-{demos}-{cfg.profile}"


def named(cfg: Phase3Config, command: str) -> Phase3Config:
    """The config with run.name filled in (so the saved config.yaml names the run it describes)."""
    return replace(cfg, run=replace(cfg.run, name=cfg.run.name or default_name(cfg, command)))


def run_dir(spec: str, root: str) -> Path:
    """A run given as a folder path or as a run name under <root>/phase3/."""
    p = Path(spec).expanduser()
    return p.resolve() if ("/" in spec or p.is_dir()) else outputs_root(root) / PHASE / spec


def train_command(run: Path) -> str:
    """The command that (re)makes a base run where it is, quoted in errors: its profile from its saved
    config, its root from its location (<root>/phase3/<name>)."""
    profile = "cpu"
    try:
        from omegaconf import OmegaConf

        profile = OmegaConf.load(run / "config.yaml").profile
    except Exception:  # no readable config.yaml: the default profile still names the command
        pass
    root = run.parent.parent
    tail = "" if root == outputs_root("outputs") else f" run.root={root}"
    return f"python -m phase3_vla.train profile={profile} run.name={run.name}{tail}"


def export_of(run: Path) -> Path:
    """Where a run's exported files are: <run>/export/, or the release folder itself."""
    return Run.at(run, PHASE).export_dir


def run_of(folder: Path) -> Path:
    """The run (or release) a saved policy/adapter folder belongs to (<run>/export/policy,
    <run>/snapshots/step_N/policy)."""
    if folder.parent.parent.name == "snapshots":
        return folder.parent.parent.parent
    return folder.parent.parent if folder.parent.name == "export" else folder.parent


def starts_of(folder: Path) -> list[dict] | None:
    """Every training start behind a saved policy or adapter (its run's demonstrations, and for a finetune its
    base run's too), from the run's info.json; None when the run did not record them."""
    info = finished(run_of(folder))
    if not info or info.get("train_starts") is None:
        return None
    if info.get("kind") in ("lora", "full"):
        base = info.get("base_train_starts")
        return None if base is None else info["train_starts"] + base
    return info["train_starts"]


def finished(run: Path) -> dict | None:
    """The run's export/info.json (a release's info.json) when it has finished, else None."""
    path = export_of(run) / INFO
    return json.loads(path.read_text()) if path.exists() else None


def find_run(spec: str, root: str, default: bool, release_name: str) -> Path:
    """A run named on the command line: a name under <root>/phase3/, a folder, `release` (the release called
    `release_name`) or `release:<name>`. With `default` (the user named nothing), a missing local run falls back
    to the release of the same name, saying so on stderr."""
    if spec == "release" or spec.startswith("release:"):
        name = spec.partition(":")[2] or release_name
        rel = find_release(PHASE, f"export/{INFO}", name)
        if rel is None:
            raise RunNotReadyError(f"no phase 3 release named {name} in releases/phase3/ (make one from a finished "
                                   f"run with: python -m common.release outputs/phase3/{name})")
        return rel.dir
    run = run_dir(spec, root)
    if default and finished(run) is None and not any((run / "checkpoints").glob("step_*.pt")):
        rel = find_release(PHASE, f"export/{INFO}", run.name)
        if rel is not None:
            print(f"note: no local run {run}; using the {rel.describe()}", file=sys.stderr, flush=True)
            return rel.dir
    return run


def require_base(cfg: Phase3Config) -> Run:
    """The base run a finetune starts from (`load`, default base-<profile>, else its release), finished."""
    spec = cfg.load or f"base-{cfg.profile}"
    run = find_run(spec, cfg.run.root, not cfg.load, f"base-{cfg.profile}")
    info = finished(run)
    if info is None or not (export_of(run) / "policy" / "model.safetensors").exists():
        if any((run / "checkpoints").glob("step_*.pt")):
            raise RunNotReadyError(f"base run {run} has not finished (load={spec}). Continue it with: "
                                   f"{train_command(run)} run.resume=true")
        raise RunNotReadyError(f"no finished base run at {run} (load={spec}). Make it with: "
                               f"python -m phase3_vla.train profile={cfg.profile} run.name={run.name}"
                               + ("" if cfg.run.root == "outputs" else f" run.root={cfg.run.root}"))
    if info.get("kind") != "base":
        raise RunNotReadyError(f"load={spec}: {run} is a {info.get('kind')} run, not a base run")
    return Run.at(run, PHASE)


def validation_hook(module, folder: Path | None, chunk_size: int, every: int, samples: int) -> Hook | None:
    """`val/loss` (+ `val/loss_dim/<name>`, `val/loss_unmasked`) on `samples` evenly spaced frames of the
    validation data set, with the same flow-matching noise and times at every call, so that successive values
    (and runs with other settings) differ only by the weights. None (with a note) when there is no such set."""
    import numpy as np
    import torch

    if every <= 0:
        return None
    if folder is None or not (folder / "meta" / "info.json").exists():
        print(f"note: no validation data set at {folder}; no validation loss (collect makes one: "
              "base_val_demos / new_val_demos)", file=sys.stderr)
        return None
    from phase3_vla.frames import open_training_set

    data = open_training_set(folder, chunk_size)
    idx = np.unique(np.linspace(0, len(data) - 1, min(samples, len(data))).round().astype(int)).tolist()
    batches = [torch.utils.data.default_collate([data[i] for i in idx[j:j + 32]]) for j in range(0, len(idx), 32)]
    cfg = module.cfg
    g = torch.Generator().manual_seed(1234)
    draws = [(torch.randn(len(b["action"]), cfg.chunk_size, cfg.max_action_dim, generator=g),
              torch.rand(len(b["action"]), generator=g).pow(1 / 1.5) * 0.999 + 0.001) for b in batches]

    def run(trainer) -> dict:
        sums, n = {}, 0
        with torch.no_grad(), trainer.ctx.precision.autocast():
            for b, (noise, t) in zip(batches, draws):
                dev = trainer.device
                batch = module.preprocessor({k: v.to(dev) if torch.is_tensor(v) else v for k, v in b.items()})
                loss, logs = module.reduce(*module.elementwise(batch, noise.to(dev), t.to(dev)))
                k = len(noise)
                for key, v in {"loss": loss, **logs}.items():
                    sums[key] = sums.get(key, 0.0) + float(v) * k
                n += k
        return {f"val/{k}": v / n for k, v in sums.items() if k != "padded_steps"}
    return Hook(every, run, "validation")


def snapshot_hook(steps: list[int], save) -> Hook | None:
    """Export the policy at the given steps to <run>/snapshots/step_<N>/ (`save(folder)`), for learning curves."""
    wanted = set(steps)
    if not wanted:
        return None

    def run(trainer) -> dict:
        if trainer.step in wanted:
            save(trainer.ctx.run.dir / "snapshots" / f"step_{trainer.step:06d}")
        return {}
    return Hook(1, run, "snapshots")


def training_starts(folder: Path, episodes: list[int] | None = None) -> list[dict]:
    """Where the training demonstrations started (task, kind, seed, digest per episode), for a run's info.json:
    what evaluation checks its states against (phase3_vla.starts), even when the data set is gone."""
    from phase3_vla.starts import read_starts

    return [{"task_id": r.task_id, "kind": r.kind, "seed": r.seed, "digest": r.digest, "episode_index": r.episode_index}
            for r in read_starts(folder, episodes)]


def last_metric(run: Run | Path, key: str, step: int | None = None) -> float | None:
    """The last logged value of `key` in the run's metrics.jsonl (at `step`, if given; None if never logged)."""
    path = (run.dir if isinstance(run, Run) else Path(run)) / "metrics.jsonl"
    value = None
    if path.exists():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if key in row and (step is None or row.get("step") == step):
                value = row[key]
    return value


class Clock:
    """Wall time of a run across resumes: seconds spent before this process (read from `<run>/clock.json`)
    plus this process's, saved every few steps (what a kill loses is at most that window)."""

    def __init__(self, run: Run):
        self.path = run.dir / "clock.json"
        self.before = json.loads(self.path.read_text())["seconds"] if self.path.exists() else 0.0
        self.t0 = time.perf_counter()

    @property
    def seconds(self) -> float:
        return self.before + time.perf_counter() - self.t0

    def save(self, step: int) -> None:
        text = json.dumps({"seconds": round(self.seconds, 2), "step": step})
        atomic_write(self.path, lambda f: f.write(text.encode()))

    def hook(self, every: int) -> Hook:
        return Hook(every, lambda trainer: self.save(trainer.step) or None, "clock")


class PolicyTrainer(Trainer):
    """The project's Trainer (atomic checkpoints, resume, logging, run.precision), exporting the policy in
    lerobot's format as well: `save(export_dir)` is called after the usual export/model.safetensors."""

    def __init__(self, *args, save=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._save = save

    def export(self):
        path = super().export()
        if self.dist.is_main and self._save is not None:
            self._save(self.ctx.run.export_dir)
        return path


def write_info(run: Run, info: dict) -> dict:
    atomic_write(run.export_dir / INFO, lambda f: f.write(json.dumps(info, indent=1).encode()))
    return info


def fmt_params(trainable: int, total: int) -> str:
    return f"{trainable:,} trainable of {total:,} parameters ({100 * trainable / max(1, total):.2f}%)"
