"""Run folders, releases, and the resolver that lets one phase find another's artefacts.

Every run lives in `<run.root>/<phase>/<run-name>/` (`run.root` defaults to `outputs/`):

    config.yaml      the resolved config (all defaults filled in)
    system.json      command, git commit, machine, precision and why (one entry per start/resume)
    metrics.jsonl    one JSON object per logged step
    tb/              TensorBoard events
    checkpoints/     step_XXXXXXXX.pt (last N), best.pt, and what `resume` reads
    media/           images and videos
    export/          final weights as model.safetensors (+ config.yaml beside them)

A release (`releases/<phase>/<name>/`, made by `python -m common.release <run folder>`) is an export folder
checked into the repo with its metrics and provenance; `releases_dir()` finds it ($WM_RELEASES overrides).

Later phases never guess paths: they call `resolve_run("phase1", "latest", root, require="export/...")`,
or pass "release", "release:<name>" or an explicit run or release folder. "latest" falls back to the newest
matching release when no local run exists, saying so in one line on stderr. When nothing fits, the error
names the command that makes it (MAKE_COMMAND). Outputs of a command that loads a release go to
`<run.root>/<phase>/release-<name>/` (`writable_dir`), never into the repo.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from common.checkpoint import CheckpointError
from common.config import REPO_ROOT, require
from common.errors import UserError

# The command that produces each phase's main artefacts: quoted in every "not found" error.
MAKE_COMMAND = {
    "phase0": "python -m phase0_diffusion.train profile=cpu",
    "phase1": "python -m phase1_world_model.collect && python -m phase1_world_model.train profile=cpu",
    "phase2": "python -m phase2_diffusion_forcing.train profile=cpu",
    "phase3": "python -m phase3_vla.collect && python -m phase3_vla.train profile=cpu",
    "phase4": "python -m phase3_vla.collect && python -m phase4_uwm.train_tokenizer profile=cpu && "
              "python -m phase4_uwm.train profile=cpu",
    "phase5": "python -m phase5_integration.train_agent profile=cpu",
}


class ArtifactNotFoundError(UserError, FileNotFoundError):
    """An earlier phase's artefact is missing; the message says which command makes it."""


class RunExistsError(UserError, FileExistsError):
    """A new run would overwrite a run folder that holds checkpoints."""


@dataclass
class RunConfig:
    """The `run.*` keys of every command: where it reads and writes, and what it runs on."""

    # Where runs, collected data sets and results go, and where later commands look for them: one key for
    # every command of every phase. Relative to the repo root unless absolute.
    root: str = "outputs"
    seed: int = 0  # seeds Python, NumPy and torch (training noise, sampling noise, collected episodes)
    device: str = "auto"  # auto (cuda > mps > cpu) | cpu | cuda | mps
    threads: int = 0  # torch intra-op threads per process; 0 = cores / processes on this node
    precision: str = "auto"  # auto (bf16 only where the device computes it natively) | bf16 | fp32; common/precision.py

    def check(self) -> None:
        from common.precision import PRECISIONS
        require(self.device in ("auto", "cpu", "cuda", "mps"), "device", self.device,
                "allowed values: auto, cpu, cuda, mps")
        require(self.threads >= 0, "threads", self.threads, "must be >= 0 (0 = automatic)")
        require(self.precision in PRECISIONS, "precision", self.precision, f"allowed values: {', '.join(PRECISIONS)}")


@dataclass
class TrainRunConfig(RunConfig):
    """`run.*` of a command that makes a run folder (training): its name and whether it continues."""

    name: str = ""  # folder name under <root>/<phase>/; "" = a timestamp (or a name the command derives)
    resume: str = "false"  # false | true (this run name, or the latest run of the phase) | path of a run folder

    def check(self) -> None:
        super().check()
        require("/" not in self.name and self.name not in (".", ".."), "name", self.name,
                "a plain folder name (no '/'); use run.root to change the parent folder")

    @property
    def resume_mode(self) -> str | None:
        """None (fresh run), 'auto', or a path."""
        r = str(self.resume).strip()
        if r.lower() in ("false", "no", "0", "none", ""):
            return None
        if r.lower() in ("true", "yes", "1", "latest"):
            return "auto"
        return r


def outputs_root(root: str | Path = "outputs") -> Path:
    root = Path(root)
    return root if root.is_absolute() else REPO_ROOT / root


def releases_dir() -> Path:
    """The trained models that ship with the repo (`releases/<phase>/<name>/`, made by `python -m common.release`).
    $WM_RELEASES points elsewhere (the tests use it)."""
    return Path(os.environ.get("WM_RELEASES", REPO_ROOT / "releases"))


RELEASE_MANIFEST = "release.json"


