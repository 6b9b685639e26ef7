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
    """The base (9 tasks) or new (held-out task) LeRobotDataset that collect wrote."""
    explicit = cfg.data.base_folder if split == "base" else cfg.data.new_folder
    if explicit:
        return Path(explicit).expanduser().resolve()
    return outputs_root(cfg.run.root) / PHASE / "demos" / cfg.data.demos / "lerobot" / split


def require_dataset(cfg: Phase3Config, split: str) -> Path:
    folder = dataset_folder(cfg, split)
    if not (folder / "meta" / "info.json").exists():
        key = "data.base_folder" if split == "base" else "data.new_folder"
        raise ArtifactNotFoundError(
            f"no {split} dataset at {folder} (data.demos={cfg.data.demos}). Make it with: python -m "
            f"phase3_vla.collect profile={cfg.data.demos}, or point {key}= at a LeRobotDataset folder")
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
    """The run (or release) a saved policy/adapter folder belongs to."""
    return folder.parent.parent if folder.parent.name == "export" else folder.parent


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
    """The base run a finetune starts from (finetune.base, default base-<profile>, else its release), finished."""
    spec = cfg.finetune.base or f"base-{cfg.profile}"
    run = find_run(spec, cfg.run.root, not cfg.finetune.base, f"base-{cfg.profile}")
    info = finished(run)
    if info is None or not (export_of(run) / "policy" / "model.safetensors").exists():
        if any((run / "checkpoints").glob("step_*.pt")):
            raise RunNotReadyError(f"base run {run} has not finished (finetune.base={spec}). Continue it with: "
                                   f"{train_command(run)} run.resume=true")
        raise RunNotReadyError(f"no finished base run at {run} (finetune.base={spec}). Make it with: "
                               f"python -m phase3_vla.train profile={cfg.profile} run.name={run.name}"
                               + ("" if cfg.run.root == "outputs" else f" run.root={cfg.run.root}"))
    if info.get("kind") != "base":
        raise RunNotReadyError(f"finetune.base={spec}: {run} is a {info.get('kind')} run, not a base run")
    return Run.at(run, PHASE)


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