@dataclass
class Run:
    """A run folder, or a release (`release=True`): the same files a loader reads, laid out flat. A release holds
    what a run's export/ holds (weights, config.yaml, the phase's marker JSON) plus release.json and metrics.json."""

    dir: Path
    phase: str
    release: bool = False

    @classmethod
    def at(cls, folder: str | Path, phase: str) -> "Run":
        """The run or release in `folder` (a release holds release.json)."""
        folder = Path(folder)
        return cls(folder, phase, release=(folder / RELEASE_MANIFEST).exists())

    @property
    def name(self) -> str:
        return self.dir.name

    config_path = property(lambda self: self.dir / "config.yaml")
    metrics_path = property(lambda self: self.dir / "metrics.jsonl")
    tb_dir = property(lambda self: self.dir / "tb")
    ckpt_dir = property(lambda self: self.dir / "checkpoints")
    media_dir = property(lambda self: self.dir / "media")

    @property
    def export_dir(self) -> Path:
        return self.dir if self.release else self.dir / "export"

    def make_dirs(self) -> "Run":
        for d in (self.dir, self.ckpt_dir, self.media_dir, self.tb_dir):
            d.mkdir(parents=True, exist_ok=True)
        return self

    def describe(self) -> str:
        if not self.release:
            return f"run {self.dir}"
        m = json.loads((self.dir / RELEASE_MANIFEST).read_text())
        prov = m.get("provenance", {})
        return (f"release {self.phase}/{self.name} ({self.dir}; trained {prov.get('trained', '?')} at commit "
                f"{str(prov.get('git_commit', '?'))[:10]})")


def writable_dir(run: Run, root: str | Path = "outputs") -> Path:
    """Where a command writes what it makes from `run` (eval results, samples, videos): the run folder itself,
    or for a release (never written to) <root>/<phase>/release-<name>/."""
    path = outputs_root(root) / run.phase / f"release-{run.name}" if run.release else run.dir
    path.mkdir(parents=True, exist_ok=True)
    return path


def _fresh_name(base: Path) -> str:
    """A timestamp name no folder under `base` has yet: two runs started within the same second (a tokenizer
    and the model trained on it, in a script) get 20261205-192637 and 20261205-192637-2."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    name, k = stamp, 1
    while (base / name).exists():
        k += 1
        name = f"{stamp}-{k}"
    return name


def open_run(phase: str, cfg: TrainRunConfig) -> tuple[Run, bool]:
    """Return (run, resuming). Resuming means the folder already holds a checkpoint to continue from."""
    base = outputs_root(cfg.root) / phase
    mode = cfg.resume_mode
    if mode is None:
        run = Run(base / (cfg.name or _fresh_name(base)), phase)
        if run.ckpt_dir.exists() and any(run.ckpt_dir.glob("step_*.pt")):
            raise RunExistsError(
                f"{run.dir} already holds checkpoints. Continue it with run.resume=true, "
                f"or choose another run.name.")
        return run.make_dirs(), False
    if mode == "auto":
        if cfg.name:
            run = Run(base / cfg.name, phase)
        else:
            run = resolve_run(phase, "latest", root=cfg.root, require="checkpoints")
    else:
        run = Run(Path(mode).resolve(), phase)
    has_ckpt = run.ckpt_dir.exists() and any(run.ckpt_dir.glob("step_*.pt"))
    if not has_ckpt:
        raise ArtifactNotFoundError(
            f"run.resume={cfg.resume}: {run.dir} has no checkpoint to resume from. "
            f"Start it with: {MAKE_COMMAND.get(phase, 'the phase train command')}")
    return run.make_dirs(), True


def _has(run_dir: Path, require: str, release: bool = False) -> bool:
    if require == "checkpoints":
        return not release and any((run_dir / "checkpoints").glob("step_*.pt"))
    if release:
        return (run_dir / RELEASE_MANIFEST).exists() and (run_dir / require.removeprefix("export/")).exists()
    return (run_dir / require).exists()


class ReleaseError(CheckpointError):
    """A release is missing a file, or a file does not match its manifest; the message names the file."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_release(folder: str | Path) -> dict:
    """Check every file of a release against release.json (size, then sha256); returns the manifest."""
    folder = Path(folder)
    manifest_path = folder / RELEASE_MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise ReleaseError(f"{folder} is not a release: no {RELEASE_MANIFEST}") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ReleaseError(f"release manifest {manifest_path} is corrupt ({e}); restore it with "
                           f"`git checkout -- {manifest_path}`") from None
    for rel, want in manifest.get("files", {}).items():
        path = folder / rel
        if not path.is_file():
            raise ReleaseError(f"release file {path} is missing; restore it with `git checkout -- {folder}`")
        size = path.stat().st_size
        if size != want["bytes"]:
            raise ReleaseError(f"release file {path} has {size} bytes, its manifest says {want['bytes']} "
                               f"(truncated or replaced); restore it with `git checkout -- {path}`")
        if sha256(path) != want["sha256"]:
            raise ReleaseError(f"release file {path} does not match the sha256 in {manifest_path} (corrupt or "
                               f"modified); restore it with `git checkout -- {path}`")
    return manifest


def find_release(phase: str, require: str = "export/model.safetensors", name: str = "") -> Run | None:
    """The release of `phase` holding `require` (named `name`, or the newest one), verified against its manifest."""
    base = releases_dir() / phase
    found = [d for d in sorted(base.iterdir()) if d.is_dir() and (not name or d.name == name)
             and _has(d, require, release=True)] if base.is_dir() else []
    if not found:
        return None
    newest = max(found, key=lambda d: json.loads((d / RELEASE_MANIFEST).read_text()).get("created", ""))
    verify_release(newest)
    return Run(newest, phase, release=True)


def resolve_run(phase: str, spec: str = "latest", root: str | Path = "outputs",
                require: str = "export/model.safetensors", quiet: bool = False) -> Run:
    """Find a run of `phase` holding `require` (a path inside the run, or "checkpoints").

    spec: "latest" = the most recently modified local run under <root>/<phase>/ that has the artefact, else the
    release of the phase (saying so in one line on stderr unless `quiet`); "release" (or "release:<name>") = the
    release only; otherwise a path to a run or release folder (absolute or relative to the current directory).
    A release is checked against the digests in its manifest before it is used.
    """
    if spec == "release" or spec.startswith("release:"):
        rel = find_release(phase, require, spec.partition(":")[2]) if require != "checkpoints" else None
        if rel is None:
            raise ArtifactNotFoundError(
                f"No {phase} release with {require.removeprefix('export/')} under {releases_dir() / phase}. "
                f"Train one with: {MAKE_COMMAND.get(phase, '?')}")
        return rel
    if spec != "latest":
        run = Run.at(Path(spec).expanduser().resolve(), phase)
        if not _has(run.dir, require, run.release):
            raise ArtifactNotFoundError(
                f"{run.dir} has no {require}. Make it with: {MAKE_COMMAND.get(phase, '?')}")
        if run.release:
            verify_release(run.dir)
        return run
    base = outputs_root(root) / phase
    candidates = [d for d in base.iterdir() if d.is_dir() and _has(d, require)] if base.is_dir() else []
    if not candidates:
        rel = find_release(phase, require) if require != "checkpoints" else None
        if rel is not None:
            if not quiet:
                print(f"note: no local {phase} run with {require} under {base}; using the {rel.describe()}",
                      file=sys.stderr, flush=True)
            return rel
        raise ArtifactNotFoundError(
            f"No {phase} run with {require} under {base}. Make one with: {MAKE_COMMAND.get(phase, '?')} "
            f"(or pass the path of a run folder instead of 'latest').")
    newest = max(candidates, key=lambda d: ((d / "metrics.jsonl").stat().st_mtime
                                            if (d / "metrics.jsonl").exists() else d.stat().st_mtime))
    return Run(newest, phase)


@dataclass
class Exported:
    """A finished run's exported model (EMA weights, eval mode) with its typed config and metadata."""

    model: Any  # torch.nn.Module
    cfg: Any  # the phase's config dataclass, as saved by the run
    meta: dict  # the run's export/<marker> JSON (what a loader needs besides the config)
    run: Run


def load_exported(phase: str, spec: str, root: str | Path, marker: str, schema: type, build: Callable,
                  make_hint: str = "", device: Any = "cpu") -> Exported:
    """Load `export/model.safetensors` of a run that holds `export/<marker>` (a JSON written at the end of
    training, which also tells runs of one phase apart, e.g. diffusion.json vs regressor.json).

    `build(cfg, meta)` constructs the untrained model. spec: a run folder, "latest" or "release" (resolve_run). Release
    weights may be stored in half precision; they are loaded into the model's fp32 parameters. A missing run raises
    ArtifactNotFoundError (with `make_hint` appended); weights that do not fit the config raise CheckpointError."""
    from common.checkpoint import CheckpointError, load_safetensors
    from common.config import load_saved_config

    try:
        run = resolve_run(phase, spec, root, require=f"export/{marker}")
    except ArtifactNotFoundError as e:
        raise ArtifactNotFoundError(f"{e} {make_hint}".strip()) from None
    meta = json.loads((run.export_dir / marker).read_text())
    cfg = load_saved_config(schema, run.export_dir / "config.yaml")
    model = build(cfg, meta)
    weights = run.export_dir / "model.safetensors"
    try:
        model.load_state_dict(load_safetensors(weights))
    except RuntimeError as e:
        raise CheckpointError(f"{weights} does not match its config.yaml: {str(e).splitlines()[0]}") from e
    return Exported(model.to(device).eval(), cfg, meta, run)
